"""The catalogue of sentences a person reads on the console: one per event the code logs.

Each event name maps to a function of the event's fields (and the colours in use) that
returns one sentence. The console renderer looks events up here; an event missing from the
catalogue would be shown as `event key=value`, which a test forbids for every event the
code emits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stagewatch.durations import format_duration

RESET, DIM, BOLD = "\033[0m", "\033[2m", "\033[1m"
RED, GREEN, YELLOW, CYAN = "\033[31m", "\033[32m", "\033[33m", "\033[36m"


class Paint:
    """Colours text for a terminal that shows them; leaves it plain for one that does not."""

    def __init__(self, colors: bool) -> None:
        self.colors = colors

    def __call__(self, color: str, text: object) -> str:
        return f"{color}{text}{RESET}" if self.colors else str(text)

    def dim(self, text: object) -> str:
        return self(DIM, text)

    def bold(self, text: object) -> str:
        return self(BOLD, text)

    def red(self, text: object) -> str:
        return self(RED, text)

    def green(self, text: object) -> str:
        return self(GREEN, text)

    def yellow(self, text: object) -> str:
        return self(YELLOW, text)

    def cyan(self, text: object) -> str:
        return self(CYAN, text)


Fields = Mapping[str, Any]
Sentence = Callable[[Fields, Paint], str]


def _count(value: object, noun: str) -> str:
    return f"{value} {noun}" if value == 1 else f"{value} {noun}s"


def _seconds(value: object) -> str:
    return format_duration(float(value)) if isinstance(value, int | float) else str(value)


def _names(values: Iterable[object] | None) -> str:
    return ", ".join(str(value) for value in values or ())


def _pids(f: Fields) -> str:
    return ", ".join(str(pid) for pid in f.get("pids", ()))


class _Absent(dict[str, Any]):
    """A field the event did not carry reads as None, as `f.get(key)` does."""

    def __missing__(self, key: str) -> None:
        return None


def _template(text: str) -> Sentence:
    """A sentence that only puts fields in place: `{path}` is the event's path field."""
    return lambda f, _p: text.format_map(_Absent(f))


# --- stages: one sentence for each turn of a stage's run ---


def _stage_started(f: Fields, p: Paint) -> str:
    why = "; ".join(f.get("reasons", ())) or "stale"
    return f"{p.cyan('▶')} {p.bold(f.get('stage', ''))} runs: {why}"


def _stage_failed(f: Fields, p: Paint) -> str:
    # The renderer adds tail_lines (the output lines shown below), exception and place.
    tail_lines = f.get("tail_lines", 0)
    lines = "line" if tail_lines == 1 else f"{tail_lines} lines"
    where = f"; last {lines} of its output:" if tail_lines else ""
    exception, place = f.get("exception"), f.get("place")
    said = f": {p.bold(exception)}" if exception else ""
    if said and place:
        said += f" (at {place})"
    return (
        f'{p.red("✗")} stage "{f.get("stage", "")}" failed ({f.get("error")})'
        f" after {_seconds(f.get('duration_s'))}{said}{where}"
    )


def _stage_self_triggering(f: Fields, p: Paint) -> str:
    return (
        f"{p.yellow('⟲')} {p.bold(f.get('stage', ''))} keeps changing what it reads"
        f" ({f.get('path')}, {f.get('runs')} runs in a row): held until something else changes it"
    )


def _stage_retrying(f: Fields, _p: Paint) -> str:
    return f"{f.get('stage', '')}: trying again after {_count(f.get('failures'), 'failure')}"


def _stage_internal_error(f: Fields, _p: Paint) -> str:
    return f"{f.get('stage', '')}: stagewatch itself failed while running it; the run counts as failed"


