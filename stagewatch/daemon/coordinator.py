"""The daemon's decisions, as a pure state machine: one slot per stage, events in, actions out.

Nothing here does I/O or reads a clock. The shell (shell.py) turns what happens into calls
(`changed`, `checked`, `finished`, `due`, `invalidated`, `reloaded`, `rescan`, `stop`), each
with the time, and carries out the actions they return: check a stage's key, start a run,
cancel *that* run, wake up later, say something. Every transition is a line of a table in
tests/test_coordinator.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from stagewatch.daemon.events import (
    BUSY,
    Action,
    Cancel,
    Check,
    Exit,
    Finished,
    Idle,
    Now,
    Plan,
    Say,
    Slot,
    SlotState,
    StagePlan,
    Start,
    Touch,
    Trigger,
    Verdict,
    Wake,
)
from stagewatch.daemon.scheduler import backoff_s, hold_back
from stagewatch.freshness import ttl_due_at
from stagewatch.pipeline import Pipeline
from stagewatch.stage import OnBusy, StageState

# A stage whose runs keep being retriggered by files written while it ran is writing something
# it reads: after this many such runs in a row it is held (DESIGN §5).
SELF_TRIGGER_RUNS = 5
# Before holding a stage for good, it is left alone this long and run once more: a person who
# saved during each of its last runs gets their last save built; a loop shows itself again.
LOOP_PAUSE_S = 2.0
# Filesystem timestamps come from a coarse kernel clock, up to a tick behind the real time:
# a write just after a run started may be dated just before it.
MTIME_SLACK_S = 0.01
# Checks handed out at once, carried out as one batch: enough that a catch-up costs the loop
# a dispatch per batch, few enough that a flush of new changes is not queued behind a whole
# catch-up (a warm check is a stat per file: 64 stages are tens of milliseconds).
CHECKS_IN_FLIGHT = 64


class Coordinator:
    """Decides, for every stage of a pipeline, what happens next."""

    def __init__(self, plan: Plan) -> None:
        self.by_state: dict[SlotState, set[str]] = {state: set() for state in SlotState}
        self.unchecked: set[str] = set()  # not checked since the daemon (or the stage) started
        self.slots: dict[str, Slot] = {}
        self._use(plan)
        for stage in plan.stages:
            self._add_slot(stage.name)
        self._recount()
        self.retiring: dict[str, int] = {}  # removed stages' runs, until they have stopped
        self.stopping = False
        self.exited = False
        self.busy_since_idle = True  # the first idle after catching up is always said
        self._next_job = 0

    # --- events ---

    def start(self, now: Now) -> list[Action]:
        """The daemon is watching: check every stage."""
        return self._dispatch(now)

    def changed(self, changes: Mapping[str, Touch], now: Now, *, notable: bool = True) -> list[Action]:
        """Paths that stages read changed."""
        actions: list[Action] = []
        if notable:
            self.busy_since_idle = True
        for name, touch in changes.items():
            actions += self._touch(name, touch)
        return actions + self._dispatch(now)

    def invalidated(self, name: str, now: Now) -> list[Action]:
        """A person removed the stage's entry: run it, now or once its current run ends."""
        slot = self.slots.get(name)
        if slot is None:
            return self._dispatch(now)
        self.busy_since_idle = True
        slot.forced = True
        slot.self_runs, slot.loop_confirmed_until, slot.loop_check_at = 0, None, None
        if slot.state in (SlotState.RUNNING, SlotState.CHECKING):
            slot.dirty = True
        else:
            self._candidate(name)
        return self._dispatch(now)

    def rescan(self, now: Now) -> list[Action]:
        """Distrust the watcher: check every key (held and blocked stages too: the key decides)."""
        for name, slot in self.slots.items():
            if slot.state is SlotState.LOOPING:
                continue  # a rescan is not a change from outside
            if slot.state in (SlotState.RUNNING, SlotState.CHECKING):
                slot.dirty = True
            elif slot.state not in BUSY:
                self._candidate(name)
        return self._dispatch(now)

    def due(self, entry_mtimes: Mapping[str, float | None], now: Now) -> list[Action]:
        """The wake-up came: TTL stages whose entry expired, failed stages whose backoff ended."""
        actions: list[Action] = []
        for name, slot in self.slots.items():
            stage = self.stages[name]
            if name in entry_mtimes and slot.state not in (SlotState.RUNNING, SlotState.CHECKING):
                slot.entry_mtime = entry_mtimes[name]  # read again: an `accept` may have refreshed it
            if slot.state is SlotState.IDLE and stage.ttl_s is not None:
                if ttl_due_at(slot.entry_mtime, stage.ttl_s, now.wall) <= now.wall:
                    actions.append(Say("debug", "ttl.due", {"stage": name}))
                    self._candidate(name)
            elif (
                slot.state is SlotState.LOOPING
                and slot.loop_check_at is not None
                and slot.loop_check_at <= now.mono
            ):
                slot.loop_check_at, slot.loop_confirming, slot.trigger = None, True, Trigger.NONE
                self._candidate(name)
            elif (
                slot.state is SlotState.FAILED
                and stage.ttl_s is not None
                and slot.retry_at is not None
                and slot.retry_at <= now.mono
            ):
                actions.append(Say("debug", "stage.retrying", {"stage": name, "failures": slot.failures}))
                self._candidate(name)
        return actions + self._dispatch(now)

    def checked(self, name: str, job: int, verdict: Verdict, now: Now) -> list[Action]:
        return self.checked_many([(name, job, verdict)], now)

    def checked_many(self, results: Iterable[tuple[str, int, Verdict]], now: Now) -> list[Action]:
        """Checks that came back together, taken in order, then one dispatch for them all:
        a catch-up of thousands costs a dispatch per batch, not per stage."""
        actions: list[Action] = []
        for name, job, verdict in results:
            self._take_check(name, job, verdict, now, actions)
        return actions + self._dispatch(now)

    def _take_check(self, name: str, job: int, verdict: Verdict, now: Now, actions: list[Action]) -> None:
        slot = self.slots.get(name)
        if slot is None or slot.job != job or slot.state is not SlotState.CHECKING:
            return  # a check of a stage since removed, or of a stop
        slot.job = None
        self._checked_once(name)
        if verdict.entry_mtime is not None or not verdict.run:
            slot.entry_mtime = verdict.entry_mtime
        if verdict.error is not None:
            actions.append(Say("error", "stage.check_failed", {"stage": name, "error": verdict.error}))
            self._fail(name, key=None, now=now, actions=actions)
        elif slot.dirty:
            slot.dirty = False  # what it hashed may be out of date: hash again
            self._candidate(name)
        elif not verdict.run:
            self._move(name, SlotState.IDLE)
            slot.blocked_by = None
            slot.forced = False
            slot.trigger, slot.self_runs, slot.loop_confirmed_until = Trigger.NONE, 0, None
            if slot.failures:
                self._recovered(name, actions)
        else:
            held = None
            if slot.failures and not slot.forced:
                held = hold_back(
                    slot.failed_key, verdict.key, self.stages[name].ttl_s, slot.retry_at, now.mono
                )
            if held is not None:
                self._move(name, SlotState.FAILED)
                slot.trigger = Trigger.NONE
                actions.append(Say("debug", "stage.held", {"stage": name, "reason": held}))
            else:
                self._move(name, SlotState.READY)
                slot.job = job
                slot.blocked_by = None

    def finished(self, name: str, job: int, result: Finished, now: Now) -> list[Action]:
        if self.retiring.get(name) == job:
            del self.retiring[name]
            return self._dispatch(now)
        slot = self.slots.get(name)
        if slot is None or slot.job != job or slot.state is not SlotState.RUNNING:
            return self._dispatch(now)
        slot.job = None
        slot.cancel_sent = False
        slot.run_ended_wall = now.wall
        actions: list[Action] = []
        if self.stopping:
            self._move(name, SlotState.IDLE)
            return actions + self._dispatch(now)
        if result.outcome is StageState.SUCCEEDED:
            self._move(name, SlotState.IDLE)
            slot.entry_mtime = result.entry_mtime
            self._recovered(name, actions)
            for downstream in self.stages[name].downstream:
                self._touch_quietly(downstream)
        elif result.outcome is StageState.CANCELLED:
            # Restarted, or stopped by a reload: the key decides again. A run cut short says
            # nothing of what its own writes do.
            slot.trigger = Trigger.NONE
            self._candidate(name)
        else:
            self._fail(name, key=result.key, now=now, actions=actions)
        if slot.dirty:
            slot.dirty = False
            self._candidate(name)
        if slot.loop_confirming:
            # The run after the pause has ended: its own change, if it comes, holds it now.
            slot.loop_confirming = False
            slot.loop_confirmed_until = now.mono + LOOP_PAUSE_S
        return actions + self._dispatch(now)

    def reloaded(self, plan: Plan, changed: Iterable[str], now: Now) -> list[Action]:
        """A new pipeline: removed stages' runs are stopped before anything starts; new and
        changed stages are checked; what a removed or changed stage blocked is checked again."""
        actions: list[Action] = []
        new = {stage.name: stage for stage in plan.stages}
        changed = set(changed)
        gone = [name for name in self.slots if name not in new]
        for name in gone:
            slot = self.slots.pop(name)
            self.by_state[slot.state].discard(name)
            self.unchecked.discard(name)
            if slot.state is SlotState.RUNNING and slot.job is not None:
                self.retiring[name] = slot.job
                actions.append(Cancel(name, slot.job))
        self._use(plan)
        for name in new:
            if name not in self.slots:
                self._add_slot(name)
        self._recount()
        for name in changed & new.keys():
            slot = self.slots[name]
            # Its old failure said nothing about its new settings.
            slot.failures, slot.failed_key, slot.retry_at, slot.self_runs = 0, None, None, 0
            if slot.state in (SlotState.RUNNING, SlotState.CHECKING):
                slot.dirty = True
            else:
                self._candidate(name)
        for name in list(self.by_state[SlotState.BLOCKED]):
            # Its blocker may be gone, changed, or no longer upstream of it.
            slot = self.slots[name]
            if slot.blocked_by not in new or slot.blocked_by in changed:
                slot.blocked_by = None
            self._candidate(name)
        self.busy_since_idle = True
        return actions + self._dispatch(now)

    def stop(self, now: Now) -> list[Action]:
        """Start nothing more; cancel every run; Exit once none is left."""
        self.stopping = True
        actions: list[Action] = []
        for name in sorted(self.by_state[SlotState.RUNNING]):
            slot = self.slots[name]
            if slot.job is not None and not slot.cancel_sent:
                slot.cancel_sent = True
                actions.append(Cancel(name, slot.job))
        return actions + self._dispatch(now)

    # --- queries ---

    def running(self) -> dict[str, float]:
        """Running stages -> when their run started (monotonic)."""
        return {name: self.slots[name].run_started or 0.0 for name in self.by_state[SlotState.RUNNING]}

    def in_state(self, *states: SlotState) -> list[str]:
        """The stages in these states, in graph order."""
        found = set().union(*(self.by_state[state] for state in states))
        return sorted(found, key=self.position.__getitem__)

    @property
    def settled(self) -> bool:
        return not self.retiring and not any(self.by_state[state] for state in BUSY)

    # --- transitions ---

    def _new_job(self) -> int:
        self._next_job += 1
        return self._next_job

    def _use(self, plan: Plan) -> None:
        self.plan = plan
        self.stages = {stage.name: stage for stage in plan.stages}
        self.position = {stage.name: index for index, stage in enumerate(plan.stages)}
        self.ttl_stages = [stage.name for stage in plan.stages if stage.ttl_s is not None]

    def _add_slot(self, name: str) -> None:
        self.slots[name] = Slot()
        self.by_state[SlotState.CANDIDATE].add(name)
        self.unchecked.add(name)

    def _recount(self) -> None:
        """The indexes over the stages' neighbours, made anew for a new set of stages."""
        busy = set().union(*(self.by_state[state] for state in BUSY))
        self._busy_parents = {name: len(self.stages[name].upstream & busy) for name in self.slots}
        self._free = {name for name in self.by_state[SlotState.CANDIDATE] if not self._busy_parents[name]}
        self._clear_above: set[str] = set()

    def _move(self, name: str, state: SlotState) -> None:
        """The one place a slot changes state: the indexes move with it (the stages in each
        state; how many busy stages each stage reads from directly; the candidates none of
        whose direct upstream is busy; the stages known to have nothing busy upstream)."""
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
            self._free.add(name)
        else:
            self._free.discard(name)

    def _checked_once(self, name: str) -> None:
        self.slots[name].catching_up = False
        self.unchecked.discard(name)

    def _candidate(self, name: str) -> None:
        self._move(name, SlotState.CANDIDATE)
        self.slots[name].job = None

    def _touch_quietly(self, name: str) -> None:
        """An upstream run ended: check the stage, which is neither its own nor an outside change."""
        slot = self.slots.get(name)
        if slot is None or slot.state is SlotState.LOOPING:
            return
        if slot.state in (SlotState.RUNNING, SlotState.CHECKING):
            slot.dirty = True
        elif slot.state not in BUSY:
            self._candidate(name)

    def _touch(self, name: str, touch: Touch) -> list[Action]:
        """Something the stage reads changed."""
        slot = self.slots.get(name)
        if slot is None:
            return []
        path = touch.path
        # Written while its last run was under way: most likely its own doing. (A person
        # saving during a run looks the same, so it takes several runs in a row to hold it.)
        # File times, not event times: the events of a run's own writes may arrive after it.
        end = float("inf") if slot.state is SlotState.RUNNING else slot.run_ended_wall
        by_self = (
            slot.run_started_wall is not None
            and end is not None
            and touch.written_from is not None
            and touch.written_to is not None
            and touch.written_from >= slot.run_started_wall - MTIME_SLACK_S
            and touch.written_to <= end
        )
        if slot.state is SlotState.RUNNING:
            slot.dirty = True
        if by_self:
            if slot.trigger is Trigger.NONE:
                slot.trigger, slot.trigger_path = Trigger.SELF, path
        else:
            slot.trigger, slot.trigger_path = Trigger.OUTSIDE, path
            slot.self_runs, slot.loop_confirmed_until, slot.loop_check_at = 0, None, None
        actions: list[Action] = []
        if slot.state is SlotState.RUNNING:
            if self.stages[name].restart_when_busy and not slot.cancel_sent and slot.job is not None:
                slot.cancel_sent = True
                actions.append(Say("info", "stage.restarting", {"stage": name}))
                actions.append(Cancel(name, slot.job))
            return actions
        if slot.state is SlotState.LOOPING:
            if by_self:
                return actions  # held until a change from outside
            actions.append(Say("info", "stage.released", {"stage": name, "path": path}))
        if slot.state is SlotState.CHECKING:
            slot.dirty = True
        elif slot.state is SlotState.READY:
            self._candidate(name)  # its prepared key is out of date
        elif slot.state is not SlotState.CANDIDATE:
            self._candidate(name)
        return actions

    def _fail(self, name: str, key: str | None, now: Now, actions: list[Action]) -> None:
        slot = self.slots[name]
        self._move(name, SlotState.FAILED)
        slot.failures += 1
        slot.failed_key = key  # `forced` is kept: an invalidate during the run still asks for another
        slot.trigger = Trigger.NONE  # self_runs is kept: a failing run can loop on itself too
        ttl_s = self.stages[name].ttl_s
        slot.retry_at = now.mono + backoff_s(slot.failures, ttl_s)
        if ttl_s is not None:  # live data may come back: said, so nobody waits a whole ttl for it
            actions.append(
                Say(
                    "info",
                    "stage.retry_scheduled",
                    {"stage": name, "retry_in_s": backoff_s(slot.failures, ttl_s)},
                )
            )
        waiting = self._below(name) & self.by_state[SlotState.CANDIDATE]
        for downstream in sorted(waiting, key=self.position.__getitem__):
            self._block(downstream, name, actions)

    def _block(self, name: str, blocker: str, actions: list[Action]) -> None:
        slot = self.slots[name]
        if slot.blocked_by != blocker:  # said once, not at every change while blocked
            actions.append(Say("warning", "stage.blocked", {"stage": name, "by": blocker}))
        self._move(name, SlotState.BLOCKED)
        slot.blocked_by = blocker
        self._checked_once(name)

    def _recovered(self, name: str, actions: list[Action]) -> None:
        """The stage is fresh again: forget its failures, and check what it blocked."""
        slot = self.slots[name]
        slot.failures, slot.failed_key, slot.retry_at = 0, None, None
        for other in list(self.by_state[SlotState.BLOCKED]):
            if self.slots[other].blocked_by == name:
                self._candidate(other)

    def _below(self, name: str) -> set[str]:
        """Every stage downstream of `name`, however far."""
        found: set[str] = set()
        pending = [name]
        while pending:
            for below in self.stages[pending.pop()].downstream:
                if below not in found:
                    found.add(below)
                    pending.append(below)
        return found

    def _upstream_busy(self, stage: StagePlan) -> bool:
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

    def _first_failed_above(self) -> dict[str, str]:
        """Each stage below a failed one -> the first failed one above it, in graph order."""
        first: dict[str, str] = {}
        for failed in sorted(self.by_state[SlotState.FAILED], key=self.position.__getitem__):
            pending = [failed]
            while pending:
                for below in self.stages[pending.pop()].downstream:
                    if below not in first:  # reached from an earlier failed stage: all below it too
                        first[below] = failed
                        pending.append(below)
        return first

    def _dispatch(self, now: Now) -> list[Action]:
        actions: list[Action] = []
        if self.stopping:
            if not self.exited and not self.retiring and not self.by_state[SlotState.RUNNING]:
                self.exited = True
                actions.append(Exit())
            return actions
        in_order = self.position.__getitem__
        for name in sorted(self.by_state[SlotState.READY], key=in_order):
            stage, slot = self.stages[name], self.slots[name]
            if self._upstream_busy(stage):
                # Something upstream changed since its check: it waits, and is checked again.
                self._candidate(name)
                continue
            # Nothing starts while a removed stage's run is still stopping (it may write the
            # very files a new stage writes).
            if len(self.by_state[SlotState.RUNNING]) >= self.plan.jobs or self.retiring or slot.job is None:
                continue
            self._move(name, SlotState.RUNNING)
            slot.run_started = now.mono
            slot.run_started_wall, slot.run_ended_wall = now.wall, None
            slot.dirty = False
            slot.forced = False
            if slot.trigger is Trigger.SELF:
                slot.self_runs += 1
            elif slot.trigger is Trigger.OUTSIDE:
                slot.self_runs = 0
            slot.trigger = Trigger.NONE
            self.busy_since_idle = True
            actions.append(Start(name, slot.job))
        self._hand_out_checks(now, actions)
        actions.append(Wake(self._next_wake(now)))
        if self.settled and self.busy_since_idle:
            self.busy_since_idle = False
            actions.append(
                Idle(
                    fresh=len(self.by_state[SlotState.IDLE]),
                    failing=tuple(self.in_state(SlotState.FAILED)),
                    blocked=tuple(self.in_state(SlotState.BLOCKED)),
                    looping=tuple(self.in_state(SlotState.LOOPING)),
                )
            )
        return actions

    def _hand_out_checks(self, now: Now, actions: list[Action]) -> None:
        """Candidates with nothing busy upstream are checked, in graph order, up to
        CHECKS_IN_FLIGHT. Only those none of whose direct upstream is busy are looked at (in a
        catch-up of a chain, one); one blocked or held lets those below it be looked at next."""
        in_order = self.position.__getitem__
        failed_above = self._first_failed_above() if self.by_state[SlotState.FAILED] else {}
        fresh = sorted(self._free, key=in_order)
        while fresh:
            # A stage blocked or held is busy no more: those below it, skipped in this pass or
            # freed by it, are looked at again (each pass moves one candidate on at least).
            left_busy = False
            for name in fresh:
                if len(self.by_state[SlotState.CHECKING]) >= CHECKS_IN_FLIGHT:
                    return  # the rest wait for a check to come back
                if name not in self._free:
                    continue  # moved on since this pass began
                stage, slot = self.stages[name], self.slots[name]
                if self._upstream_busy(stage):
                    continue  # checked once everything upstream of it has settled
                blocker = failed_above.get(name)
                if blocker is not None:
                    self._block(name, blocker, actions)
                    left_busy = True
                    continue
                if slot.trigger is Trigger.SELF and slot.self_runs >= SELF_TRIGGER_RUNS and not slot.forced:
                    self._move(name, SlotState.LOOPING)
                    left_busy = True
                    until = slot.loop_confirmed_until
                    if until is None or now.mono > until:
                        slot.loop_check_at = now.mono + LOOP_PAUSE_S
                        continue
                    slot.loop_check_at, slot.loop_confirmed_until = None, None
                    fields = {"stage": name, "path": slot.trigger_path, "runs": slot.self_runs + 1}
                    actions.append(Say("warning", "stage.self_triggering", fields))
                    continue
                self._move(name, SlotState.CHECKING)
                slot.job = self._new_job()
                actions.append(Check(name, slot.job, slot.forced, slot.catching_up))
            fresh = sorted(self._free, key=in_order) if left_busy else []

    def _next_wake(self, now: Now) -> float:
        """Seconds until a TTL stage is due or a failed TTL stage's backoff ends (inf: never)."""
        soonest = float("inf")
        for name in self.by_state[SlotState.LOOPING]:
            check_at = self.slots[name].loop_check_at
            if check_at is not None:
                soonest = min(soonest, check_at - now.mono)
        for name in self.ttl_stages:
            slot, ttl_s = self.slots[name], self.stages[name].ttl_s
            assert ttl_s is not None
            if slot.state is SlotState.IDLE:
                soonest = min(soonest, ttl_due_at(slot.entry_mtime, ttl_s, now.wall) - now.wall)
            elif slot.state is SlotState.FAILED and slot.retry_at is not None:
                soonest = min(soonest, slot.retry_at - now.mono)
        return max(0.0, soonest)


