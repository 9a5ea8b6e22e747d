"""The coordinator's private state: one slot per stage, and the indexes kept over them.

A slot moves between states in one place (`Board.move`), and the indexes move with it: the
stages in each state; how many busy stages each stage reads from directly; the candidates
none of whose direct upstream is busy; the stages known to have nothing busy upstream. They
keep a catch-up of thousands of stages linear: no rule walks every stage at every event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stagewatch.daemon.backoff import FailureRecord
from stagewatch.daemon.events import BUSY, Plan, SlotState, StagePlan
from stagewatch.daemon.loops import LoopGuard


@dataclass(slots=True)
class Slot:
    """One stage: its state, and the few facts that the state alone does not say."""

    state: SlotState = SlotState.CANDIDATE
    job: int | None = None  # the check or run under way
    forced: bool = False  # an invalidate: run whatever the key says
    dirty: bool = False  # changed while checking or running: check again afterwards
    catching_up: bool = True  # not checked since the daemon (or this stage) started
    blocked_by: str | None = None
    entry_mtime: float | None = None
    run_started: float | None = None  # monotonic
    run_started_wall: float | None = None
    run_ended_wall: float | None = None
    cancel_sent: bool = False
    failure: FailureRecord = field(default_factory=FailureRecord)
    guard: LoopGuard = field(default_factory=LoopGuard)

    @property
    def failures(self) -> int:
        """Its failures in a row."""
        return self.failure.count


class Board:
    """The slots of a pipeline's stages and the indexes over them."""

    def __init__(self, plan: Plan) -> None:
        self.by_state: dict[SlotState, set[str]] = {state: set() for state in SlotState}
        self.unchecked: set[str] = set()  # not checked since the daemon (or the stage) started
        self.slots: dict[str, Slot] = {}
        self.use(plan)
        for stage in plan.stages:
            self.add(stage.name)
        self.recount()

    def use(self, plan: Plan) -> None:
        self.plan = plan
        self.stages = {stage.name: stage for stage in plan.stages}
        self.position = {stage.name: index for index, stage in enumerate(plan.stages)}
        self.ttl_stages = [stage.name for stage in plan.stages if stage.ttl_s is not None]

    def add(self, name: str) -> None:
        self.slots[name] = Slot()
        self.by_state[SlotState.CANDIDATE].add(name)
        self.unchecked.add(name)

    def remove(self, name: str) -> Slot:
        slot = self.slots.pop(name)
        self.by_state[slot.state].discard(name)
        self.unchecked.discard(name)
        return slot

    def reshape(self, plan: Plan) -> dict[str, Slot]:
        """A new set of stages: the slots of those gone are returned, new ones are candidates."""
        names = {stage.name for stage in plan.stages}
        gone = {name: self.remove(name) for name in list(self.slots) if name not in names}
        self.use(plan)
        for stage in plan.stages:
            if stage.name not in self.slots:
                self.add(stage.name)
        self.recount()
        return gone

    def recount(self) -> None:
        """The indexes over the stages' neighbours, made anew for a new set of stages."""
        busy = set().union(*(self.by_state[state] for state in BUSY))
        self._busy_parents = {name: len(self.stages[name].upstream & busy) for name in self.slots}
        self.free = {name for name in self.by_state[SlotState.CANDIDATE] if not self._busy_parents[name]}
        self._clear_above: set[str] = set()

    def move(self, name: str, state: SlotState) -> None:
        """The one place a slot changes state: the indexes move with it."""
        slot = self.slots[name]
        was_busy, busy = slot.state in BUSY, state in BUSY
        self.by_state[slot.state].discard(name)
        self.by_state[state].add(name)
        slot.state = state
        if was_busy != busy:
            if busy:
                self._clear_above.clear()  # something upstream of them may be busy now
            for below in self.stages[name].downstream:
                if below in self.slots:
                    self._busy_parents[below] = self._busy_parents.get(below, 0) + (1 if busy else -1)
                    self._refree(below)
        self._refree(name)

    def _refree(self, name: str) -> None:
        if self.slots[name].state is SlotState.CANDIDATE and not self._busy_parents.get(name, 0):
            self.free.add(name)
        else:
            self.free.discard(name)

    def candidate(self, name: str) -> None:
        """The stage's key decides again: whatever check or run it had prepared is dropped."""
        self.move(name, SlotState.CANDIDATE)
        self.slots[name].job = None

    def block(self, name: str, blocker: str) -> bool:
        """Blocked by a failed stage above it; whether that is news (not so at every change)."""
        slot = self.slots[name]
        news = slot.blocked_by != blocker
        self.move(name, SlotState.BLOCKED)
        slot.blocked_by = blocker
        self.checked_once(name)
        return news

    def unblock(self, blocker: str) -> None:
        """What a stage blocked is checked again: it is fresh again."""
        for name in list(self.by_state[SlotState.BLOCKED]):
            if self.slots[name].blocked_by == blocker:
                self.candidate(name)

    def checked_once(self, name: str) -> None:
        self.slots[name].catching_up = False
        self.unchecked.discard(name)

    def in_state(self, *states: SlotState) -> list[str]:
        """The stages in these states, in graph order."""
        found = set().union(*(self.by_state[state] for state in states))
        return sorted(found, key=self.position.__getitem__)

    def in_order(self, names: set[str]) -> list[str]:
        return sorted(names, key=self.position.__getitem__)

    def below(self, name: str) -> set[str]:
        """Every stage downstream of `name`, however far."""
        found: set[str] = set()
        pending = [name]
        while pending:
            for below in self.stages[pending.pop()].downstream:
                if below not in found:
                    found.add(below)
                    pending.append(below)
        return found

    def upstream_busy(self, stage: StagePlan) -> bool:
        """Whether a stage upstream of this one, however far, may still change what it reads.

        Walked up from the stage, never held as a set of every ancestor (quadratic in a long
        chain): a busy one ends the walk, and it goes no higher than a stage known to have
        nothing busy upstream, which every stage it passed is, when it finds nothing.
        """
        seen: set[str] = set()
        pending = list(stage.upstream)
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            if self.slots[name].state in BUSY:
                return True
            if name not in self._clear_above:
                pending.extend(self.stages[name].upstream)
        self._clear_above |= seen
        self._clear_above.add(stage.name)
        return False

    def first_failed_above(self) -> dict[str, str]:
        """Each stage below a failed one -> the first failed one above it, in graph order."""
        first: dict[str, str] = {}
        for failed in self.in_state(SlotState.FAILED):
            pending = [failed]
            while pending:
                for below in self.stages[pending.pop()].downstream:
                    if below not in first:  # reached from an earlier failed stage: all below it too
                        first[below] = failed
                        pending.append(below)
        return first

    def settled(self) -> bool:
        return not any(self.by_state[state] for state in BUSY)
