"""What the daemon watches, and which stages a changed path affects (the key then decides)."""

from __future__ import annotations

import copy
import os
import posixpath
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stagewatch.entry import invalidated_stage
from stagewatch.file_identity import FileIdentity, identity_of, settled
from stagewatch.graph import ReadIndex
from stagewatch.paths import IgnoreRules, PathKind, absolute, classify, glob_base, is_within, split
from stagewatch.patterns import Driver, driver, instance_name
from stagewatch.pipeline import Pipeline
from stagewatch.stage import Change


def _code_index(code_files: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """code file -> the module stages that import it."""
    index: dict[str, set[str]] = {}
    for name, paths in code_files.items():
        for path in paths:
            index.setdefault(path, set()).add(name)
    return index


class ImpactMap:
    """For one pipeline: the folders that matter, and the stages each change makes candidates."""

    def __init__(
        self,
        pipeline: Pipeline,
        code_files: Mapping[str, Iterable[str]],
        folder_links: FolderLinks | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.folder_links = folder_links if folder_links is not None else FOLDER_LINKS
        self.root = pipeline.output_dir.as_posix()
        self.rules = IgnoreRules(self.root, pipeline.ignore)
        self.index = ReadIndex(pipeline.stages, self.root)
        self.cache_dir = self.rules.cache_dir
        self.config_path = pipeline.config_path.as_posix()
        self.code = _code_index(code_files)
        self.python_roots = {
            stage.name: stage.search_path(self.root) for stage in pipeline.stages if stage.module is not None
        }
        self.outputs = [
            (absolute(output, self.root), stage.name) for stage in pipeline.stages for output in stage.outputs
        ]
        self.drivers: list[Driver] = [
            driver(pipeline.template(pattern), self.root) for pattern in pipeline.patterns
        ]

    def with_code(self, code_files: Mapping[str, Iterable[str]]) -> ImpactMap:
        """The same map with other code files: the read index is kept, not built again."""
        again = copy.copy(self)
        again.code = _code_index(code_files)
        return again

    def wanted_watches(self) -> dict[str, bool]:
        """Folder -> recursive: what holds inputs, globs' bases, code, outputs, the config and the cache.

        Symlinked folders inside input folders and globs' bases are wanted by themselves, named
        through the link as keys name their files: a recursive inotify watch does not follow them.
        """
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
        for found in self.drivers:
            # A driver is no instance's input until its file exists: a new file is seen anywhere below.
            want(found.base, True)
        for root in [folder for folder, recursive in wanted.items() if recursive]:
            for link in self.folder_links.below(root, self.rules):
                want(link, True)
        self.folder_links.sweep()
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
        # Recursively with pattern stages: an instance's entry may lie in a folder of its own
        # ("page:guide/intro.hash"), and its removal is an `invalidate`. Without them the cache
        # holds no folder an entry lies in.
        want(self.cache_dir, bool(self.drivers))
        # The output folder's own parent: its deletion or move is seen there
        # (docs/design.md#folders-that-vanish).
        want(posixpath.dirname(self.root), False)
        return wanted

    def is_own_write(self, path: str) -> bool:
        """Whether a path is a stage's output, inside one, or a folder made to hold one:
        what stages write, not what a person edits."""
        return any(is_within(path, output) or is_within(output, path) for output, _ in self.outputs)

    def is_config(self, change: Change) -> bool:
        return change.path == self.config_path

    def is_bookkeeping(self, change: Change) -> bool:
        """A file of stagewatch's own cache written or replaced (digests, state, logs, run
        records): nothing to act on, and nothing to hold a debounce open for. An entry that
        went away is a person's `invalidate`; a folder that came or went may be the cache itself."""
        return (
            not change.is_dir
            and is_within(change.path, self.cache_dir)
            and invalidated_stage(change.path, change.gone, self.cache_dir) is None
        )

    def invalidated(self, change: Change) -> str | None:
        """The stage whose entry this change removed (a `stagewatch invalidate`), if any."""
        name = invalidated_stage(change.path, change.gone, self.cache_dir)
        return name if name is not None and self.pipeline.has_stage(name) else None

    def alters_listing(self, change: Change) -> bool:
        """Whether the change can add or remove a pattern stage's instance: a file the driver
        matches that is no instance yet, an instance's driver file gone, or a folder that came
        or went below (or above) a driver's base. What the drivers leave out (editor temp
        files, the cache, `ignore`) never makes an instance."""
        if not self.drivers or self.rules.ignores(change.path, change.is_dir):
            return False
        for found in self.drivers:
            if change.is_dir:
                if is_within(change.path, found.base) or is_within(found.base, change.path):
                    return True
                continue
            value = found.value_of(change.path)
            if value is None:
                continue
            known = self.pipeline.has_stage(instance_name(found.stage, value))
            if known == change.gone:
                return True
        return False

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


@dataclass(frozen=True, slots=True)
class _Listing:
    """What a walk needs of one folder, and the folder as it was when read."""

    identity: FileIdentity
    folders: tuple[str, ...]
    links: tuple[str, ...]


class FolderLinks:
    """Finds the symlinked folders below folders, reading again only the folders that changed.

    A folder's listing (its subfolders, its symlinks) is kept with the folder's identity and
    mtime: a link made, removed or swapped changes its folder's mtime, so a walk over an
    unchanged tree costs one stat per folder, not a read. A listing read less than
    RACY_WINDOW_NS after the folder changed is read again next time (a change within the
    same timestamp tick would not show).
    """

    def __init__(self) -> None:
        self._listings: dict[str, _Listing] = {}
        self._visited: set[str] = set()

    def below(self, root: str, rules: IgnoreRules) -> list[str]:
        """The symlinked folders below root, named through their links, that a watch of root misses.

        A link whose target lies inside root, or inside a target already found, adds nothing
        (and a link loop ends there); links inside a link's target are found too; ignored
        folders are not entered.
        """
        covered = [os.path.realpath(root)]
        found: list[str] = []
        stack = [root]
        while stack:
            current = stack.pop()
            listing = self._listing(current)
            if listing is None:
                continue
            prefix = current.rstrip("/") + "/"
            stack.extend(
                prefix + name
                for name in listing.folders
                if not rules.ignores_entry(prefix + name, True, name)
            )
            for name in listing.links:
                path = prefix + name
                # Followed now, not when listed: a link made before its target is still found.
                if not os.path.isdir(path) or rules.ignores_entry(path, True, name):
                    continue
                target = os.path.realpath(path)
                if any(is_within(target, seen) for seen in covered):
                    continue
                covered.append(target)
                found.append(path)
                stack.append(path)
        return found

    def _listing(self, folder: str) -> _Listing | None:
        self._visited.add(folder)
        try:
            st = os.stat(folder)
        except OSError:
            return None
        identity = identity_of(st)
        known = self._listings.get(folder)
        if known is not None and known.identity == identity:
            return known
        read_at_ns = time.time_ns()
        folders: list[str] = []
        links: list[str] = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            folders.append(entry.name)
                        elif entry.is_symlink():
                            links.append(entry.name)
                    except OSError:
                        continue  # gone mid-read
        except OSError:
            self._listings.pop(folder, None)
            return None
        listing = _Listing(identity, tuple(folders), tuple(links))
        if settled(st.st_mtime_ns, read_at_ns):
            self._listings[folder] = listing
        else:
            self._listings.pop(folder, None)
        return listing

    def sweep(self) -> None:
        """Forget the folders that no walk since the last sweep has visited (removed, or no longer wanted)."""
        for folder in self._listings.keys() - self._visited:
            del self._listings[folder]
        self._visited = set()


# One for the daemon's life: an ImpactMap is made again on every reload and code change.
FOLDER_LINKS = FolderLinks()
