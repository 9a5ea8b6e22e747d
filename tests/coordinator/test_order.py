"""A stage waiting for a free job never starts while a stage upstream of it is being checked or
runs (DESIGN §3): the coordinator's transitions, with plain values."""

from __future__ import annotations

import pytest

from stagewatch.daemon.coordinator import Coordinator
from stagewatch.daemon.events import Check, Plan, SlotState, StagePlan, Start, Touch
from tests.helpers.coordinator import OK, STALE, Clock, of, settle_fresh

pytestmark = pytest.mark.timeout(10)


def upstream_edit_while_downstream_waits(jobs: int) -> tuple[Coordinator, Clock, list[str]]:
    """up -> down, and `busy` stages filling every job; `down` becomes READY, then `up` is edited."""
    busy = [f"busy{index}" for index in range(jobs)]
    plan = Plan(
        (
            StagePlan("up", frozenset(), frozenset({"down"})),
            StagePlan("down", frozenset({"up"}), frozenset()),
            *(StagePlan(name, frozenset(), frozenset()) for name in busy),
        ),
        jobs,
    )
    coordinator, clock = Coordinator(plan), Clock()
    settle_fresh(coordinator, clock)
    for name in busy:
        check = of(Check, coordinator.changed({name: Touch(f"{name}.txt")}, clock.now()))[0]
        assert of(Start, coordinator.checked(name, check.job, STALE, clock.now()))
    check = of(Check, coordinator.changed({"down": Touch("down.txt")}, clock.now()))[0]
    coordinator.checked("down", check.job, STALE, clock.now())
    assert coordinator.slots["down"].state is SlotState.READY  # stale, every job taken
    assert of(Check, coordinator.changed({"up": Touch("up.txt")}, clock.now(), notable=True))
    return coordinator, clock, busy


def test_a_ready_stage_does_not_start_while_its_upstream_is_checked() -> None:
    coordinator, clock, busy = upstream_edit_while_downstream_waits(jobs=1)
    assert coordinator.slots["up"].state is SlotState.CHECKING
    actions = coordinator.finished(busy[0], coordinator.slots[busy[0]].job or 0, OK, clock.now())
    assert [a.name for a in of(Start, actions)] != ["down"], "down started while up was being checked"
    assert coordinator.slots["down"].state is not SlotState.RUNNING


def test_a_ready_stage_does_not_start_while_its_upstream_runs() -> None:
    coordinator, clock, busy = upstream_edit_while_downstream_waits(jobs=2)
    up_check = coordinator.slots["up"].job or 0
    coordinator.checked("up", up_check, STALE, clock.now())  # up is stale too, and waits
    started = of(Start, coordinator.finished(busy[0], coordinator.slots[busy[0]].job or 0, OK, clock.now()))
    assert [a.name for a in started] == ["up"]
    started = of(Start, coordinator.finished(busy[1], coordinator.slots[busy[1]].job or 0, OK, clock.now()))
    assert "down" not in [a.name for a in started], "down started while up was running"
    assert coordinator.slots["up"].state is SlotState.RUNNING
