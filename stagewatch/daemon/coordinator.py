"""The daemon's decisions, as a pure state machine: one slot per stage, events in, actions out.

The law: nothing here does I/O or reads a clock (tests/coordinator/test_coordinator.py fails if one of these
modules imports something that could). The shell (shell.py) turns what happens into calls, each
with the time, and carries out the actions they return.

Theory of operation. Each stage has a slot (board.py) in one of the states of `SlotState`
(docs/design.md#slot-states). Three machines share a slot:

- the stage's own: idle -> candidate -> checking -> ready -> running -> idle, or failed,
  blocked (a stage above it failed) or looping. Every move a slot makes is a row of one of
  the tables below: ON_NUDGE (something that may change its key happened), AFTER_CHECK (its
  check came back), AFTER_RUN (its run ended), and the turns a candidate or a ready stage
  gets when work is handed out (CANDIDATE_TURN, READY_TURN);
- the self-trigger guard (loops.py), which tells a stage's own writes from a person's, and
  holds a stage whose runs keep retriggering it;
- the failure backoff (backoff.py), which holds a failed stage until its key changes, or
  with a ttl until its wait is over.

The events: `start`, `changed` (files it reads), `checked`/`checked_many` (a key computed),
`finished` (a run ended), `due` (a timer), `invalidated`, `reloaded`, `rescan` and `stop`. The
actions: Check a stage's key, Start the run a check prepared, Cancel *that* run, Wake later,
Say something, Idle (settled), Exit. After every event, `_dispatch` hands out work: ready
stages start (up to `jobs`), candidates with nothing busy upstream are checked, in graph order.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from stagewatch.daemon.board import Board, Slot
from stagewatch.daemon.events import (
    Action,
    Cancel,
    Check,
    Exit,
    Finished,
    Idle,
    Now,
    Plan,
    Say,
    SlotState,
    StagePlan,
    Start,
    Touch,
    Verdict,
    Wake,
)
from stagewatch.daemon.loops import Trigger, written_by_own_run
from stagewatch.stage import StageState
from stagewatch.ttl import ttl_due_at

# Checks handed out at once, carried out as one batch: enough that a catch-up costs the loop
# a dispatch per batch, few enough that a flush of new changes is not queued behind a whole
# catch-up (a warm check is a stat per file: 64 stages are tens of milliseconds).
CHECKS_IN_FLIGHT = 64


class Nudge(enum.Enum):
    """Something that may change a stage's key."""

    OUTSIDE = "outside"  # a file it reads changed, not while its own last run was under way
    OWN = "own"  # a file it reads changed while its own last run was under way
    RECHECK = "recheck"  # a stage above it ran, or the watcher is distrusted (a rescan)
    INVALIDATE = "invalidate"  # a person removed its entry
    RELOAD = "reload"  # its settings changed in a reloaded pipeline


class Effect(enum.Enum):
    """What a nudge does to a slot."""

    CHECK = "check"  # a candidate: its key decides (a check or a run it prepared is dropped)
    AFTER = "after"  # checked again once its check or run is over
    KEEP = "keep"  # nothing: its key or its hold stands


_C, _A, _K = Effect.CHECK, Effect.AFTER, Effect.KEEP

ON_NUDGE: dict[Nudge, dict[SlotState, Effect]] = {
    nudge: dict(zip(SlotState, row, strict=True))
    for nudge, row in (
        # columns:        idle cand check ready run fail block loop
        (Nudge.OUTSIDE,    (_C, _C, _A, _C, _A, _C, _C, _C)),
        (Nudge.OWN,        (_C, _C, _A, _C, _A, _C, _C, _K)),
        (Nudge.RECHECK,    (_C, _C, _A, _K, _A, _C, _C, _K)),
        (Nudge.INVALIDATE, (_C, _C, _A, _C, _A, _C, _C, _C)),
        (Nudge.RELOAD,     (_C, _C, _A, _C, _A, _C, _C, _C)),
    )
}  # fmt: skip
"""Every state a nudge can meet, and what it does there. A stage being checked or run is
checked again after it (what it hashed may be out of date); any other stage is a candidate,
except that a ready stage keeps its prepared key when only a stage above it ran (it is
checked again if that one is still busy when its turn comes), and a looping stage waits for
a change from outside (its own writes, and a rescan, say nothing new)."""


