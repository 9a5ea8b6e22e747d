"""`status` and `explain` as text, from plain values: what the CLI's own tests leave out
(a holder of the lock, a ttl that is due, a legacy entry, an entry with no ttl yet)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from stagewatch.entry import Entry
from stagewatch.freshness import Decision, Fingerprint, NeverBuilt, TtlExpired
from stagewatch.stage import Stage, StageState
from stagewatch.state import Attempt
from stagewatch.status_report import explain_lines, status_document, status_lines, status_row

NOW = datetime(2026, 1, 2, tzinfo=UTC)
FRESH = Decision(run=False, reasons=(), key="k")
ENTRY = Entry("k", 0.0, finished="2026-01-01T00:00:00+00:00", duration_s=2.0)


def test_a_fresh_row_hides_its_reasons_and_a_due_ttl_says_due() -> None:
    due = Decision(run=True, reasons=(TtlExpired(7200.0, 3600.0),), key="k", age_s=7200.0, ttl_left_s=-5.0)
    rows = [
        status_row("fetch", due, ENTRY, None, None, False),
        status_row("page", FRESH, ENTRY, None, None, False),
    ]
    assert rows[0]["ttl_left_s"] == 0.0
    lines = status_lines(rows, (41, "watch"), NOW)
    assert lines[0] == "stagewatch watch running (pid 41)"
    assert lines[1].split("  ")[0] == "STAGE"
    assert lines[2].split() == [
        "fetch",
        "stale",
        "1d",
        "ago",
        "due",
        "ttl",
        "expired:",
        "entry",
        "is",
        "2h",
        "old,",
        "ttl",
        "1h",
    ]
    assert lines[3].split() == ["page", "fresh", "1d", "ago", "-"]


def test_a_lock_holder_of_unknown_mode_is_said_as_such() -> None:
    assert status_lines([], (7, ""), NOW)[0] == "stagewatch ? running (pid 7)"


def test_the_json_document_names_who_holds_the_lock() -> None:
    attempt = Attempt(StageState.FAILED, "2026-01-01T00:00:00+00:00", None, None, 1, "exit 1", ("boom",))
    row = status_row("page", FRESH, None, attempt, attempt, True)
    document = status_document(Path("/p/stagewatch.toml"), (41, "build"), [row])
    assert document["config"] == "/p/stagewatch.toml"
    assert document["locked_by"] == {"pid": 41, "mode": "build"}
    assert row["last_failure"] == {"finished": None, "error": "exit 1", "tail": ["boom"]}
    assert status_document(Path("/p/stagewatch.toml"), None, [])["locked_by"] is None


def test_explain_of_a_ttl_stage_with_no_entry_yet_and_a_legacy_key() -> None:
    stage = Stage("fetch", command=("fetch", "--all"), ttl_s=3600.0)
    never = Decision(run=True, reasons=(NeverBuilt(),), key=None)
    nothing = Fingerprint("k2", None, (), (("a", "0"),), ())
    legacy = Entry("k1", 0.0, legacy=True)
    lines = explain_lines(stage, never, legacy, nothing, ["prepare"])
    assert lines == [
        "stage fetch (fetch --all)",
        "  would run:",
        "    - no successful run recorded",
        "  last successful run: unknown time",
        "  recorded key: k1  (legacy entry: key only)",
        "  current key:  k2",
        "  reads: 1 input files, 0 code dependencies",
        "  ttl: 1h, no entry yet: due now",
        "  after: prepare (checked again when they run)",
    ]


def test_explain_of_a_fresh_ttl_stage_says_the_time_left() -> None:
    stage = Stage("fetch", command=("fetch",), ttl_s=3600.0)
    fresh = Decision(run=False, reasons=(), key="k", age_s=600.0, ttl_left_s=3000.0)
    lines = explain_lines(stage, fresh, ENTRY, Fingerprint("k", None, (), (), ()), [])
    assert lines[1] == "  fresh: inputs, code and outputs match the last successful run"
    assert lines[2] == "  last successful run: 2026-01-01T00:00:00+00:00, took 2.0s"
    assert lines[-1] == "  ttl: 1h, entry age 10m: 50m left"
