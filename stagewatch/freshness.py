"""Decide whether a stage runs, and why, from what was recorded and what is observed now (pure)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stagewatch.durations import format_duration
from stagewatch.entry import CorruptEntry, Digests, Entry
from stagewatch.stage import Stage
from stagewatch.ttl import ttl_expired


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What a stage's key is made of, observed now; key is None when a declared file is a problem."""

    key: str | None
    code: tuple[str, str] | None  # (label, hex); label is "(argv)" for a command
    deps: Digests
    inputs: Digests
    problems: tuple[FileProblem, ...]
    function: str | None = None  # what a module stage calls; None for a command


# --- Reasons: each is a value; str() is the sentence people read. ---


@dataclass(frozen=True, slots=True)
class Forced:
    def __str__(self) -> str:
        return "forced"


@dataclass(frozen=True, slots=True)
class AlwaysRuns:
    def __str__(self) -> str:
        return "no inputs and no ttl: runs every time"


@dataclass(frozen=True, slots=True)
class NeverBuilt:
    def __str__(self) -> str:
        return "no successful run recorded"


@dataclass(frozen=True, slots=True)
class LastRunUnfinished:
    def __str__(self) -> str:
        return "its last run failed or was interrupted"


@dataclass(frozen=True, slots=True)
class EntryUnreadable:
    problem: str

    def __str__(self) -> str:
        return f"cache entry unreadable: {self.problem}"


class Trouble(enum.Enum):
    """What keeps a declared file (or the stage's module) out of the key."""

    MISSING = "missing"
    BROKEN_LINK = "a broken symlink"
    NOT_REGULAR = "not a regular file"  # a FIFO, a socket, a device: never opened
    NOT_A_FOLDER = "not a folder"
    UNREADABLE = "unreadable"
    FOLDER_UNREADABLE = "a folder that cannot be listed"  # inside an input folder or a glob's base
    MODULE_NOT_FOUND = "module not found"
    MODULE_SHADOWED = "module named like the standard library's"


@dataclass(frozen=True, slots=True)
class FileProblem:
    """A declared file the key cannot be made without, and what is wrong with it: no key, so the
    stage runs and its failure is reported (docs/design.md#the-skip-rule). `path` is as
    declared (or the module's name); `detail` is the kind of file, the error, or what is
    wrong with the module (in runnable's words)."""

    path: str
    trouble: Trouble = Trouble.MISSING
    detail: str = ""

    def __str__(self) -> str:
        match self.trouble:
            case Trouble.MISSING:
                return f"declared {'folder' if self.path.endswith('/') else 'file'} missing: {self.path}"
            case Trouble.BROKEN_LINK:
                return f"declared file missing: {self.path} (a broken symlink)"
            case Trouble.NOT_REGULAR:
                return f"declared file is not a regular file ({self.detail}): {self.path}"
            case Trouble.NOT_A_FOLDER:
                return f"declared folder is not a folder ({self.detail}): {self.path}"
            case Trouble.UNREADABLE:
                return f"declared file unreadable ({self.detail}): {self.path}"
            case Trouble.FOLDER_UNREADABLE:
                return f"input folder unreadable ({self.detail}): {self.path}"
            case Trouble.MODULE_NOT_FOUND:
                return f"module not found on python_path: {self.path}"
            case Trouble.MODULE_SHADOWED:
                return f"module {self.path} {self.detail}"


@dataclass(frozen=True, slots=True)
class CodeChanged:
    path: str

    def __str__(self) -> str:
        return f"code changed: {self.path}"


@dataclass(frozen=True, slots=True)
class FunctionChanged:
    before: str
    now: str

    def __str__(self) -> str:
        return f"function changed: {self.before} -> {self.now}"


@dataclass(frozen=True, slots=True)
class FileChanged:
    role: str  # "input" or "code dependency"
    path: str
    change: str  # "changed", "added", "removed"

    def __str__(self) -> str:
        return f"{self.role} {self.change}: {self.path}"


@dataclass(frozen=True, slots=True)
class KeyDiffers:
    def __str__(self) -> str:
        return "key differs from the last successful run"


@dataclass(frozen=True, slots=True)
class OutputMissing:
    path: str

    def __str__(self) -> str:
        return f"output missing: {self.path}"


