"""Open tabs: what each one loaded (by identity: which file, which bytes), and what a settled
round means for it: nothing, its stylesheets swapped in place, or a reload."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from stagewatch.serve.rules import is_stylesheet

MISSING = "missing"
# What a tab shown a file still being written has of it: no file's identity, so it reloads
# once the stage is done, even into the same bytes (and its banner goes).
UNFINISHED = "unfinished"
# A file written within this long of being read may change again within the same mtime tick
# without its stat showing it ("racy git"): its identity is not reused.
RACY_S = 2.0


def identity(path: str, data: bytes) -> str:
    """Which file and which bytes: a URL that comes to another file (about.html appearing where
    404.html was served) changes too."""
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(data)
    return digest.hexdigest()[:32]


@dataclass(slots=True)
class Tab:
    """One open page, through its WebSocket."""

    page: str  # its URL path
    seen: dict[str, str] = field(default_factory=dict)  # URL path -> identity of what it has


@dataclass(frozen=True, slots=True)
class Reload:
    changed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SwapStylesheets:
    paths: tuple[str, ...]


def after_round(tab: Tab, now: Mapping[str, str]) -> Reload | SwapStylesheets | None:
    """What a tab must do once a round has settled, given the identities of its URLs now (a
    URL left out of `now` is not trusted now, and stays as it was)."""
    changed = tuple(sorted(url for url, seen in tab.seen.items() if url in now and now[url] != seen))
    if not changed:
        return None
    if tab.page in changed or not all(is_stylesheet(url) for url in changed):
        return Reload(changed)
    return SwapStylesheets(changed)


def tracked(tabs: Iterable[Tab]) -> set[str]:
    return {url for tab in tabs for url in tab.seen}


class Identities:
    """File identities, reused while a file's (size, mtime, inode, ctime) is unchanged; called
    from worker threads."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self._lock = threading.Lock()

    def of(self, path: str) -> str:
        try:
            info = os.stat(path)
        except OSError:
            return MISSING
        key = (info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns)
        with self._lock:
            known = self._known.get(path)
        if known is not None and known[0] == key:
            return known[1]
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError:
            return MISSING
        found = identity(path, data)
        self.remember(path, key, found)
        return found

    def remember(self, path: str, key: tuple[int, int, int, int], found: str) -> None:
        if time.time() - key[1] / 1e9 < RACY_S:
            return
        with self._lock:
            self._known[path] = (key, found)
