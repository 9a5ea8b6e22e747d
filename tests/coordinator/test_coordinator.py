"""The coordinator's transitions with plain values and a fake clock: events in, actions out."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest

import stagewatch
from stagewatch.daemon.coordinator import (
    AFTER_CHECK,
    AFTER_RUN,
    CANDIDATE_TURN,
    ON_NUDGE,
    READY_TURN,
    CandidateTurn,
    CheckOutcome,
    Coordinator,
    Effect,
    Nudge,
    ReadyTurn,
    RunOutcome,
    next_wake,
    status_text,
)
from stagewatch.daemon.events import (
    Action,
    Cancel,
    Check,
    Exit,
    Finished,
    Idle,
    Plan,
    SlotState,
    StagePlan,
    Start,
    Touch,
    Verdict,
    Wake,
)
from stagewatch.daemon.loops import LOOP_PAUSE_S, SELF_TRIGGER_RUNS
from tests.helpers.coordinator import (
    CANCELLED,
    FAILED,
    FRESH,
    OK,
    STALE,
    Clock,
    chain,
    job_of,
    of,
    run_to_start,
    said,
    settle_fresh,
    touch,
)

pytestmark = pytest.mark.timeout(10)


# --- start and the catch-up ---


def test_start_checks_upstream_first_and_downstream_only_once_it_settled() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a", "b"))
    actions = coordinator.start(clock.now())
    assert [(c.name, c.catching_up) for c in of(Check, actions)] == [("a", True)]
    actions = coordinator.checked("a", job_of(actions, "a"), FRESH, clock.now())
    assert [c.name for c in of(Check, actions)] == ["b"]
    actions = coordinator.checked("b", job_of(actions, "b"), FRESH, clock.now())
    assert of(Idle, actions) == [Idle(fresh=2, failing=(), blocked=(), looping=())]


def test_a_stale_stage_starts_and_its_downstream_is_checked_after_it() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a", "b"))
    job = run_to_start(coordinator, clock, "a", coordinator.start(clock.now()))
    assert coordinator.slots["a"].state is SlotState.RUNNING
    assert coordinator.slots["b"].state is SlotState.CANDIDATE
    actions = coordinator.finished("a", job, OK, clock.now())
    assert [c.name for c in of(Check, actions)] == ["b"]


def test_no_more_runs_than_jobs() -> None:
    clock = Clock()
    plan = Plan(tuple(StagePlan(n, frozenset(), frozenset()) for n in "abc"), jobs=2)
    coordinator = Coordinator(plan)
    actions = coordinator.start(clock.now())
    starts: list[Action] = []
    for check in of(Check, actions):
        starts += of(Start, coordinator.checked(check.name, check.job, STALE, clock.now()))
    assert [s.name for s in starts] == ["a", "b"]
    assert coordinator.slots["c"].state is SlotState.READY
    actions = coordinator.finished("a", job_of(starts, "a"), OK, clock.now())
    assert [s.name for s in of(Start, actions)] == ["c"]


# --- changes ---


def test_a_change_during_a_run_checks_the_stage_again_after_it() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a"))
    job = run_to_start(coordinator, clock, "a", coordinator.start(clock.now()))
    assert of(Check, coordinator.changed(touch("a", "in.txt", clock.wall + 0.5), clock.advance(1))) == []
    actions = coordinator.finished("a", job, OK, clock.advance(1))
    assert [c.name for c in of(Check, actions)] == ["a"]


def test_a_change_to_a_ready_stage_drops_its_prepared_key() -> None:
    clock = Clock()
    coordinator = Coordinator(Plan((StagePlan("a", frozenset(), frozenset()),), jobs=1))
    coordinator.slots["a"].state = SlotState.READY
    coordinator.slots["a"].job = 7
    actions = coordinator.changed(touch("a", "x", clock.wall), clock.now())
    assert [(c.name, c.job != 7) for c in of(Check, actions)] == [("a", True)]


def test_restart_on_busy_cancels_exactly_the_running_job_once() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a", restart=["a"]))
    job = run_to_start(coordinator, clock, "a", coordinator.start(clock.now()))
    first = coordinator.changed(touch("a", "x", clock.wall), clock.advance(0.1))
    second = coordinator.changed(touch("a", "x", clock.wall), clock.advance(0.1))
    assert of(Cancel, first) == [Cancel("a", job)]
    assert of(Cancel, second) == []  # one cancel per run
    actions = coordinator.finished("a", job, CANCELLED, clock.now())
    assert [c.name for c in of(Check, actions)] == ["a"]


def test_a_late_report_of_an_old_job_changes_nothing() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a"))
    job = run_to_start(coordinator, clock, "a", coordinator.start(clock.now()))
    coordinator.finished("a", job, OK, clock.now())
    coordinator.changed(touch("a", "x", clock.wall), clock.advance(5))
    assert of(Check, coordinator.finished("a", job, FAILED, clock.now())) == []
    assert coordinator.slots["a"].state is SlotState.CHECKING
    assert coordinator.slots["a"].failures == 0


# --- failures, blocking, holding ---


def test_a_failure_blocks_what_is_waiting_downstream_and_says_so_once() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a", "b", "c"))
    job = run_to_start(coordinator, clock, "a", coordinator.start(clock.now()))
    actions = coordinator.finished("a", job, FAILED, clock.now())
    assert [(s.fields["stage"], s.fields["by"]) for s in said(actions, "stage.blocked")] == [
        ("b", "a"),
        ("c", "a"),
    ]
    assert of(Idle, actions) == [Idle(fresh=0, failing=("a",), blocked=("b", "c"), looping=())]
    # Another change to a blocked stage is not worth another warning.
    again = coordinator.changed(touch("b", "x", clock.wall), clock.advance(5))
    assert said(again, "stage.blocked") == []
    assert coordinator.slots["b"].state is SlotState.BLOCKED


def test_a_failed_stage_is_held_until_its_key_changes() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a"))
    job = run_to_start(coordinator, clock, "a", coordinator.start(clock.now()))
    coordinator.finished("a", job, FAILED, clock.now())
    check = of(Check, coordinator.changed(touch("a", "x", clock.wall), clock.advance(60)))[0]
    held = coordinator.checked("a", check.job, STALE, clock.now())  # same key as the failure
    assert of(Start, held) == [] and said(held, "stage.held")
    check = of(Check, coordinator.changed(touch("a", "x", clock.wall), clock.advance(1)))[0]
    assert of(Start, coordinator.checked("a", check.job, Verdict(True, "k2"), clock.now()))


def test_recovery_unblocks_downstream() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a", "b"))
    job = run_to_start(coordinator, clock, "a", coordinator.start(clock.now()))
    coordinator.finished("a", job, FAILED, clock.now())
    check = of(Check, coordinator.changed(touch("a", "x", clock.wall), clock.advance(1)))[0]
    run = of(Start, coordinator.checked("a", check.job, Verdict(True, "k2"), clock.now()))[0]
    actions = coordinator.finished("a", run.job, OK, clock.now())
    assert [c.name for c in of(Check, actions)] == ["b"]
    assert coordinator.slots["a"].failures == 0


def test_an_invalidate_runs_a_held_stage_whatever_its_key() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a"))
    job = run_to_start(coordinator, clock, "a", coordinator.start(clock.now()))
    coordinator.finished("a", job, FAILED, clock.now())
    check = of(Check, coordinator.invalidated("a", clock.advance(1)))[0]
    assert check.force
    assert of(Start, coordinator.checked("a", check.job, STALE, clock.now()))


# --- time ---


def test_a_failed_ttl_stage_retries_after_its_backoff_not_its_ttl() -> None:
    clock, coordinator = Clock(), Coordinator(chain("fetch", ttl={"fetch": 3600.0}))
    job = run_to_start(coordinator, clock, "fetch", coordinator.start(clock.now()))
    actions = coordinator.finished("fetch", job, FAILED, clock.now())
    assert of(Wake, actions) == [Wake(30.0)]
    assert of(Check, coordinator.due({"fetch": clock.wall}, clock.advance(29))) == []
    check = of(Check, coordinator.due({"fetch": clock.wall}, clock.advance(1)))[0]
    job = job_of(coordinator.checked("fetch", check.job, STALE, clock.now()), "fetch")
    actions = coordinator.finished("fetch", job, FAILED, clock.now())
    assert of(Wake, actions) == [Wake(60.0)]  # 30 s, 1 min, 2 min, ...


def test_a_ttl_stage_is_due_at_entry_mtime_plus_ttl() -> None:
    clock, coordinator = Clock(), Coordinator(chain("fetch", ttl={"fetch": 600.0}))
    settle_fresh(coordinator, clock)  # entry written at wall 1000
    assert next_wake(coordinator.board, clock.now()) == 600.0
    assert of(Check, coordinator.due({"fetch": 1000.0}, clock.advance(599))) == []
    assert [c.name for c in of(Check, coordinator.due({"fetch": 1000.0}, clock.advance(1)))] == ["fetch"]


def test_an_entry_dated_in_the_future_is_due_now() -> None:
    clock, coordinator = Clock(), Coordinator(chain("fetch", ttl={"fetch": 600.0}))
    settle_fresh(coordinator, clock)
    clock.wall -= 3600  # the clock stepped back an hour
    assert [c.name for c in of(Check, coordinator.due({"fetch": 1000.0}, clock.now()))] == ["fetch"]


def test_the_entry_mtime_is_read_again_when_due() -> None:
    clock, coordinator = Clock(), Coordinator(chain("fetch", ttl={"fetch": 600.0}))
    settle_fresh(coordinator, clock)
    # An `accept` refreshed the entry 300 s in: not due at the old time.
    assert of(Check, coordinator.due({"fetch": 1300.0}, clock.advance(600))) == []


# --- invalidate during a run ---


def test_an_invalidate_during_a_run_runs_it_again_after_it_forced() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a"))
    job = run_to_start(coordinator, clock, "a", coordinator.start(clock.now()))
    assert of(Check, coordinator.invalidated("a", clock.advance(1))) == []
    actions = coordinator.finished("a", job, OK, clock.advance(1))
    assert [(c.name, c.force) for c in of(Check, actions)] == [("a", True)]


# --- reload ---


def test_a_removed_stages_run_is_cancelled_and_nothing_starts_before_it_stopped() -> None:
    clock, coordinator = Clock(), Coordinator(chain("old"))
    job = run_to_start(coordinator, clock, "old", coordinator.start(clock.now()))
    actions = coordinator.reloaded(chain("new"), changed=(), now=clock.now())
    assert of(Cancel, actions) == [Cancel("old", job)]
    check = of(Check, actions)[0]
    assert of(Start, coordinator.checked("new", check.job, STALE, clock.now())) == []
    assert coordinator.slots["new"].state is SlotState.READY
    actions = coordinator.finished("old", job, CANCELLED, clock.now())
    assert of(Start, actions) == [Start("new", check.job)]


def test_a_reload_that_removes_the_failed_blocker_checks_what_it_blocked() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a", "b"))
    job = run_to_start(coordinator, clock, "a", coordinator.start(clock.now()))
    coordinator.finished("a", job, FAILED, clock.now())
    assert coordinator.slots["b"].state is SlotState.BLOCKED
    actions = coordinator.reloaded(chain("b"), changed=(), now=clock.now())
    assert [c.name for c in of(Check, actions)] == ["b"]


def test_a_reload_that_changes_the_failed_stage_forgets_its_failure() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a", "b"))
    job = run_to_start(coordinator, clock, "a", coordinator.start(clock.now()))
    coordinator.finished("a", job, FAILED, clock.now())
    actions = coordinator.reloaded(chain("a", "b"), changed=["a"], now=clock.now())
    check = of(Check, actions)[0]
    assert check.name == "a" and coordinator.slots["a"].failures == 0
    assert of(Start, coordinator.checked("a", check.job, STALE, clock.now()))  # not held


def test_a_changed_running_stage_is_checked_again_after_its_run() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a"))
    job = run_to_start(coordinator, clock, "a", coordinator.start(clock.now()))
    coordinator.reloaded(chain("a"), changed=["a"], now=clock.now())
    assert [c.name for c in of(Check, coordinator.finished("a", job, OK, clock.now()))] == ["a"]


# --- self-triggering ---


def loop_runs(coordinator: Coordinator, clock: Clock, actions: list[Action], runs: int) -> list[Action]:
    """Runs that each write, while they run, a file the stage reads; the actions after the last."""
    for _ in range(runs):
        if not of(Check, actions):
            break
        job = run_to_start(coordinator, clock, "loop", actions)
        coordinator.changed(touch("loop", "data.txt", clock.wall + 0.01), clock.advance(0.02))
        actions = coordinator.finished("loop", job, OK, clock.advance(0.01))
    return actions


def test_a_stage_retriggered_by_its_own_runs_is_held_and_said_once() -> None:
    clock, coordinator = Clock(), Coordinator(chain("loop"))
    actions = loop_runs(coordinator, clock, coordinator.start(clock.now()), SELF_TRIGGER_RUNS + 1)
    # Left alone for a pause, then run once more: it changes its own input again.
    assert coordinator.slots["loop"].state is SlotState.LOOPING
    assert said(actions, "stage.self_triggering") == [] and of(Wake, actions) == [Wake(LOOP_PAUSE_S)]
    actions = loop_runs(coordinator, clock, coordinator.due({}, clock.advance(LOOP_PAUSE_S)), 1)
    assert coordinator.slots["loop"].state is SlotState.LOOPING
    warnings = said(actions, "stage.self_triggering")
    assert [(w.fields["stage"], w.fields["path"]) for w in warnings] == [("loop", "data.txt")]
    assert of(Idle, actions)[0].looping == ("loop",)
    assert of(Check, coordinator.due({}, clock.advance(3600))) == []  # held for good
    # A change from outside (written while it was not running) releases it.
    actions = coordinator.changed(touch("loop", "data.txt", clock.wall), clock.advance(5))
    assert said(actions, "stage.released") and of(Check, actions)


def test_a_person_saving_during_every_run_gets_the_last_save_built() -> None:
    clock, coordinator = Clock(), Coordinator(chain("loop"))
    loop_runs(coordinator, clock, coordinator.start(clock.now()), SELF_TRIGGER_RUNS + 1)
    assert coordinator.slots["loop"].state is SlotState.LOOPING
    # The person stopped typing: the run after the pause changes nothing, and all is quiet.
    job = run_to_start(coordinator, clock, "loop", coordinator.due({}, clock.advance(LOOP_PAUSE_S)))
    actions = coordinator.finished("loop", job, OK, clock.advance(0.3))
    assert coordinator.slots["loop"].state is SlotState.IDLE
    assert said(actions, "stage.self_triggering") == []
    # Saves during runs again, later: another pause and another run, never a hold at once.
    clock.advance(60)
    actions = loop_runs(
        coordinator, clock, coordinator.changed(touch("loop", "x", clock.wall), clock.now()), 2
    )
    assert said(actions, "stage.self_triggering") == []


def test_changes_seen_between_runs_never_count_as_self_caused() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a"))
    actions = coordinator.start(clock.now())
    for _ in range(SELF_TRIGGER_RUNS * 2):
        job = run_to_start(coordinator, clock, "a", actions)
        coordinator.finished("a", job, OK, clock.advance(0.1))
        actions = coordinator.changed(touch("a", "page.md", clock.wall + 0.01), clock.advance(0.02))
    assert coordinator.slots["a"].state is SlotState.CHECKING


# --- stop ---


def test_stop_cancels_every_run_and_exits_once_they_ended() -> None:
    clock = Clock()
    plan = Plan(tuple(StagePlan(n, frozenset(), frozenset()) for n in "ab"), jobs=2)
    coordinator = Coordinator(plan)
    actions = coordinator.start(clock.now())
    jobs = {}
    for check in of(Check, actions):
        jobs[check.name] = of(Start, coordinator.checked(check.name, check.job, STALE, clock.now()))[0].job
    actions = coordinator.stop(clock.now())
    assert sorted(of(Cancel, actions), key=lambda c: c.name) == [
        Cancel("a", jobs["a"]),
        Cancel("b", jobs["b"]),
    ]
    assert of(Exit, coordinator.finished("a", jobs["a"], CANCELLED, clock.now())) == []
    assert of(Exit, coordinator.finished("b", jobs["b"], CANCELLED, clock.now())) == [Exit()]


def test_stop_with_nothing_running_exits_at_once_and_starts_nothing_more() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a"))
    check = of(Check, coordinator.start(clock.now()))[0]
    assert of(Exit, coordinator.stop(clock.now())) == [Exit()]
    assert of(Start, coordinator.checked("a", check.job, STALE, clock.now())) == []


def test_status_text_says_what_happens() -> None:
    clock, coordinator = Clock(), Coordinator(chain("a", "b"))
    actions = coordinator.start(clock.now())
    assert status_text(coordinator, clock.now()) == "catching up 0/2"
    job = run_to_start(coordinator, clock, "a", actions)
    assert status_text(coordinator, clock.advance(4)) == "catching up 1/2"
    coordinator.finished("a", job, FAILED, clock.now())
    assert status_text(coordinator, clock.now()) == "1 stage failing: a"
    job = run_to_start(coordinator, clock, "a", coordinator.invalidated("a", clock.now()))
    assert status_text(coordinator, clock.advance(3)) == "running a (3 s)"


# --- the tables: every row, driven through the coordinator's events ---
#
# Each state is reached through events alone, with a stage "s" that has run once (so that a
# change written during its last run can be told from one from outside), below a stage "up"
# and beside a stage "other" (one job: a running "other" keeps a stale "s" ready).


def table_plan(state: SlotState) -> Plan:
    """A ready "s" reads nothing from "up": a rescan nudges "up" too, which would send any
    stage below it back to be checked when its turn comes."""
    below = state is not SlotState.READY
    stages = (
        StagePlan("other", frozenset(), frozenset()),
        StagePlan("up", frozenset(), frozenset({"s"} if below else ())),
        StagePlan("s", frozenset({"up"} if below else ()), frozenset()),
    )
    return Plan(stages, jobs=1)


def outside(*names: str) -> dict[str, Touch]:
    """A change to files written long before any run."""
    return {name: Touch(f"{name}.in", 1.0, 1.0) for name in names}


def run(
    coordinator: Coordinator, clock: Clock, name: str, actions: list[Action], result: Finished
) -> list[Action]:
    job = run_to_start(coordinator, clock, name, actions)
    return coordinator.finished(name, job, result, clock.advance(1.0))


def ran_once(state: SlotState = SlotState.IDLE) -> tuple[Coordinator, Clock, list[Action]]:
    clock, coordinator = Clock(), Coordinator(table_plan(state))
    started = coordinator.start(clock.now())
    coordinator.checked("other", job_of(started, "other"), FRESH, clock.now())
    actions = started + coordinator.checked("up", job_of(started, "up"), FRESH, clock.now())
    actions = run(coordinator, clock, "s", actions, OK)
    assert coordinator.slots["s"].state is SlotState.IDLE
    return coordinator, clock, actions


def into(state: SlotState) -> tuple[Coordinator, Clock]:
    """A coordinator whose stage "s" is in `state`, reached through events."""
    coordinator, clock, _ = ran_once(state)
    now = clock.advance(1.0)
    if state is SlotState.CANDIDATE:  # waiting for the check of "up"
        coordinator.changed(outside("up", "s"), now)
    elif state is SlotState.CHECKING:
        coordinator.changed(outside("s"), now)
    elif state is SlotState.READY:  # stale, while "other" has the one job
        actions = coordinator.changed(outside("other", "s"), now)
        coordinator.checked("other", job_of(actions, "other"), STALE, clock.now())
        coordinator.checked("s", job_of(actions, "s"), STALE, clock.now())
    elif state is SlotState.RUNNING:
        actions = coordinator.changed(outside("s"), now)
        run_to_start(coordinator, clock, "s", actions)
    elif state is SlotState.FAILED:
        run(coordinator, clock, "s", coordinator.changed(outside("s"), now), FAILED)
    elif state is SlotState.BLOCKED:  # "up" failed, and is being checked again after a change
        run(coordinator, clock, "up", coordinator.changed(outside("up", "s"), now), FAILED)
        coordinator.changed(outside("up"), clock.advance(1.0))
    elif state is SlotState.LOOPING:  # paused: its runs keep changing what it reads
        actions = coordinator.changed(outside("s"), now)
        for _ in range(SELF_TRIGGER_RUNS + 1):
            job = run_to_start(coordinator, clock, "s", actions)
            coordinator.changed(
                {"s": Touch("s.in", clock.wall + 0.01, clock.wall + 0.01)}, clock.advance(0.02)
            )
            actions = coordinator.finished("s", job, OK, clock.advance(0.01))
        clock.advance(LOOP_PAUSE_S / 2)  # its pause half over: a new one would show in its wake-up
    assert coordinator.slots["s"].state is state
    return coordinator, clock


def nudge(coordinator: Coordinator, clock: Clock, kind: Nudge, state: SlotState) -> list[Action]:
    now, slot = clock.now(), coordinator.slots["s"]
    if kind is Nudge.OUTSIDE:
        return coordinator.changed(outside("s"), now)
    if kind is Nudge.OWN:  # written while its last (or current) run was under way
        assert slot.run_started_wall is not None
        written = slot.run_started_wall + 0.005
        return coordinator.changed({"s": Touch("s.in", written, written)}, now)
    if kind is Nudge.RECHECK:
        return coordinator.rescan(now)
    if kind is Nudge.INVALIDATE:
        return coordinator.invalidated("s", now)
    return coordinator.reloaded(table_plan(state), ["s"], now)


@pytest.mark.parametrize(
    ("kind", "state", "effect"),
    [(kind, state, effect) for kind, row in ON_NUDGE.items() for state, effect in row.items()],
    ids=lambda value: value.name.lower(),
)
def test_each_nudge_in_each_state_does_what_the_table_says(
    kind: Nudge, state: SlotState, effect: Effect
) -> None:
    coordinator, clock = into(state)
    before = copy.deepcopy(coordinator.slots["s"])
    actions = nudge(coordinator, clock, kind, state)
    slot = coordinator.slots["s"]
    checks = [check for check in of(Check, actions) if check.name == "s"]
    if effect is Effect.CHECK:  # a candidate: checked now, or once "up" has settled
        assert (slot.state, bool(checks)) in {(SlotState.CHECKING, True), (SlotState.CANDIDATE, False)}
        assert not slot.dirty
    elif effect is Effect.AFTER:
        assert slot.state is state and slot.dirty and not checks
    else:
        assert slot == before and not checks


def test_the_nudge_table_has_a_row_for_every_nudge_and_a_column_for_every_state() -> None:
    assert set(ON_NUDGE) == set(Nudge)
    assert all(set(row) == set(SlotState) for row in ON_NUDGE.values())
    assert set(AFTER_CHECK) == set(CheckOutcome) and set(AFTER_RUN) == set(RunOutcome)
    assert set(CANDIDATE_TURN) == set(CandidateTurn) and set(READY_TURN) == set(ReadyTurn)


def settles(state: SlotState) -> set[SlotState]:
    """The state a slot moved to, or what the dispatch after it makes of it at once."""
    return {
        SlotState.CANDIDATE: {SlotState.CANDIDATE, SlotState.CHECKING},
        SlotState.READY: {SlotState.READY, SlotState.RUNNING},
    }.get(state, {state})


@pytest.mark.parametrize("outcome", list(CheckOutcome), ids=lambda outcome: outcome.name.lower())
def test_each_check_outcome_moves_the_slot_where_the_table_says(outcome: CheckOutcome) -> None:
    coordinator, clock, _ = ran_once()
    if outcome is CheckOutcome.HELD:  # failed with the key it has now
        run(coordinator, clock, "s", coordinator.changed(outside("s"), clock.advance(1.0)), FAILED)
    actions = coordinator.changed(outside("s"), clock.advance(1.0))
    job = job_of(actions, "s")
    if outcome is CheckOutcome.CHANGED:
        coordinator.changed(outside("s"), clock.advance(0.1))
    verdict = {
        CheckOutcome.ERROR: Verdict(run=True, key=None, error="cannot read s.in: Permission denied"),
        CheckOutcome.CHANGED: FRESH,
        CheckOutcome.FRESH: FRESH,
        CheckOutcome.HELD: STALE,
        CheckOutcome.STALE: STALE,
    }[outcome]
    actions = coordinator.checked("s", job, verdict, clock.now())
    assert coordinator.slots["s"].state in settles(AFTER_CHECK[outcome])
    if outcome is CheckOutcome.ERROR:  # a failed attempt, said as an error
        assert [say.fields["error"] for say in said(actions, "stage.check_failed")] == [verdict.error]
        assert coordinator.slots["s"].failures == 1
    if outcome is CheckOutcome.HELD:
        assert said(actions, "stage.held") and coordinator.slots["s"].failures == 1


@pytest.mark.parametrize("outcome", list(RunOutcome), ids=lambda outcome: outcome.name.lower())
def test_each_run_outcome_moves_the_slot_where_the_table_says(outcome: RunOutcome) -> None:
    coordinator, clock, _ = ran_once()
    job = run_to_start(coordinator, clock, "s", coordinator.changed(outside("s"), clock.advance(1.0)))
    if outcome is RunOutcome.STOPPING:
        assert Cancel("s", job) in coordinator.stop(clock.now())
    result = {
        RunOutcome.STOPPING: CANCELLED,
        RunOutcome.SUCCEEDED: OK,
        RunOutcome.CANCELLED: CANCELLED,
        RunOutcome.FAILED: FAILED,
    }[outcome]
    actions = coordinator.finished("s", job, result, clock.advance(1.0))
    assert coordinator.slots["s"].state in settles(AFTER_RUN[outcome])
    assert bool(of(Exit, actions)) is (outcome is RunOutcome.STOPPING)


def test_a_rescan_checks_every_stage_again_and_a_running_one_after_its_run() -> None:
    coordinator, clock = into(SlotState.RUNNING)
    actions = coordinator.rescan(clock.now())
    assert sorted(check.name for check in of(Check, actions)) == ["other", "up"]
    assert coordinator.slots["s"].dirty


COORDINATOR_MODULES = ("coordinator", "board", "loops", "backoff", "events")
# Modules that read or write files, sockets, processes, threads or clocks, or log.
DOES_IO = {
    "asyncio", "fcntl", "glob", "io", "logging", "multiprocessing", "pathlib", "select", "shutil",
    "signal", "socket", "sqlite3", "subprocess", "sys", "tempfile", "threading", "time", "concurrent",
    "aiohttp", "structlog", "watchdog", "importlib", "webbrowser", "urllib", "http",
}  # fmt: skip
# `os` only for its pure names (a path's separator, a path-like's string).
PURE_OS_NAMES = {"fspath", "sep", "PathLike"}


def test_the_coordinator_imports_nothing_that_does_io() -> None:
    """Its modules, and every stagewatch module they import however far, import no module that
    does I/O, and use `os` only for its pure names: the law in coordinator.py's header."""
    package = Path(stagewatch.__file__).parent
    seen: set[str] = set()
    pending = [f"stagewatch.daemon.{name}" for name in COORDINATOR_MODULES]
    found: list[str] = []
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        tree = ast.parse((package.parent / (module.replace(".", "/") + ".py")).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                if name.startswith("stagewatch"):
                    pending.append(name)
                elif name.split(".")[0] in DOES_IO:
                    found.append(f"{module} imports {name}")
            on_os = (
                isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
            )
            if on_os and node.attr not in PURE_OS_NAMES:
                found.append(f"{module} uses os.{node.attr}")
    assert "stagewatch.daemon.coordinator" in seen and found == []


def test_the_readme_shows_the_nudge_table_as_it_is() -> None:
    readme = (Path(stagewatch.__file__).parent.parent / "README.md").read_text()
    section = readme.split("### How the daemon decides", 1)[1].split("\n## ", 1)[0]
    shown = {}
    for line in (line for line in section.splitlines() if line.startswith("| `")):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        shown[Nudge(cells[0].split("`")[1])] = [Effect(cell) for cell in cells[1:]]
    assert shown == {kind: list(row.values()) for kind, row in ON_NUDGE.items()}
