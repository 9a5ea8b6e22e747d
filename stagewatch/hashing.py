"""SHA-256 digests of files, reused while a file's stat is unchanged (a cache kept in SQLite)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from stagewatch.regular import open_regular

log = structlog.get_logger(__name__)

# A digest taken while the file's mtime was this close to the moment of hashing is not
# trusted next time ("racy git"): a same-size edit inside one timestamp tick is invisible
# to stat. Two seconds covers the coarsest filesystems still in use (FAT).
RACY_WINDOW_NS = 2_000_000_000
_CHUNK = 1 << 20
_PARALLEL_FROM = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS digests (
    path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ino INTEGER,
    ctime_ns INTEGER, hashed_at_ns INTEGER, digest TEXT
)
"""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class HashingStopped(Exception):
    """Hashing was given up: stagewatch is stopping."""


def sha256_file(path: str, stop: threading.Event | None = None) -> str:
    """The file's SHA-256 hex; with `stop`, read in chunks so that a stop is not kept waiting
    for a large file (HashingStopped). NotRegularFile (an OSError) for a FIFO or a device,
    which is never waited on."""
    with open_regular(path) as handle:
        if stop is None:
            return hashlib.file_digest(handle, "sha256").hexdigest()
        digest = hashlib.sha256()
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        while size := handle.readinto(buffer):
            if stop.is_set():
                raise HashingStopped(path)
            digest.update(view[:size])
        return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class _Known:
    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int
    hashed_at_ns: int
    digest: str

    def still_valid(self, st: os.stat_result) -> bool:
        return (
            st.st_size == self.size
            and st.st_mtime_ns == self.mtime_ns
            and st.st_ino == self.ino
            and st.st_ctime_ns == self.ctime_ns
            and self.mtime_ns < self.hashed_at_ns - RACY_WINDOW_NS
        )


def _hash_stable(path: str, stop: threading.Event | None = None) -> tuple[str, _Known] | None:
    """Hash a file, again if it changed while being read; None when it cannot be read."""
    for _ in range(3):
        try:
            before = os.stat(path)
            hashed_at_ns = time.time_ns()
            digest = sha256_file(path, stop)
            after = os.stat(path)
        except OSError:
            return None
        if (before.st_mtime_ns, before.st_size, before.st_ino) == (
            after.st_mtime_ns,
            after.st_size,
            after.st_ino,
        ):
            known = _Known(
                before.st_size,
                before.st_mtime_ns,
                before.st_ino,
                before.st_ctime_ns,
                hashed_at_ns,
                digest,
            )
            return digest, known
    return digest, _Known(0, 0, 0, 0, 0, digest)  # still moving: use it, never trust it again


class DigestCache:
    """path -> digest, trusting a stored digest only while (size, mtime, inode, ctime) match.

    Losing the database costs only rehashing, so every SQLite problem is a warning.
    """

    def __init__(self, db_path: Path | None = None) -> None:
        self._db_path = db_path
        self._known: dict[str, _Known] = {}
        self._dirty: dict[str, _Known] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        if db_path is not None:
            self._load(db_path)

    def _load(self, db_path: Path) -> None:
        try:
            with sqlite3.connect(db_path, timeout=2) as conn:
                conn.execute(_SCHEMA)
                rows = conn.execute(
                    "SELECT path, size, mtime_ns, ino, ctime_ns, hashed_at_ns, digest FROM digests"
                ).fetchall()
            conn.close()
        except sqlite3.OperationalError as exc:
            # Locked by another stagewatch, say: go without it this time, never delete it.
            log.warning("digests.unavailable", path=str(db_path), error=str(exc))
            return
        except sqlite3.Error as exc:
            log.warning("digests.unreadable", path=str(db_path), error=str(exc))
            with contextlib.suppress(OSError):
                db_path.unlink()
            return
        self._known = {os.fsdecode(row[0]): _Known(*row[1:]) for row in rows}

    def digests(self, paths: Iterable[str]) -> dict[str, str | None]:
        """Each path's SHA-256 hex, or None when it is missing or unreadable."""
        result: dict[str, str | None] = {}
        to_hash: list[str] = []
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                result[path] = None
                continue
            known = self._known.get(path)
            if known is not None and known.still_valid(st):
                result[path] = known.digest
            else:
                to_hash.append(path)
        if len(to_hash) >= _PARALLEL_FROM:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
            hashed = list(self._pool.map(functools.partial(_hash_stable, stop=self._stop), to_hash))
        else:
            hashed = [_hash_stable(path, self._stop) for path in to_hash]
        with self._lock:
            for path, outcome in zip(to_hash, hashed, strict=True):
                if outcome is None:
                    result[path] = None
                    continue
                result[path], known = outcome
                self._known[path] = known
                self._dirty[path] = known
        return result

    def flush(self) -> None:
        """Write what was hashed since the last flush; a failure only warns."""
        with self._lock:
            dirty, self._dirty = self._dirty, {}
        if self._db_path is None or not dirty:
            return
        try:
            with sqlite3.connect(self._db_path, timeout=2) as conn:
                conn.execute(_SCHEMA)
                conn.executemany(
                    "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        # Paths as bytes: a file name need not be UTF-8.
                        (os.fsencode(p), k.size, k.mtime_ns, k.ino, k.ctime_ns, k.hashed_at_ns, k.digest)
                        for p, k in dirty.items()
                    ],
                )
            conn.close()
        except sqlite3.Error as exc:
            log.warning("digests.write_failed", path=str(self._db_path), error=str(exc))

    def stop(self) -> None:
        """Give up hashing now (HashingStopped in whoever waits for it): stagewatch is stopping."""
        self._stop.set()

    def close(self) -> None:
        self.flush()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
