"""A stage's cache entry (docs/design.md#entry-files), the whole protocol: its file's name (a
pattern stage instance's below a folder of the cache), its key=value format, the pending entry
of a run under way, the legacy one-line entry, what its mtime and its deletion mean, and every
read, write and removal of one (EntryFiles).

Format and parse are pure; every write goes through layout.write_atomic (so its temporary
file, too, is named here for the name limit).
"""

from __future__ import annotations

import posixpath
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from stagewatch.layout import remove_emptied_folders, write_atomic
from stagewatch.regular import read_regular
from stagewatch.stage import DEFAULT_FUNCTION

ENTRY_VERSION = 2
ENTRY_SUFFIX = ".hash"
# An entry is a line per input file: 64 MiB is a million files, far beyond any stage.
MAX_ENTRY_BYTES = 64 * 1024 * 1024
# The code label of a command stage: its code is its argv.
ARGV_LABEL = "(argv)"
# The longest file named after a stage is its entry's temporary file while layout.write_atomic
# writes it, ".<name>.hash.XXXXXXXX.tmp", and it must fit in NAME_MAX (255 bytes).
ENTRY_TEMP_TAIL = ".XXXXXXXX.tmp"
MAX_STAGE_NAME = 255 - len(".") - len(ENTRY_SUFFIX) - len(ENTRY_TEMP_TAIL)

Digests = tuple[tuple[str, str], ...]  # (label, sha256 hex), sorted by label

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Entry:
    """A cache entry as read back: the last successful run's key, details when the file has them."""

    key: str
    mtime: float
    legacy: bool = False
    code: tuple[str, str] | None = None
    deps: Digests = ()
    inputs: Digests = ()
    finished: str | None = None
    duration_s: float | None = None
    pending: bool = False  # a run began and did not succeed: never fresh
    function: str | None = None  # what the run called: "run" when the entry names none


@dataclass(frozen=True, slots=True)
class CorruptEntry:
    """An entry file that could not be read or parsed: the stage is stale, never a crash."""

    path: str
    problem: str


# --- Where an entry lives, and what its removal means. ---


def entry_path(cache_dir: Path, stage: str) -> Path:
    """The stage's cache entry: its last successful run (docs/design.md#entry-files)."""
    return cache_dir / f"{stage}{ENTRY_SUFFIX}"


def stage_of_entry(path: str, cache_dir: str) -> str | None:
    """The stage name an entry path belongs to (any name; the caller checks it is a stage).

    A pattern stage's instance "page:guide/intro" keeps its entry in folders below the cache
    ("page:guide/intro.hash"): the first folder is the one holding the instance separator.
    """
    if not path.startswith(cache_dir + "/"):
        return None
    relative = path[len(cache_dir) + 1 :]
    if "/" in relative and ":" not in relative.partition("/")[0]:
        return None
    name = posixpath.basename(relative)
    if not name.endswith(ENTRY_SUFFIX) or name == ENTRY_SUFFIX:
        return None
    return relative[: -len(ENTRY_SUFFIX)]


def invalidated_stage(path: str, gone: bool, cache_dir: str) -> str | None:
    """The stage a change invalidates: an entry that went away is always a person's
    `invalidate` (docs/design.md#a-missing-deleted-or-damaged-entry), since stagewatch itself
    only ever replaces entries."""
    return stage_of_entry(path, cache_dir) if gone else None


# --- Reading one: the entry's age is its file's mtime (the time its run finished). ---


def entry_mtime(path: Path) -> float | None:
    """When the entry was written; None when there is none (or it cannot be looked at)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def entry_text(path: Path) -> str | None:
    """The entry's text as it is now, to compare with what a run wrote; None when unreadable."""
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None


