"""What `status` and `explain` say of the stages, as rows and lines, from values read elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stagewatch.durations import format_duration
from stagewatch.entry import CorruptEntry, Entry
from stagewatch.freshness import Decision, Fingerprint
from stagewatch.stage import Stage
from stagewatch.standing import recorded_standing
from stagewatch.state import Attempt

Owner = tuple[int, str] | None
"""Who holds the pipeline's lock: its pid and its mode ("build", "watch", ...), or nobody."""

_HEAD = ("STAGE", "STATE", "LAST SUCCESS", "TTL LEFT", "WHY")


def ago(iso: str | None, now: datetime) -> str:
    """How long ago a recorded time was; a time written by hand without a zone is UTC (as
    stagewatch writes them), and one that is no time at all is shown as it is, if it fits."""
    if not iso:
        return "-"
    try:
        then = datetime.fromisoformat(iso)
        if then.tzinfo is None:
            then = then.replace(tzinfo=UTC)
        seconds = (now - then).total_seconds()
        return format_duration(seconds) + " ago" if seconds >= 0 else "in the future"
    except (ValueError, OverflowError):
        return iso if len(iso) <= 13 and iso.isprintable() else "?"


def status_row(
    name: str,
    decision: Decision,
    entry: Entry | CorruptEntry | None,
    attempt: Attempt | None,
    failure: Attempt | None,
    locked: bool,
) -> dict[str, Any]:
    """One stage's row of `status --json` (and of the table): its standing, why, its last runs."""
    standing, reasons = recorded_standing(decision, entry, attempt, locked)
    ttl_left = decision.ttl_left_s
    return {
        "name": name,
        "state": standing.value,
        "reasons": reasons,
        "last_success": entry.finished if isinstance(entry, Entry) else None,
        "ttl_left_s": None if ttl_left is None else max(0.0, round(ttl_left, 1)),
        "last_attempt": None if attempt is None else {
            "result": attempt.result.value, "started": attempt.started, "finished": attempt.finished,
            "duration_s": attempt.duration_s, "error": attempt.error,
        },
        "last_failure": None if failure is None else {
            "finished": failure.finished, "error": failure.error, "tail": list(failure.tail),
        },
    }  # fmt: skip


def status_document(config_path: Path, owner: Owner, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`status --json`: the pipeline file, who holds it, and the rows."""
    locked_by = {"pid": owner[0], "mode": owner[1]} if owner else None
    return {"config": str(config_path), "locked_by": locked_by, "stages": rows}


def _ttl_text(ttl_left_s: float | None) -> str:
    if ttl_left_s is None:
        return "-"
    return "due" if ttl_left_s <= 0 else format_duration(ttl_left_s)


def status_lines(rows: Sequence[dict[str, Any]], owner: Owner, now: datetime) -> list[str]:
    """`status` for people: whether a stagewatch holds the pipeline, then one line per stage."""
    if owner is not None:
        lines = [f"stagewatch {owner[1] or '?'} running (pid {owner[0]})"]
    else:
        lines = ["no daemon watching this pipeline"]
    table = []
    for row in rows:
        why = "; ".join(row["reasons"]) if row["state"] != "fresh" else ""
        table.append(
            (row["name"], row["state"], ago(row["last_success"], now), _ttl_text(row["ttl_left_s"]), why)
        )
    # Columns as wide as their widest value: "26d 22h 58m ago" fits.
    widths = [max(len(line[column]) for line in (_HEAD, *table)) for column in range(4)]
    for line in (_HEAD, *table):
        cells = [f"{cell:<{width}}" for cell, width in zip(line, widths, strict=False)]
        lines.append("  ".join([*cells, line[4]]).rstrip())
    return lines


def _ttl_line(ttl_s: float, decision: Decision) -> str:
    ttl = format_duration(ttl_s)
    if decision.age_s is None:
        return f"  ttl: {ttl}, no entry yet: due now"
    if decision.age_s < 0:
        return f"  ttl: {ttl}, entry dated {format_duration(-decision.age_s)} in the future: due now"
    left = decision.ttl_left_s or 0.0
    due = f"{format_duration(left)} left" if left > 0 else "due now"
    return f"  ttl: {ttl}, entry age {format_duration(decision.age_s)}: {due}"


def explain_lines(
    stage: Stage,
    decision: Decision,
    entry: Entry | CorruptEntry | None,
    fingerprint: Fingerprint,
    upstream: Sequence[str],
) -> list[str]:
    """`explain STAGE`: whether it would run and why, its recorded and current keys, its ttl,
    and the stages before it (`upstream`, sorted)."""
    lines = [f"stage {stage.name} ({stage.code_label})"]
    if decision.run:
        lines.append("  would run:")
        lines.extend(f"    - {reason}" for reason in decision.reasons)
    else:
        lines.append("  fresh: inputs, code and outputs match the last successful run")
    if isinstance(entry, Entry):
        took = f", took {format_duration(entry.duration_s)}" if entry.duration_s is not None else ""
        lines.append(f"  last successful run: {entry.finished or 'unknown time'}{took}")
        lines.append(f"  recorded key: {entry.key}" + ("  (legacy entry: key only)" if entry.legacy else ""))
    problems = "; ".join(str(problem) for problem in fingerprint.problems)
    lines.append(f"  current key:  {fingerprint.key or '(none: ' + problems + ')'}")
    lines.append(f"  reads: {len(fingerprint.inputs)} input files, {len(fingerprint.deps)} code dependencies")
    if stage.ttl_s is not None:
        lines.append(_ttl_line(stage.ttl_s, decision))
    if upstream:
        lines.append(f"  after: {', '.join(upstream)} (checked again when they run)")
    return lines