class CheckOutcome(enum.Enum):
    ERROR = "the check itself failed"  # counts as a failed attempt
    CHANGED = "changed while it was checked"  # what it hashed may be out of date
    FRESH = "fresh"
    HELD = "stale, but held by its backoff"  # backoff.hold_back
    STALE = "stale"


AFTER_CHECK: dict[CheckOutcome, SlotState] = {
    CheckOutcome.ERROR: SlotState.FAILED,
    CheckOutcome.CHANGED: SlotState.CANDIDATE,
    CheckOutcome.FRESH: SlotState.IDLE,
    CheckOutcome.HELD: SlotState.FAILED,
    CheckOutcome.STALE: SlotState.READY,
}


class RunOutcome(enum.Enum):
    STOPPING = "ended while the daemon stops"
    SUCCEEDED = "succeeded"  # the stages below it are nudged: RECHECK
    CANCELLED = "cancelled"  # restarted, or stopped by a reload: its key decides again
    FAILED = "failed"  # what is waiting below it is blocked


AFTER_RUN: dict[RunOutcome, SlotState] = {
    RunOutcome.STOPPING: SlotState.IDLE,
    RunOutcome.SUCCEEDED: SlotState.IDLE,
    RunOutcome.CANCELLED: SlotState.CANDIDATE,
    RunOutcome.FAILED: SlotState.FAILED,
}
"""Then, unless stopping, a stage changed during its run is a candidate again."""


class CandidateTurn(enum.Enum):
    WAIT = "something above it is busy"
    BLOCK = "a stage above it failed"
    PAUSE = "it keeps retriggering itself: left alone a moment, then run once more"
    HOLD = "the run after its pause retriggered it again: held until a change from outside"
    CHECK = "its key is computed"


CANDIDATE_TURN: dict[CandidateTurn, SlotState] = {
    CandidateTurn.WAIT: SlotState.CANDIDATE,
    CandidateTurn.BLOCK: SlotState.BLOCKED,
    CandidateTurn.PAUSE: SlotState.LOOPING,
    CandidateTurn.HOLD: SlotState.LOOPING,
    CandidateTurn.CHECK: SlotState.CHECKING,
}


class ReadyTurn(enum.Enum):
    RECHECK = "something above it changed since its check"
    WAIT = "no job is free"
    START = "its prepared run starts"


READY_TURN: dict[ReadyTurn, SlotState] = {
    ReadyTurn.RECHECK: SlotState.CANDIDATE,
    ReadyTurn.WAIT: SlotState.READY,
    ReadyTurn.START: SlotState.RUNNING,
}


def check_outcome(verdict: Verdict, dirty: bool, held: bool) -> CheckOutcome:
    if verdict.error is not None:
        return CheckOutcome.ERROR
    if dirty:
        return CheckOutcome.CHANGED
    if not verdict.run:
        return CheckOutcome.FRESH
    return CheckOutcome.HELD if held else CheckOutcome.STALE


def run_outcome(outcome: StageState, stopping: bool) -> RunOutcome:
    if stopping:
        return RunOutcome.STOPPING
    if outcome is StageState.SUCCEEDED:
        return RunOutcome.SUCCEEDED
    return RunOutcome.CANCELLED if outcome is StageState.CANCELLED else RunOutcome.FAILED


class DueReason(enum.Enum):
    TTL = "its entry expired"
    RETRY = "its backoff after a failure is over"  # a ttl stage: live data may come back
    LOOP_PAUSE = "its pause as a suspected loop is over"


