"""Read what a failed run's output says went wrong: the line that names it, and where."""

from __future__ import annotations

import re
from collections.abc import Sequence

# A headline, at most: a minified script's error may be one line of 60 KiB (the tail has it all).
HEADLINE_CHARS = 300


# "exit 0 but an output is missing": stagewatch's verdict on an exit, which the stage's last
# line of output does not explain.
_VERDICT = re.compile(r"exit \d+,? but ")


def explanation(error: str | None, tail: Sequence[str]) -> str | None:
    """The headline that says more of why a run failed with `error` than `error` does, or None:
    none found, the same words, or a verdict on an exit that the output does not explain."""
    said = headline(tail)
    if said is None or said == error or (error is not None and _VERDICT.match(error)):
        return None
    return said


def headline(tail: Sequence[str]) -> str | None:
    """The line a failure is read by (`exception_line`), cut to a headline's length."""
    said = exception_line(tail)
    if said is None or len(said) <= HEADLINE_CHARS:
        return said
    return said[: HEADLINE_CHARS - 1] + "\u2026"


_EXCEPTION = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning|Failure)\b(: .*)?")


def exception_line(tail: Sequence[str]) -> str | None:
    """The line of a failed run's output that says what went wrong: a Python traceback's
    exception ("KeyError: 'title'", the first line of a message of several; an exception
    group's own line), else the last line that names an error, else the last line."""
    lines = [line.rstrip() for line in tail if line.strip()]
    if not lines:
        return None
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith("Traceback ("):
            # Frames are indented; the exception is the first line after them that is not.
            after = [line for line in lines[index + 1 :] if not line[:1].isspace()]
            if after:
                return after[0]
            break
        if _GROUP_HEADER.match(lines[index]):
            said = [m["text"] for line in lines[index + 1 :] if (m := _GROUP_LINE.match(line))]
            if said:
                return said[0]
            break
    named = [line for line in lines if _EXCEPTION.fullmatch(line)]
    return named[-1] if named else lines[-1]


_GROUP_HEADER = re.compile(r"\s*\+ Exception Group Traceback \(")
_GROUP_LINE = re.compile(r"\s*\| (?P<text>[^\s|].*)")  # frames are "|   File ...": three spaces in


_FRAME = re.compile(r'\s+(?:\|\s+)?File "(?P<path>[^"]+)", line (?P<line>\d+)')  # groups' frames: "|"


def exception_place(tail: Sequence[str], cwd: str | None = None) -> str | None:
    """Where a Python traceback in a failed run's output ended in the project's own code:
    "path:line" of its last frame below `cwd` or given relative (a template's line), shown
    relative to `cwd`; with none such, of its last frame (inside a library)."""
    ours = last = None
    root = None if cwd is None else cwd.rstrip("/") + "/"
    for line in tail:
        frame = _FRAME.match(line)
        if frame is None:
            continue
        path = frame["path"]
        last = f"{path}:{frame['line']}"
        if root is not None and path.startswith(root):
            ours = f"{path[len(root) :]}:{frame['line']}"
        elif not path.startswith(("/", "<")):
            ours = last
    return ours or last