_STAGES: dict[str, Sentence] = {
    "stage.output": lambda f, p: f"{p.dim(str(f.get('stage')) + ' |')} {f.get('line', '')}",
    "stage.started": _stage_started,
    "stage.succeeded": lambda f, p: (
        f"{p.green('✓')} {p.bold(f.get('stage', ''))} done in {_seconds(f.get('duration_s'))}"
    ),
    "stage.failed": _stage_failed,
    "stage.log_unwritable": lambda f, _p: (
        f"{f.get('stage', '')}: cannot write its log {f.get('path')} ({f.get('error')});"
        " its output is still shown"
    ),
    "stage.orphans_killed": lambda f, _p: (
        f"{f.get('stage', '')}: stopped what an earlier run of it left running (pid {_pids(f)})"
        " before running it"
    ),
    "stage.outlived": lambda f, _p: (
        f"{f.get('stage', '')}: processes it started outlive its run (pid {_pids(f)});"
        " they are stopped before it runs again"
    ),
    "stage.instance_removed": lambda f, _p: (
        f"{f.get('stage', '')}: its file is gone; removed"
        + (f" {', '.join(map(str, f.get('outputs') or ()))} and" if f.get("outputs") else "")
        + " its entry"
    ),
    "stage.output_not_removed": lambda f, _p: (
        f"could not remove {f.get('path', '')} of a gone instance: {f.get('problem', '')}"
    ),
    "stage.blocked": lambda f, p: (
        f"{p.yellow('⊘')} {p.bold(f.get('stage', ''))} not run: upstream {f.get('by')} failed"
    ),
    "stage.skipped": lambda f, p: f"{p.dim('·')} {f.get('stage', '')} fresh",
    "stage.cancelled": lambda f, p: (
        f"{p.yellow('■')} {f.get('stage', '')} stopped after {_seconds(f.get('duration_s'))}"
    ),
    "stage.retry_scheduled": lambda f, p: (
        f"{p.yellow('⏲')} {f.get('stage', '')}: trying again in {_seconds(f.get('retry_in_s'))}"
    ),
    "stage.retrying": _stage_retrying,
    "stage.held": _template("{stage} held: {reason}"),
    "stage.check_failed": _template("{stage}: cannot tell whether it is fresh ({error}); counted as failed"),
    "stage.self_triggering": _stage_self_triggering,
    "stage.released": lambda f, p: (
        f"{p.cyan('~')} {f.get('stage', '')}: {f.get('path')} changed from outside; checking it again"
    ),
    "stage.invalidated": lambda f, p: f"{p.cyan('~')} {p.bold(f.get('stage', ''))} invalidated: runs again",
    "stage.invalidated_while_running": lambda f, _p: (
        f"{f.get('stage', '')}: invalidated while it ran, so this run is not recorded; it runs again"
    ),
    "stage.restarting": lambda f, p: (
        f"{p.yellow('↻')} {f.get('stage', '')}: its inputs changed while it ran; restarting it"
    ),
    "stage.internal_error": _stage_internal_error,
    "ttl.due": lambda f, p: f"{p.cyan('⏲')} {f.get('stage', '')}: ttl expired",
    "run_record.corrupt": _template(
        "{stage}: its run record {path} is damaged ({problem});"
        " what an earlier run left running is looked for and stopped all the same"
    ),
}


# --- the watch: what it sees, and how it stands ---


def _watch_started(f: Fields, p: Paint) -> str:
    return (
        f"{p.bold('watching')} {_count(f.get('folders'), 'folder')}"
        f" for {_count(f.get('stages'), 'stage')}"
        f" ({f.get('watcher')}); catching up"
    )


def _watch_changed(f: Fields, p: Paint) -> str:
    paths = ", ".join(f.get("paths", ()))
    more = f" and {f['count'] - len(f['paths'])} more" if f.get("count", 0) > len(f.get("paths", ())) else ""
    return f"{p.cyan('~')} {paths}{more} changed: checking {', '.join(f.get('stages', ()))}"


def _watch_idle(f: Fields, p: Paint) -> str:
    troubles = [
        f"{word}: {', '.join(f[key])}{why}"
        for key, word, why in (
            ("failing", "failing", ""),
            ("blocked", "blocked", ""),
            ("looping", "held", " (each keeps changing what it reads)"),
        )
        if f.get(key)
    ]
    fresh = f.get("fresh")
    if troubles:
        return f"{p.yellow('idle')}: {fresh} fresh; " + "; ".join(troubles)
    every = "the stage is fresh" if fresh == 1 else f"all {fresh} stages fresh"
    return f"{p.green('idle')}: {every}"