def due_reason(slot: Slot, stage: StagePlan, now: Now) -> DueReason | None:
    """Why a timer makes a stage a candidate, if it does."""
    if slot.state is SlotState.IDLE and stage.ttl_s is not None:
        return DueReason.TTL if ttl_due_at(slot.entry_mtime, stage.ttl_s, now.wall) <= now.wall else None
    if slot.state is SlotState.LOOPING and slot.guard.pause_over(now.mono):
        return DueReason.LOOP_PAUSE
    if slot.state is SlotState.FAILED and stage.ttl_s is not None and slot.failure.retry_due(now.mono):
        return DueReason.RETRY
    return None


def ready_turn(board: Board, name: str, retiring: bool) -> ReadyTurn:
    slot = board.slots[name]
    if board.upstream_busy(board.stages[name]):
        return ReadyTurn.RECHECK  # something upstream changed since its check
    # Nothing starts while a removed stage's run is still stopping (it may write the very
    # files a new stage writes).
    if retiring or slot.job is None or len(board.by_state[SlotState.RUNNING]) >= board.plan.jobs:
        return ReadyTurn.WAIT
    return ReadyTurn.START


def candidate_turn(board: Board, name: str, failed_above: Mapping[str, str], now: Now) -> CandidateTurn:
    slot = board.slots[name]
    if board.upstream_busy(board.stages[name]):
        return CandidateTurn.WAIT  # checked once everything upstream of it has settled
    if name in failed_above:
        return CandidateTurn.BLOCK
    if slot.guard.suspected(slot.forced):
        return CandidateTurn.HOLD if slot.guard.confirmed(now.mono) else CandidateTurn.PAUSE
    return CandidateTurn.CHECK


def next_wake(board: Board, now: Now) -> float:
    """Seconds until a TTL stage is due, a failed TTL stage's backoff ends, or a looping stage's
    pause is over (inf: never)."""
    soonest = float("inf")
    for name in board.by_state[SlotState.LOOPING]:
        check_at = board.slots[name].guard.check_at
        if check_at is not None:
            soonest = min(soonest, check_at - now.mono)
    for name in board.ttl_stages:
        slot, ttl_s = board.slots[name], board.stages[name].ttl_s
        assert ttl_s is not None
        if slot.state is SlotState.IDLE:
            soonest = min(soonest, ttl_due_at(slot.entry_mtime, ttl_s, now.wall) - now.wall)
        elif slot.state is SlotState.FAILED and slot.failure.retry_at is not None:
            soonest = min(soonest, slot.failure.retry_at - now.mono)
    return max(0.0, soonest)


def idle(board: Board) -> Idle:
    return Idle(
        fresh=len(board.by_state[SlotState.IDLE]),
        failing=tuple(board.in_state(SlotState.FAILED)),
        blocked=tuple(board.in_state(SlotState.BLOCKED)),
        looping=tuple(board.in_state(SlotState.LOOPING)),
    )


