"""The shell of `stagewatch watch`: the asyncio loop, signals, timers, the watcher, worker threads.

Every decision is the coordinator's (coordinator.py); this module only carries its actions
out and reports back what happened. The loop's thread does nothing slower than a `stat`:
hashing, folder walks, watch updates, entry and state writes and config parsing run on
worker threads, so signals, events and WATCHDOG pings are always handled at once. Watchdog's
thread and the workers only hand results to the loop (shared/REFERENCES.md, trap 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import structlog

from stagewatch.attempt import Attempts, Prepared
from stagewatch.cache import Workspace
from stagewatch.config import load_pipeline
from stagewatch.coordinator import (
    Action,
    Cancel,
    Check,
    Coordinator,
    Exit,
    Finished,
    Idle,
    Now,
    Plan,
    Say,
    Start,
    Touch,
    Verdict,
    Wake,
    plan_of,
)
from stagewatch.errors import ConfigError
from stagewatch.hashing import sha256_file
from stagewatch.impact import ImpactMap
from stagewatch.inputs import walk_files
from stagewatch.layout import stage_of_entry
from stagewatch.lock import PipelineLock
from stagewatch.log import Resolved, line_sink, on_output_gone
from stagewatch.paths import is_within, label
from stagewatch.pipeline import Pipeline
from stagewatch.runner import GRACE_S, StageRunner
from stagewatch.scheduler import Burst, start_burst
from stagewatch.stage import Change, OnBusy, RunResult, attempt_result
from stagewatch.state import StateRecorder
from stagewatch.systemd import Notifier
from stagewatch.terminal import sighup_stops
from stagewatch.watcher import Watcher, plan_watches

log = structlog.get_logger(__name__)

# Timers are monotonic and stop while the machine sleeps; waking at least this often notices
# a TTL that came due during a suspend (its due time is wall-clock), and runs it once.
TTL_TICK_S = 60.0
RUN_THREADS = 32
# Runs get SIGTERM, a grace period and SIGKILL when stopping; past this, stop without them.
STOP_DEADLINE_S = GRACE_S * 2 + 5.0
T = TypeVar("T")


def _digest(path: Path) -> str | None:
    """The pipeline file's digest: a save with the same bytes is not a reload."""
    try:
        return sha256_file(str(path))
    except OSError:
        return None


def _identity(folder: Path) -> tuple[int, int] | None:
    """The folder's (device, inode): another folder made under the same name is not it."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def widen(touch: Touch, written: float | None) -> Touch:
    """The touch with one more file's mtime in its span (an unknown time makes it unknown)."""
    if written is None or touch.written_from is None or touch.written_to is None:
        return Touch(touch.path)
    return Touch(touch.path, min(touch.written_from, written), max(touch.written_to, written))


def plan_for(pipeline: Pipeline, jobs: int) -> Plan:
    graph = pipeline.graph
    return plan_of(
        graph.order,
        {name: frozenset(graph.ancestors([name])) for name in graph.order},
        graph.downstream,
        {stage.name: stage.ttl_s for stage in pipeline.stages},
        [stage.name for stage in pipeline.stages if pipeline.on_busy_for(stage) is OnBusy.RESTART],
        jobs,
    )


@dataclass(frozen=True, slots=True)
class Batch:
    """What a debounced burst of changes means, worked out on the I/O thread."""

    invalidated: tuple[str, ...]
    affected: dict[str, Touch]
    sources: tuple[str, ...]  # changed paths people wrote (not stages' own outputs)
    echoes: tuple[str, ...]  # changed paths that stages wrote
    reload: bool
    ground_gone: bool


@dataclass(frozen=True, slots=True)
class Reload:
    """A pipeline file read again, on the I/O thread."""

    pipeline: Pipeline | None
    digest: str | None
    problems: tuple[str, ...] = ()


