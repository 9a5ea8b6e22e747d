"""The shell of `stagewatch watch`: the asyncio loop, signals, the coordinator's actions, the stop.

Every decision is the coordinator's (coordinator.py); this module carries its actions out and
reports back what happened. The watches (watching.py), the reloads (reloading.py) and the
timers (timers.py) are its parts; a companion reads it through a view (view.py).

The loop's thread does nothing slower than a `stat`: hashing, folder walks, watch updates,
entry and state writes and config parsing run on worker threads (workers.py, runs.py), so
signals, events and WATCHDOG pings are always handled at once.
Watchdog's thread and the workers only hand results to the loop (docs/design.md#the-dispatcher-thread).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import structlog

from stagewatch.attempt import Attempts
from stagewatch.cache import Workspace
from stagewatch.daemon.changes import Batch, folder_identity
from stagewatch.daemon.coordinator import Coordinator, status_text
from stagewatch.daemon.events import (
    Action,
    Cancel,
    Check,
    Exit,
    Finished,
    Idle,
    Now,
    Say,
    SlotState,
    Start,
    Wake,
)
from stagewatch.daemon.listener import DaemonListener
from stagewatch.daemon.plan import plan_for
from stagewatch.daemon.relisting import FILES, Relistings, say_replaced
from stagewatch.daemon.reload import Replace, config_digest
from stagewatch.daemon.reloading import Reloads
from stagewatch.daemon.runs import CheckResult, StageWork
from stagewatch.daemon.systemd import Notifier
from stagewatch.daemon.timers import Timers
from stagewatch.daemon.upkeep import WatchUpkeep
from stagewatch.daemon.view import DaemonView
from stagewatch.daemon.watching import Watching
from stagewatch.daemon.workers import Workers
from stagewatch.lock import PipelineLock
from stagewatch.log import Resolved, line_sink, on_output_gone
from stagewatch.paths import label
from stagewatch.pipeline import Pipeline
from stagewatch.runner import GRACE_S, StageRunner
from stagewatch.signals import reload_asked, take_stop
from stagewatch.state import StateRecorder
from stagewatch.terminal import sighup_stops

log = structlog.get_logger(__name__)

# Timers are monotonic and stop while the machine sleeps; waking at least this often notices
# a TTL that came due during a suspend (its due time is wall-clock), and runs it once.
TTL_TICK_S = 60.0
# Runs get SIGTERM, a grace period and SIGKILL when stopping; past this, stop without them.
STOP_DEADLINE_S = GRACE_S * 2 + 5.0


class Daemon:
    """Keeps one pipeline fresh until stopped."""

    def __init__(
        self,
        pipeline: Pipeline,
        fmt: Resolved,
        stream: TextIO,
        jobs: int | None = None,
        notifier: Notifier | None = None,
        quiet: bool = False,
        lock: PipelineLock | None = None,
        listener: DaemonListener | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.listener = listener
        self.lock = lock  # its owner record is written again after a clean step
        self.root = pipeline.output_dir
        self.ground = (self.root, folder_identity(self.root))
        self.jobs_override = jobs
        self.notifier = notifier if notifier is not None else Notifier({})
        self.workspace = Workspace(pipeline.output_dir, persistent_digests=True)
        self.runner = StageRunner(pipeline.output_dir, on_line=line_sink(fmt, stream, quiet))
        self.recorder = StateRecorder(pipeline.output_dir, "watch")
        self.reloads = Reloads(self, self.notifier, config_digest(pipeline.config_path))
        self.upkeep = WatchUpkeep(pipeline)
        self.relistings = Relistings(self)
        self.coordinator = Coordinator(plan_for(pipeline, self._jobs(pipeline)))
        self.stopping = False
        self.exit_code = 0

    def _jobs(self, pipeline: Pipeline) -> int:
        return self.jobs_override or pipeline.jobs

    def run(self) -> int:
        return asyncio.run(self._main())

    async def _main(self) -> int:
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.workers = Workers(self.loop, self._after_internal_error)
        self.timers = Timers(self.loop, self.workers.guarded, outlive_stop=("watchdog",))
        self.work = StageWork(Attempts(self.workspace, self.runner, self.recorder), self.runner, self.workers)
        self.loop.set_exception_handler(self._loop_error)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.stop, signal.Signals(signum).name)
        # SIGHUP is a hangup (stop) on a controlling terminal, else a reload
        # (docs/design.md#sighup-reload-or-hangup); a log stream that went away stops the daemon
        # too (cli makes the exit status 1).
        hup = self.stop if sighup_stops() else self.reloads.ask
        self.loop.add_signal_handler(signal.SIGHUP, hup, "SIGHUP")
        on_output_gone(lambda _why: self.loop.call_soon_threadsafe(self.stop, "output gone"))
        asked = take_stop()
        if asked is not None:  # asked while it got ready: nothing has started, nothing to stop
            await self.loop.run_in_executor(None, self._close_files)
            log.info("watch.stopped", signal=asked)
            return 0
        if self.listener is not None:
            await self.listener.attached(DaemonView(lambda: self.pipeline, self.stage_states, self.recorder))
        # Watch first, then catch up: a change made during the catch-up is not lost.
        self.watching = Watching(
            self, self.loop, self.workers, self.timers, self.upkeep, self.lock, self.ground
        )
        try:
            # Instances whose file went while nobody watched leave before anything is checked.
            await asyncio.wrap_future(self.workers.io.submit(self.relistings.retire_gone))
            await asyncio.wrap_future(self.watching.start())
        except Exception:  # watches that could not be set up are tried again at each rescan
            log.exception("daemon.internal_error", during="setting up the watches")
        if not self.stopping:  # a stop while the watches were set up: never READY after STOPPING
            self._start_watching()
        await self._stopped.wait()
        await self._shutdown()
        return self.exit_code

    def _start_watching(self) -> None:
        log.info(
            "watch.started",
            stages=len(self.pipeline.stages),
            folders=len(self.watching.watched),
            watcher=self.pipeline.watcher.value,
            config=str(self.pipeline.config_path),
        )
        self.notifier.ready()
        if self.notifier.watchdog_s is not None:
            self._watchdog_ping()
        # Files that came or went between reading the pipeline and watching count too; listed
        # before the catch-up's checks are queued, so its answer is in place before theirs.
        self.relistings.ask()
        self._perform(self.coordinator.start(self._now()))
        self.watching.arm_rescan()
        if reload_asked():  # a SIGHUP came while starting: the file may have changed since read
            self.reloads.ask("SIGHUP")

    # --- plumbing ---

    def _now(self) -> Now:
        return Now(time.time(), time.monotonic())

    def _after_internal_error(self) -> None:
        """A bug met the error boundary: whatever it left undone, a full check puts right."""
        if not self.stopping:
            self.rescan()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = repr(context.get("exception"))
        log.error("daemon.internal_error", message=context.get("message"), error=error)

    # --- carrying out the coordinator's actions ---

    def _perform(self, actions: Iterable[Action]) -> None:
        checks: list[Check] = []
        for action in actions:
            if isinstance(action, Check):
                checks.append(action)
            elif isinstance(action, Start):
                self.work.start(action, self._finished)
                self._tell_started(action.name)
            elif isinstance(action, Cancel):
                self.work.cancel(action)
            elif isinstance(action, Wake):
                self.timers.arm("ttl", min(TTL_TICK_S, action.delay_s), self._due)
            elif isinstance(action, Say):
                getattr(log, action.level)(action.event, **action.fields)
            elif isinstance(action, Idle):
                self._idle(action)
            elif isinstance(action, Exit):
                self._stopped.set()
        if checks:
            self.work.check(self.pipeline, checks, self._checked)
        self._report()
        self._tell(lambda listener: listener.stages_moved())

    def _checked(self, results: list[CheckResult]) -> None:
        checked = [prepared for *_, prepared in results if prepared is not None]
        if self.upkeep.note_code(self.pipeline, checked):
            self.watching.replan_soon()  # a module in a folder not watched yet
        verdicts = [(name, job, verdict) for name, job, verdict, _ in results]
        self._perform(self.coordinator.checked_many(verdicts, self._now()))

    def _finished(self, name: str, job: int, finished: Finished) -> None:
        self._tell(lambda listener: listener.stage_finished(name, finished.outcome))
        self.relistings.run_ended(name)
        self._perform(self.coordinator.finished(name, job, finished, self._now()))

    def _due(self) -> None:
        ttl_stages = (stage.name for stage in self.pipeline.stages if stage.ttl_s)
        mtimes = {name: self.work.entry_mtime(name) for name in ttl_stages}
        self._perform(self.coordinator.due(mtimes, self._now()))

    def _idle(self, idle: Idle) -> None:
        log.info(
            "watch.idle",
            fresh=idle.fresh,
            failing=list(idle.failing),
            blocked=list(idle.blocked),
            looping=list(idle.looping),
        )
        self.workers.on_io(self.workspace.digests.flush)
        self._tell(lambda listener: listener.round_settled())

    # --- listeners ---

    def _tell(self, call: Callable[[DaemonListener], None]) -> None:
        """Tell the listener, if any; its bug is logged, never the daemon's end."""
        if self.listener is None:
            return
        try:
            call(self.listener)
        except Exception:
            log.exception("daemon.listener_error")

    def _tell_started(self, name: str) -> None:
        self._tell(lambda listener: listener.stage_started(name))

    def stage_states(self) -> dict[str, SlotState]:
        """Where each stage stands now, for a listener that answers questions about them."""
        return {name: slot.state for name, slot in self.coordinator.slots.items()}

    # --- what the watches report ---

    def rescan(self) -> None:
        """Every stage checked again, the drivers listed again first: events may have been lost."""
        self.relistings.ask(lambda: self._perform(self.coordinator.rescan(self._now())))

    def apply_batch(self, batch: Batch) -> None:
        if self.stopping:
            return
        if batch.ground_gone:
            self.ground_gone()
            return
        if batch.relisted is not None:
            # First: the changes that removed an instance must not make it run.
            self.relistings.take(batch.relisted)
        now = self._now()
        for name in batch.invalidated:
            log.info("stage.invalidated", stage=name)
            self._perform(self.coordinator.invalidated(name, now))
        if batch.reload:
            self.reloads.ask("file changed")
        if not batch.affected:
            return
        running = self.coordinator.running()
        # Sources changed: a person wants to read it. Only the stages' own outputs (echoes of
        # the last run, found fresh): there when asked for (-v).
        notable = bool(batch.sources) or any(name in running for name in batch.affected)
        paths = batch.sources or batch.echoes
        (log.info if notable else log.debug)(
            "watch.changed",
            paths=[label(path, str(self.root)) for path in paths[:5]],
            count=len(paths),
            stages=sorted(batch.affected),
        )
        self._perform(self.coordinator.changed(batch.affected, now, notable=notable))

    def ground_gone(self) -> None:
        log.error(
            "watch.output_dir_gone",
            path=str(self.root),
            problem="the output folder was deleted or moved away; nothing is written under its old path",
        )
        self.exit_code = 1
        self.stop("output folder gone")

    # --- timers: watchdog, status (the periodic rescan is watching.py's) ---

    def _watchdog_ping(self) -> None:
        """WATCHDOG=1 from the loop itself: a stuck loop stops the pings, and systemd restarts us."""
        self.notifier.alive()
        assert self.notifier.watchdog_s is not None
        self.timers.arm("watchdog", self.notifier.watchdog_s, self._watchdog_ping)

    def _report(self) -> None:
        self.notifier.status(status_text(self.coordinator, self._now()))
        if self.coordinator.running() and self.notifier.enabled:
            self.timers.arm("status", 1.0, self._report)  # keeps "running render (4 s)" counting

    # --- reload ---

    def pipeline_checked(self, problems: tuple[str, ...]) -> None:
        self._tell(lambda listener: listener.pipeline_checked(problems))

    def replace(self, why: str, decision: Replace) -> None:
        """A new pipeline (the pipeline file read again, or its drivers' files came or went):
        it runs from now on. The instances it removed are retired."""
        new, changes = decision.pipeline, decision.changes
        if decision.watcher_changed:
            log.warning("config.not_applied", key="watcher", reason="takes effect when stagewatch restarts")
        for name in decision.forgotten:
            self.work.forget(name)
        self.pipeline = new
        self.upkeep.reloaded(new, decision.forgotten)
        names = set(new.names)

        def rewatch() -> None:
            self.watching.replan(())
            self.recorder.keep_only(names)

        self.workers.on_io(rewatch)
        # Queued on the I/O thread before the checks below: they see the removed pages gone.
        self.relistings.retire(new, changes.removed, self.coordinator.running())
        if why != FILES:  # a reread may bring another rescan period
            self.watching.arm_rescan()
        say_replaced(why, changes)
        plan = plan_for(new, self._jobs(new))
        self._perform(self.coordinator.reloaded(plan, changes.changed, self._now()))

    # --- stop ---

    def stop(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.notifier.stopping()
        log.info("watch.stopping", signal=why, running=sorted(self.coordinator.running()))
        self.timers.stopping()
        # No run may start from here on, every run under way is stopped, and no stop waits
        # for a large file being hashed.
        self.work.stop()
        # Nothing can prevent a stop: should a run never report its end, stop without it.
        self.loop.call_later(STOP_DEADLINE_S, self._stop_anyway)
        self._perform(self.coordinator.stop(self._now()))

    def _stop_anyway(self) -> None:
        if not self._stopped.is_set():
            log.error("watch.stop_overdue", running=sorted(self.coordinator.running()))
            self._stopped.set()

    async def _shutdown(self) -> None:
        self.timers.close()
        if self.listener is not None:
            try:
                await self.listener.detached()
            except Exception:  # a stop goes on whatever the listener does
                log.exception("daemon.listener_error")
        await self.loop.run_in_executor(None, self.watching.stop)
        self.workers.shutdown()
        await self.loop.run_in_executor(None, self._close_files)
        self.notifier.close()
        log.info("watch.stopped")

    def _close_files(self) -> None:
        self.workspace.close()
        self.recorder.close()
