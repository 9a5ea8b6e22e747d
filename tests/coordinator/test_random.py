"""The coordinator on random pipelines, changes, reloads and outcomes: what it promises holds
at every step (nothing is checked or run while something upstream of it may still change; a
blocked stage has a failed stage upstream), and it always settles."""

from __future__ import annotations

import random

import pytest

from stagewatch.daemon.coordinator import Coordinator
from stagewatch.daemon.events import (
    BUSY,
    Action,
    Check,
    Finished,
    Plan,
    SlotState,
    StagePlan,
    Start,
    Touch,
    Verdict,
)
from stagewatch.stage import StageState
from tests.helpers.coordinator import Clock

pytestmark = pytest.mark.timeout(60)


def random_plan(rng: random.Random, size: int) -> tuple[Plan, dict[str, set[str]]]:
    """Stages in graph order, each reading from a few earlier ones; and each one's ancestors."""
    names = [f"s{index:02}" for index in range(size)]
    upstream: dict[str, set[str]] = {name: set() for name in names}
    for index, name in enumerate(names[1:], start=1):
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            upstream[name].add(names[rng.randrange(index)])
    downstream: dict[str, set[str]] = {name: set() for name in names}
    for name, ups in upstream.items():
        for up in ups:
            downstream[up].add(name)
    ancestors: dict[str, set[str]] = {}
    for name in names:  # graph order: every upstream stage's ancestors are known already
        ancestors[name] = set().union(*(ancestors[up] | {up} for up in upstream[name]))
    stages = tuple(StagePlan(n, frozenset(upstream[n]), frozenset(downstream[n])) for n in names)
    return Plan(stages, jobs=rng.choice((1, 2, 4))), ancestors


@pytest.mark.parametrize("seed", range(100))
def test_promises_hold_at_every_step_of_random_runs(seed: int) -> None:
    rng = random.Random(seed)
    plan, ancestors = random_plan(rng, rng.randint(5, 40))
    names = [stage.name for stage in plan.stages]
    coordinator, clock = Coordinator(plan), Clock()
    pending: list[Action] = list(coordinator.start(clock.now()))
    outcomes = {name: rng.random() for name in names}  # chance of failing when run
    touched_left = 30

    def check_promises(actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Check | Start):
                busy_above = [up for up in ancestors[action.name] if coordinator.slots[up].state in BUSY]
                assert not busy_above, f"{action} while {busy_above} upstream are busy"
        for name in coordinator.by_state[SlotState.BLOCKED]:
            # Blocked until what failed upstream succeeds: it may be trying again meanwhile.
            failed_or_trying = {SlotState.FAILED, *BUSY}
            above = [up for up in ancestors[name] if coordinator.slots[up].state in failed_or_trying]
            assert above, f"{name} blocked with nothing failed upstream"

    steps = 0
    while pending or touched_left:
        steps += 1
        assert steps < 20_000, "does not settle"
        clock.advance(1.0)
        if touched_left and (not pending or rng.random() < 0.2):
            touched_left -= 1
            name = rng.choice(names)
            if rng.random() < 0.2:  # the pipeline file saved with this stage's settings changed
                new = coordinator.reloaded(plan, [name], clock.now())
            else:
                touch = {name: Touch(f"/in/{name}", clock.wall - 50, clock.wall - 50)}
                new = coordinator.changed(touch, clock.now())
        else:
            action = pending.pop(rng.randrange(len(pending)))  # answers come in any order
            if isinstance(action, Check):
                stale = rng.random() < 0.5
                verdict = Verdict(run=stale, key="k", entry_mtime=None if stale else clock.wall)
                new = coordinator.checked_many([(action.name, action.job, verdict)], clock.now())
            elif isinstance(action, Start):
                failed = rng.random() < outcomes[action.name] * 0.5
                result = (
                    Finished(StageState.FAILED, "k")
                    if failed
                    else Finished(StageState.SUCCEEDED, "k", entry_mtime=clock.wall)
                )
                new = coordinator.finished(action.name, action.job, result, clock.now())
            else:
                continue
        check_promises(new)
        pending += [a for a in new if isinstance(a, Check | Start)]
    assert coordinator.settled
    states = {coordinator.slots[name].state for name in names}
    assert states <= {SlotState.IDLE, SlotState.FAILED, SlotState.BLOCKED}
    for name in coordinator.by_state[SlotState.BLOCKED]:
        assert any(coordinator.slots[up].state is SlotState.FAILED for up in ancestors[name]), name
