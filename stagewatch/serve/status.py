"""The status page: every stage, where it stands, its last run, what it writes, its last failure."""

from __future__ import annotations

import html
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from stagewatch.daemon.events import SlotState
from stagewatch.failure import headline
from stagewatch.pipeline import Pipeline
from stagewatch.stage import StageState
from stagewatch.standing import slot_standing
from stagewatch.state import Attempt

TAIL_LINES = 30


def failure_view(name: str, code: str, attempt: Attempt) -> dict[str, Any]:
    """A failed run as the overlay and the status page show it."""
    return {
        "stage": name,
        "code": code,
        "exit_code": attempt.exit_code,
        "error": attempt.error,
        "finished": attempt.finished,
        "exception": headline(attempt.tail),
        "tail": list(attempt.tail[-TAIL_LINES:]),
    }


PIPELINE_FILE = "(pipeline file)"
"""Where the overlays keep what is wrong with the pipeline file (no stage can be named so)."""


def pipeline_failure_view(config_path: object, problems: tuple[str, ...]) -> dict[str, Any]:
    """A pipeline file that could not be read again, as the overlay shows it."""
    return {
        "stage": None,
        "pipeline": str(config_path),
        "code": "",
        "exit_code": None,
        "error": None,
        "finished": None,
        "exception": headline(problems[:1]),  # the first problem: each is a line of its own
        "tail": list(problems),
    }


def status_rows(
    pipeline: Pipeline,
    states: Mapping[str, SlotState],
    attempts: Mapping[str, Attempt],
    failures: Mapping[str, Attempt],
    failing: Collection[str] = (),
) -> list[dict[str, Any]]:
    """One row per stage, in graph order; each last failure says whether it is resolved."""
    rows = []
    for name in pipeline.graph.order:
        stage = pipeline.stage(name)
        attempt, failure = attempts.get(name), failures.get(name)
        state = states.get(name)
        rows.append({
            "name": name,
            "state": state.value if state is not None else "unknown",
            "status": _standing(state, attempt),
            "code": stage.code_label,
            "writes": list(stage.outputs),
            "last_run": None if attempt is None else {
                "result": attempt.result.value, "started": attempt.started,
                "finished": attempt.finished, "duration_s": attempt.duration_s,
            },
            "last_failure": None if failure is None else {
                **failure_view(name, stage.code_label, failure),
                "resolved": resolved(attempt, name in failing),
            },
        })  # fmt: skip
    return rows


def _standing(state: SlotState | None, attempt: Attempt | None) -> str:
    """The row's word for people, as `stagewatch status` says it; "state" keeps the daemon's own.
    A stage with no slot (a reload adds it a moment later) is "unknown" in both."""
    if state is None:
        return "unknown"
    return slot_standing(state, None if attempt is None else attempt.result).value


def resolved(attempt: Attempt | None, failing: bool) -> bool:
    """Whether a stage's last failure is over: its last attempt succeeded, or (while another
    runs, or after a stop) the overlay no longer shows it. The attempt is recorded a moment
    before the preview hears of its end: it decides whenever it succeeded or failed."""
    if attempt is not None and attempt.result is StageState.SUCCEEDED:
        return True
    if attempt is not None and attempt.result is StageState.FAILED:
        return False
    return not failing


def _failure(failure: dict[str, Any]) -> str:
    """A last failure, led by its exception line; greyed once its stage has succeeded since."""
    resolved = failure["resolved"]
    said = html.escape(str(failure["error"]))
    when = f"{said} at {html.escape(shown_time(failure['finished']))}" + (
        ": it has succeeded since" if resolved else ""
    )
    exception = failure["exception"]
    headline = f'<div class="exception">{html.escape(exception)}</div>' if exception else ""
    tail = html.escape("\n".join(failure["tail"]))
    return (
        f'<div class="failure{" resolved" if resolved else ""}" data-stage="{html.escape(failure["stage"])}">'
        f'{headline}<div class="when">last failure: {when}</div><pre>{tail}</pre></div>'
    )


