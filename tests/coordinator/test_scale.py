"""At 2,000 stages the coordinator answers each event in far less than a WATCHDOG period: the
loop runs it, and a catch-up must not stop the pings (DESIGN §5, §9)."""

from __future__ import annotations

import time

import pytest

from stagewatch.daemon.coordinator import Coordinator
from stagewatch.daemon.events import Check, Plan, StagePlan
from tests.helpers.coordinator import FRESH, Clock, of

pytestmark = pytest.mark.timeout(60)

STAGES = 2000
# Generous: a linear coordinator takes a few milliseconds per event at this size.
BUDGET_S = 3.0


def test_a_catch_up_of_2000_stages_takes_the_coordinator_little_time() -> None:
    plan = Plan(tuple(StagePlan(f"s{index:04d}", frozenset(), frozenset()) for index in range(STAGES)), 8)
    coordinator, clock = Coordinator(plan), Clock()
    began = time.perf_counter()
    pending = of(Check, coordinator.start(clock.now()))
    answered = 0
    while pending:
        check = pending.pop(0)
        pending += of(Check, coordinator.checked(check.name, check.job, FRESH, clock.now()))
        answered += 1
        spent = time.perf_counter() - began
        # Every second of this is a second the daemon's loop sends no WATCHDOG=1.
        assert spent < BUDGET_S, f"{answered} of {STAGES} checks answered in {spent:.1f} s"
    assert answered == STAGES


def test_a_catch_up_of_a_2000_stage_chain_takes_the_coordinator_little_time() -> None:
    # Each stage reads the one before: nothing is held per stage that grows with the chain.
    names = [f"s{index:04d}" for index in range(STAGES)]
    plan = Plan(
        tuple(
            StagePlan(name, frozenset(names[max(0, i - 1) : i]), frozenset(names[i + 1 : i + 2]))
            for i, name in enumerate(names)
        ),
        8,
    )
    coordinator, clock = Coordinator(plan), Clock()
    began = time.perf_counter()
    pending = of(Check, coordinator.start(clock.now()))
    order = []
    while pending:
        check = pending.pop(0)
        order.append(check.name)
        pending += of(Check, coordinator.checked(check.name, check.job, FRESH, clock.now()))
        spent = time.perf_counter() - began
        assert spent < BUDGET_S, f"{len(order)} of {STAGES} checks answered in {spent:.1f} s"
    assert order == names  # one at a time, upstream first
