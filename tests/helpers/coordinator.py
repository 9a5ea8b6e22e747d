"""The coordinator driven with plain values: a fake clock, ready verdicts and outcomes, and
reading the actions it answers with."""

from __future__ import annotations

from collections.abc import Iterable

from stagewatch.daemon.coordinator import Coordinator
from stagewatch.daemon.events import (
    Action,
    Check,
    Finished,
    Now,
    Plan,
    Say,
    StagePlan,
    Start,
    Touch,
    Verdict,
)
from stagewatch.stage import StageState

OK = Finished(StageState.SUCCEEDED, "k", entry_mtime=1000.0)
FAILED = Finished(StageState.FAILED, "k")
CANCELLED = Finished(StageState.CANCELLED, "k")
STALE = Verdict(run=True, key="k")
FRESH = Verdict(run=False, key="k", entry_mtime=1000.0)


def chain(
    *names: str, ttl: dict[str, float] | None = None, restart: Iterable[str] = (), jobs: int = 2
) -> Plan:
    """Stages in a line: each reads what the one before it writes."""
    ttl = ttl or {}
    stages = []
    for index, name in enumerate(names):
        downstream = frozenset(names[index + 1 : index + 2])
        upstream = frozenset(names[max(0, index - 1) : index])
        stages.append(StagePlan(name, upstream, downstream, ttl.get(name), name in restart))
    return Plan(tuple(stages), jobs)


class Clock:
    def __init__(self) -> None:
        self.wall, self.mono = 1000.0, 10.0

    def now(self) -> Now:
        return Now(self.wall, self.mono)

    def advance(self, seconds: float) -> Now:
        self.wall += seconds
        self.mono += seconds
        return self.now()


def of(kind: type, actions: list[Action]) -> list[Action]:
    return [action for action in actions if isinstance(action, kind)]


def said(actions: list[Action], event: str) -> list[Say]:
    return [a for a in actions if isinstance(a, Say) and a.event == event]


def job_of(actions: list[Action], name: str) -> int:
    return next(a.job for a in actions if isinstance(a, Check | Start) and a.name == name)


def settle_fresh(coordinator: Coordinator, clock: Clock) -> None:
    """Answer every check with 'fresh' until nothing is left to check."""
    actions = coordinator.start(clock.now())
    while of(Check, actions):
        check = of(Check, actions)[0]
        actions = of(Check, actions)[1:] + coordinator.checked(check.name, check.job, FRESH, clock.now())


def run_to_start(coordinator: Coordinator, clock: Clock, name: str, actions: list[Action]) -> int:
    """Answer the stage's check with 'stale'; the job of the run that starts."""
    check = next(a for a in of(Check, actions) if a.name == name)
    started = coordinator.checked(name, check.job, STALE, clock.now())
    assert Start(name, check.job) in started
    return check.job


def touch(name: str, path: str, written_at: float) -> dict[str, Touch]:
    """A change to `path`, a file whose mtime is `written_at` (wall clock)."""
    return {name: Touch(path, written_at, written_at)}