def shown_time(iso: str | None) -> str:
    """A recorded time as the page shows it, in one short line: "2026-12-07 16:38:27 UTC"."""
    if not iso:
        return "-"
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if then.tzinfo is not None:
        then = then.astimezone(UTC)
    return then.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if then.tzinfo is not None else "")


def _pipeline_problems(problems: Sequence[str]) -> str:
    if not problems:
        return ""
    said = html.escape("\n".join(problems))
    return (
        '<div class="failure pipeline"><div class="exception">The pipeline file is invalid:'
        f" the pipeline running is the one before</div><pre>{said}</pre></div>"
    )


def _row_classes(row: dict[str, Any]) -> str:
    """The daemon's word and the people's, both: the colours follow what the row says ("never
    run" is one class, "never-run")."""
    said = row["status"].replace(" ", "-")
    return row["state"] if said == row["state"] else f"{row['state']} {said}"


def status_page(rows: list[dict[str, Any]], site: str, pipeline_problems: Sequence[str] = ()) -> str:
    """The rows as a page that refreshes itself, as wide as the window and no wider: long
    commands, outputs and output lines wrap, and a failure has the table's whole width."""

    def cell(value: object, kind: str) -> str:
        return f'<td class="{kind}">{html.escape(str(value))}</td>'

    body = []
    for row in rows:
        run = row["last_run"] or {}
        failure = row["last_failure"]
        duration = "" if run.get("duration_s") is None else f"{run['duration_s']:.3f} s"
        body.append(
            f'<tr class="{html.escape(_row_classes(row))}{" has-failure" if failure else ""}">'
            + cell(row["name"], "name") + cell(row["status"], "state") + cell(row["code"], "code")
            + cell(shown_time(run.get("finished") or run.get("started")), "when") + cell(duration, "took")
            + cell(", ".join(row["writes"]), "writes") + "</tr>"
        )  # fmt: skip
        if failure is not None:
            body.append(f'<tr class="failure-row"><td colspan="6">{_failure(failure)}</td></tr>')
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<meta name="viewport" content="width=device-width">
<title>stagewatch: status</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}
code{{overflow-wrap:anywhere}}
table{{border-collapse:collapse;width:100%;table-layout:fixed}}
col.name{{width:14%}}col.state{{width:9%}}col.code{{width:25%}}col.when{{width:18%}}
col.took{{width:8%}}col.writes{{width:26%}}
td,th{{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top;
overflow-wrap:anywhere}}td.took{{white-space:nowrap}}
tr.has-failure td{{border-bottom:0}}
tr.failed td.state{{color:#b00;font-weight:bold}}tr.running td.state{{color:#06c}}
.failure{{border-left:4px solid #d33;background:#fee;color:#300;padding:6px 10px;margin:0 0 4px}}
.failure .exception{{font-weight:bold;color:#a00;font-family:ui-monospace,Menlo,Consolas,monospace}}
.failure .when{{color:#733;font-size:13px}}
.failure pre{{background:#fee;margin:6px 0 0;white-space:pre-wrap;overflow-wrap:anywhere;
max-height:24em;overflow:auto}}
.failure.resolved{{border-left-color:#bbb;background:#f4f4f4;color:#666}}
.failure.resolved .exception,.failure.resolved .when{{color:#666}}
.failure.resolved pre{{background:#f4f4f4}}</style></head>
<body><h1>stagewatch</h1>{_pipeline_problems(pipeline_problems)}<p>Serving <code>{html.escape(site)}</code>.
<a href="/_stagewatch/status.json">JSON</a></p>
<table><colgroup><col class="name"><col class="state"><col class="code"><col class="when">
<col class="took"><col class="writes"></colgroup>
<tr><th>stage</th><th>state</th><th>runs</th><th>last run</th><th>took</th><th>writes</th></tr>
{"".join(body)}
</table></body></html>
"""