class Coordinator:
    """Decides, for every stage of a pipeline, what happens next."""

    def __init__(self, plan: Plan) -> None:
        self.board = board = Board(plan)
        # The board's own dicts and set, shared (never replaced), for those who read them.
        self.slots, self.by_state, self.unchecked = board.slots, board.by_state, board.unchecked
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
            if name in self.slots:
                self._touch(name, touch, actions)
        return actions + self._dispatch(now)

    def invalidated(self, name: str, now: Now) -> list[Action]:
        """A person removed the stage's entry: run it, now or once its current run ends."""
        slot = self.slots.get(name)
        if slot is not None:
            self.busy_since_idle = True
            slot.forced = True
            slot.guard.forget()
            self._nudge(name, Nudge.INVALIDATE)
        return self._dispatch(now)

    def rescan(self, now: Now) -> list[Action]:
        """Distrust the watcher: check every key (held and blocked stages too: the key decides)."""
        for name in self.slots:
            self._nudge(name, Nudge.RECHECK)
        return self._dispatch(now)

    def due(self, entry_mtimes: Mapping[str, float | None], now: Now) -> list[Action]:
        """The wake-up came: TTL stages whose entry expired, failed stages whose backoff ended,
        looping stages whose pause is over."""
        actions: list[Action] = []
        for name, slot in self.slots.items():
            if name in entry_mtimes and slot.state not in (SlotState.RUNNING, SlotState.CHECKING):
                slot.entry_mtime = entry_mtimes[name]  # read again: an `accept` may have refreshed it
            reason = due_reason(slot, self.board.stages[name], now)
            if reason is DueReason.TTL:
                actions.append(Say("debug", "ttl.due", {"stage": name}))
            elif reason is DueReason.RETRY:
                actions.append(Say("debug", "stage.retrying", {"stage": name, "failures": slot.failures}))
            elif reason is DueReason.LOOP_PAUSE:
                slot.guard.resume()
            if reason is not None:
                self.board.candidate(name)
        return actions + self._dispatch(now)

    def checked(self, name: str, job: int, verdict: Verdict, now: Now) -> list[Action]:
        return self.checked_many([(name, job, verdict)], now)

    def checked_many(self, results: Iterable[tuple[str, int, Verdict]], now: Now) -> list[Action]:
        """Checks that came back together, taken in order, then one dispatch for them all:
        a catch-up of thousands costs a dispatch per batch, not per stage."""
        actions: list[Action] = []
        for name, job, verdict in results:
            slot = self.slots.get(name)
            if slot is not None and slot.job == job and slot.state is SlotState.CHECKING:
                self._take_check(name, slot, verdict, now, actions)
            # else: a check of a stage since removed, or of a stop
        return actions + self._dispatch(now)

    def finished(self, name: str, job: int, result: Finished, now: Now) -> list[Action]:
        """A run ended (a removed stage's too: only then may what replaces it start)."""
        if self.retiring.get(name) == job:
            del self.retiring[name]
            return self._dispatch(now)
        slot = self.slots.get(name)
        if slot is None or slot.job != job or slot.state is not SlotState.RUNNING:
            return self._dispatch(now)
        slot.job, slot.cancel_sent, slot.run_ended_wall = None, False, now.wall
        actions: list[Action] = []
        outcome = run_outcome(result.outcome, self.stopping)
        self.board.move(name, AFTER_RUN[outcome])
        if outcome is RunOutcome.STOPPING:
            return actions + self._dispatch(now)
        if outcome is RunOutcome.SUCCEEDED:
            slot.entry_mtime = result.entry_mtime
            self._recovered(name)
            for downstream in self.board.stages[name].downstream:
                if downstream in self.slots:
                    self._nudge(downstream, Nudge.RECHECK)
        elif outcome is RunOutcome.CANCELLED:
            slot.guard.trigger = Trigger.NONE  # a run cut short says nothing of its own writes
        else:
            self._fail(name, result.key, now, actions)
        if slot.dirty:
            slot.dirty = False
            self.board.candidate(name)
        slot.guard.run_ended(now.mono)
        return actions + self._dispatch(now)

    def reloaded(self, plan: Plan, changed: Iterable[str], now: Now) -> list[Action]:
        """A new pipeline: removed stages' runs are stopped before anything starts; new and
        changed stages are checked; what a removed or changed stage blocked is checked again."""
        actions: list[Action] = []
        new = {stage.name for stage in plan.stages}
        changed = set(changed)
        for name, slot in self.board.reshape(plan).items():
            if slot.state is SlotState.RUNNING and slot.job is not None:
                self.retiring[name] = slot.job
                actions.append(Cancel(name, slot.job))
        for name in changed & new:
            slot = self.slots[name]
            slot.failure.forget()  # its old failure said nothing about its new settings
            slot.guard.self_runs = 0
            self._nudge(name, Nudge.RELOAD)
        for name in list(self.by_state[SlotState.BLOCKED]):
            # Its blocker may be gone, changed, or no longer upstream of it.
            slot = self.slots[name]
            if slot.blocked_by not in new or slot.blocked_by in changed:
                slot.blocked_by = None
            self.board.candidate(name)
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
        return self.board.in_state(*states)

    @property
    def settled(self) -> bool:
        return not self.retiring and self.board.settled()

    # --- rules ---

    def _nudge(self, name: str, nudge: Nudge) -> None:
        slot = self.slots[name]
        effect = ON_NUDGE[nudge][slot.state]
        if effect is Effect.CHECK:
            self.board.candidate(name)
        elif effect is Effect.AFTER:
            slot.dirty = True

    def _touch(self, name: str, touch: Touch, actions: list[Action]) -> None:
        """Something the stage reads changed: by its own last run, or from outside."""
        slot = self.slots[name]
        running = slot.state is SlotState.RUNNING
        by_self = written_by_own_run(touch, slot.run_started_wall, slot.run_ended_wall, running)
        slot.guard.changed(touch.path, by_self)
        restart = running and self.board.stages[name].restart_when_busy
        if restart and not slot.cancel_sent and slot.job is not None:
            slot.cancel_sent = True
            actions.append(Say("info", "stage.restarting", {"stage": name}))
            actions.append(Cancel(name, slot.job))
        if slot.state is SlotState.LOOPING and not by_self:
            actions.append(Say("info", "stage.released", {"stage": name, "path": touch.path}))
        self._nudge(name, Nudge.OWN if by_self else Nudge.OUTSIDE)

    def _take_check(self, name: str, slot: Slot, verdict: Verdict, now: Now, actions: list[Action]) -> None:
        job, slot.job = slot.job, None
        self.board.checked_once(name)
        if verdict.entry_mtime is not None or not verdict.run:
            slot.entry_mtime = verdict.entry_mtime
        held = None
        if verdict.run and slot.failures and not slot.forced:
            held = slot.failure.held(verdict.key, self.board.stages[name].ttl_s, now.mono)
        outcome = check_outcome(verdict, slot.dirty, held is not None)
        self.board.move(name, AFTER_CHECK[outcome])
        if outcome is CheckOutcome.ERROR:
            actions.append(Say("error", "stage.check_failed", {"stage": name, "error": verdict.error}))
            self._fail(name, None, now, actions)
        elif outcome is CheckOutcome.CHANGED:
            slot.dirty = False  # what it hashed may be out of date: hash again
        elif outcome is CheckOutcome.FRESH:
            slot.blocked_by, slot.forced = None, False
            slot.guard.settled()
            if slot.failures:
                self._recovered(name)
        elif outcome is CheckOutcome.HELD:
            slot.guard.trigger = Trigger.NONE
            actions.append(Say("debug", "stage.held", {"stage": name, "reason": held}))
        else:
            slot.job, slot.blocked_by = job, None

    def _fail(self, name: str, key: str | None, now: Now, actions: list[Action]) -> None:
        """The stage failed (it is FAILED already): its backoff starts, and what is waiting
        below it is blocked. `forced` is kept: an invalidate during the run still asks for
        another; the guard's count too: a failing run can loop on itself."""
        slot = self.slots[name]
        ttl_s = self.board.stages[name].ttl_s
        retry_in_s = slot.failure.failed(key, ttl_s, now.mono)
        slot.guard.trigger = Trigger.NONE
        if ttl_s is not None:  # live data may come back: said, so nobody waits a whole ttl for it
            actions.append(Say("info", "stage.retry_scheduled", {"stage": name, "retry_in_s": retry_in_s}))
        waiting = self.board.below(name) & self.by_state[SlotState.CANDIDATE]
        for downstream in self.board.in_order(waiting):
            self._block(downstream, name, actions)

    def _block(self, name: str, blocker: str, actions: list[Action]) -> None:
        if self.board.block(name, blocker):  # said once, not at every change while blocked
            actions.append(Say("warning", "stage.blocked", {"stage": name, "by": blocker}))

    def _recovered(self, name: str) -> None:
        """The stage is fresh again: forget its failures, and check what it blocked."""
        self.slots[name].failure.forget()
        self.board.unblock(name)

    def _dispatch(self, now: Now) -> list[Action]:
        actions: list[Action] = []
        if self.stopping:
            if not self.exited and not self.retiring and not self.by_state[SlotState.RUNNING]:
                self.exited = True
                actions.append(Exit())
            return actions
        for name in self.board.in_order(self.by_state[SlotState.READY]):
            self._ready_turn(name, now, actions)
        self._hand_out_checks(now, actions)
        actions.append(Wake(next_wake(self.board, now)))
        if self.settled and self.busy_since_idle:
            self.busy_since_idle = False
            actions.append(idle(self.board))
        return actions

    def _ready_turn(self, name: str, now: Now, actions: list[Action]) -> None:
        slot = self.slots[name]
        turn = ready_turn(self.board, name, bool(self.retiring))
        if turn is ReadyTurn.RECHECK:
            self.board.candidate(name)
        elif turn is ReadyTurn.START:
            assert slot.job is not None
            self.board.move(name, READY_TURN[turn])
            slot.run_started = now.mono
            slot.run_started_wall, slot.run_ended_wall = now.wall, None
            slot.dirty = slot.forced = False
            slot.guard.run_starts()
            self.busy_since_idle = True
            actions.append(Start(name, slot.job))

    def _hand_out_checks(self, now: Now, actions: list[Action]) -> None:
        """Candidates with nothing busy upstream are checked, in graph order, up to
        CHECKS_IN_FLIGHT. Only those none of whose direct upstream is busy are looked at (in a
        catch-up of a chain, one); one blocked or held lets those below it be looked at next."""
        failed_above = self.board.first_failed_above() if self.by_state[SlotState.FAILED] else {}
        fresh = self.board.in_order(self.board.free)
        while fresh:
            # A stage blocked or held is busy no more: those below it, skipped in this pass or
            # freed by it, are looked at again (each pass moves one candidate on at least).
            left_busy = False
            for name in fresh:
                if len(self.by_state[SlotState.CHECKING]) >= CHECKS_IN_FLIGHT:
                    return  # the rest wait for a check to come back
                if name not in self.board.free:
                    continue  # moved on since this pass began
                turn = candidate_turn(self.board, name, failed_above, now)
                left_busy |= turn in (CandidateTurn.BLOCK, CandidateTurn.PAUSE, CandidateTurn.HOLD)
                self._take_turn(name, turn, failed_above, now, actions)
            fresh = self.board.in_order(self.board.free) if left_busy else []

    def _take_turn(
        self, name: str, turn: CandidateTurn, failed_above: Mapping[str, str], now: Now, actions: list[Action]
    ) -> None:
        slot = self.slots[name]
        if turn is CandidateTurn.WAIT:
            return
        if turn is CandidateTurn.BLOCK:
            self._block(name, failed_above[name], actions)
            return
        self.board.move(name, CANDIDATE_TURN[turn])
        if turn is CandidateTurn.PAUSE:
            slot.guard.pause(now.mono)
        elif turn is CandidateTurn.HOLD:
            slot.guard.hold()
            fields = {"stage": name, "path": slot.guard.trigger_path, "runs": slot.guard.self_runs + 1}
            actions.append(Say("warning", "stage.self_triggering", fields))
        else:
            self._next_job += 1
            slot.job = self._next_job
            actions.append(Check(name, slot.job, slot.forced, slot.catching_up))


def status_text(coordinator: Coordinator, now: Now) -> str:
    """One line for `systemctl status`: what the daemon is doing now."""
    total = len(coordinator.slots)
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
