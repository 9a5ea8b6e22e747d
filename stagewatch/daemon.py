"""The event loop of `stagewatch watch`: signals, timers, the watcher's changes, running stages.

Everything here runs on one asyncio loop; watchdog's thread and the stage threads only hand
things to it (shared/REFERENCES.md, trap 8). A change makes stages candidates; a candidate is
checked only when nothing upstream of it is running or waiting, and its key decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

import structlog

from stagewatch.build import log_failure
from stagewatch.cache import Workspace
from stagewatch.config import load_pipeline
from stagewatch.errors import ConfigError
from stagewatch.freshness import Fingerprint
from stagewatch.graph import Graph
from stagewatch.hashing import sha256_file
from stagewatch.impact import ImpactMap
from stagewatch.inputs import walk_files
from stagewatch.log import Resolved, line_sink
from stagewatch.paths import label
from stagewatch.pipeline import Pipeline
from stagewatch.runner import StageRunner
from stagewatch.scheduler import Burst, backoff_s, hold_back, start_burst, ttl_due_at
from stagewatch.stage import Change, OnBusy, RunResult, Stage
from stagewatch.state import StateRecorder
from stagewatch.systemd import Notifier
from stagewatch.watcher import Watcher, plan_watches

log = structlog.get_logger(__name__)

# Timers are monotonic and stop while the machine sleeps; waking at least this often (in
# monotonic seconds) notices a TTL that came due during a suspend, and runs it once.
TTL_TICK_S = 60.0
RUN_THREADS = 32


def _digest(path: Path) -> str | None:
    """The pipeline file's digest: a save with the same bytes is not a reload."""
    try:
        return sha256_file(str(path))
    except OSError:
        return None


