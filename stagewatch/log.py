"""structlog set-up, done once: a readable console story on a terminal, JSON lines elsewhere
(each with its syslog priority when journald reads them); a log stream that goes away never
raises into the program; a failure that ends a command said where its reader looks."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Literal, TextIO

import structlog

from stagewatch.failure import exception_place, explanation
from stagewatch.sentences import RED, YELLOW, Paint, sentence
from stagewatch.stage import LineSink

LogFormat = Literal["auto", "console", "json"]
Resolved = Literal["console", "json"]

_LEVEL_COLORS = {"warning": YELLOW, "error": RED, "critical": RED}


def resolve_format(requested: LogFormat, stream: TextIO, environ: Mapping[str, str] = os.environ) -> Resolved:
    """auto: JSON lines under journald or when the stream is not a terminal, console otherwise."""
    if requested != "auto":
        return requested
    if environ.get("JOURNAL_STREAM"):
        return "json"
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def is_journal(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether stream is the connection to journald that systemd gave this process: $JOURNAL_STREAM
    names its "device:inode". A variable that is merely inherited (a shell started from a
    service, whose output goes elsewhere) names another file, so it is compared, not trusted."""
    expected = environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def _same_file(one: TextIO, other: TextIO) -> bool:
    """Whether two streams write to one open file (`2>&1`: one pipe, one terminal, one socket)."""
    try:
        first, second = os.fstat(one.fileno()), os.fstat(other.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


# journald reads a "<N>" at the start of a line as the line's priority (SyslogLevelPrefix=,
# on by default), and takes it off the message: MESSAGE stays one JSON object.
_SYSLOG_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


class JournalPriorityPrefix:
    """Wraps the JSON renderer: each line starts with its level's syslog priority, for journald."""

    def __init__(self, render: Callable[[Any, str, MutableMapping[str, Any]], str]) -> None:
        self.render = render

    def __call__(self, logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> str:
        priority = _SYSLOG_PRIORITY.get(str(event_dict.get("level", "info")), 6)
        return f"<{priority}>{self.render(logger, name, event_dict)}"


class StoryRenderer:
    """Renders events as the catalogue's sentences a person reads at a glance; an event the
    catalogue does not know as `event key=value`."""

    def __init__(self, colors: bool, output_shown: bool = True) -> None:
        self.colors = colors
        self.paint = Paint(colors)
        # A stage's lines are shown as they come ("stage | ..."), so a failure names its
        # exception and is not told twice; under -q they are not, so the failure shows its tail.
        self.output_shown = output_shown
        self.cwd: str | None = None  # tracebacks' paths are shown from here
        with contextlib.suppress(OSError):
            self.cwd = os.getcwd()

    def __call__(self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> str:
        fields = dict(event_dict)
        event = str(fields.pop("event", ""))
        if event == "stage.output":  # the stage's own line: no time, no level, as it printed it
            return sentence(event, fields, self.paint) or ""
        level = str(fields.pop("level", "info"))
        stamp = str(fields.pop("timestamp", ""))
        tail = fields.pop("tail", None)
        if event == "stage.failed":
            fields["exception"] = explanation(fields.get("error"), tail or ())
            fields["place"] = exception_place(tail or (), self.cwd)
            if self.output_shown:
                tail = None
            fields["tail_lines"] = len(tail or ())
        text = sentence(event, fields, self.paint)
        if text is None:
            rest = " ".join(f"{key}={value}" for key, value in fields.items())
            text = f"{self.paint.bold(event)} {rest}".rstrip()
        if level in _LEVEL_COLORS:
            text = self.paint(_LEVEL_COLORS[level], f"{level}: ") + text
        line = f"{self.paint.dim(stamp)} {text}" if stamp else text
        if tail:
            marker = self.paint.dim("  ---")
            lines = "\n".join(f"  | {entry}" for entry in tail)
            line += f"\n{lines}\n{marker}"
        return line


OnBroken = Callable[[str], object]
"""Told once, with the reason ("Broken pipe"), that the log's stream has gone; any thread may call it."""


class GuardedStream:
    """The log's stream, made safe to lose: a write or flush that fails (EPIPE from a closed
    pipe, EIO from a hung-up terminal, ENOSPC behind a redirect, a closed file) marks it
    broken and tells whoever asked, once; later writes go nowhere. A program whose output
    has gone must stop by itself (as `yes | head` does), never die half-way in a log call.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.broken: str | None = None
        self._callbacks: list[OnBroken] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if self.broken is None:
            try:
                return self.stream.write(text)
            except (OSError, ValueError) as exc:
                self._break(exc)
        return len(text)

    def flush(self) -> None:
        if self.broken is None:
            try:
                self.stream.flush()
            except (OSError, ValueError) as exc:
                self._break(exc)

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def on_broken(self, callback: OnBroken) -> Callable[[], None]:
        """Call callback once when the stream breaks (now, if it already has); returns an undo."""
        with self._lock:
            if self.broken is None:
                self._callbacks.append(callback)
                return lambda: self._forget(callback)
            reason = self.broken
        _call(callback, reason)
        return lambda: None

    def _forget(self, callback: OnBroken) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def _break(self, exc: OSError | ValueError) -> None:
        with self._lock:
            if self.broken is not None:
                return
            self.broken = (exc.strerror if isinstance(exc, OSError) else None) or "closed"
            callbacks, self._callbacks = self._callbacks, []
        _silence(self.stream)
        for callback in callbacks:
            _call(callback, self.broken)


def _call(callback: OnBroken, reason: str) -> None:
    # A callback's own trouble (a loop already closed, say) must not bring back what the guard prevents.
    with contextlib.suppress(Exception):
        callback(reason)


def _silence(stream: TextIO) -> None:
    """Point the stream's file descriptor at /dev/null: what is still buffered, and Python's own
    flush at exit, then succeed (a failing flush at exit turns the exit status into 120)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.dup2(null, fd, inheritable=fd <= 2)
        finally:
            os.close(null)


_guarded: GuardedStream | None = None
_failures_as_json = False  # set by configure_logging: see say_failure


def output_gone() -> str | None:
    """Why the log's stream went away ("Broken pipe"), or None while it works."""
    return _guarded.broken if _guarded is not None else None


def on_output_gone(callback: OnBroken) -> Callable[[], None]:
    """Register with the stream configure_logging guards (no-op before it); returns an undo."""
    return _guarded.on_broken(callback) if _guarded is not None else (lambda: None)


def say_on_stderr(line: str) -> None:
    """One line for a person on stderr, if stderr still works; never raises."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        _silence(sys.stderr)


def say_failure(event: str, line: str, **fields: Any) -> None:
    """A failure that ends the command, said once where its reader looks.

    For a person, `line` on stderr. Where the log is JSON lines read by a machine (journald, or
    a JSON log on stdout that stderr is joined to with `2>&1`), a plain line would be the one
    line that is not JSON, at the journal's default priority (info): there it is the event,
    at level error, in the log, and the line on stderr only if stderr goes somewhere else.
    """
    if not _failures_as_json:
        say_on_stderr(line)
        return
    structlog.get_logger("stagewatch").error(event, **fields)
    stream = _guarded.stream if _guarded is not None else None
    if stream is not None and not _same_file(stream, sys.stderr):
        say_on_stderr(line)


def configure_logging(fmt: Resolved, verbosity: int, stream: TextIO) -> GuardedStream:
    """Configure structlog for this process; verbosity -1 quiet, 0 normal, 1 debug.

    Returns the guard around `stream` that every log line goes through.
    """
    global _guarded, _failures_as_json
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    journal = fmt == "json" and is_journal(stream)
    # A command whose log is stderr (status, check, ...) keeps stderr for a person, unless journald reads it.
    _failures_as_json = fmt == "json" and (
        journal or (stream is not sys.stderr and _same_file(stream, sys.stderr))
    )
    if fmt == "json":
        render: Any = structlog.processors.JSONRenderer()
        processors: list[Any] = [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            JournalPriorityPrefix(render) if journal else render,
        ]
    else:
        processors = [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            StoryRenderer(colors=_supports_color(stream), output_shown=verbosity >= 0),
        ]
    _guarded = GuardedStream(stream)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_guarded),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    return _guarded


def _supports_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def line_sink(fmt: Resolved, stream: TextIO, quiet: bool = False) -> LineSink:
    """Where stages' own output lines go: stage.output events, shown as "stage | line" on a console.

    They go through the logger like everything else, so a line never lands inside a log
    message, and -q drops them (a failure still shows its last lines in stage.failed).
    """
    if quiet:
        return lambda _stage, _stream, _line: None
    out = structlog.get_logger("stagewatch.stage")

    def emit(stage: str, stream_name: str, line: str) -> None:
        out.info("stage.output", stage=stage, stream=stream_name, line=line)

    return emit
