"""Open tabs: what each one loaded (by identity: which file, which bytes), and what a settled
round means for it: nothing, its stylesheets swapped in place, or a reload."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from stagewatch.file_identity import FileIdentity, identity_of, settled
from stagewatch.serve.rules import is_stylesheet

MISSING = "missing"
# What a tab shown a file still being written has of it: no file's identity, so it reloads
# once the stage is done, even into the same bytes (and its banner goes).
UNFINISHED = "unfinished"


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


class Identities:
    """File identities, reused while a file's stat identity is unchanged (and was settled when
    read); called from worker threads."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[FileIdentity, str]] = {}
        self._lock = threading.Lock()

    def of(self, path: str) -> str:
        try:
            info = os.stat(path)
        except OSError:
            return MISSING
        key = identity_of(info)
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

    def remember(self, path: str, key: FileIdentity, found: str) -> None:
        if not settled(key.mtime_ns, time.time_ns()):
            return  # written so lately that a change within the same mtime tick would not show
        with self._lock:
            self._known[path] = (key, found)
