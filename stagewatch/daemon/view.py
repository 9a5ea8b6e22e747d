"""What a companion of the daemon may read of it: the running pipeline and where its stages stand.

A companion (the preview) gets this view, never the daemon: it reads, and cannot reach the
coordinator, the timers or the watches. It is read on the loop's thread, like the listener's
calls; what worker threads change (the recorded attempts) comes as a copy.
"""

from __future__ import annotations

from collections.abc import Callable

from stagewatch.daemon.events import SlotState
from stagewatch.pipeline import Pipeline
from stagewatch.state import PipelineState, StateRecorder


class DaemonView:
    """The daemon, read-only, as its companions see it."""

    def __init__(
        self,
        pipeline: Callable[[], Pipeline],
        stage_states: Callable[[], dict[str, SlotState]],
        recorder: StateRecorder,
    ) -> None:
        self._pipeline = pipeline
        self._stage_states = stage_states
        self._recorder = recorder

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline running now: a reload replaces it, so ask each time."""
        return self._pipeline()

    def stage_states(self) -> dict[str, SlotState]:
        """Where each stage stands now."""
        return self._stage_states()

    def recorded(self) -> PipelineState:
        """Each stage's last attempt and last failure: a copy, whole, never mid-change."""
        return self._recorder.snapshot()
