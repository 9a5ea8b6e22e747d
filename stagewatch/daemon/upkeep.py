"""Which folders the daemon watches, kept in step with the pipeline and its stages' imports.

The decisions live here: which code files a check found for each module stage, whether they
lie in folders not watched yet, which watches an overflow renews, and what a reload forgets.
watching.py carries them out: the watch plan is made, and the watcher updated, on the I/O thread.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path

from stagewatch.attempt import Prepared
from stagewatch.daemon.impact import ImpactMap
from stagewatch.daemon.watcher import plan_watches
from stagewatch.pipeline import Pipeline


def within_wanted(folder: str, wanted: Mapping[str, bool]) -> bool:
    """Whether a folder is one the watches were made for, or lies in one watched recursively."""
    if folder in wanted:
        return True
    above = posixpath.dirname(folder)
    while above != folder:
        if wanted.get(above):
            return True
        folder, above = above, posixpath.dirname(above)
    return False


def code_files_of(prepared: Prepared, root: Path) -> frozenset[str]:
    """The files a module stage's code is read from: its module and what it imports, absolute."""
    fingerprint = prepared.fingerprint
    return frozenset(
        str(root / rel) if not rel.startswith("/") else rel
        for rel, _ in (*((fingerprint.code,) if fingerprint.code else ()), *fingerprint.deps)
    )


def renewed_after(reason: str, watched: Mapping[str, bool]) -> tuple[str, ...]:
    """The watches to make again after the watcher's trouble: an overflow lost events of any
    of them; other trouble (a watch that failed, the watch limit) is mended by the plan alone."""
    return tuple(watched) if reason == "overflow" else ()


class WatchUpkeep:
    """The code files of module stages, the impact map made with them, and the folders the
    last watch plan wanted. Changed on the loop's thread; `plan` runs on the I/O thread, and
    each side replaces what the other reads whole."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.root = pipeline.output_dir
        self.code_files: dict[str, frozenset[str]] = {}
        self.impact = ImpactMap(pipeline, self.code_files)
        self.wanted: dict[str, bool] = {}  # the folders the last watch update wanted

    def note_code(self, pipeline: Pipeline, checked: Iterable[Prepared]) -> bool:
        """Take the code files a batch of checks found (one new impact map for all of them);
        whether the watches must be updated for a module in a folder not watched yet."""
        changed: list[frozenset[str]] = []
        for prepared in checked:
            stage = prepared.stage
            if stage.module is None or not pipeline.has_stage(stage.name):
                continue  # a command's code is its argv; a stage a reload removed reads nothing now
            if pipeline.stage(stage.name) != stage:
                continue  # checked before a reload changed it: its next check says what it imports
            files = code_files_of(prepared, self.root)
            if self.code_files.get(stage.name) != files:
                self.code_files[stage.name] = files
                changed.append(files)
        if not changed:
            return False
        self.impact = self.impact.with_code(self.code_files)
        folders = {posixpath.dirname(path) for files in changed for path in files}
        return not all(within_wanted(folder, self.wanted) for folder in folders)

    def reloaded(self, pipeline: Pipeline, forgotten: Iterable[str]) -> None:
        """A new pipeline: what the stages that changed or went imported is known no more."""
        for name in forgotten:
            self.code_files.pop(name, None)
        self.impact = ImpactMap(pipeline, self.code_files)

    def plan(self) -> dict[str, bool]:
        """On the I/O thread (it looks at folders): the watches for what the pipeline reads now."""
        self.wanted = self.impact.wanted_watches()  # replaced whole: the loop reads it
        return plan_watches(self.wanted, within=self.impact.root)
