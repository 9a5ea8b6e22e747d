"""What `status` and `explain` say of the stages, as rows and lines, from values read elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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


def status_document(
    config_path: Path, owner: Owner, rows: list[dict[str, Any]], patterns: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """`status --json`: the pipeline file, who holds it, the rows (one per stage, instances
    included) and a summary of each pattern stage (pattern_summaries)."""
    locked_by = {"pid": owner[0], "mode": owner[1]} if owner else None
    return {"config": str(config_path), "locked_by": locked_by, "stages": rows, "patterns": list(patterns)}


# --- A pattern stage as one row (docs/design.md#pattern-stages) ---

_COUNTED_FIRST = ("fresh", "stale", "never run", "failed", "running")
"""The order a pattern's counts are said in; a state not listed follows them."""

NAMED_PER_STATE = 3
"""Failing or running instances a pattern's row names before it counts the rest."""


def pattern_summaries(
    rows: Iterable[dict[str, Any]], pattern_of: Callable[[str], str | None], drivers: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Each pattern stage (`drivers`: its name -> its driver, in file order) summed over its
    instances' rows, in one pass: how many stand in each state, which are failing or running,
    its newest success and the soonest TTL; a pattern with no instance has zeros."""
    found: dict[str, dict[str, Any]] = {
        name: {"name": name, "driver": driver, "instances": 0, "counts": {}, "failing": [], "running": [],
               "last_success": None, "ttl_left_s": None}
        for name, driver in drivers.items()
    }  # fmt: skip
    successes: dict[str, list[str]] = {name: [] for name in drivers}
    for row in rows:
        pattern = pattern_of(row["name"])
        if pattern is None or pattern not in found:
            continue
        summary = found[pattern]
        summary["instances"] += 1
        state = row["state"]
        summary["counts"][state] = summary["counts"].get(state, 0) + 1
        if state in ("failed", "running"):
            summary["failing" if state == "failed" else "running"].append(row["name"])
        if row["last_success"]:
            successes[pattern].append(row["last_success"])
        ttl = row["ttl_left_s"]
        if ttl is not None and (summary["ttl_left_s"] is None or ttl < summary["ttl_left_s"]):
            summary["ttl_left_s"] = ttl
    for name, summary in found.items():
        counts = summary["counts"]
        ordered = [state for state in _COUNTED_FIRST if state in counts]
        summary["counts"] = {
            state: counts[state] for state in [*ordered, *sorted(set(counts) - set(ordered))]
        }
        summary["last_success"] = _newest(successes[name])
    return found


def _newest(times: Sequence[str]) -> str | None:
    """The latest of recorded times; one that is no time at all counts as the oldest."""

    def when(iso: str) -> datetime:
        try:
            then = datetime.fromisoformat(iso)
        except ValueError:
            return datetime.min.replace(tzinfo=UTC)
        return then if then.tzinfo is not None else then.replace(tzinfo=UTC)

    return max(times, key=when) if times else None


def _some(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMED_PER_STATE])
    return shown + (f" and {len(names) - NAMED_PER_STATE} more" if len(names) > NAMED_PER_STATE else "")


def pattern_row(summary: dict[str, Any]) -> dict[str, Any]:
    """A pattern's line of the `status` table, as a row: its counts in the STATE column, the
    instances failing and running by name in WHY."""
    if not summary["instances"]:
        state, reasons = "no instances", [f'its driver "{summary["driver"]}" matches no file']
    else:
        state = ", ".join(f"{count} {word}" for word, count in summary["counts"].items())
        named = (("failed", summary["failing"]), ("running", summary["running"]))
        reasons = [f"{word}: {_some(names)}" for word, names in named if names]
    return {"name": summary["name"], "state": state, "reasons": reasons,
            "last_success": summary["last_success"], "ttl_left_s": summary["ttl_left_s"]}  # fmt: skip


def folded_rows(
    rows: Iterable[dict[str, Any]],
    pattern_of: Callable[[str], str | None],
    summaries: Mapping[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """The table's rows: a plain stage's as it is, each pattern's one row where its first
    instance stands (one with no instance at the end)."""
    table: list[dict[str, Any]] = []
    shown: set[str] = set()
    for row in rows:
        pattern = pattern_of(row["name"])
        if pattern is None or pattern not in summaries:
            table.append(row)
        elif pattern not in shown:
            shown.add(pattern)
            table.append(pattern_row(summaries[pattern]))
    table.extend(pattern_row(summary) for name, summary in summaries.items() if name not in shown)
    return table


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
