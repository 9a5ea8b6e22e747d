"""The Stage value and its friends (RunResult, Change): frozen, validated when built, no I/O."""

from __future__ import annotations

import enum
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

from stagewatch.paths import absolute

STAGE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class StageState(enum.Enum):
    """Where a stage stands, in the one vocabulary of `status`, state.json, build reports and logs."""

    FRESH = "fresh"  # its entry vouches for its outputs
    STALE = "stale"  # something it reads has changed since its last success
    NEVER_RUN = "never run"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped by stagewatch (a stop, a restart, a reload)
    BLOCKED = "blocked"  # a stage upstream of it failed
    LOOPING = "looping"  # held: its runs keep changing what it reads


ATTEMPT_RESULTS = (StageState.RUNNING, StageState.SUCCEEDED, StageState.FAILED, StageState.CANCELLED)
"""How one attempt stands: what state.json records."""


def attempt_result(result: RunResult) -> StageState:
    return (
        StageState.SUCCEEDED
        if result.ok
        else (StageState.CANCELLED if result.cancelled else StageState.FAILED)
    )


class OnBusy(enum.Enum):
    """What a change to a running stage's inputs does."""

    QUEUE = "queue"
    RESTART = "restart"


class WatcherKind(enum.Enum):
    """Which watchdog observer the daemon uses."""

    NATIVE = "native"
    POLLING = "polling"


def _as_tuple(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(cast("Iterable[str]", value))


DEFAULT_FUNCTION = "run"
"""A module stage's function when the pipeline names none; its key is the one
docs/design.md#the-key-byte-for-byte lays out."""


@dataclass(frozen=True, slots=True)
class Stage:
    """One unit of work: a module's function or a command, its declared files and its timing."""

    name: str
    module: str | None = None
    function: str = DEFAULT_FUNCTION
    command: tuple[str, ...] | None = None
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    ttl_s: float | None = None
    timeout_s: float | None = None
    after: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    python_path: tuple[str, ...] = (".",)
    ignore: tuple[str, ...] = ()
    on_busy: OnBusy | None = None
    # A pattern stage (docs/design.md#pattern-stages): its declaration has a placeholder and
    # no value; each of its instances has both, and the name "PATTERN:VALUE".
    placeholder: str | None = None
    value: str | None = None

    def __post_init__(self) -> None:
        # Library callers may pass lists; the value stays hashable and immutable either way.
        for name in ("inputs", "outputs", "after", "sources", "python_path", "ignore"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        if self.command is not None:
            object.__setattr__(self, "command", _as_tuple(self.command))
        if not STAGE_NAME.fullmatch(self.pattern or self.name):
            raise ValueError(f"invalid stage name {self.name!r}: use letters, digits, '_', '-' and '.'")
        if self.placeholder is not None and not self.placeholder.isidentifier():
            raise ValueError(f"stage {self.name!r}: placeholder {self.placeholder!r} is not an identifier")
        named = self.name == f"{self.pattern}:{self.value}"
        if self.value is not None and (self.placeholder is None or not named):
            raise ValueError(f"stage {self.name!r}: an instance is named PATTERN:VALUE and has a placeholder")
        if (self.module is None) == (self.command is None):
            raise ValueError(f"stage {self.name!r}: give exactly one of module or command")
        if self.module is not None and not MODULE_NAME.fullmatch(self.module):
            raise ValueError(f"stage {self.name!r}: invalid module name {self.module!r}")
        if not self.function.isidentifier():
            raise ValueError(f"stage {self.name!r}: function {self.function!r} is not a Python identifier")
        if self.command is not None and not self.command:
            raise ValueError(f"stage {self.name!r}: command must not be empty")
        if self.ttl_s is not None and self.ttl_s <= 0:
            raise ValueError(f"stage {self.name!r}: ttl must be > 0")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"stage {self.name!r}: timeout must be > 0")

    @property
    def pattern(self) -> str | None:
        """The pattern stage an instance belongs to; None for any other stage."""
        return self.name.partition(":")[0] if self.value is not None else None

    @property
    def is_template(self) -> bool:
        """A pattern stage's declaration: what its instances are made from, never run itself."""
        return self.placeholder is not None and self.value is None

    @property
    def call_arguments(self) -> dict[str, str]:
        """The keyword arguments a module stage's function is called with beside output_dir."""
        if self.placeholder is None or self.value is None:
            return {}
        return {self.placeholder: self.value}

    @property
    def skippable(self) -> bool:
        """Whether the stage opted in to skipping, by declaring inputs or a ttl."""
        return bool(self.inputs) or self.ttl_s is not None

    def search_path(self, root: str) -> list[str]:
        """Where the stage's modules are found: python_path made absolute against output_dir."""
        return [absolute(entry, root) for entry in self.python_path]

    @property
    def called(self) -> str | None:
        """The function a module stage's run calls; None for a command (its argv is its code)."""
        return self.function if self.module is not None else None

    @property
    def code_label(self) -> str:
        """What runs, for people: "pipeline.render:run" or the command line."""
        if self.command is not None:
            return shlex.join(self.command)
        return f"{self.module}:{self.function}"


LineSink = Callable[[str, str, str], None]
"""Receives (stage name, "stdout" or "stderr", one line without its newline)."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """How one run ended. `error` is None exactly when ok."""

    ok: bool
    exit_code: int | None
    duration_s: float
    error: str | None = None
    output_tail: tuple[str, ...] = ()
    timed_out: bool = False
    cancelled: bool = False

    @classmethod
    def not_started(cls, error: str, duration_s: float = 0.0) -> RunResult:
        """A run refused before its process began; the reason is also its only output line."""
        return cls(False, None, duration_s, error, (error,))


@dataclass(frozen=True, slots=True)
class Change:
    """One end of what the filesystem reported: a path that appeared, changed or went away."""

    path: str
    is_dir: bool
    gone: bool  # deleted, or moved away
