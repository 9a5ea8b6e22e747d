"""watchdog observer -> "these paths changed"; the only module that imports watchdog."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import threading
from collections.abc import Callable, Mapping

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from stagewatch.paths import is_within
from stagewatch.stage import Change, WatcherKind

log = structlog.get_logger(__name__)

POLL_INTERVAL_S = 1.0
STOP_TIMEOUT_S = 2.0
SYSCTL_HINT = "sudo sysctl fs.inotify.max_user_watches=524288 (and max_user_instances)"


# What is asked of inotify. Not opens and reads: every check opens the folders it walks and
# the entries it reads, and those events cost the daemon's threads three times the check.
EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]

ChangeSink = Callable[[list[Change]], None]
"""Receives changes on watchdog's thread: it must only hand them to the daemon's loop."""
TroubleSink = Callable[[str], None]
"""Receives a reason ("overflow", "watch-failed") to distrust the watcher and rescan everything."""


# watchdog gives every watch a thread of its own (and before 7.0 an inotify instance too: a
# user has 128, fs.inotify.max_user_instances, for all their programs): past this many
# folders, those side by side are watched as one recursive watch of the folder that holds them.
WATCH_BUDGET = 32
# A folder holding at least this many of the watches is the first to stand in for them.
MERGE_FROM = 8


def plan_watches(
    wanted: Mapping[str, bool],
    exists: Callable[[str], bool] = os.path.isdir,
    is_link: Callable[[str], bool] = os.path.islink,
    within: str | None = None,
    budget: int = WATCH_BUDGET,
) -> dict[str, bool]:
    """Folders to watch (path -> recursive) for the folders wanted.

    A folder that does not exist yet is stood in for by its nearest existing parent, so its
    creation is seen. Every watched folder's parent is watched too (not recursively): a
    watch dies with its folder, and only the parent sees it come back (`rm -rf x && git
    checkout x`). Folders inside a recursive watch need no watch of their own, unless a
    symlink lies on the way down: inotify does not follow links. More than `budget` watches
    are merged below `within` (the project's folder, never itself): see `_merge`.
    """
    plan: dict[str, bool] = {}
    links: dict[str, bool] = {}

    def is_link_once(path: str) -> bool:  # a plan asks of the same folders again and again
        if path not in links:
            links[path] = is_link(path)
        return links[path]

    def add(path: str, recursive: bool) -> None:
        while not exists(path) and path != "/":
            path, recursive = posixpath.dirname(path), False
        plan[path] = plan.get(path, False) or recursive

    for folder, recursive in wanted.items():
        add(folder, recursive)
    for folder in list(plan):
        if folder != "/":
            add(posixpath.dirname(folder), False)
    plan = _uncovered(plan, is_link_once)
    while within is not None and len(plan) > budget:
        merged = _merge(plan, within, is_link_once)
        if merged is None:
            break
        plan[merged] = True
        add(posixpath.dirname(merged), False)
        plan = _uncovered(plan, is_link_once)
    return dict(sorted(plan.items()))


def _uncovered(plan: Mapping[str, bool], is_link: Callable[[str], bool]) -> dict[str, bool]:
    """The plan without the folders a recursive watch above already covers."""
    recursive_roots = {path for path, recursive in plan.items() if recursive}

    def covered(path: str) -> bool:
        # Up from the folder, a recursive watch above covers it unless a link lies between.
        while path != "/":
            if is_link(path):
                return False
            path = posixpath.dirname(path)
            if path in recursive_roots:
                return True
        return False

    return {path: recursive for path, recursive in plan.items() if not covered(path)}


def _merge(plan: Mapping[str, bool], within: str, is_link: Callable[[str], bool]) -> str | None:
    """The folder below `within` to watch recursively in place of the watches under it: the
    deepest one holding MERGE_FROM of them (a recursive watch no wider than it must be), else
    the one holding the most. None when no folder holds two (nothing to gain).

    A watch reached through a symlink counts for no folder above the link: a recursive watch
    would not see inside it.
    """
    counts: dict[str, int] = {}
    for path in plan:
        folder = path
        while folder != within and is_within(folder, within) and not is_link(folder):
            folder = posixpath.dirname(folder)
            if folder == within:
                break
            counts[folder] = counts.get(folder, 0) + 1
    if not counts or max(counts.values()) < 2:
        return None
    deep = [folder for folder, count in counts.items() if count >= MERGE_FROM]
    if deep:
        return max(deep, key=lambda folder: (folder.count("/"), counts[folder]))
    return max(counts, key=lambda folder: (counts[folder], folder.count("/")))


def _watch_path(path: str) -> tuple[str, tuple[int, int] | None]:
    """What to hand watchdog for a folder, and the folder a symlink resolved to (None: not a link).

    watchdog asks inotify not to follow a final symlink, so a symlinked folder is watched as
    "link/.": the kernel follows the link on the way to ".", and events keep the link's name,
    the one keys use.
    """
    if not os.path.islink(path):
        return path, None
    st = os.stat(path)
    return path + "/.", (st.st_dev, st.st_ino)


def _target_of(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _clean(path: str) -> str:
    """An event path below a "link/." watch, without the "/."."""
    return posixpath.normpath(path) if "/./" in path or path.endswith("/.") else path


def _links_to_folder(path: str) -> bool:
    """Whether a path inotify called a file is a folder after all: a symlink to one."""
    return os.path.isdir(path)


class _Handler(FileSystemEventHandler):
    def __init__(self, sink: ChangeSink, linked: Callable[[], frozenset[str]]) -> None:
        self.sink = sink
        self.linked = linked

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write") or (kind == "modified" and event.is_directory):
            return  # a folder is "modified" whenever a file in it is: the file's own event says it
        src = _clean(os.fsdecode(event.src_path))
        is_dir = event.is_directory
        # A symlinked folder made, swapped in (`ln -s v2 tmp && mv -T tmp current`) or removed is
        # a folder change: the daemon then plans again, and the link's watch follows its target.
        if kind == "moved":
            dest = _clean(os.fsdecode(event.dest_path))
            self.sink([
                Change(src, is_dir or src in self.linked(), True),
                Change(dest, is_dir or _links_to_folder(dest), False),
            ])  # fmt: skip
        elif kind == "created":
            self.sink([Change(src, is_dir or _links_to_folder(src), False)])
        elif kind == "deleted":
            self.sink([Change(src, is_dir or src in self.linked(), True)])
        else:
            self.sink([Change(src, is_dir, False)])


class _OverflowHook(logging.Handler):
    """watchdog notices a kernel queue overflow but only logs it; this turns it into a rescan.

    (gorakhargosh/watchdog #654: older versions dropped it silently; the periodic
    reconciliation covers those.)
    """

    def __init__(self, on_trouble: TroubleSink) -> None:
        super().__init__(logging.WARNING)
        self.on_trouble = on_trouble

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "overflow" in message.lower():
            self.on_trouble("overflow")
        else:  # watchdog's own chatter (a watch torn down mid-event, say): there if asked for
            log.debug("watch.library", message=message, logger=record.name)


class Watcher:
    """Keeps a set of folder watches in step with a plan; native events, polling as a fallback."""

    def __init__(self, on_changes: ChangeSink, on_trouble: TroubleSink, kind: WatcherKind) -> None:
        self.on_trouble = on_trouble
        self.kind = kind
        self._linked: frozenset[str] = frozenset()  # replaced whole: the handler's thread reads it
        self._handler = _Handler(on_changes, lambda: self._linked)
        self._native: BaseObserver | None = None
        self._polling: BaseObserver | None = None
        # path -> (observer, watch, recursive, the folder a symlinked path resolved to)
        self._watches: dict[str, tuple[BaseObserver, ObservedWatch, bool, tuple[int, int] | None]] = {}
        self._failed: set[str] = set()
        self._lock = threading.Lock()
        self._hook = _OverflowHook(on_trouble)

    def start(self) -> None:
        watchdog_log = logging.getLogger("watchdog")
        watchdog_log.addHandler(self._hook)
        watchdog_log.propagate = False
        if self.kind is WatcherKind.NATIVE:
            self._native = Observer()
            self._native.start()

    def _polling_observer(self) -> BaseObserver:
        if self._polling is None:
            self._polling = PollingObserver(timeout=POLL_INTERVAL_S)
            self._polling.start()
        return self._polling

    @property
    def watched(self) -> dict[str, bool]:
        with self._lock:
            return {path: recursive for path, (_, _, recursive, _) in self._watches.items()}

    @property
    def polling_count(self) -> int:
        with self._lock:
            return sum(1 for observer, _, _, _ in self._watches.values() if observer is self._polling)

    def update(
        self, plan: Mapping[str, bool], renew: tuple[str, ...] = (), retry_failed: bool = False
    ) -> None:
        """Add and remove watches to match the plan; renew the watches at or below `renew`,
        and those of symlinked folders whose link now points elsewhere.

        A folder whose watch failed is tried again only when asked (the periodic rescan):
        retrying on every change would turn a stale NFS handle into a busy loop.

        The plan's new watches are made before the ones it no longer wants are removed, so a
        change made meanwhile is seen by one or the other: a plan over the budget swaps dozens
        of folders' watches for one recursive watch at once.
        """
        if retry_failed:
            self._failed.clear()
        with self._lock:
            current = dict(self._watches)
        dropped: list[tuple[str, BaseObserver, ObservedWatch]] = []
        for path, (observer, watch, recursive, target) in current.items():
            if any(is_within(path, again) for again in renew) or (
                target is not None and _target_of(path) != target
            ):
                # A watch dead with its folder, or a link's that now points elsewhere: nothing
                # to keep meanwhile, and watchdog would hand back its emitter for the same path.
                self._unschedule(path, observer, watch)
            elif plan.get(path) != recursive:
                dropped.append((path, observer, watch))
        changing = {path for path, _, _ in dropped}
        with self._lock:
            missing = [
                (p, r)
                for p, r in plan.items()
                if (p not in self._watches or p in changing) and p not in self._failed
            ]
        for path, recursive in missing:
            self._schedule(path, recursive)
        for path, observer, watch in dropped:
            self._unschedule(path, observer, watch)

    def _unschedule(self, path: str, observer: BaseObserver, watch: ObservedWatch) -> None:
        with contextlib.suppress(KeyError, OSError):  # its folder is gone, and the watch with it
            observer.unschedule(watch)
        with self._lock:
            if path in self._watches and self._watches[path][1] is watch:
                del self._watches[path]  # not the watch made in its place (recursive now, say)
            self._linked = frozenset(p for p, (_, _, _, t) in self._watches.items() if t is not None)

    def _schedule(self, path: str, recursive: bool) -> None:
        observer = self._native if self._native is not None else self._polling_observer()
        try:
            where, target = _watch_path(path)
        except OSError:
            return  # a link gone dangling since planning: its parent's watch sees it change
        try:
            watch = observer.schedule(self._handler, where, recursive=recursive, event_filter=EVENTS)
        except FileNotFoundError:
            return  # gone since planning; the parent's watch sees it return
        except OSError as exc:
            if observer is self._polling or exc.errno not in (errno.ENOSPC, errno.EMFILE):
                log.error("watch.failed", path=path, error=str(exc), retry="at the next rescan")
                self._failed.add(path)
                self.on_trouble("watch-failed")
                return
            log.warning(
                "watch.limit", path=path, error=exc.strerror, fallback="polling", raise_it_with=SYSCTL_HINT
            )
            self.on_trouble("watch-limit")
            observer = self._polling_observer()
            try:
                watch = observer.schedule(self._handler, where, recursive=recursive, event_filter=EVENTS)
            except OSError as again:
                log.error("watch.failed", path=path, error=str(again), retry="at the next rescan")
                self._failed.add(path)
                return
        with self._lock:
            self._watches[path] = (observer, watch, recursive, target)
            self._linked = frozenset(p for p, (_, _, _, t) in self._watches.items() if t is not None)

    def stop(self) -> None:
        observers = [o for o in (self._native, self._polling) if o is not None]
        for observer in observers:
            observer.stop()
        for observer in observers:
            observer.join(STOP_TIMEOUT_S)
        logging.getLogger("watchdog").removeHandler(self._hook)
