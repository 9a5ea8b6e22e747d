"""The values the coordinator speaks in: a slot's states, the facts events carry in, the actions
it returns. Plain frozen data, no behaviour."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stagewatch.stage import StageState


class SlotState(enum.Enum):
    """Where a stage stands in the daemon; one value at a time."""

    IDLE = "idle"  # nothing to do: fresh as far as anyone knows
    CANDIDATE = "candidate"  # something it reads may have changed: its key decides
    CHECKING = "checking"  # its key is being computed
    READY = "ready"  # stale, waiting for a free job
    RUNNING = "running"
    FAILED = "failed"  # its last attempt failed: held until a change (with a ttl, its backoff)
    BLOCKED = "blocked"  # a stage upstream of it failed
    LOOPING = "looping"  # its runs keep changing what it reads: held until a change from outside


BUSY = frozenset({SlotState.CANDIDATE, SlotState.CHECKING, SlotState.READY, SlotState.RUNNING})


@dataclass(frozen=True, slots=True)
class Now:
    """The time of an event: wall clock for entry mtimes and TTLs, monotonic for waits."""

    wall: float
    mono: float


@dataclass(frozen=True, slots=True)
class StagePlan:
    """What the coordinator needs to know of one stage."""

    name: str
    upstream: frozenset[str]  # the stages it reads from directly
    downstream: frozenset[str]  # the stages that read from it directly
    ttl_s: float | None = None
    restart_when_busy: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """The pipeline as the coordinator sees it: stages in graph order, and how many may run."""

    stages: tuple[StagePlan, ...]
    jobs: int


# --- What the shell reports back. ---


@dataclass(frozen=True, slots=True)
class Touch:
    """Changes that touched one stage: one of their paths, and the span of their files' mtimes
    (wall clock; None when a file is gone and its time unknown)."""

    path: str
    written_from: float | None = None
    written_to: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A check's answer: whether the stage must run, the key it would record, its entry's mtime."""

    run: bool
    key: str | None
    entry_mtime: float | None = None
    error: str | None = None  # the check itself failed (counts as a failed attempt)


@dataclass(frozen=True, slots=True)
class Finished:
    """How a run ended, and the entry's mtime after it (for the stage's ttl)."""

    outcome: StageState  # SUCCEEDED, FAILED or CANCELLED
    key: str | None = None
    entry_mtime: float | None = None


# --- What the coordinator asks for. ---


@dataclass(frozen=True, slots=True)
class Check:
    """Compute the stage's key and decide; answer with `checked(name, job, verdict)`."""

    name: str
    job: int
    force: bool
    catching_up: bool  # a stage with no inputs and no ttl runs once at start


@dataclass(frozen=True, slots=True)
class Start:
    """Run the stage as check `job` prepared it; answer with `finished(name, job, ...)`."""

    name: str
    job: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop run `job` of the stage, and no other; its `finished` still comes."""

    name: str
    job: int


@dataclass(frozen=True, slots=True)
class Wake:
    """Call `due` after this many seconds (or sooner)."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class Say:
    """A log event: level, dotted name, fields."""

    level: str
    event: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Idle:
    """Everything has settled after some work."""

    fresh: int
    failing: tuple[str, ...]
    blocked: tuple[str, ...]
    looping: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Exit:
    """Stopping, and no run is left."""


Action = Check | Start | Cancel | Wake | Say | Idle | Exit
