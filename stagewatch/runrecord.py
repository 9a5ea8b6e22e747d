"""A stage run's record under _build/.cache, and the live processes that carry its token."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stagewatch.layout import RUN_SUFFIX, CacheLayout, write_atomic
from stagewatch.regular import read_regular

TOKEN_VAR = "STAGEWATCH_RUN"
RECORD_VERSION = "1"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What a live run leaves on disk: the token its processes carry, and its process group."""

    token: str
    pgid: int
    owner_pid: int  # the stagewatch that started it
    started: str  # ISO-8601 UTC

    @classmethod
    def new(cls, token: str, pgid: int) -> RunRecord:
        return cls(token, pgid, os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"))

    def text(self) -> str:
        return (
            f"version={RECORD_VERSION}\ntoken={self.token}\npgid={self.pgid}\n"
            f"owner_pid={self.owner_pid}\nstarted={self.started}\n"
        )


@dataclass(frozen=True, slots=True)
class CorruptRecord:
    path: str
    problem: str


RECORD_LIMIT = 64 * 1024  # a record is a few short lines


def new_token() -> str:
    return secrets.token_hex(16)


def parse_record(text: str) -> RunRecord | str:
    """The record, or what is wrong with it."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    if fields.get("version") != RECORD_VERSION:
        return f"unknown version {fields.get('version')!r}"
    token = fields.get("token", "")
    if len(token) < 16 or not all(c in "0123456789abcdef" for c in token):
        return f"bad token {token!r}"
    try:
        pgid, owner = int(fields.get("pgid", "")), int(fields.get("owner_pid", ""))
    except ValueError:
        return "pgid and owner_pid must be numbers"
    return RunRecord(token, pgid, owner, fields.get("started", ""))


def read_record(path: Path) -> RunRecord | CorruptRecord | None:
    try:
        # A FIFO or a device put there is never opened for reading: it would wait forever.
        text = read_regular(path, RECORD_LIMIT).decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return CorruptRecord(str(path), str(exc))
    parsed = parse_record(text)
    return CorruptRecord(str(path), parsed) if isinstance(parsed, str) else parsed


def write_record(layout: CacheLayout, stage: str, record: RunRecord) -> None:
    write_atomic(layout.run_record(stage), record.text(), within=layout.output_dir)


def remove_record(layout: CacheLayout, stage: str, token: str) -> None:
    """Remove the stage's record if it is still this run's (never a newer run's)."""
    path = layout.run_record(stage)
    current = read_record(path)
    if isinstance(current, RunRecord) and current.token == token:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _entry(name: str, value: str) -> bytes:
    return b"\0" + os.fsencode(f"{name}={value}") + b"\0"


def token_marks(token: str) -> tuple[bytes, ...]:
    """What a process of the run has in its environment."""
    return (_entry(TOKEN_VAR, token),)


def stage_marks(stage: str, output_dir: Path | str) -> tuple[bytes, ...]:
    """What any run of the stage has in its environment (when its record is unreadable)."""
    return (_entry("STAGEWATCH_STAGE", stage), _entry("STAGEWATCH_OUTPUT_DIR", str(output_dir)))


def carries(pid: int, marks: tuple[bytes, ...]) -> bool:
    """Whether the live process `pid` has every mark in its environment.

    The environment, not the pid, says whose a process is: a pid may have been reused. A zombie
    shows an empty environment (it is dead for us), and another user's process cannot be read
    (it is not ours).
    """
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = b"\0" + handle.read()
    except OSError:
        return False
    return all(mark in environ for mark in marks)


def carriers(marks: tuple[bytes, ...]) -> list[int]:
    """Every live process (but this one) whose environment has the marks."""
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit() and int(n) != me and carries(int(n), marks))


def _stat(pid: int | str) -> list[bytes]:
    """The fields of /proc/PID/stat from the state on (state, ppid, pgrp, ...); [] if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return []
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return stat[stat.rfind(b")") + 2 :].split()


def _birth(pid: int) -> bytes | None:
    """When the process started (clock ticks after boot); None if gone. A pid and its birth
    name one process: a pid taken again is born later."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else None


def _lives(pid: int, birth: bytes) -> bool:
    fields = _stat(pid)
    return len(fields) > 19 and fields[0] not in (b"Z", b"X") and fields[19] == birth


def group_of(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[2]) if fields else None


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    members = []
    for name in names:
        fields = _stat(name) if name.isdigit() else []
        if fields and fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(name))
    return members