class Daemon:
    """Keeps one pipeline fresh until stopped: the loop, the watcher, the workers."""

    def __init__(
        self,
        pipeline: Pipeline,
        fmt: Resolved,
        stream: TextIO,
        jobs: int | None = None,
        notifier: Notifier | None = None,
        quiet: bool = False,
        lock: PipelineLock | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.lock = lock  # host hook: its owner record is written again after a clean step
        self.root = pipeline.output_dir
        self.root_id = _identity(self.root)
        self.jobs_override = jobs
        self.notifier = notifier if notifier is not None else Notifier({})
        self.workspace = Workspace(pipeline.output_dir, persistent_digests=True)
        self.runner = StageRunner(pipeline.output_dir, on_line=line_sink(fmt, stream, quiet))
        self.recorder = StateRecorder(pipeline.output_dir, "watch")
        self.attempts = Attempts(self.workspace, self.runner, self.recorder)
        # One I/O thread keeps watch updates, walks, checks and reloads in the order asked.
        self.io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="io")
        self.runs = ThreadPoolExecutor(max_workers=RUN_THREADS, thread_name_prefix="stage")
        self.config_digest = _digest(pipeline.config_path)
        self.config_invalid = False
        self.code_files: dict[str, frozenset[str]] = {}
        self.impact = ImpactMap(pipeline, self.code_files)
        self.coordinator = Coordinator(plan_for(pipeline, self._jobs(pipeline)))
        self.prepared: dict[str, tuple[int, Prepared]] = {}
        self.run_jobs: dict[str, int] = {}  # stage -> its run under way, for Cancel
        self.run_jobs_lock = threading.Lock()
        self.pending: list[Change] = []
        self.burst: Burst | None = None
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
        self.loop.set_exception_handler(self._loop_error)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.stop, signal.Signals(signum).name)
        # host hook: SIGHUP is a hangup (stop) on a controlling terminal, else a reload (DESIGN §5);
        # a log stream that went away stops the daemon too (cli makes the exit status 1).
        hup = self.stop if sighup_stops() else self._reload
        self.loop.add_signal_handler(signal.SIGHUP, hup, "SIGHUP")
        on_output_gone(lambda _why: self.loop.call_soon_threadsafe(self.stop, "output gone"))
        # Watch first, then catch up: a change made during the catch-up is not lost.
        self.watcher = Watcher(self._changes_from_thread, self._trouble_from_thread, self.pipeline.watcher)
        self.watcher.start()
        await self.loop.run_in_executor(self.io, self._replan, ())
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
        await self._stopped.wait()
        await self._shutdown()
        return self.exit_code

    # --- plumbing: the clock, timers, workers, the error boundary ---

    def _now(self) -> Now:
        return Now(time.time(), time.monotonic())

    def _arm(self, name: str, delay_s: float, callback: Callable[[], None]) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        if not self.stopping or name == "watchdog":
            self._timers[name] = self.loop.call_later(max(0.0, delay_s), self._guarded(callback))

    def _guarded(self, callback: Callable[..., None]) -> Callable[..., None]:
        """An error boundary for a loop callback: a bug is logged and answered with a rescan."""

        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception:
                log.exception("daemon.internal_error", callback=getattr(callback, "__name__", "?"))
                if not self.stopping:
                    self._perform(self.coordinator.rescan(self._now()))

        return guarded

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        log.error(
            "daemon.internal_error", message=context.get("message"), error=repr(context.get("exception"))
        )

    def _offload(
        self,
        executor: ThreadPoolExecutor,
        work: Callable[[], T],
        then: Callable[[T], None],
        failed: Callable[[BaseException], None],
    ) -> None:
        """Run `work` on a worker thread, then `then(result)` (or `failed(error)`) on the loop."""

        def done(future: Future[T]) -> None:
            error = future.exception()
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing more to do
                if error is not None:
                    self.loop.call_soon_threadsafe(self._guarded(failed), error)
                else:
                    self.loop.call_soon_threadsafe(self._guarded(then), future.result())

        with contextlib.suppress(RuntimeError):  # shut down while stopping: the work is not wanted
            executor.submit(work).add_done_callback(done)

    # --- carrying out the coordinator's actions ---

    def _perform(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, Check):
                self._check(action)
            elif isinstance(action, Start):
                self._start(action)
            elif isinstance(action, Cancel):
                self._cancel(action)
            elif isinstance(action, Wake):
                self._arm("ttl", min(TTL_TICK_S, action.delay_s), self._due)
            elif isinstance(action, Say):
                getattr(log, action.level)(action.event, **action.fields)
            elif isinstance(action, Idle):
                self._idle(action)
            elif isinstance(action, Exit):
                self._stopped.set()
        self._report()

    def _check(self, action: Check) -> None:
        stage = self.pipeline.stage(action.name)
        self.prepared.pop(action.name, None)

        def work() -> tuple[Prepared, float | None]:
            prepared = self.attempts.prepare(
                stage, force=action.force, always_run_unskippable=action.catching_up
            )
            return prepared, self._entry_mtime(action.name)

        def then(outcome: tuple[Prepared, float | None]) -> None:
            prepared, mtime = outcome
            self._note_code(prepared)
            if prepared.decision.run:
                self.prepared[action.name] = (action.job, prepared)
            else:
                log.debug("stage.skipped", stage=action.name)
            verdict = Verdict(prepared.decision.run, prepared.fingerprint.key, mtime)
            self._perform(self.coordinator.checked(action.name, action.job, verdict, self._now()))

        def failed(error: BaseException) -> None:
            if self.stopping:
                return  # hashing was given up for the stop
            log.error("daemon.internal_error", stage=action.name, during="check", error=repr(error))
            verdict = Verdict(True, None, error=f"stagewatch could not check it: {error!r}")
            self._perform(self.coordinator.checked(action.name, action.job, verdict, self._now()))

        self._offload(self.io, work, then, failed)

    def _start(self, action: Start) -> None:
        job, prepared = self.prepared.pop(action.name, (None, None))
        if job != action.job or prepared is None:  # cannot happen: say so, and let it be checked again
            log.error("daemon.internal_error", stage=action.name, during="start", error="no prepared run")
            self._finish(action.name, action.job, RunResult.not_started("nothing prepared to run"), None)
            return
        key = prepared.fingerprint.key

        def work() -> RunResult:
            with self.run_jobs_lock:
                self.run_jobs[action.name] = action.job
            return self.attempts.run(prepared)

        def failed(error: BaseException) -> None:
            log.error("daemon.internal_error", stage=action.name, during="run", error=repr(error))
            result = RunResult.not_started(f"stagewatch could not run it: {error!r}")
            self._finish(action.name, action.job, result, key)

        self._offload(
            self.runs, work, lambda result: self._finish(action.name, action.job, result, key), failed
        )

    def _finish(self, name: str, job: int, result: RunResult, key: str | None) -> None:
        """A run has settled: tell the coordinator, with the key it started from."""
        with self.run_jobs_lock:
            if self.run_jobs.get(name) == job:
                del self.run_jobs[name]
        outcome = attempt_result(result)
        finished = Finished(outcome, key, self._entry_mtime(name) if result.ok else None)
        self._perform(self.coordinator.finished(name, job, finished, self._now()))

    def _cancel(self, action: Cancel) -> None:
        def work() -> None:
            # Under the lock, a run that has ended cannot be replaced by the next one: the
            # cancel reaches exactly the run it was meant for, or nothing.
            with self.run_jobs_lock:
                if self.run_jobs.get(action.name) == action.job:
                    self.runner.cancel(action.name)

        threading.Thread(target=work, name=f"cancel-{action.name}", daemon=True).start()

    def _entry_mtime(self, name: str) -> float | None:
        try:
            return self.workspace.entry_path(name).stat().st_mtime
        except OSError:
            return None

    def _due(self) -> None:
        mtimes = {stage.name: self._entry_mtime(stage.name) for stage in self.pipeline.stages if stage.ttl_s}
        self._perform(self.coordinator.due(mtimes, self._now()))

    def _idle(self, idle: Idle) -> None:
        log.info(
            "watch.idle",
            fresh=idle.fresh,
            failing=list(idle.failing),
            blocked=list(idle.blocked),
            looping=list(idle.looping),
        )
        self._offload(self.io, self.workspace.digests.flush, lambda _: None, self._io_failed)

    def _io_failed(self, error: BaseException) -> None:
        log.error("daemon.internal_error", during="io", error=repr(error))

    def _note_code(self, prepared: Prepared) -> None:
        """Keep the code files of module stages watched as their imports change."""
        stage, fingerprint = prepared.stage, prepared.fingerprint
        if stage.module is None:
            return
        files = frozenset(
            str(self.root / rel) if not rel.startswith("/") else rel
            for rel, _ in (*((fingerprint.code,) if fingerprint.code else ()), *fingerprint.deps)
        )
        if self.code_files.get(stage.name) != files:
            self.code_files[stage.name] = files
            self.impact = ImpactMap(self.pipeline, self.code_files)
            self._offload(self.io, lambda: self._replan(()), lambda _: None, self._io_failed)

    # --- the watcher and the debounce ---

    def _replan(self, renew: tuple[str, ...]) -> None:
        """On the I/O thread: make the watches match what the pipeline reads now."""
        if self.lock is not None:  # host hook: a folder came or went, maybe _build/ with the record
            self.lock.refresh()
        self.watcher.update(plan_watches(self.impact.wanted_watches()), renew)

    def _changes_from_thread(self, changes: list[Change]) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._guarded(self._on_changes), changes)

    def _trouble_from_thread(self, reason: str) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._guarded(self._on_trouble), reason)

    def _on_trouble(self, reason: str) -> None:
        if self.stopping:
            return
        log.warning("watch.distrusted", reason=reason, action="full rescan")
        renew = tuple(self.watcher.watched) if reason == "overflow" else ()
        self._offload(
            self.io,
            lambda: self._replan(renew),
            lambda _: self._perform(self.coordinator.rescan(self._now())),
            self._io_failed,
        )

    def _on_changes(self, changes: list[Change]) -> None:
        if self.stopping:
            return
        now = self.loop.time()
        self.pending.extend(changes)
        self.burst = start_burst(now) if self.burst is None else self.burst.add(now)
        self._arm("flush", self.burst.due_at(self.pipeline.debounce_s) - now, self._flush)

    def _flush(self) -> None:
        changes, self.pending, self.burst = self.pending, [], None
        impact = self.impact
        self._offload(
            self.io, lambda: self._read_batch(changes, impact), self._apply_batch, self._batch_failed
        )

    def _read_batch(self, changes: list[Change], impact: ImpactMap) -> Batch:
        """On the I/O thread: watch new folders, walk them, and find what the changes touch."""
        invalidated: list[str] = []
        # Before folding events by path: a deletion followed by a rewrite must not hide it.
        for change in changes:
            name = stage_of_entry(change.path, impact.cache_dir) if change.gone else None
            if name is not None and self.pipeline.has_stage(name):
                invalidated.append(name)
        reload = any(impact.is_config(change) for change in changes)
        root = str(self.root)
        ground_gone = any(is_within(root, change.path) for change in changes) and (
            _identity(self.root) != self.root_id
        )
        new_folders = tuple(c.path for c in changes if c.is_dir and not c.gone)
        if any(change.is_dir for change in changes):
            # Watch new folders before walking them: a file made in between is not missed.
            self._replan(new_folders)
        seen: dict[str, Change] = {}
        for change in changes:
            seen[change.path] = change
            if change.is_dir and not change.gone:
                # Files made in a new folder before its watch existed send no event (trap 2).
                for path in walk_files(change.path, impact.rules):
                    seen.setdefault(path, Change(path, False, False))
        affected: dict[str, Touch] = {}
        sources: list[str] = []
        echoes: list[str] = []
        for change in seen.values():
            names = impact.affected(change)
            if not names:
                continue
            (echoes if impact.is_own_write(change.path) else sources).append(change.path)
            written = _mtime(change.path)
            for name in names:
                known = affected.get(name)
                affected[name] = (
                    Touch(change.path, written, written) if known is None else widen(known, written)
                )
        return Batch(
            tuple(dict.fromkeys(invalidated)), affected, tuple(sources), tuple(echoes), reload, ground_gone
        )

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
            if _identity(self.root) != self.root_id:
                return False
            self.watcher.update(plan_watches(self.impact.wanted_watches()), retry_failed=True)
            return True

        def then(ground: bool) -> None:
            if not ground:
                self._ground_gone()
                return
            log.debug("watch.rescan", reason="periodic")
            self._perform(self.coordinator.rescan(self._now()))

        self._offload(self.io, work, then, self._io_failed)
        self._arm_rescan()

    def _watchdog_ping(self) -> None:
        """WATCHDOG=1 from the loop itself: a stuck loop stops the pings, and systemd restarts us."""
        self.notifier.alive()
        assert self.notifier.watchdog_s is not None
        self._arm("watchdog", self.notifier.watchdog_s, self._watchdog_ping)

    def _report(self) -> None:
        running = self.coordinator.running()
        self.notifier.status(self.coordinator.status_text(self._now()))
        if running and self.notifier.enabled:
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
        path = self.pipeline.config_path

        def work() -> Reload:
            digest = _digest(path)
            if why != "SIGHUP" and digest == self.config_digest:
                return Reload(None, digest)
            try:
                return Reload(load_pipeline(path), digest)
            except ConfigError as exc:
                return Reload(None, digest, tuple(exc.problems))

        def failed(error: BaseException) -> None:
            self._reloaded(why, Reload(None, None, (f"{path}: could not be read again: {error!r}",)))

        self._offload(self.io, work, lambda outcome: self._reloaded(why, outcome), failed)

    def _reloaded(self, why: str, outcome: Reload) -> None:
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

    def _apply_reload(self, why: str, outcome: Reload) -> None:
        new = outcome.pipeline
        if outcome.problems:
            self.config_invalid = True
            log.error(
                "config.invalid",
                why=why,
                problems=list(outcome.problems),
                action="keeping the running config",
            )
            return
        if new is None:
            if self.config_invalid:  # put back as it was: say the alarm is over
                self.config_invalid = False
                log.info("config.restored", why=why)
            return  # touched or rewritten with the same bytes
        if new.output_dir != self.pipeline.output_dir:
            log.error(
                "config.invalid",
                why=why,
                problems=[f"{new.config_path}: output_dir cannot change while watching; restart stagewatch"],
                action="keeping the running config",
            )
            return
        self.config_digest = outcome.digest
        self.config_invalid = False
        old = self.pipeline
        added = [s.name for s in new.stages if not old.has_stage(s.name)]
        changed = [s.name for s in new.stages if old.has_stage(s.name) and old.stage(s.name) != s]
        removed = [name for name in old.names if not new.has_stage(name)]
        if new == old:
            (log.info if why == "SIGHUP" else log.debug)("config.unchanged", why=why)
            return
        if new.watcher is not old.watcher:
            log.warning("config.not_applied", key="watcher", reason="takes effect when stagewatch restarts")
        for name in (*removed, *changed):
            self.code_files.pop(name, None)
            self.prepared.pop(name, None)
        self.pipeline = new
        self.impact = ImpactMap(new, self.code_files)
        names = set(new.names)

        def rewatch() -> None:
            self._replan(())
            self.recorder.keep_only(names)

        self._offload(self.io, rewatch, lambda _: None, self._io_failed)
        self._arm_rescan()
        log.info("config.reloaded", why=why, added=added, changed=changed, removed=removed)
        self._perform(self.coordinator.reloaded(plan_for(new, self._jobs(new)), changed, self._now()))

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
        self.workspace.digests.stop()
        threading.Thread(target=self.runner.cancel_all, name="cancel-all", daemon=True).start()
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
        await self.loop.run_in_executor(None, self.watcher.stop)
        self.io.shutdown(wait=False, cancel_futures=True)
        self.runs.shutdown(wait=False, cancel_futures=True)
        await self.loop.run_in_executor(None, self._close_files)
        self.notifier.close()
        log.info("watch.stopped")

    def _close_files(self) -> None:
        self.workspace.close()
        self.recorder.close()
