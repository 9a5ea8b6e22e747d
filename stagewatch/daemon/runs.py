"""The coordinator's Check, Start and Cancel, carried out on worker threads.

Checks prepare stages (fingerprint and decision) on the I/O thread, a batch at a time, and
report back every REPORT_EVERY_S; a start runs what a check prepared; a cancel reaches
exactly the run it names (through that run's ticket, even before its process exists), or
nothing: never the next run of the same stage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from stagewatch.attempt import Attempts, Prepared
from stagewatch.daemon.events import Cancel, Check, Finished, Start, Verdict
from stagewatch.daemon.workers import Workers
from stagewatch.entry import entry_mtime
from stagewatch.hashing import HashingStopped
from stagewatch.pipeline import Pipeline
from stagewatch.runner import RunTicket, StageRunner
from stagewatch.stage import RunResult, Stage, attempt_result

log = structlog.get_logger(__name__)

CheckResult = tuple[str, int, Verdict, Prepared | None]
Checked = Callable[[list[CheckResult]], None]
Ended = Callable[[str, int, Finished], None]

# A batch reports what it has this often: the loop takes results in bulk, yet a stage that is
# stale starts without waiting for the whole batch.
REPORT_EVERY_S = 0.05
# A long catch-up saves the digests it has taken this often: a daemon killed half-way
# through a cold start does not start cold again.
SAVE_DIGESTS_EVERY_S = 5.0


class StageWork:
    """Checks and runs of one pipeline's stages, reported back to the loop."""

    def __init__(self, attempts: Attempts, runner: StageRunner, workers: Workers) -> None:
        self.attempts = attempts
        self.runner = runner
        self.workers = workers
        self.prepared: dict[str, tuple[int, Prepared]] = {}
        self.tickets: dict[int, RunTicket] = {}  # job -> its run's handle, from Start to its end
        self.stopping = False
        self.saved_at = time.monotonic()

    def entry_mtime(self, name: str) -> float | None:
        return entry_mtime(self.attempts.workspace.entry_path(name))

    def forget(self, name: str) -> None:
        """A stage removed or changed by a reload: what was prepared for it is out of date."""
        self.prepared.pop(name, None)

    def check(self, pipeline: Pipeline, actions: list[Check], checked: Checked) -> None:
        """Check stages in order on the I/O thread; `checked` gets their results in batches."""
        for action in actions:
            self.prepared.pop(action.name, None)
        batch = [(action, pipeline.stage(action.name)) for action in actions]

        def work() -> list[CheckResult]:
            results: list[CheckResult] = []
            reported = time.monotonic()
            for action, stage in batch:
                if self.stopping:
                    return []
                results.append(self._check_one(action, stage))
                if self._digests_due():
                    self.attempts.workspace.digests.flush()
                now = time.monotonic()
                if now - reported >= REPORT_EVERY_S:
                    self.workers.to_loop(take, results)
                    results, reported = [], now
            return results

        def take(results: list[CheckResult]) -> None:
            for name, job, verdict, prepared in results:
                if prepared is None:
                    continue
                if verdict.run:
                    self.prepared[name] = (job, prepared)
                else:
                    log.debug("stage.skipped", stage=name)
            checked(results)

        def failed(error: BaseException) -> None:
            if self.stopping:
                return  # hashing was given up for the stop
            log.error("daemon.internal_error", during="check", error=repr(error))
            # A result for every stage of the batch: those already taken are ignored.
            verdict = Verdict(True, None, error=f"stagewatch could not check it: {error!r}")
            checked([(action.name, action.job, verdict, None) for action, _ in batch])

        self.workers.offload(self.workers.io, work, take, failed)

    def _digests_due(self) -> bool:
        """Whether SAVE_DIGESTS_EVERY_S has passed since the digests were last saved; the
        caller saves them now."""
        now = time.monotonic()
        if now - self.saved_at < SAVE_DIGESTS_EVERY_S:
            return False
        self.saved_at = now
        return True

    def _check_one(self, action: Check, stage: Stage) -> CheckResult:
        """On the I/O thread: one stage's fingerprint and decision, or the error that stopped them."""
        try:
            prepared = self.attempts.prepare(
                stage, force=action.force, always_run_unskippable=action.catching_up
            )
        except HashingStopped:
            raise
        except Exception as error:
            log.error("daemon.internal_error", stage=action.name, during="check", error=repr(error))
            verdict = Verdict(True, None, error=f"stagewatch could not check it: {error!r}")
            return action.name, action.job, verdict, None
        verdict = Verdict(prepared.decision.run, prepared.fingerprint.key, self.entry_mtime(action.name))
        return action.name, action.job, verdict, prepared

    def start(self, action: Start, ended: Ended) -> None:
        job, prepared = self.prepared.pop(action.name, (None, None))
        if job != action.job or prepared is None:  # cannot happen: say so, and let it be checked again
            log.error("daemon.internal_error", stage=action.name, during="start", error="no prepared run")
            self._ended(action, RunResult.not_started("nothing prepared to run"), None, ended)
            return
        key = prepared.fingerprint.key
        # Made now, on the loop: a Cancel that comes before the worker has begun still finds it.
        ticket = self.tickets[action.job] = RunTicket()

        def failed(error: BaseException) -> None:
            log.error("daemon.internal_error", stage=action.name, during="run", error=repr(error))
            self._ended(action, RunResult.not_started(f"stagewatch could not run it: {error!r}"), key, ended)

        self.workers.offload(
            self.workers.runs,
            lambda: self.attempts.run(prepared, ticket),
            lambda result: self._ended(action, result, key, ended),
            failed,
        )

    def _ended(self, action: Start, result: RunResult, key: str | None, ended: Ended) -> None:
        """A run has settled: report it with the key it started from. A catch-up whose runs
        take minutes saves its digests as it goes too: a daemon that is never idle would
        otherwise never save them."""
        self.tickets.pop(action.job, None)
        if self._digests_due():
            self.workers.on_io(self.attempts.workspace.digests.flush)
        mtime = self.entry_mtime(action.name) if result.ok else None
        ended(action.name, action.job, Finished(attempt_result(result), key, mtime))

    def cancel(self, action: Cancel) -> None:
        ticket = self.tickets.get(action.job)
        if ticket is None:
            return  # that run is over: the cancel must not reach the next one
        threading.Thread(
            target=self.runner.cancel_run, args=(ticket,), name=f"cancel-{action.name}", daemon=True
        ).start()

    def stop(self) -> None:
        """Start no run from now on, stop every run under way, give up hashing."""
        self.stopping = True
        self.attempts.workspace.digests.stop()
        threading.Thread(target=self.runner.cancel_all, name="cancel-all", daemon=True).start()
