"""The status page: every stage, where it stands, its last run, what it writes, its last failure."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from stagewatch.daemon.events import SlotState
from stagewatch.pipeline import Pipeline
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
        "tail": list(attempt.tail[-TAIL_LINES:]),
    }


def status_rows(
    pipeline: Pipeline,
    states: Mapping[str, SlotState],
    attempts: Mapping[str, Attempt],
    failures: Mapping[str, Attempt],
) -> list[dict[str, Any]]:
    """One row per stage, in graph order."""
    rows = []
    for name in pipeline.graph.order:
        stage = pipeline.stage(name)
        attempt, failure = attempts.get(name), failures.get(name)
        state = states.get(name)
        rows.append({
            "name": name,
            "state": state.value if state is not None else "unknown",
            "code": stage.code_label,
            "writes": list(stage.outputs),
            "last_run": None if attempt is None else {
                "result": attempt.result.value, "started": attempt.started,
                "finished": attempt.finished, "duration_s": attempt.duration_s,
            },
            "last_failure": None if failure is None else failure_view(name, stage.code_label, failure),
        })  # fmt: skip
    return rows


def status_page(rows: list[dict[str, Any]], site: str) -> str:
    """The rows as a page that refreshes itself."""

    def cell(value: object) -> str:
        return f"<td>{html.escape(str(value))}</td>"

    body = []
    for row in rows:
        run = row["last_run"] or {}
        failure = row["last_failure"]
        failed = ""
        if failure is not None:
            tail = html.escape("\n".join(failure["tail"]))
            failed = f"{html.escape(str(failure['error']))} at {failure['finished']}<pre>{tail}</pre>"
        duration = "" if run.get("duration_s") is None else f"{run['duration_s']:.3f} s"
        body.append(
            f'<tr class="{html.escape(row["state"])}">'
            + cell(row["name"]) + cell(row["state"]) + cell(row["code"])
            + cell(run.get("finished") or run.get("started") or "-") + cell(duration)
            + cell(", ".join(row["writes"])) + f"<td>{failed}</td></tr>"
        )  # fmt: skip
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>stagewatch: status</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top}}
tr.failed td:nth-child(2){{color:#b00;font-weight:bold}}tr.running td:nth-child(2){{color:#06c}}
pre{{background:#fee;padding:6px;max-width:70em;overflow:auto}}</style></head>
<body><h1>stagewatch</h1><p>Serving <code>{html.escape(site)}</code>.
<a href="/_stagewatch/status.json">JSON</a></p>
<table><tr><th>stage</th><th>state</th><th>runs</th><th>last run</th><th>took</th><th>writes</th>
<th>last failure</th></tr>
{"".join(body)}
</table></body></html>
"""
