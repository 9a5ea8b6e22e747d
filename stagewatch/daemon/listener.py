"""What a companion on the daemon's loop hears: stages starting and ending, rounds settling.

The daemon calls a listener from its loop's thread, so a listener never blocks (nothing slower
than a `stat`: docs/design.md#the-loop-never-blocks) and does its I/O on its own tasks or
threads. A listener's bug is logged and never stops the daemon. `stagewatch serve` is the one listener today.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from stagewatch.stage import StageState

if TYPE_CHECKING:
    from stagewatch.daemon.view import DaemonView


class DaemonListener(Protocol):
    """Told what the daemon does, as it does it."""

    async def attached(self, daemon: DaemonView) -> None:
        """On the daemon's loop, before it watches: start what runs beside it, reading the
        daemon through its view."""

    def stage_started(self, name: str) -> None:
        """A run of the stage has started."""

    def stage_finished(self, name: str, outcome: StageState) -> None:
        """A run of the stage has ended: SUCCEEDED, FAILED or CANCELLED."""

    def stages_moved(self) -> None:
        """The daemon acted on an event: some stage may be busy, or idle, now."""

    def pipeline_checked(self, problems: tuple[str, ...]) -> None:
        """The pipeline file was read again: what is wrong with it (the running pipeline is
        kept), or nothing."""

    def round_settled(self) -> None:
        """Every stage is idle (or failed, blocked, held) after some work."""

    async def detached(self) -> None:
        """The daemon is stopping: stop what runs beside it."""
