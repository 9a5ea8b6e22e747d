"""The catalogue of console sentences: every event the code logs has one."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

import pytest

from stagewatch.log import StoryRenderer
from stagewatch.sentences import SENTENCES, Paint, sentence
from tests.helpers.paths import PACKAGE

LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
EVENT = re.compile(r"[a-z_]+(\.[a-z_]+)+")

# Calls that pass on an event named elsewhere; the names come from the calls they forward
# (say_failure's and Say's callers, which are collected).
FORWARDERS = {("log.py", "event"), ("commandline.py", "message")}


def _constants(tree: ast.Module) -> dict[str, str]:
    """A module's string constants (`STARTED = "stage.started"`), for events logged by name."""
    found: dict[str, str] = {}
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found.update({target.id: value.value for target in targets if isinstance(target, ast.Name)})
    return found


def _is_level_call(func: ast.expr) -> bool:
    """`log.info(...)`, and `(log.info if notable else log.debug)(...)`."""
    if isinstance(func, ast.IfExp):
        return _is_level_call(func.body) and _is_level_call(func.orelse)
    return isinstance(func, ast.Attribute) and func.attr in LEVELS


def _event_argument(call: ast.Call) -> ast.expr | None:
    """Where a call names its event: a logger's first argument, say_failure's first, Say's second."""
    func = call.func
    if isinstance(func, ast.Name) and func.id == "say_failure" and call.args:
        return call.args[0]
    if isinstance(func, ast.Name) and func.id == "Say" and len(call.args) >= 2:
        return call.args[1]
    if _is_level_call(func) and call.args:
        return call.args[0]
    return None


def emitted_events() -> Iterator[tuple[str, str]]:
    """(event, "file:line") for every event logged in stagewatch/; fails on one it cannot name."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _constants(tree)
        where = path.relative_to(PACKAGE.parent).as_posix()
        for node in ast.walk(tree):
            argument = _event_argument(node) if isinstance(node, ast.Call) else None
            if argument is None:
                continue
            at = f"{where}:{argument.lineno}"
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                yield argument.value, at
            elif isinstance(argument, ast.Name) and argument.id in constants:
                yield constants[argument.id], at
            else:
                named = ast.unparse(argument)
                assert (path.name, named) in FORWARDERS, f"{at}: an event named by {named}, unreadable here"


def test_the_collector_finds_events_in_every_form_the_code_logs_them() -> None:
    found = {event for event, _ in emitted_events()}
    # a logger call, a logger chosen by level, the coordinator's Say, a failure that ends a command
    assert {"stage.started", "watch.changed", "stage.self_triggering", "command.failed"} <= found
    assert len(found) > 50


def test_every_event_the_code_logs_has_a_sentence() -> None:
    """Every event, at every level: debug events are shown on the console too (under -v),
    to a person reading them just the same, so none is exempt."""
    missing = sorted({f"{event} ({where})" for event, where in emitted_events() if event not in SENTENCES})
    assert missing == [], "events shown as `event key=value`, with no sentence: " + ", ".join(missing)


def test_every_logged_name_looks_like_an_event() -> None:
    odd = sorted({f"{event} ({where})" for event, where in emitted_events() if not EVENT.fullmatch(event)})
    assert odd == []


@pytest.mark.parametrize("event", sorted(SENTENCES))
def test_a_sentence_never_fails_on_an_event_missing_its_fields(event: str) -> None:
    # A sentence that raised would raise out of the log call, into the program.
    assert isinstance(sentence(event, {}, Paint(colors=True)), str)


@pytest.mark.parametrize(
    ("event", "fields", "said"),
    [
        (
            "watch.failed",
            {"path": "content", "error": "Permission denied", "retry": "at the next rescan"},
            "cannot watch content (Permission denied): trying again at the next rescan",
        ),
        (
            "state.unwritable",
            {"path": "_build/.cache/state.json", "error": "Read-only file system"},
            "cannot write the state file _build/.cache/state.json (Read-only file system):"
            " status may lag behind; the build goes on",
        ),
        (
            "stage.outlived",
            {"stage": "css", "pids": [41]},
            "css: processes it started outlive its run (pid 41); they are stopped before it runs again",
        ),
        (
            "cache.entry_corrupt",
            {"stage": "css", "path": "_build/.cache/css.json", "problem": "not JSON"},
            "css: its cache entry _build/.cache/css.json is damaged (not JSON); it runs again",
        ),
        (
            "serve.restart_needed",
            {"changed": ["port"], "hint": "the preview reads [serve] at start: restart it"},
            "[serve] port changed: the preview reads [serve] at start: restart it",
        ),
        (
            "daemon.internal_error",
            {"during": "changes", "error": "OSError()", "action": "full rescan"},
            "stagewatch's own error (changes): OSError(); full rescan",
        ),
        ("stage.held", {"stage": "css", "reason": "failed last time"}, "css held: failed last time"),
    ],
)
def test_sentences_for_what_went_wrong(event: str, fields: dict[str, object], said: str) -> None:
    assert StoryRenderer(colors=False)(None, "info", {"event": event, **fields}) == said


def test_an_event_the_catalogue_does_not_know_is_shown_with_its_fields() -> None:
    said = StoryRenderer(colors=False)(None, "info", {"event": "x.unknown", "a": 1, "level": "warning"})
    assert said == "warning: x.unknown a=1"
