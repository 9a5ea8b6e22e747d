"""The shell of `stagewatch watch`: the asyncio loop, signals, timers, the watcher, reloads, stop.

Every decision is the coordinator's (coordinator.py); this module carries its actions out and
reports back what happened. The loop's thread does nothing slower than a `stat`: hashing,
folder walks, watch updates, entry and state writes and config parsing run on worker threads
(workers.py, runs.py), so signals, events and WATCHDOG pings are always handled at once.
Watchdog's thread and the workers only hand results to the loop (shared/REFERENCES.md, trap 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import structlog

from stagewatch.attempt import Attempts
from stagewatch.cache import Workspace
from stagewatch.daemon.changes import Batch, Debounce, folder_identity, read_batch
from stagewatch.daemon.coordinator import Coordinator, plan_for, status_text
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
from stagewatch.daemon.reload import (
    Refused,
    Replace,
    Reread,
    SameBytes,
    Unchanged,
    config_digest,
    judge_reload,
    reread,
)
from stagewatch.daemon.runs import CheckResult, StageWork
from stagewatch.daemon.systemd import Notifier
from stagewatch.daemon.upkeep import WatchUpkeep, renewed_after
from stagewatch.daemon.view import DaemonView
from stagewatch.daemon.watcher import Watcher
from stagewatch.daemon.workers import Workers
from stagewatch.lock import PipelineLock
from stagewatch.log import Resolved, line_sink, on_output_gone
from stagewatch.paths import label
from stagewatch.pipeline import Pipeline
from stagewatch.runner import GRACE_S, StageRunner
from stagewatch.signals import reload_asked, take_stop
from stagewatch.stage import Change
from stagewatch.state import StateRecorder
from stagewatch.terminal import sighup_stops

log = structlog.get_logger(__name__)

# Timers are monotonic and stop while the machine sleeps; waking at least this often notices
# a TTL that came due during a suspend (its due time is wall-clock), and runs it once.
TTL_TICK_S = 60.0
# Runs get SIGTERM, a grace period and SIGKILL when stopping; past this, stop without them.
STOP_DEADLINE_S = GRACE_S * 2 + 5.0
KEEPING = "keeping the running config"


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
        self.config_digest = config_digest(pipeline.config_path)
        self.config_invalid = False
        self.upkeep = WatchUpkeep(pipeline)
        self.coordinator = Coordinator(plan_for(pipeline, self._jobs(pipeline)))
        self.debounce = Debounce()
        self.replan_queued = False
        self.stopping = False
        self.exit_code = 0
        self.reloading = False
        self.reload_again: str | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def _jobs(self, pipeline: Pipeline) -> int:
        return self.jobs_override or pipeline.jobs

    def run(self) -> int:
        return asyncio.run(self._main())

    async def _main(self) -> int:
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.workers = Workers(self.loop, self._after_internal_error)
        self.work = StageWork(Attempts(self.workspace, self.runner, self.recorder), self.runner, self.workers)
        self.loop.set_exception_handler(self._loop_error)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.stop, signal.Signals(signum).name)
        # SIGHUP is a hangup (stop) on a controlling terminal, else a reload (DESIGN §5); a log
        # stream that went away stops the daemon too (cli makes the exit status 1).
        hup = self.stop if sighup_stops() else self._reload
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
        self.watcher = Watcher(self._changes_from_thread, self._trouble_from_thread, self.pipeline.watcher)
        self.watcher.start()
        try:
            await asyncio.wrap_future(self.workers.io.submit(lambda: self._replan(())))
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
            folders=len(self.watcher.watched),
            watcher=self.pipeline.watcher.value,
            config=str(self.pipeline.config_path),
        )
        self.notifier.ready()
        if self.notifier.watchdog_s is not None:
            self._watchdog_ping()
        self._perform(self.coordinator.start(self._now()))
        self._arm_rescan()
        if reload_asked():  # a SIGHUP came while starting: the file may have changed since read
            self._reload("SIGHUP")

    # --- plumbing ---

    def _now(self) -> Now:
        return Now(time.time(), time.monotonic())

    def _arm(self, name: str, delay_s: float, callback: Callable[[], None]) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        if not self.stopping or name == "watchdog":
            self._timers[name] = self.loop.call_later(max(0.0, delay_s), self.workers.guarded(callback))

    def _after_internal_error(self) -> None:
        """A bug met the error boundary: whatever it left undone, a full check puts right."""
        if not self.stopping:
            self._perform(self.coordinator.rescan(self._now()))

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
                self._arm("ttl", min(TTL_TICK_S, action.delay_s), self._due)
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
            self._replan_soon()  # a module in a folder not watched yet
        verdicts = [(name, job, verdict) for name, job, verdict, _ in results]
        self._perform(self.coordinator.checked_many(verdicts, self._now()))

    def _finished(self, name: str, job: int, finished: Finished) -> None:
        self._tell(lambda listener: listener.stage_finished(name, finished.outcome))
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

    # --- the watcher and the debounce ---

    def _replan_soon(self) -> None:
        """One watch update for however many asks come before the I/O thread gets to it."""
        if self.replan_queued:
            return
        self.replan_queued = True

        def work() -> None:
            self.replan_queued = False  # asked again from here on: another update follows
            self._replan(())

        self.workers.on_io(work)

    def _replan(self, renew: tuple[str, ...]) -> None:
        """On the I/O thread: make the watches match what the pipeline reads now."""
        if self.lock is not None:  # a folder came or went: maybe _build/, with the lock's record
            self.lock.refresh()
        self.watcher.update(self.upkeep.plan(), renew)

    def _changes_from_thread(self, changes: list[Change]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing more to do
            self.loop.call_soon_threadsafe(self.workers.guarded(self._on_changes), changes)

    def _trouble_from_thread(self, reason: str) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.workers.guarded(self._on_trouble), reason)

    def _on_trouble(self, reason: str) -> None:
        if self.stopping:
            return
        log.warning("watch.distrusted", reason=reason, action="full rescan")
        renew = renewed_after(reason, self.watcher.watched)

        def rescan(_: object) -> None:
            self._perform(self.coordinator.rescan(self._now()))

        self.workers.offload(self.workers.io, lambda: self._replan(renew), rescan)

    def _on_changes(self, changes: list[Change]) -> None:
        # The daemon's own state.json and digests, written as it goes idle, would otherwise
        # hold a person's next save back by a whole debounce.
        changes = [change for change in changes if not self.upkeep.impact.is_bookkeeping(change)]
        if self.stopping or not changes:
            return
        delay_s = self.debounce.add(changes, self.loop.time(), self.pipeline.debounce_s)
        self._arm("flush", delay_s, self._flush)

    def _flush(self) -> None:
        changes, impact, has_stage = self.debounce.take(), self.upkeep.impact, self.pipeline.has_stage

        def work() -> Batch:
            return read_batch(changes, impact, has_stage, self.ground, self._replan)

        self.workers.offload(self.workers.io, work, self._apply_batch, self._batch_failed)

    def _batch_failed(self, error: BaseException) -> None:
        log.error("daemon.internal_error", during="changes", error=repr(error), action="full rescan")
        self._perform(self.coordinator.rescan(self._now()))

    def _apply_batch(self, batch: Batch) -> None:
        if self.stopping:
            return
        if batch.ground_gone:
            self._ground_gone()
            return
        now = self._now()
        for name in batch.invalidated:
            log.info("stage.invalidated", stage=name)
            self._perform(self.coordinator.invalidated(name, now))
        if batch.reload:
            self._reload("file changed")
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

    def _ground_gone(self) -> None:
        log.error(
            "watch.output_dir_gone",
            path=str(self.root),
            problem="the output folder was deleted or moved away; nothing is written under its old path",
        )
        self.exit_code = 1
        self.stop("output folder gone")

    # --- timers: reconciliation, watchdog, status ---

    def _arm_rescan(self) -> None:
        if self.pipeline.rescan_s > 0:
            self._arm("rescan", self.pipeline.rescan_s, self._periodic_rescan)

    def _periodic_rescan(self) -> None:
        def work() -> bool:
            if folder_identity(self.root) != self.ground[1]:
                return False
            self.watcher.update(self.upkeep.plan(), retry_failed=True)
            return True

        def then(ground: bool) -> None:
            if not ground:
                self._ground_gone()
                return
            log.debug("watch.rescan", reason="periodic")
            self._perform(self.coordinator.rescan(self._now()))

        self.workers.offload(self.workers.io, work, then)
        self._arm_rescan()

    def _watchdog_ping(self) -> None:
        """WATCHDOG=1 from the loop itself: a stuck loop stops the pings, and systemd restarts us."""
        self.notifier.alive()
        assert self.notifier.watchdog_s is not None
        self._arm("watchdog", self.notifier.watchdog_s, self._watchdog_ping)

    def _report(self) -> None:
        self.notifier.status(status_text(self.coordinator, self._now()))
        if self.coordinator.running() and self.notifier.enabled:
            self._arm("status", 1.0, self._report)  # keeps "running render (4 s)" counting

    # --- reload ---

    def _reload(self, why: str) -> None:
        if self.stopping:
            return  # READY=1 after STOPPING=1 would tell systemd the opposite of the truth
        if self.reloading:
            self.reload_again = why  # one more read once this one is done: the file may have moved on
            return
        self.reloading = True
        self.notifier.reloading()
        path, digest = self.pipeline.config_path, self.config_digest

        def failed(error: BaseException) -> None:
            self._reloaded(why, Reread(None, None, (f"{path}: could not be read again: {error!r}",)))

        self.workers.offload(
            self.workers.io,
            lambda: reread(path, digest, always=why == "SIGHUP"),
            lambda outcome: self._reloaded(why, outcome),
            failed,
        )

    def _reloaded(self, why: str, outcome: Reread) -> None:
        self.reloading = False
        try:
            if not self.stopping:
                self._apply_reload(why, outcome)
        finally:
            if not self.stopping:
                self.notifier.ready()
            again, self.reload_again = self.reload_again, None
            if again is not None:
                self._reload(again)

    def _apply_reload(self, why: str, outcome: Reread) -> None:
        decision = judge_reload(outcome, self.pipeline, self.config_invalid)
        if isinstance(decision, Refused):
            problems = decision.problems
            self.config_invalid = self.config_invalid or decision.file_invalid
            log.error("config.invalid", why=why, problems=list(problems), action=KEEPING)
            self._tell(lambda listener: listener.pipeline_checked(problems))
        elif isinstance(decision, SameBytes):
            if decision.restored:
                self.config_invalid = False
                log.info("config.restored", why=why)
                self._tell(lambda listener: listener.pipeline_checked(()))
        else:
            self.config_digest = decision.digest
            self.config_invalid = False
            self._tell(lambda listener: listener.pipeline_checked(()))
            if isinstance(decision, Unchanged):
                (log.info if why == "SIGHUP" else log.debug)("config.unchanged", why=why)
            else:
                self._replace(why, decision)

    def _replace(self, why: str, decision: Replace) -> None:
        new, changes = decision.pipeline, decision.changes
        if decision.watcher_changed:
            log.warning("config.not_applied", key="watcher", reason="takes effect when stagewatch restarts")
        for name in decision.forgotten:
            self.work.forget(name)
        self.pipeline = new
        self.upkeep.reloaded(new, decision.forgotten)
        names = set(new.names)

        def rewatch() -> None:
            self._replan(())
            self.recorder.keep_only(names)

        self.workers.on_io(rewatch)
        self._arm_rescan()
        log.info(
            "config.reloaded",
            why=why,
            added=list(changes.added),
            changed=list(changes.changed),
            removed=list(changes.removed),
        )
        plan = plan_for(new, self._jobs(new))
        self._perform(self.coordinator.reloaded(plan, changes.changed, self._now()))

    # --- stop ---

    def stop(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.notifier.stopping()
        log.info("watch.stopping", signal=why, running=sorted(self.coordinator.running()))
        for name in ("flush", "ttl", "rescan", "status"):
            timer = self._timers.pop(name, None)
            if timer is not None:
                timer.cancel()
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
        for timer in self._timers.values():
            timer.cancel()
        if self.listener is not None:
            try:
                await self.listener.detached()
            except Exception:  # a stop goes on whatever the listener does
                log.exception("daemon.listener_error")
        await self.loop.run_in_executor(None, self.watcher.stop)
        self.workers.shutdown()
        await self.loop.run_in_executor(None, self._close_files)
        self.notifier.close()
        log.info("watch.stopped")

    def _close_files(self) -> None:
        self.workspace.close()
        self.recorder.close()
