"""The self-trigger guard: telling a stage's own writes from a person's, and holding a stage
whose runs keep changing what it reads.

A change seen while a stage's run was under way (by its files' times, not the events' times:
a run's own events may arrive after it ended) is most likely its own doing, but a person saving
during a run looks the same. So it takes SELF_TRIGGER_RUNS such runs in a row to suspect a
loop; then the stage is paused LOOP_PAUSE_S and run once more, and only if that run's own
change comes back is it held for good, until a change from outside. Pure: times come in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stagewatch.daemon.events import Touch

# A stage whose runs keep being retriggered by files written while it ran is writing something
# it reads: after this many such runs in a row it is held (docs/design.md#self-triggering-stages).
SELF_TRIGGER_RUNS = 5
# Before holding a stage for good, it is left alone this long and run once more: a person who
# saved during each of its last runs gets their last save built; a loop shows itself again.
LOOP_PAUSE_S = 2.0
# Filesystem timestamps come from a coarse kernel clock, up to a tick behind the real time:
# a write just after a run started may be dated just before it.
MTIME_SLACK_S = 0.01


class Trigger(enum.Enum):
    """Who made a stage a candidate, as far as timing tells."""

    NONE = 0
    SELF = 1  # only changes seen while it ran, or just after
    OUTSIDE = 2


def written_by_own_run(
    touch: Touch, run_started_wall: float | None, run_ended_wall: float | None, running: bool
) -> bool:
    """Whether every file of a change was written while the stage's last run was under way."""
    end = float("inf") if running else run_ended_wall
    return (
        run_started_wall is not None
        and end is not None
        and touch.written_from is not None
        and touch.written_to is not None
        and touch.written_from >= run_started_wall - MTIME_SLACK_S
        and touch.written_to <= end
    )


@dataclass(slots=True)
class LoopGuard:
    """One stage's record of what retriggered it, and of the pause before it is held."""

    trigger: Trigger = Trigger.NONE
    trigger_path: str | None = None
    self_runs: int = 0  # runs in a row started by the stage's own writes
    check_at: float | None = None  # monotonic: the one more run before holding it for good
    confirming: bool = False  # that run is under way
    confirmed_until: float | None = None  # monotonic: its own change again until then holds it

    def changed(self, path: str, by_self: bool) -> None:
        """Something it reads changed; the first change since its last run names the trigger."""
        if by_self:
            if self.trigger is Trigger.NONE:
                self.trigger, self.trigger_path = Trigger.SELF, path
        else:
            self.trigger, self.trigger_path = Trigger.OUTSIDE, path
            self.forget()

    def forget(self) -> None:
        """A change from outside, or an invalidate: no loop is suspected any more."""
        self.self_runs, self.confirmed_until, self.check_at = 0, None, None

    def settled(self) -> None:
        """Its check found it fresh: whatever retriggered it changed nothing."""
        self.trigger, self.self_runs, self.confirmed_until = Trigger.NONE, 0, None

    def run_starts(self) -> None:
        if self.trigger is Trigger.SELF:
            self.self_runs += 1
        elif self.trigger is Trigger.OUTSIDE:
            self.self_runs = 0
        self.trigger = Trigger.NONE

    def run_ended(self, now_mono: float) -> None:
        if self.confirming:
            # The run after the pause has ended: its own change, if it comes, holds it now.
            self.confirming = False
            self.confirmed_until = now_mono + LOOP_PAUSE_S

    def suspected(self, forced: bool) -> bool:
        """Whether a candidate is retriggering itself (an invalidate runs it whatever)."""
        return self.trigger is Trigger.SELF and self.self_runs >= SELF_TRIGGER_RUNS and not forced

    def confirmed(self, now_mono: float) -> bool:
        """Whether a suspected loop is one: the run after its pause retriggered it again."""
        return self.confirmed_until is not None and now_mono <= self.confirmed_until

    def pause(self, now_mono: float) -> None:
        """Left alone LOOP_PAUSE_S, then run once more."""
        self.check_at = now_mono + LOOP_PAUSE_S

    def hold(self) -> None:
        """Held for good, until a change from outside."""
        self.check_at, self.confirmed_until = None, None

    def pause_over(self, now_mono: float) -> bool:
        return self.check_at is not None and self.check_at <= now_mono

    def resume(self) -> None:
        """The pause is over: one more run, whose own change alone would hold it."""
        self.check_at, self.confirming, self.trigger = None, True, Trigger.NONE
