"""Where a stage stands, in the words people read: from the records or from a daemon's slot.

`status` reads the records; the preview asks the daemon. Both answers are a `StageState`, so
`stagewatch status`, the preview's status page and its JSON speak one vocabulary: fresh, stale,
never run, running, failed, blocked, looping.
"""

from __future__ import annotations

from stagewatch.daemon.events import SlotState
from stagewatch.entry import CorruptEntry, Entry
from stagewatch.failure import explanation
from stagewatch.freshness import Decision, LastRunUnfinished
from stagewatch.stage import StageState
from stagewatch.state import Attempt


def recorded_standing(
    decision: Decision, entry: Entry | CorruptEntry | None, attempt: Attempt | None, locked: bool
) -> tuple[StageState, list[str]]:
    """A stage's standing from what is on disk (its decision, entry and last attempt), with the
    reasons said to people; `locked`: a stagewatch holds the pipeline, so a "running" attempt is live."""
    reasons = [str(reason) for reason in decision.reasons]
    if attempt is not None and attempt.result is StageState.RUNNING and locked:
        return StageState.RUNNING, reasons
    if attempt is not None and attempt.result is StageState.FAILED and decision.run:
        said = explanation(attempt.error, attempt.tail)
        failed = f"last run failed: {attempt.error}" + (f": {said}" if said else "")
        # "its last run failed or was interrupted" says again what the first reason says better.
        others = [str(reason) for reason in decision.reasons if not isinstance(reason, LastRunUnfinished)]
        return StageState.FAILED, [failed, *others]
    if entry is None and decision.run:
        return StageState.NEVER_RUN, reasons
    return (StageState.STALE if decision.run else StageState.FRESH), reasons


_SLOT_STANDING: dict[SlotState, StageState] = {
    # Its last check found nothing to do: its entry vouches for its outputs. A failed run leaves
    # its entry pending, so an idle slot whose last attempt failed has had its entry recorded
    # since (an accept): fresh, as `status` says whenever the decision is not to run.
    SlotState.IDLE: StageState.FRESH,
    # A change touched what it reads, and nothing vouches for it until its key is computed:
    # saying fresh would claim what nobody has checked yet.
    SlotState.CANDIDATE: StageState.STALE,
    SlotState.CHECKING: StageState.STALE,
    # Its key differs from its entry's: stale, waiting for a free job.
    SlotState.READY: StageState.STALE,
    SlotState.RUNNING: StageState.RUNNING,
    # Held until a change (or its backoff): it stays failed, as `status` says of a failed stage.
    SlotState.FAILED: StageState.FAILED,
    # Not "stale": the build report's words, which say why it does not run.
    SlotState.BLOCKED: StageState.BLOCKED,
    SlotState.LOOPING: StageState.LOOPING,
}

_STILL_FAILED = frozenset({SlotState.CANDIDATE, SlotState.CHECKING, SlotState.READY})
"""Slots about to run (or to be checked) that have not succeeded since their last attempt failed."""


def slot_standing(slot: SlotState, last_attempt: StageState | None = None) -> StageState:
    """A daemon slot's state in people's words; `last_attempt` is state.json's last result for it.

    A stage whose last attempt failed and that waits for a check or a job is still failed, as
    `status` calls a failed stage that would run; the slot's own word says what happens next.
    """
    if slot in _STILL_FAILED and last_attempt is StageState.FAILED:
        return StageState.FAILED
    return _SLOT_STANDING[slot]
