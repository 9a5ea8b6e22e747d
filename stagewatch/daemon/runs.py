"""The coordinator's Check, Start and Cancel, carried out on worker threads.

A check prepares a stage (fingerprint and decision) on the I/O thread; a start runs what that
check prepared; a cancel reaches exactly the run it names (through that run's ticket, even
before its process exists), or nothing: never the next run of the same stage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from stagewatch.attempt import Attempts, Prepared
from stagewatch.daemon.events import Cancel, Check, Finished, Start, Verdict
from stagewatch.daemon.workers import Workers
from stagewatch.pipeline import Pipeline
from stagewatch.runner import RunTicket, StageRunner
from stagewatch.stage import RunResult, attempt_result

log = structlog.get_logger(__name__)

Checked = Callable[[str, int, Verdict, Prepared | None], None]
Ended = Callable[[str, int, Finished], None]


class StageWork:
    """Checks and runs of one pipeline's stages, reported back to the loop."""

    def __init__(self, attempts: Attempts, runner: StageRunner, workers: Workers) -> None:
        self.attempts = attempts
        self.runner = runner
        self.workers = workers
        self.prepared: dict[str, tuple[int, Prepared]] = {}
        self.tickets: dict[int, RunTicket] = {}  # job -> its run's handle, from Start to its end
        self.stopping = False

    def entry_mtime(self, name: str) -> float | None:
        try:
            return self.attempts.workspace.entry_path(name).stat().st_mtime
        except OSError:
            return None

    def forget(self, name: str) -> None:
        """A stage removed or changed by a reload: what was prepared for it is out of date."""
        self.prepared.pop(name, None)

    def check(self, pipeline: Pipeline, action: Check, checked: Checked) -> None:
        stage = pipeline.stage(action.name)
        self.prepared.pop(action.name, None)

        def work() -> tuple[Prepared, float | None]:
            prepared = self.attempts.prepare(
                stage, force=action.force, always_run_unskippable=action.catching_up
            )
            return prepared, self.entry_mtime(action.name)

        def then(outcome: tuple[Prepared, float | None]) -> None:
            prepared, mtime = outcome
            if prepared.decision.run:
                self.prepared[action.name] = (action.job, prepared)
            else:
                log.debug("stage.skipped", stage=action.name)
            verdict = Verdict(prepared.decision.run, prepared.fingerprint.key, mtime)
            checked(action.name, action.job, verdict, prepared)

        def failed(error: BaseException) -> None:
            if self.stopping:
                return  # hashing was given up for the stop
            log.error("daemon.internal_error", stage=action.name, during="check", error=repr(error))
            verdict = Verdict(True, None, error=f"stagewatch could not check it: {error!r}")
            checked(action.name, action.job, verdict, None)

        self.workers.offload(self.workers.io, work, then, failed)

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
        """A run has settled: report it with the key it started from."""
        self.tickets.pop(action.job, None)
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
