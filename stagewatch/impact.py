"""What the daemon watches, and which stages a changed path affects (the key then decides)."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping

from stagewatch.graph import ReadIndex
from stagewatch.layout import stage_of_entry
from stagewatch.paths import IgnoreRules, PathKind, absolute, classify, glob_base, is_within, split
from stagewatch.pipeline import Pipeline
from stagewatch.stage import Change


class ImpactMap:
    """For one pipeline: the folders that matter, and the stages each change makes candidates."""

    def __init__(self, pipeline: Pipeline, code_files: Mapping[str, Iterable[str]]) -> None:
        self.pipeline = pipeline
        self.root = pipeline.output_dir.as_posix()
        self.rules = IgnoreRules(self.root, pipeline.ignore)
        self.index = ReadIndex(pipeline.stages, self.root)
        self.cache_dir = self.rules.cache_dir
        self.config_path = pipeline.config_path.as_posix()
        self.code: dict[str, set[str]] = {}
        for name, paths in code_files.items():
            for path in paths:
                self.code.setdefault(path, set()).add(name)
        self.python_roots = {
            stage.name: stage.search_path(self.root) for stage in pipeline.stages if stage.module is not None
        }
        self.outputs = [
            (absolute(output, self.root), stage.name) for stage in pipeline.stages for output in stage.outputs
        ]

    def wanted_watches(self) -> dict[str, bool]:
        """Folder -> recursive: what holds inputs, globs' bases, code, outputs, the config and the cache."""
        wanted: dict[str, bool] = {}

        def want(folder: str, recursive: bool) -> None:
            wanted[folder] = wanted.get(folder, False) or recursive

        for stage in self.pipeline.stages:
            for pattern in stage.inputs + stage.sources:
                path = absolute(pattern, self.root)
                kind = classify(pattern)
                if kind is PathKind.GLOB:
                    base = glob_base(path)
                    rest = split(path)[len(split(base)) :]
                    want(base, len(rest) > 1 or "**" in rest)
                elif kind is PathKind.FOLDER or os.path.isdir(path):
                    want(path, True)
                else:
                    want(posixpath.dirname(path), False)
        for path in self.code:
            want(posixpath.dirname(path), False)
        for stage in self.pipeline.stages:
            if stage.module is not None:
                # Where its module lives, or will: a stage whose module appears later is seen.
                package = stage.module.split(".")[:-1]
                for root in self.python_roots[stage.name]:
                    want(posixpath.join(root, *package), False)
        for output, _ in self.outputs:
            want(posixpath.dirname(output), False)
        want(posixpath.dirname(self.config_path), False)
        want(self.cache_dir, False)
        # The output folder's own parent: its deletion or move is seen there (DESIGN §5, Stop).
        want(posixpath.dirname(self.root), False)
        return wanted

    def is_own_write(self, path: str) -> bool:
        """Whether a path is a stage's output, inside one, or a folder made to hold one:
        what stages write, not what a person edits."""
        return any(is_within(path, output) or is_within(output, path) for output, _ in self.outputs)

    def is_config(self, change: Change) -> bool:
        return change.path == self.config_path

    def invalidated(self, change: Change) -> str | None:
        """The stage whose entry this change removed (a `stagewatch invalidate`), if any."""
        if not change.gone:
            return None
        name = stage_of_entry(change.path, self.cache_dir)
        return name if name is not None and self.pipeline.has_stage(name) else None

    def affected(self, change: Change) -> set[str]:
        """Stages whose key or outputs this change may touch."""
        if is_within(change.path, self.cache_dir):
            return set()
        stages = self.pipeline.stages
        reads = self.index.readers_of(change.path, change.is_dir, self.rules)
        names = {stages[read.stage].name for read in reads}
        names |= self.code.get(change.path, set())
        if change.is_dir:
            names |= {n for path, users in self.code.items() if is_within(path, change.path) for n in users}
        if (
            change.path.endswith(".py")
            and change.path not in self.code
            and not self.rules.ignores(change.path)
        ):
            # A module no stage imports yet (a new one, or one a stage will import once it
            # exists): every module stage on that path is checked, and the key decides.
            names |= {
                name
                for name, roots in self.python_roots.items()
                if any(is_within(change.path, root) for root in roots)
            }
        if change.gone:
            names |= {
                name
                for output, name in self.outputs
                if is_within(output, change.path) or is_within(change.path, output)
            }
        return names