@dataclass(frozen=True, slots=True)
class TtlExpired:
    age_s: float
    ttl_s: float

    def __str__(self) -> str:
        return f"ttl expired: entry is {format_duration(self.age_s)} old, ttl {format_duration(self.ttl_s)}"


@dataclass(frozen=True, slots=True)
class EntryFromTheFuture:
    """The entry's mtime lies ahead of now: the clock stepped back since the run
    (docs/design.md#ttl-and-the-clock)."""

    ahead_s: float

    def __str__(self) -> str:
        ahead = format_duration(self.ahead_s)
        return f"ttl expired: the entry is dated {ahead} in the future (clock stepped back?)"


@dataclass(frozen=True, slots=True)
class UpstreamRuns:
    stage: str

    def __str__(self) -> str:
        return f"runs after upstream {self.stage}, if its outputs change"


Reason = (
    Forced
    | AlwaysRuns
    | NeverBuilt
    | LastRunUnfinished
    | EntryUnreadable
    | FileProblem
    | CodeChanged
    | FunctionChanged
    | FileChanged
    | KeyDiffers
    | OutputMissing
    | TtlExpired
    | EntryFromTheFuture
    | UpstreamRuns
)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to run, every reason found, and the key a run would record."""

    run: bool
    reasons: tuple[Reason, ...]
    key: str | None
    age_s: float | None = None  # now - the entry's mtime; negative for an entry dated in the future
    ttl_left_s: float | None = None


def _diff(role: str, recorded: Digests, observed: Digests) -> list[Reason]:
    before, now = dict(recorded), dict(observed)
    changes: list[Reason] = []
    for path in sorted(before.keys() | now.keys()):
        if path not in now:
            changes.append(FileChanged(role, path, "removed"))
        elif path not in before:
            changes.append(FileChanged(role, path, "added"))
        elif before[path] != now[path]:
            changes.append(FileChanged(role, path, "changed"))
    return changes


def key_changes(entry: Entry, fingerprint: Fingerprint) -> list[Reason]:
    """What differs between a recorded entry and the fingerprint, as precisely as the entry allows."""
    if fingerprint.key == entry.key and not entry.pending:
        return []
    changes: list[Reason] = []
    if not entry.legacy and entry.code is not None and fingerprint.code is not None:
        if entry.code != fingerprint.code:
            changes.append(CodeChanged(fingerprint.code[0]))
        if None not in (entry.function, fingerprint.function) and entry.function != fingerprint.function:
            changes.append(FunctionChanged(str(entry.function), str(fingerprint.function)))
        changes += _diff("code dependency", entry.deps, fingerprint.deps)
        changes += _diff("input", entry.inputs, fingerprint.inputs)
    if entry.pending:
        return changes  # what changed since the last success, if anything did
    return changes or [KeyDiffers()]


def decide(
    stage: Stage,
    entry: Entry | CorruptEntry | None,
    fingerprint: Fingerprint,
    missing_outputs: tuple[str, ...],
    now: float,
    force: bool = False,
    always_run_unskippable: bool = True,
) -> Decision:
    """Apply the skip rule (docs/design.md#the-skip-rule) and collect every reason to run.

    A stage with neither inputs nor ttl runs every time in a build; the daemon passes
    always_run_unskippable=False after catching up, so it reruns only when its code
    changes or its entry is removed.
    """
    reasons: list[Reason] = []
    if force:
        reasons.append(Forced())
    if not stage.skippable and always_run_unskippable:
        reasons.append(AlwaysRuns())
    reasons += fingerprint.problems
    age_s = ttl_left_s = None
    if entry is None:
        reasons.append(NeverBuilt())
    elif isinstance(entry, CorruptEntry):
        reasons.append(EntryUnreadable(entry.problem))
    else:
        if entry.pending:
            reasons.append(LastRunUnfinished())
        if fingerprint.key is not None:
            reasons += key_changes(entry, fingerprint)
        age_s = now - entry.mtime
        if stage.ttl_s is not None and not entry.pending:
            ttl_left_s = 0.0 if age_s < 0 else stage.ttl_s - age_s
            if age_s < 0:
                reasons.append(EntryFromTheFuture(-age_s))
            elif ttl_expired(entry.mtime, stage.ttl_s, now):
                reasons.append(TtlExpired(age_s, stage.ttl_s))
    reasons += [OutputMissing(path) for path in missing_outputs]
    return Decision(bool(reasons), tuple(reasons), fingerprint.key, age_s, ttl_left_s)
