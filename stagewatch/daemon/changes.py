"""A debounced burst of filesystem changes, and what it means for the stages."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stagewatch.daemon.events import Touch
from stagewatch.daemon.impact import ImpactMap
from stagewatch.daemon.relisting import Relisted, relist
from stagewatch.daemon.scheduler import Burst, start_burst
from stagewatch.entry import invalidated_stage
from stagewatch.inputs import walk_files
from stagewatch.paths import is_within
from stagewatch.stage import Change


class Debounce:
    """Collects changes until they have been quiet for `quiet_s` (or the cap has passed)."""

    def __init__(self) -> None:
        self.pending: list[Change] = []
        self.burst: Burst | None = None

    def add(self, changes: list[Change], now: float, quiet_s: float) -> float:
        """Take changes seen at `now` (monotonic); the delay until the burst is due."""
        self.pending.extend(changes)
        self.burst = start_burst(now) if self.burst is None else self.burst.add(now)
        return self.burst.due_at(quiet_s) - now

    def take(self) -> list[Change]:
        changes, self.pending, self.burst = self.pending, [], None
        return changes


@dataclass(frozen=True, slots=True)
class Batch:
    """What a burst of changes means."""

    invalidated: tuple[str, ...]  # stages whose entry a person removed
    affected: dict[str, Touch]
    sources: tuple[str, ...]  # changed paths people wrote (not stages' own outputs)
    echoes: tuple[str, ...]  # changed paths that stages wrote
    reload: bool  # the pipeline file changed
    ground_gone: bool  # the output folder was deleted or moved away
    relisted: Relisted | None = None  # files came or went where pattern stages' drivers look


def folder_identity(folder: Path | str) -> tuple[int, int] | None:
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


def read_batch(
    changes: list[Change],
    impact: ImpactMap,
    has_stage: Callable[[str], bool],
    ground: tuple[Path, tuple[int, int] | None],
    watch_new_folders: Callable[[tuple[str, ...]], None],
) -> Batch:
    """On the I/O thread: watch new folders, walk them, find what the changes touch, and list
    the pattern stages' drivers again if files came or went there.

    `ground` is the output folder and its identity when the daemon started.
    """
    invalidated: list[str] = []
    # Before folding events by path: a deletion followed by a rewrite must not hide it.
    for change in changes:
        name = invalidated_stage(change.path, change.gone, impact.cache_dir)
        if name is not None and has_stage(name):
            invalidated.append(name)
    reload = any(impact.is_config(change) for change in changes)
    root, root_id = ground
    ground_gone = any(is_within(str(root), change.path) for change in changes) and (
        folder_identity(root) != root_id
    )
    if any(change.is_dir for change in changes):
        # Watch new folders before walking them: a file made in between is not missed.
        watch_new_folders(tuple(c.path for c in changes if c.is_dir and not c.gone))
    seen: dict[str, Change] = {}
    for change in changes:
        seen[change.path] = change
        if change.is_dir and not change.gone:
            # Files made in a new folder before its watch existed send no event
            # (docs/design.md#new-folders-race-their-watch).
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
            affected[name] = Touch(change.path, written, written) if known is None else widen(known, written)
    # One listing for the whole burst (a checkout of 500 pages), after the walks above.
    relisted = relist(impact.pipeline) if any(impact.alters_listing(c) for c in changes) else None
    return Batch(
        tuple(dict.fromkeys(invalidated)),
        affected,
        tuple(sources),
        tuple(echoes),
        reload,
        ground_gone,
        relisted,
    )
