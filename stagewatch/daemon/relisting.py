"""The pattern stages' drivers listed again while watching: the pipeline that the files there
now make (docs/design.md#pattern-stages), and the files of the instances that went.

Files came or went (a batch of changes, a rescan): `relist` lists the drivers on the I/O
thread and expands the pipeline it was asked about for the new listing. Back on the loop,
`Relistings.take` puts it in place through the shell, as a reload does, unless the pipeline
was replaced meanwhile (a reload): then the drivers are listed again for the one running, so
a listing made for old declarations never puts them back. Instances that went are retired
(their declared outputs, entry and log deleted, their state forgotten) on the I/O thread;
one whose run is being cancelled once that run has ended, so it leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog

from stagewatch.config import with_listing
from stagewatch.daemon.reload import Replace, StageChanges, stage_changes
from stagewatch.daemon.workers import Workers
from stagewatch.errors import ConfigError
from stagewatch.paths import IgnoreRules, posix
from stagewatch.patterns import INSTANCE_SEPARATOR, list_drivers
from stagewatch.pipeline import Pipeline
from stagewatch.retire import gone_instances, retire
from stagewatch.state import StateRecorder

log = structlog.get_logger(__name__)

FILES = "files"  # why the pipeline was replaced: its drivers' files came or went


@dataclass(frozen=True, slots=True)
class Relisted:
    """The drivers listed again for `base`: the pipeline they make now (None: the same
    instances), or why that pipeline cannot run (a new instance closes a cycle)."""

    base: Pipeline
    pipeline: Pipeline | None
    problems: tuple[str, ...] = ()


def listing_of(pipeline: Pipeline) -> dict[str, tuple[str, ...]]:
    """The listing a pipeline's instances were made from: pattern -> values, sorted."""
    return {
        pattern: tuple(sorted(str(pipeline.stage(name).value) for name in pipeline.instances_of(pattern)))
        for pattern in pipeline.patterns
    }


def relist(pipeline: Pipeline) -> Relisted:
    """On the I/O thread (it walks the drivers' folders): the pipeline for the files there now."""
    root = posix(pipeline.output_dir)
    listing = list_drivers(pipeline.declared, root, IgnoreRules(root, pipeline.ignore))
    if listing == listing_of(pipeline):
        return Relisted(pipeline, None)
    try:
        return Relisted(pipeline, with_listing(pipeline, listing))
    except ConfigError as exc:
        return Relisted(pipeline, None, tuple(exc.problems))


def retired_names(removed: Iterable[str], pipeline: Pipeline) -> list[str]:
    """The removed stages that were instances of a pattern the pipeline still has."""
    return [
        name
        for name in removed
        if INSTANCE_SEPARATOR in name and pipeline.is_pattern(name.partition(INSTANCE_SEPARATOR)[0])
    ]


def retire_files(pipeline: Pipeline, names: list[str], recorder: StateRecorder) -> None:
    """On the I/O thread: the instances' declared outputs, entries and logs deleted, their
    state forgotten (retire skips one that is back in the pipeline by now)."""
    if names:
        retire(pipeline, names)
        recorder.forget(name for name in names if not pipeline.has_stage(name))


def say_replaced(why: str, changes: StageChanges) -> None:
    """What a new pipeline put in place changed: instances, when its drivers' files came or went."""
    if why == FILES:
        log.info("pattern.instances_changed", added=list(changes.added), removed=list(changes.removed))
        return
    log.info(
        "config.reloaded",
        why=why,
        added=list(changes.added),
        changed=list(changes.changed),
        removed=list(changes.removed),
    )


class RelistHost(Protocol):
    """The daemon, as its relistings see it."""

    @property
    def pipeline(self) -> Pipeline: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def workers(self) -> Workers: ...

    @property
    def recorder(self) -> StateRecorder: ...

    def replace(self, why: str, decision: Replace) -> None:
        """Put the new pipeline in place."""


class Relistings:
    """Lists the drivers again when asked, puts what they make in place, retires what went."""

    def __init__(self, host: RelistHost) -> None:
        self.host = host
        self.after_run: set[str] = set()  # retired instances whose cancelled run has not ended

    def retire_gone(self) -> None:
        """On the I/O thread, at start: instances whose file went while no daemon watched."""
        pipeline = self.host.pipeline
        retire_files(pipeline, gone_instances(pipeline), self.host.recorder)

    def ask(self, then: Callable[[], None] | None = None) -> None:
        """List the drivers again for the running pipeline; `then` once what they make is in place."""
        pipeline, workers = self.host.pipeline, self.host.workers
        if not pipeline.patterns:
            if then is not None:
                then()
            return

        def failed(error: BaseException) -> None:
            log.error("daemon.internal_error", during="listing the drivers", error=repr(error))
            if then is not None:
                then()

        workers.offload(workers.io, lambda: relist(pipeline), lambda found: self.take(found, then), failed)

    def take(self, relisted: Relisted, then: Callable[[], None] | None = None) -> None:
        """On the loop: a listing made on the I/O thread, put in place if it still applies."""
        if self.host.stopping:
            return
        if relisted.base is not self.host.pipeline:
            self.ask(then)  # replaced meanwhile: compare the files with the declarations running
            return
        if relisted.problems:
            log.error("pattern.instances_refused", problems=list(relisted.problems))
        elif relisted.pipeline is not None:
            changes = stage_changes(relisted.base, relisted.pipeline)
            self.host.replace(FILES, Replace(relisted.pipeline, None, changes, watcher_changed=False))
        if then is not None:
            then()

    def retire(self, pipeline: Pipeline, removed: Iterable[str], running: Collection[str]) -> None:
        """Instances a new pipeline removed: their files go on the I/O thread, before the checks
        that follow are made (what reads the site sees the page gone); a running one's once
        its cancelled run has ended (what it wrote until then goes too)."""
        names = retired_names(removed, pipeline)
        self.after_run.update(name for name in names if name in running)
        now = [name for name in names if name not in running]
        if now:
            self.host.workers.on_io(lambda: retire_files(pipeline, now, self.host.recorder))

    def run_ended(self, name: str) -> None:
        """On the loop: a run ended; a retired instance's files go now."""
        if name in self.after_run:
            self.after_run.discard(name)
            pipeline = self.host.pipeline
            self.host.workers.on_io(lambda: retire_files(pipeline, [name], self.host.recorder))
