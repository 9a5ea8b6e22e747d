"""The daemon's reloads carried out: one read of the pipeline file at a time, on the I/O thread,
its judgment (reload.py) acted on, and whether the file is said to be wrong right now.

A new pipeline itself is the shell's to put in place: it reaches the stages, the watches and
the coordinator.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from stagewatch.daemon.reload import Refused, Replace, Reread, SameBytes, Unchanged, judge_reload, reread
from stagewatch.daemon.systemd import Notifier
from stagewatch.daemon.workers import Workers
from stagewatch.pipeline import Pipeline

log = structlog.get_logger(__name__)

KEEPING = "keeping the running config"


class ReloadHost(Protocol):
    """The daemon, as its reloads see it."""

    @property
    def pipeline(self) -> Pipeline: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def workers(self) -> Workers: ...

    def pipeline_checked(self, problems: tuple[str, ...]) -> None:
        """Tell companions what is wrong with the file (the running pipeline is kept), or nothing."""

    def replace(self, why: str, decision: Replace) -> None:
        """Put the new pipeline in place."""


class Reloads:
    """Reads the pipeline file again when asked, one read at a time."""

    def __init__(self, host: ReloadHost, notifier: Notifier, digest: str | None) -> None:
        self.host = host
        self.notifier = notifier
        self.digest = digest  # of the bytes running: a save with the same bytes is no reload
        self.invalid = False  # the file was last found wrong, and that was said
        self.reading = False
        self.again: str | None = None  # asked again while reading: one more read follows

    def ask(self, why: str) -> None:
        if self.host.stopping:
            return  # READY=1 after STOPPING=1 would tell systemd the opposite of the truth
        if self.reading:
            self.again = why  # one more read once this one is done: the file may have moved on
            return
        self.reading = True
        self.notifier.reloading()
        path, digest = self.host.pipeline.config_path, self.digest

        def failed(error: BaseException) -> None:
            self._read(why, Reread(None, None, (f"{path}: could not be read again: {error!r}",)))

        workers = self.host.workers
        workers.offload(
            workers.io,
            lambda: reread(path, digest, always=why == "SIGHUP"),
            lambda outcome: self._read(why, outcome),
            failed,
        )

    def _read(self, why: str, outcome: Reread) -> None:
        self.reading = False
        try:
            if not self.host.stopping:
                self._apply(why, outcome)
        finally:
            if not self.host.stopping:
                self.notifier.ready()
            again, self.again = self.again, None
            if again is not None:
                self.ask(again)

    def _apply(self, why: str, outcome: Reread) -> None:
        decision = judge_reload(outcome, self.host.pipeline, self.invalid)
        if isinstance(decision, Refused):
            self.invalid = self.invalid or decision.file_invalid
            log.error("config.invalid", why=why, problems=list(decision.problems), action=KEEPING)
            self.host.pipeline_checked(decision.problems)
        elif isinstance(decision, SameBytes):
            if decision.restored:  # put back as it was: say the alarm is over
                self.invalid = False
                log.info("config.restored", why=why)
                self.host.pipeline_checked(())
        else:
            self.digest = decision.digest
            self.invalid = False
            self.host.pipeline_checked(())
            if isinstance(decision, Unchanged):
                (log.info if why == "SIGHUP" else log.debug)("config.unchanged", why=why)
            else:
                self.host.replace(why, decision)