def status_text(coordinator: Coordinator, now: Now) -> str:
    """One line for `systemctl status`: what the daemon is doing now."""
    slots = coordinator.slots
    total = len(slots)
    unchecked = len(coordinator.unchecked)
    running = coordinator.running()
    failing = coordinator.in_state(SlotState.FAILED)
    failing_text = f"{_count(len(failing), 'stage')} failing: {', '.join(failing)}"
    if unchecked and not coordinator.settled:
        return f"catching up {total - unchecked}/{total}"
    if running:
        runs = [f"{name} ({now.mono - started:.0f} s)" for name, started in sorted(running.items())]
        return "running " + ", ".join(runs) + (f"; {failing_text}" if failing else "")
    pending = coordinator.in_state(SlotState.CANDIDATE, SlotState.CHECKING, SlotState.READY)
    if pending:
        return "checking " + ", ".join(pending)
    if failing:
        return failing_text
    return f"idle, {_count(total, 'stage')} fresh"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def plan_for(pipeline: Pipeline, jobs: int) -> Plan:
    """The coordinator's view of a pipeline."""
    graph = pipeline.graph
    return Plan(
        tuple(
            StagePlan(
                name,
                graph.upstream[name],
                graph.downstream[name],
                pipeline.stage(name).ttl_s,
                pipeline.on_busy_for(pipeline.stage(name)) is OnBusy.RESTART,
            )
            for name in graph.order
        ),
        jobs,
    )