def descendants(root: int) -> list[int]:
    """The live (not zombie) descendants of `root`, whatever their process group.

    A keeper is its tree's subreaper, so every process its stage started, and every orphan of
    those, is found below it, a process that left the group (setsid) included.
    """
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        fields = _stat(name) if name.isdigit() else []
        if fields and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return sorted(found)


COMMAND_LIMIT = 80  # characters of a command line shown to people


def command_line(pid: int) -> str | None:
    """What the process runs, as a person would type it (shortened); None once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read(4 * COMMAND_LIMIT)
    except OSError:
        return None
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    if not text:
        return None  # a zombie, or a kernel thread
    return text if len(text) <= COMMAND_LIMIT else text[: COMMAND_LIMIT - 1] + "…"


def _sigkill(pid: int) -> None:
    """SIGKILL a process (a group when negative)."""
    with contextlib.suppress(OSError):  # gone already, or not ours to kill: the wait says which
        os.kill(pid, signal.SIGKILL)


def marks_of(record: RunRecord | CorruptRecord, stage: str, output_dir: Path | str) -> tuple[bytes, ...]:
    return token_marks(record.token) if isinstance(record, RunRecord) else stage_marks(stage, output_dir)


def stop_run(
    record: RunRecord | CorruptRecord, stage: str, output_dir: Path | str, wait_s: float
) -> tuple[list[int], list[int]]:
    """SIGKILL every live process of the recorded run: (the pids found, those alive after wait_s).

    Its processes are those carrying its marks, and the rest of its process group once one of
    them proves the group is still the run's (a group id is not reused while it has members).
    """
    marks = marks_of(record, stage, output_dir)
    found = carriers(marks)
    if not found:
        return [], []
    group = None
    if isinstance(record, RunRecord) and any(group_of(pid) == record.pgid for pid in found):
        group = record.pgid
        _sigkill(-group)
    # Dead is gone from /proc or a zombie: an exiting process shows no environment before it
    # is either, and a pid taken again since is another process (its start time says so).
    births = {pid: _birth(pid) for pid in found}
    for pid in found:
        _sigkill(pid)
    deadline = time.monotonic() + wait_s
    while True:
        left = {pid for pid, birth in births.items() if birth is not None and _lives(pid, birth)}
        if group is not None:
            left.update(group_members(group))
        if not left or time.monotonic() >= deadline:
            return found, sorted(left)
        time.sleep(0.01)


def live_run(output_dir: Path | str, stage: str) -> int | None:
    """A pid of the stage's run if one is running now, in any stagewatch; None otherwise."""
    record = read_record(CacheLayout(output_dir).run_record(stage))
    if record is None:
        return None
    marks = marks_of(record, stage, CacheLayout(output_dir).output_dir)
    if isinstance(record, RunRecord) and carries(record.pgid, marks):
        return record.pgid  # the usual case, answered without reading every process
    found = carriers(marks)
    return found[0] if found else None


def runs_under_way(output_dir: Path | str) -> set[str]:
    """The stages whose run record names a process that is running now."""
    layout = CacheLayout(output_dir)
    try:
        names = [entry.name for entry in os.scandir(layout.dir) if entry.name.endswith(RUN_SUFFIX)]
    except OSError:
        return set()
    stages = {name[: -len(RUN_SUFFIX)] for name in names if not name.startswith(".")}
    return {stage for stage in stages if live_run(output_dir, stage) is not None}