def _watch_output_dir_gone(f: Fields, p: Paint) -> str:
    return f"{p.red('the output folder is gone')}: {f.get('path')} was deleted or moved; stopping"


def _watch_limit(f: Fields, _p: Paint) -> str:
    return (
        f"cannot watch {f.get('path')} ({f.get('error')}): polling it instead;"
        f" raise the limit with: {f.get('raise_it_with')}"
    )


def _watch_stopping(f: Fields, _p: Paint) -> str:
    running = f.get("running") or []
    return f"stopping ({f.get('signal')})" + (f": stopping {', '.join(running)}" if running else "")


def _watch_stop_overdue(f: Fields, _p: Paint) -> str:
    running = _names(f.get("running")) or "nothing"
    return f"stopping took too long ({running} still running): stopping without waiting for it"


def _internal_error(f: Fields, _p: Paint) -> str:
    # Said from many places, each with what it has: the stage, the step, the error.
    where = f" in {f['stage']}" if f.get("stage") else ""
    during = f.get("during") or f.get("callback") or f.get("message")
    step = f" ({during})" if during else ""
    error = f": {f['error']}" if f.get("error") else ""
    action = f"; {f['action']}" if f.get("action") else ""
    return f"stagewatch's own error{where}{step}{error}{action}"


_WATCH: dict[str, Sentence] = {
    "watch.started": _watch_started,
    "watch.changed": _watch_changed,
    "watch.idle": _watch_idle,
    "watch.output_dir_gone": _watch_output_dir_gone,
    "watch.distrusted": _template("the watcher may have missed changes ({reason}): checking every stage"),
    "watch.limit": _watch_limit,
    "watch.failed": _template("cannot watch {path} ({error}): trying again {retry}"),
    "watch.rescan": _template("checking every stage again ({reason})"),
    "watch.library": _template("watcher ({logger}): {message}"),
    "watch.stopping": _watch_stopping,
    "watch.stop_overdue": _watch_stop_overdue,
    "watch.stopped": lambda _f, _p: "stopped",
    "daemon.internal_error": _internal_error,
    "daemon.listener_error": lambda _f, _p: (
        "the preview failed to take in a change of the watch; watching goes on"
    ),
    "systemd.notify_dropped": _template("a message to systemd was dropped ({reason}) at {socket}"),
    "systemd.notify_failed": _template(
        "cannot tell systemd how stagewatch stands ({socket}: {error}); it goes on without"
    ),
}


# --- the pipeline file, and what is kept on disk between runs ---


def _config_reloaded(f: Fields, p: Paint) -> str:
    parts = [f"{k} {', '.join(f[k])}" for k in ("added", "changed", "removed") if f.get(k)]
    what = "; ".join(parts) or "settings changed"
    return f"{p.green('config reloaded')} ({f.get('why')}): {what}"


def _instances_changed(f: Fields, _p: Paint) -> str:
    def shown(names: list[str]) -> str:
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        return ", ".join(names[:5]) + more

    parts = [f"{k} {shown(list(f[k]))}" for k in ("added", "removed") if f.get(k)]
    return f"files came or went: {'; '.join(parts) or 'no instance changed'}"


def _instances_refused(f: Fields, p: Paint) -> str:
    problems = "\n  ".join(f.get("problems", ()))
    return f"{p.red('the files now make a pipeline that cannot run')}, keeping the running one:\n  {problems}"


def _config_invalid(f: Fields, p: Paint) -> str:
    problems = "\n  ".join(f.get("problems", ()))
    return f"{p.red('config invalid')}, keeping the running one:\n  {problems}"


def _build_finished(f: Fields, p: Paint) -> str:
    parts = [f"{f.get(k, 0)} {k}" for k in ("ran", "fresh", "failed", "blocked") if f.get(k)]
    summary = ", ".join(parts) or "nothing to do"
    mark = p.red("build failed") if f.get("failed") else p.green("build done")
    return f"{mark} in {_seconds(f.get('duration_s'))}: {summary}"


def _command_failed(f: Fields, _p: Paint) -> str:
    return f"stagewatch {f.get('command')}: {f.get('error')}"