class Daemon:
    """Keeps one pipeline fresh until stopped; owns the loop, the watcher and the runs."""

    def __init__(
        self,
        pipeline: Pipeline,
        fmt: Resolved,
        stream: TextIO,
        jobs: int | None = None,
        notifier: Notifier | None = None,
        quiet: bool = False,
    ) -> None:
        self.pipeline = pipeline
        self.jobs_override = jobs
        self.notifier = notifier if notifier is not None else Notifier({})
        self.workspace = Workspace(pipeline.output_dir, persistent_digests=True)
        self.runner = StageRunner(pipeline.output_dir, on_line=line_sink(fmt, stream, quiet))
        self.recorder = StateRecorder(pipeline.output_dir, "watch")
        self.pool = ThreadPoolExecutor(max_workers=RUN_THREADS, thread_name_prefix="stage")
        self.config_digest = _digest(pipeline.config_path)
        self.config_invalid = False
        self.code_files: dict[str, frozenset[str]] = {}
        self.candidates: dict[str, bool] = {}  # name -> forced (an explicit invalidate)
        self.running: dict[str, asyncio.Task[None]] = {}
        self.run_started: dict[str, float] = {}
        self.dirty: set[str] = set()
        self.blocked: dict[str, str] = {}  # stage -> the failed stage upstream of it
        self.restarting: set[str] = set()
        self.catching_up: set[str] = set()
        self.failed_keys: dict[str, str | None] = {}
        self.failures: dict[str, int] = {}
        self.retry_at: dict[str, float] = {}
        self.pending: list[Change] = []
        self.burst: Burst | None = None
        self.busy_since_idle = True  # the first idle after catching up is always said
        self.stopping = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._apply(pipeline)

    # --- set-up and the pipeline ---

    def _apply(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.graph: Graph = pipeline.graph
        self.jobs = self.jobs_override or pipeline.jobs
        self.ancestors = {name: frozenset(self.graph.ancestors([name])) for name in self.graph.order}
        self.impact = ImpactMap(pipeline, self.code_files)

    def run(self) -> int:
        return asyncio.run(self._main())

    async def _main(self) -> int:
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self._stop, signal.Signals(signum).name)
        self.loop.add_signal_handler(signal.SIGHUP, self._reload, "SIGHUP")
        # Watch first, then catch up: a change made during the catch-up is not lost.
        self.watcher = Watcher(self._changes_from_thread, self._trouble_from_thread, self.pipeline.watcher)
        self.watcher.start()
        self._replan()
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
        self.catching_up = set(self.graph.order)
        self._rescan("start")
        self._arm_rescan()
        await self._stopped.wait()
        await self._shutdown()
        return 0

    def _replan(self, renew: tuple[str, ...] = ()) -> None:
        self.watcher.update(plan_watches(self.impact.wanted_watches()), renew)

    # --- what the other threads hand over ---

    def _changes_from_thread(self, changes: list[Change]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: nothing more to do
            self.loop.call_soon_threadsafe(self._on_changes, changes)

    def _trouble_from_thread(self, reason: str) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._on_trouble, reason)

    def _on_trouble(self, reason: str) -> None:
        log.warning("watch.distrusted", reason=reason, action="full rescan")
        self._replan(renew=tuple(self.watcher.watched) if reason == "overflow" else ())
        self._rescan(reason)

    # --- debounce ---

    def _on_changes(self, changes: list[Change]) -> None:
        if self.stopping:
            return
        now = self.loop.time()
        self.pending.extend(changes)
        self.burst = start_burst(now) if self.burst is None else self.burst.add(now)
        self._arm("flush", self.burst.due_at(self.pipeline.debounce_s) - now, self._flush)

    def _flush(self) -> None:
        changes, self.pending, self.burst = self.pending, [], None
        affected: dict[str, bool] = {}
        relevant: list[str] = []
        reload = False
        # Before folding events by path: a deletion followed by a rewrite must not hide it.
        for change in changes:
            reload = reload or self.impact.is_config(change)
            invalidated = self.impact.invalidated(change)
            if invalidated is not None:
                affected[invalidated] = True
                relevant.append(change.path)
        if any(change.is_dir for change in changes):
            # Watch new folders before walking them: a file made in between is not missed.
            self._replan(tuple(c.path for c in changes if c.is_dir and not c.gone))
        seen: dict[str, Change] = {}
        for change in changes:
            seen[change.path] = change
            if change.is_dir and not change.gone:
                # Files made in a new folder before its watch existed send no event (trap 2).
                for path in walk_files(change.path, self.impact.rules):
                    seen.setdefault(path, Change(path, False, False))
        for change in seen.values():
            names = self.impact.affected(change)
            if names:
                relevant.append(change.path)
            for name in names:
                affected.setdefault(name, False)
        if reload:
            self._reload("file changed")
        if not affected:
            return
        # Sources changed, or a stage was invalidated: a person wants to read it. Only the
        # stages' own outputs (echoes of the last run, found fresh): there when asked for (-v).
        sources = [path for path in relevant if not self.impact.is_own_write(path)]
        worth_saying = bool(sources) or any(name in self.running for name in affected)
        shown = [label(path, self.impact.root) for path in (sources or relevant)[:5]]
        (log.info if worth_saying else log.debug)(
            "watch.changed", paths=shown, count=len(sources or relevant), stages=sorted(affected)
        )
        self.busy_since_idle = self.busy_since_idle or worth_saying
        for name, forced in affected.items():
            self._make_candidate(name, forced)
        self._dispatch()

    def _make_candidate(self, name: str, forced: bool) -> None:
        if not self.pipeline.has_stage(name):
            return
        if name in self.running:
            stage = self.pipeline.stage(name)
            # Dirty either way: if the stop comes too late (the run just ended), the check after it
            # still sees the change.
            self.dirty.add(name)
            if self.pipeline.on_busy_for(stage) is OnBusy.RESTART and name not in self.restarting:
                self.restarting.add(name)
                log.info("stage.restarting", stage=name)
                self.loop.run_in_executor(None, self.runner.cancel, name)
            return
        self.candidates[name] = self.candidates.get(name, False) or forced

    # --- checking and running ---

    def _dispatch(self) -> None:
        if self.stopping:
            return
        for name in self.graph.order:
            if len(self.running) >= self.jobs:
                break
            if name not in self.candidates:
                continue
            if self.ancestors[name] & (self.running.keys() | self.candidates.keys()):
                continue  # checked once everything upstream of it has settled
            forced = self.candidates.pop(name)
            self._check(self.pipeline.stage(name), forced)
        self._arm_ttl()
        self._report()

    def _check(self, stage: Stage, forced: bool) -> None:
        name = stage.name
        blocker = next(
            (up for up in self.graph.order if up in self.ancestors[name] and up in self.failed_keys), None
        )
        if blocker is not None:
            if name not in self.blocked:
                log.warning("stage.blocked", stage=name, by=blocker)
            self.blocked[name] = blocker  # checked again when the blocker succeeds
            self.catching_up.discard(name)
            return
        self.blocked.pop(name, None)
        fingerprint = self.workspace.fingerprint(stage)
        self._note_code(stage, fingerprint)
        decision = self.workspace.decide_with(
            stage, fingerprint, force=forced, always_run_unskippable=name in self.catching_up
        )
        self.catching_up.discard(name)
        if not decision.run:
            log.debug("stage.skipped", stage=name)
            return
        if name in self.failed_keys and not forced:
            held = hold_back(
                self.failed_keys[name], fingerprint.key, stage.ttl_s, self.retry_at.get(name), time.time()
            )
            if held is not None:
                log.debug("stage.held", stage=name, reason=held)
                return
        log.info("stage.started", stage=name, reasons=[str(reason) for reason in decision.reasons])
        self.recorder.started(name)
        self.busy_since_idle = True
        refused = self.workspace.begin_run(stage)
        if refused is not None:
            self.loop.call_soon(self._finished, stage, fingerprint, refused)
            return
        self.running[name] = self.loop.create_task(self._run(stage, fingerprint))
        self.run_started[name] = self.loop.time()

    def _note_code(self, stage: Stage, fingerprint: Fingerprint) -> None:
        """Keep the code files of module stages watched as their imports change."""
        if stage.module is None:
            return
        files = frozenset(
            str(self.pipeline.output_dir / rel) if not rel.startswith("/") else rel
            for rel, _ in (*((fingerprint.code,) if fingerprint.code else ()), *fingerprint.deps)
        )
        if self.code_files.get(stage.name) != files:
            self.code_files[stage.name] = files
            self.impact = ImpactMap(self.pipeline, self.code_files)
            if hasattr(self, "watcher"):
                self._replan()

    async def _run(self, stage: Stage, fingerprint: Fingerprint) -> None:
        result = await self.loop.run_in_executor(self.pool, self.runner.run, stage)
        self._finished(stage, fingerprint, result)

    def _finished(self, stage: Stage, fingerprint: Fingerprint, result: RunResult) -> None:
        name = stage.name
        self.running.pop(name, None)
        self.run_started.pop(name, None)
        self.restarting.discard(name)
        result = self.workspace.record_run(stage, fingerprint, result)
        self.recorder.finished(name, result)
        if self.stopping or not self.pipeline.has_stage(name):
            log.info("stage.cancelled", stage=name, duration_s=round(result.duration_s, 3))
            return
        if result.ok:
            log.info("stage.succeeded", stage=name, duration_s=round(result.duration_s, 3))
            for table in (self.failed_keys, self.failures, self.retry_at):
                table.pop(name, None)
            unblocked = [stage for stage, blocker in self.blocked.items() if blocker == name]
            for downstream in (*self.graph.downstream[name], *unblocked):
                self._make_candidate(downstream, False)
        elif result.cancelled:
            log.info("stage.cancelled", stage=name, duration_s=round(result.duration_s, 3))
            self._make_candidate(name, False)
        else:
            log_failure(name, result)
            self.failed_keys[name] = fingerprint.key
            self.failures[name] = self.failures.get(name, 0) + 1
            self.retry_at[name] = time.time() + backoff_s(self.failures[name], stage.ttl_s)
            for downstream in sorted(self.graph.descendants([name]) & self.candidates.keys()):
                del self.candidates[downstream]
                self.blocked[downstream] = name
                log.warning("stage.blocked", stage=downstream, by=name)
        if name in self.dirty:
            self.dirty.discard(name)
            self._make_candidate(name, False)
        self._dispatch()

    # --- timers: TTL, reconciliation ---

    def _arm(self, name: str, delay_s: float, callback: Callable[[], None]) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        if not self.stopping:
            self._timers[name] = self.loop.call_later(max(0.0, delay_s), callback)

    def _ttl_due(self, stage: Stage, now: float) -> float:
        assert stage.ttl_s is not None
        try:
            mtime: float | None = self.workspace.entry_path(stage.name).stat().st_mtime
        except OSError:
            mtime = None
        due = ttl_due_at(mtime, stage.ttl_s, now)
        if stage.name in self.failed_keys:
            due = max(due, self.retry_at.get(stage.name, due))
        return due

    def _arm_ttl(self) -> None:
        now = time.time()
        waiting = [
            self._ttl_due(stage, now)
            for stage in self.pipeline.stages
            if stage.ttl_s is not None
            and stage.name not in self.running
            and stage.name not in self.candidates
            and stage.name not in self.blocked
        ]
        delay = min([TTL_TICK_S, *(due - now for due in waiting)])
        self._arm("ttl", delay, self._ttl_fire)

    def _ttl_fire(self) -> None:
        now = time.time()
        for stage in self.pipeline.stages:
            if stage.ttl_s is None or stage.name in self.running or stage.name in self.blocked:
                continue
            # The entry's mtime is read again now: an `accept` may have refreshed it.
            if self._ttl_due(stage, now) <= now:
                log.debug("ttl.due", stage=stage.name)  # stage.started says "ttl expired"
                self._make_candidate(stage.name, False)
        self._dispatch()

    def _arm_rescan(self) -> None:
        if self.pipeline.rescan_s > 0:
            self._arm("rescan", self.pipeline.rescan_s, self._periodic_rescan)

    def _periodic_rescan(self) -> None:
        self.watcher.update(plan_watches(self.impact.wanted_watches()), retry_failed=True)
        self._rescan("periodic")
        self._arm_rescan()

    def _rescan(self, reason: str) -> None:
        """Check every stage's key, whatever the watcher said."""
        log.debug("watch.rescan", reason=reason)
        for name in self.graph.order:
            self._make_candidate(name, False)
        self._dispatch()

    # --- reload and stop ---

    def _reload(self, why: str) -> None:
        if self.stopping:
            return  # READY=1 after STOPPING=1 would tell systemd the opposite of the truth
        self.notifier.reloading()
        try:
            self._reload_config(why)
        finally:
            self.notifier.ready()

    def _reload_config(self, why: str) -> None:
        digest = _digest(self.pipeline.config_path)
        if why != "SIGHUP" and digest == self.config_digest:
            if self.config_invalid:  # put back as it was: say the alarm is over
                self.config_invalid = False
                log.info("config.restored", why=why)
            return  # touched or rewritten with the same bytes
        try:
            new = load_pipeline(self.pipeline.config_path)
        except ConfigError as exc:
            self.config_invalid = True
            log.error("config.invalid", why=why, problems=exc.problems, action="keeping the running config")
            return
        if new.output_dir != self.pipeline.output_dir:
            log.error(
                "config.invalid",
                why=why,
                problems=[f"{new.config_path}: output_dir cannot change while watching; restart stagewatch"],
                action="keeping the running config",
            )
            return
        self.config_digest = digest
        self.config_invalid = False
        old = self.pipeline
        added = [s.name for s in new.stages if not old.has_stage(s.name)]
        changed = [s.name for s in new.stages if old.has_stage(s.name) and old.stage(s.name) != s]
        removed = [name for name in old.names if not new.has_stage(name)]
        if new == old:
            (log.info if why == "SIGHUP" else log.debug)("config.unchanged", why=why)
            return
        for name in removed:
            self.candidates.pop(name, None)
            if name in self.running:
                self.loop.run_in_executor(None, self.runner.cancel, name)
        # A changed stage starts afresh: its old failure said nothing about its new settings.
        for name in (*removed, *changed):
            for table in (self.failed_keys, self.failures, self.retry_at, self.blocked, self.code_files):
                table.pop(name, None)
            self.dirty.discard(name)
        self.blocked = {name: blocker for name, blocker in self.blocked.items() if blocker in new.names}
        if new.watcher is not old.watcher:
            log.warning("config.not_applied", key="watcher", reason="takes effect when stagewatch restarts")
        self._apply(new)
        self.recorder.keep_only(set(new.names))
        self._replan()
        self._arm_rescan()
        log.info("config.reloaded", why=why, added=added, changed=changed, removed=removed)
        self.catching_up |= set(added)
        for name in (*added, *changed):
            self._make_candidate(name, False)
        self._dispatch()

    def _stop(self, signame: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.notifier.stopping()
        log.info("watch.stopping", signal=signame, running=sorted(self.running))
        self._stopped.set()

    async def _shutdown(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        await asyncio.gather(
            self.loop.run_in_executor(None, self.runner.cancel_all),
            self.loop.run_in_executor(None, self.watcher.stop),
        )
        if self.running:
            await asyncio.gather(*self.running.values(), return_exceptions=True)
        self.pool.shutdown(wait=False)
        self.workspace.close()
        self.recorder.close()
        self.notifier.close()
        log.info("watch.stopped")

    # --- what people see ---

    def _report(self) -> None:
        if not self.running and not self.candidates and self.busy_since_idle:
            self.busy_since_idle = False
            self.workspace.digests.flush()
            not_fresh = len(self.failed_keys.keys() | self.blocked.keys())
            log.info(
                "watch.idle",
                fresh=len(self.pipeline.stages) - not_fresh,
                failing=sorted(self.failed_keys),
                blocked=sorted(self.blocked),
            )
        self.notifier.status(self._status_text())
        if self.running and self.notifier.enabled:
            self._arm("status", 1.0, self._report)  # keeps "running render (4 s)" counting

    def _status_text(self) -> str:
        """One line for `systemctl status`: what the daemon is doing now."""
        total = len(self.pipeline.stages)
        if self.catching_up and (self.running or self.candidates):
            return f"catching up {total - len(self.catching_up)}/{total}"
        failing = sorted(self.failed_keys)
        failing_text = f"{len(failing)} stage{'s' if len(failing) > 1 else ''} failing: {', '.join(failing)}"
        if self.running:
            now = self.loop.time()
            runs = [
                f"{name} ({now - self.run_started.get(name, now):.0f} s)" for name in sorted(self.running)
            ]
            return "running " + ", ".join(runs) + (f"; {failing_text}" if failing else "")
        if self.candidates:
            return "checking " + ", ".join(sorted(self.candidates))
        if failing:
            return failing_text
        return f"idle, {total} stage{'s' if total != 1 else ''} fresh"

    def _watchdog_ping(self) -> None:
        """WATCHDOG=1 from the loop itself: a stuck loop stops the pings, and systemd restarts us."""
        self.notifier.alive()
        assert self.notifier.watchdog_s is not None
        self._arm("watchdog", self.notifier.watchdog_s, self._watchdog_ping)