def read_entry(path: Path) -> Entry | CorruptEntry | None:
    """The entry at `path`: None when there is none, CorruptEntry when it cannot be used."""
    try:
        mtime = path.stat().st_mtime
        text = read_regular(path, MAX_ENTRY_BYTES).decode("utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return None
    except OSError as exc:
        # A FIFO or a device under the entry's name is refused unopened: never a wait.
        return CorruptEntry(str(path), exc.strerror or str(exc))
    return parse_entry(text, str(path), mtime)


# --- Paths on a line: an entry is UTF-8 text, one file a line. ---

_ESCAPED = re.compile(r"[%\n\r\udc80-\udcff]")
_ESCAPE = re.compile(r"%(25|0A|0D|[89A-F][0-9A-F])")


def escape_path(path: str) -> str:
    """A path fit for one line of an entry in UTF-8: "%", newline and carriage return are
    %-escaped, and so is each byte of a file name that is not UTF-8 (%FF)."""
    return _ESCAPED.sub(lambda match: f"%{_byte_of(match[0]):02X}", path)


def _byte_of(char: str) -> int:
    code = ord(char)
    return code - 0xDC00 if code >= 0xDC80 else code  # os.fsdecode keeps a byte as U+DC80..U+DCFF


def unescape_path(text: str) -> str:
    return _ESCAPE.sub(lambda match: _char_of(int(match[1], 16)), text)


def _char_of(byte: int) -> str:
    return chr(0xDC00 + byte) if byte >= 0x80 else chr(byte)


# --- Format and parse (pure). ---


class Observed(Protocol):
    """What a success's key was made of, as a fingerprint holds it (freshness.Fingerprint)."""

    @property
    def key(self) -> str | None: ...
    @property
    def code(self) -> tuple[str, str] | None: ...
    @property
    def function(self) -> str | None: ...
    @property
    def deps(self) -> Digests: ...
    @property
    def inputs(self) -> Digests: ...


def format_entry(key: str, fingerprint: Observed | None, finished: datetime, duration_s: float | None) -> str:
    """A success's entry: the key it started from, and the details only when they made that key."""
    lines = [f"version={ENTRY_VERSION}", f"key={key}"]
    if fingerprint is not None and fingerprint.key == key and fingerprint.code is not None:
        code_label, code_hex = fingerprint.code
        lines.append(f"code={code_hex} {escape_path(code_label)}")
        lines += _function_line(fingerprint.function)
        lines += [f"dep={digest} {escape_path(rel)}" for rel, digest in fingerprint.deps]
        lines += [f"in={digest} {escape_path(rel)}" for rel, digest in fingerprint.inputs]
    lines.append("finished=" + finished.astimezone(UTC).isoformat(timespec="seconds"))
    if duration_s is not None:
        lines.append(f"duration_s={duration_s:.3f}")
    return "\n".join(lines) + "\n"


def format_pending(previous: Entry, started: datetime, token: str) -> str:
    """An entry for a run under way: no key (nothing may take it as fresh), the last success's
    details kept so that `explain` can still say what changed, and a token naming this run."""
    lines = [
        f"version={ENTRY_VERSION}",
        "pending=" + started.astimezone(UTC).isoformat(timespec="seconds"),
        f"run={token}",
    ]
    if previous.code is not None:
        lines.append(f"code={previous.code[1]} {escape_path(previous.code[0])}")
        lines += _function_line(previous.function)  # None for a command's entry
    lines += [f"dep={digest} {escape_path(rel)}" for rel, digest in previous.deps]
    lines += [f"in={digest} {escape_path(rel)}" for rel, digest in previous.inputs]
    if previous.finished:
        lines.append(f"finished={previous.finished}")
    return "\n".join(lines) + "\n"


def format_invalidation(now: datetime) -> str:
    """An entry with no key, written only to be removed at once: its removal is what a
    running daemon sees as an `invalidate`."""
    return f"version={ENTRY_VERSION}\npending={now.isoformat(timespec='seconds')}\n"


def _function_line(function: str | None) -> list[str]:
    """The `function=` line: only for a function other than the default, whose entries keep the
    lines they always had."""
    return [] if function is None or function == DEFAULT_FUNCTION else [f"function={function}"]


def _digest_line(value: str) -> tuple[str, str]:
    digest, sep, rel = value.partition(" ")
    if not _HEX64.fullmatch(digest) or not sep or not rel:
        raise ValueError(f"expected '<64 hex> <path>', got {value!r}")
    return unescape_path(rel), digest


def parse_entry(text: str, path: str, mtime: float) -> Entry | CorruptEntry:
    """Read an entry: the key=value format, or a legacy file holding only the key."""
    stripped = text.strip()
    if _HEX64.fullmatch(stripped):
        return Entry(key=stripped, mtime=mtime, legacy=True)
    fields: dict[str, str] = {}
    deps: list[tuple[str, str]] = []
    inputs: list[tuple[str, str]] = []
    code: tuple[str, str] | None = None
    duration_s = None
    try:
        # Only "\n" ends a line: str.splitlines would also split on \x1c, \u2028 and others.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"line {number} is not key=value")
            if name == "dep":
                deps.append(_digest_line(value))
            elif name == "in":
                inputs.append(_digest_line(value))
            elif name == "code":
                code = _digest_line(value)
            else:
                fields[name] = value
        version = fields.get("version", str(ENTRY_VERSION))
        if version != str(ENTRY_VERSION):
            # A newer format may mean more than these lines say: never vouch for it.
            raise ValueError(f"version={version} is not {ENTRY_VERSION}, the version this stagewatch writes")
        key = fields.get("key", "")
        pending = "pending" in fields
        if not pending and not _HEX64.fullmatch(key):
            raise ValueError("no valid key= line")
        if "duration_s" in fields:
            duration_s = float(fields["duration_s"])
    except ValueError as exc:
        return CorruptEntry(path, str(exc))
    return Entry(
        key="" if pending else key,
        mtime=mtime,
        code=code,
        deps=tuple(sorted(deps)),
        inputs=tuple(sorted(inputs)),
        finished=fields.get("finished"),
        duration_s=duration_s,
        pending=pending,
        function=None if code is None or code[0] == ARGV_LABEL else fields.get("function", DEFAULT_FUNCTION),
    )


# --- Writing and removing one: the only places an entry file changes. ---


class EntryFiles:
    """The entries of one cache folder: read, written (atomically, only below an output folder
    that is still there), turned pending, removed."""

    def __init__(self, cache_dir: Path, output_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.output_dir = output_dir

    def path(self, stage: str) -> Path:
        return entry_path(self.cache_dir, stage)

    def read(self, stage: str) -> Entry | CorruptEntry | None:
        return read_entry(self.path(stage))

    def record(self, stage: str, key: str, fingerprint: Observed | None, duration_s: float | None) -> None:
        """Write the entry of a successful run: the key it started from, details if they match."""
        text = format_entry(key, fingerprint, datetime.now(UTC), duration_s)
        write_atomic(self.path(stage), text, within=self.output_dir)

    def begin_run(self, stage: str, previous: Entry | CorruptEntry | None) -> str | None:
        """Make the stage's entry a pending one (no key) before a run touches its outputs; its
        text, or None when there was no entry to turn (docs/design.md#pending-entries)."""
        if not isinstance(previous, Entry):
            return None
        text = format_pending(previous, datetime.now(UTC), secrets.token_hex(8))
        write_atomic(self.path(stage), text, within=self.output_dir)
        return text

    def announce_invalidation(self, stage: str) -> None:
        """Write an entry with no key and remove it again: a running daemon sees the removal
        (an `invalidate`) even when the stage had no entry to remove."""
        write_atomic(self.path(stage), format_invalidation(datetime.now(UTC)), within=self.output_dir)
        self.remove(stage)

    def remove(self, stage: str) -> bool:
        """Remove the entry (an invalidation); an instance's folders left empty go with it.
        NotADirectoryError when something in the cache's place is no folder."""
        path = self.path(stage)
        try:
            path.unlink()
        except FileNotFoundError:
            removed = False
        else:
            removed = True
        # Only when empty: a log or another instance's entry keeps an instance's folder.
        remove_emptied_folders(path, self.cache_dir)
        return removed