_FILES: dict[str, Sentence] = {
    "config.reloaded": _config_reloaded,
    "config.restored": lambda _f, p: f"{p.green('config valid again')}: the same as the running one",
    "config.unchanged": _template("config unchanged ({why})"),
    "config.invalid": _config_invalid,
    "pattern.instances_changed": _instances_changed,
    "pattern.instances_refused": _instances_refused,
    "config.not_applied": _template('"{key}" changed but is not applied: {reason}'),
    "command.failed": _command_failed,
    "cache.entry_corrupt": _template("{stage}: its cache entry {path} is damaged ({problem}); it runs again"),
    "state.unreadable": _template(
        "the state file {path} is damaged ({problem}): what cannot be read is left out"
    ),
    "state.unwritable": _template(
        "cannot write the state file {path} ({error}): status may lag behind; the build goes on"
    ),
    "digests.unavailable": _template(
        "cannot use the digest cache {path} ({error}): every file is hashed this time"
    ),
    "digests.unreadable": _template("the digest cache {path} is damaged ({error}): {action}"),
    "digests.write_failed": _template(
        "cannot save the digest cache {path} ({error}): files are hashed again next time"
    ),
    "build.started": lambda f, _p: f"checking {_count(f.get('stages'), 'stage')} ({f.get('jobs')} at once)",
    "build.finished": _build_finished,
}


# --- the preview ---


def _serve_listening(f: Fields, p: Paint) -> str:
    return f"{p.green('serving')} {f.get('root')} at {p.bold(str(f.get('url')))} ({f.get('why')})"


def _serve_refused(f: Fields, _p: Paint) -> str:
    refused = f"Host {f.get('host')}" if f.get("reason") == "host" else f.get("origin") or f.get("path")
    return f"refused a request ({f.get('reason')}): {refused}"


def _serve_waited(f: Fields, _p: Paint) -> str:
    stages = ", ".join(f.get("stages", ()))
    return f"{f.get('path')}: served after {_seconds(f.get('waited_s'))} although {stages} still run"


def _serve_unfinished(f: Fields, _p: Paint) -> str:
    return f"{f.get('path')}: still being written by {_names(f.get('stages'))}; asked to come back later"


def _serve_restart_needed(f: Fields, _p: Paint) -> str:
    return f"[serve] {_names(f.get('changed'))} changed: {f.get('hint')}"


def _serve_tab_dropped(f: Fields, _p: Paint) -> str:
    page = f" on {f['page']}" if f.get("page") else ""
    return f"dropped the live-reload connection of a tab{page}: {f.get('why')}"


def _serve_internal_error(f: Fields, _p: Paint) -> str:
    said = f.get("error") or f.get("message")
    return "the preview's own error" + (f": {said}" if said else "")


_SERVE: dict[str, Sentence] = {
    "serve.listening": _serve_listening,
    "serve.exposed": _template("listening on {bind}: {problem}"),
    "serve.no_index": _template("{root} holds no index.html (yet): {hint}"),
    "serve.refused": _serve_refused,
    "serve.waited": _serve_waited,
    "serve.unfinished": _serve_unfinished,
    "serve.unreadable": _template("cannot read {path} ({error})"),
    "serve.changed_while_sent": _template(
        "{path} changed while it was sent ({sent_bytes} bytes in): cut off, so the browser asks again"
    ),
    "serve.bad_request": _template("a bad request ({status}): {error}"),
    "serve.restart_needed": _serve_restart_needed,
    "serve.tab_dropped": _serve_tab_dropped,
    "serve.reload": lambda f, _p: f"{f.get('page')}: reloading its tab ({_names(f.get('changed'))} changed)",
    "serve.stylesheets": lambda f, _p: (
        f"{f.get('page')}: stylesheets swapped in place ({_names(f.get('changed'))})"
    ),
    "serve.internal_error": _serve_internal_error,
    "serve.aiohttp": _template("web server: {message}"),
}


SENTENCES: Mapping[str, Sentence] = {**_STAGES, **_WATCH, **_FILES, **_SERVE}


def sentence(event: str, fields: Fields, paint: Paint) -> str | None:
    """The sentence for an event, or None for one the catalogue does not know."""
    told = SENTENCES.get(event)
    return told(fields, paint) if told is not None else None
