"""The daemon's watches at work: changes from watchdog's thread become debounced batches on the
loop, and the watches follow what the pipeline reads, updated on the I/O thread.

What a batch means for the stages is the shell's (it tells the coordinator); which folders to
watch is upkeep.py's. Watchdog's thread only hands changes and trouble to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

import structlog

from stagewatch.daemon.changes import Batch, Debounce, folder_identity, read_batch
from stagewatch.daemon.timers import Timers
from stagewatch.daemon.upkeep import WatchUpkeep, renewed_after
from stagewatch.daemon.watcher import Watcher
from stagewatch.daemon.workers import Workers
from stagewatch.lock import PipelineLock
from stagewatch.pipeline import Pipeline
from stagewatch.stage import Change

log = structlog.get_logger(__name__)


class WatchHost(Protocol):
    """The daemon, as its watches see it: what they read, and what they report."""

    @property
    def pipeline(self) -> Pipeline: ...

    @property
    def stopping(self) -> bool: ...

    def apply_batch(self, batch: Batch) -> None:
        """On the loop: what a burst of changes means, carried out."""

    def rescan(self) -> None:
        """On the loop: every stage checked again (events may have been lost)."""

    def ground_gone(self) -> None:
        """On the loop: the output folder was deleted or moved away."""


class Watching:
    """The watcher, the debounce and the watches' upkeep of one daemon, on its loop."""

    def __init__(
        self,
        host: WatchHost,
        loop: asyncio.AbstractEventLoop,
        workers: Workers,
        timers: Timers,
        upkeep: WatchUpkeep,
        lock: PipelineLock | None,
        ground: tuple[Path, tuple[int, int] | None],
    ) -> None:
        self.host = host
        self.loop = loop
        self.workers = workers
        self.timers = timers
        self.upkeep = upkeep
        self.lock = lock  # its owner record is written again when a folder came or went
        self.ground = ground  # the output folder, and its identity when the daemon started
        self.root = ground[0]
        self.debounce = Debounce()
        self.replan_queued = False
        self.watcher = Watcher(self._changes_from_thread, self._trouble_from_thread, host.pipeline.watcher)

    def start(self) -> Future[None]:
        """Watch; the watches are made to match the pipeline on the I/O thread (its future)."""
        self.watcher.start()
        return self.workers.io.submit(lambda: self.replan(()))

    @property
    def watched(self) -> dict[str, bool]:
        return self.watcher.watched

    def stop(self) -> None:
        """Off the loop: watchdog's threads are joined."""
        self.watcher.stop()

    # --- the watches ---

    def replan_soon(self) -> None:
        """One watch update for however many asks come before the I/O thread gets to it."""
        if self.replan_queued:
            return
        self.replan_queued = True

        def work() -> None:
            self.replan_queued = False  # asked again from here on: another update follows
            self.replan(())

        self.workers.on_io(work)

    def replan(self, renew: tuple[str, ...]) -> None:
        """On the I/O thread: make the watches match what the pipeline reads now."""
        if self.lock is not None:  # a folder came or went: maybe _build/, with the lock's record
            self.lock.refresh()
        self.watcher.update(self.upkeep.plan(), renew)

    def arm_rescan(self) -> None:
        rescan_s = self.host.pipeline.rescan_s
        if rescan_s > 0:
            self.timers.arm("rescan", rescan_s, self._periodic_rescan)

    def _periodic_rescan(self) -> None:
        def work() -> bool:
            if folder_identity(self.root) != self.ground[1]:
                return False
            self.watcher.update(self.upkeep.plan(), retry_failed=True)
            return True

        def then(ground: bool) -> None:
            if not ground:
                self.host.ground_gone()
                return
            log.debug("watch.rescan", reason="periodic")
            self.host.rescan()

        self.workers.offload(self.workers.io, work, then)
        self.arm_rescan()

    # --- from watchdog's thread to the loop ---

    def _changes_from_thread(self, changes: list[Change]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing more to do
            self.loop.call_soon_threadsafe(self.workers.guarded(self._on_changes), changes)

    def _trouble_from_thread(self, reason: str) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.workers.guarded(self._on_trouble), reason)

    def _on_trouble(self, reason: str) -> None:
        if self.host.stopping:
            return
        log.warning("watch.distrusted", reason=reason, action="full rescan")
        renew = renewed_after(reason, self.watcher.watched)

        def rescan(_: object) -> None:
            self.host.rescan()

        self.workers.offload(self.workers.io, lambda: self.replan(renew), rescan)

    def _on_changes(self, changes: list[Change]) -> None:
        # The daemon's own state.json and digests, written as it goes idle, would otherwise
        # hold a person's next save back by a whole debounce.
        changes = [change for change in changes if not self.upkeep.impact.is_bookkeeping(change)]
        if self.host.stopping or not changes:
            return
        delay_s = self.debounce.add(changes, self.loop.time(), self.host.pipeline.debounce_s)
        self.timers.arm("flush", delay_s, self._flush)

    def _flush(self) -> None:
        changes, impact, has_stage = self.debounce.take(), self.upkeep.impact, self.host.pipeline.has_stage

        def work() -> Batch:
            return read_batch(changes, impact, has_stage, self.ground, self.replan)

        self.workers.offload(self.workers.io, work, self.host.apply_batch, self._batch_failed)

    def _batch_failed(self, error: BaseException) -> None:
        log.error("daemon.internal_error", during="changes", error=repr(error), action="full rescan")
        self.host.rescan()
