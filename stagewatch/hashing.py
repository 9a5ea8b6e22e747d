"""SHA-256 digests of files, reused while a file's stat is unchanged, and what a Python source
imports, reused while its digest is unchanged (a cache kept in SQLite)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from stagewatch.file_identity import FileIdentity, identity_of, settled
from stagewatch.regular import kind_of, open_regular

if TYPE_CHECKING:
    from stagewatch.codedeps import ImportStatement

log = structlog.get_logger(__name__)

_CHUNK = 1 << 20
_PARALLEL_FROM = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS digests (
    path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ino INTEGER,
    ctime_ns INTEGER, hashed_at_ns INTEGER, digest TEXT
)
"""
# Keyed by content alone: the same bytes import the same names wherever the file lives.
_IMPORTS_SCHEMA = "CREATE TABLE IF NOT EXISTS imports_v1 (digest TEXT PRIMARY KEY, statements TEXT)"
_IMPORTS_COLUMNS = [("digest", 1), ("statements", 0)]
_NAMES = ("path", "size", "mtime_ns", "ino", "ctime_ns", "hashed_at_ns", "digest")
_COLUMNS = [(name, 1 if name == "path" else 0) for name in _NAMES]  # (name, primary key position)
# Another process holding the file, a folder it cannot write, a full disk: go without the
# cache this time and keep the file. Every other error means the file is no digest cache.
_TRANSIENT = frozenset({
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_READONLY, sqlite3.SQLITE_FULL, sqlite3.SQLITE_PERM, sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_NOLFS,
})  # fmt: skip
_HEX64 = re.compile(r"[0-9a-f]{64}")


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

    @classmethod
    def of(cls, identity: FileIdentity, hashed_at_ns: int, digest: str) -> _Known:
        return cls(identity.size, identity.mtime_ns, identity.ino, identity.ctime_ns, hashed_at_ns, digest)

    @property
    def identity(self) -> FileIdentity:
        return FileIdentity(self.ino, self.size, self.mtime_ns, self.ctime_ns)

    def still_valid(self, st: os.stat_result) -> bool:
        # Without the device: the database outlives a reboot, which may renumber devices.
        return identity_of(st, with_device=False) == self.identity and settled(
            self.mtime_ns, self.hashed_at_ns
        )


def _valid_rows(rows: Iterable[tuple[Any, ...]]) -> tuple[dict[str, _Known], list[int]]:
    """The rows a digest may be trusted from, by path, and the rowids of the others (wrong types,
    NULLs, a digest that is not 64 hex: written by something else, or damaged)."""
    known: dict[str, _Known] = {}
    bad: list[int] = []
    for rowid, path, size, mtime_ns, ino, ctime_ns, hashed_at_ns, digest in rows:
        # Spelled out, not all(...): a warm start reads a row per file known.
        if (
            type(path) is bytes
            and path
            and type(size) is int
            and type(mtime_ns) is int
            and type(ino) is int
            and type(ctime_ns) is int
            and type(hashed_at_ns) is int
            and type(digest) is str
            and _HEX64.fullmatch(digest)
        ):
            known[os.fsdecode(path)] = _Known(size, mtime_ns, ino, ctime_ns, hashed_at_ns, digest)
        else:
            bad.append(rowid)
    return known, bad


def _read_imports_table(conn: sqlite3.Connection) -> dict[str, tuple[ImportStatement, ...]]:
    """The import statements kept by digest; a row that is not what this writes is left out
    (read again from its source), and a missing table is an empty one."""
    try:
        rows = conn.execute("SELECT digest, statements FROM imports_v1").fetchall()
    except sqlite3.OperationalError:
        return {}
    kept: dict[str, tuple[ImportStatement, ...]] = {}
    for digest, text in rows:
        if type(digest) is not str or not _HEX64.fullmatch(digest) or type(text) is not str:
            continue
        try:
            decoded = json.loads(text)
        except ValueError:
            continue
        statements = _statements(decoded)
        if statements is not None:
            kept[digest] = statements
    return kept


def _statements(decoded: object) -> tuple[ImportStatement, ...] | None:
    """Import statements as this module writes them ([[level, module, [names]], ...]), or None."""
    if type(decoded) is not list:
        return None
    statements: list[ImportStatement] = []
    for item in decoded:
        if type(item) is not list or len(item) != 3:
            return None
        level, module, names = item
        if type(level) is not int or type(module) is not str or type(names) is not list:
            return None
        if not all(type(name) is str for name in names):
            return None
        statements.append((level, module, tuple(names)))
    return tuple(statements)


def _hash_stable(path: str, stop: threading.Event | None = None) -> tuple[str, _Known] | OSError:
    """Hash a file, again if it changed while being read; the OSError when it cannot be read."""
    for _ in range(3):
        try:
            before = os.stat(path)
            hashed_at_ns = time.time_ns()
            digest = sha256_file(path, stop)
            after = os.stat(path)
        except OSError as exc:
            return exc
        identity = identity_of(before, with_device=False)
        if identity == identity_of(after, with_device=False):
            return digest, _Known.of(identity, hashed_at_ns, digest)
    return digest, _Known(0, 0, 0, 0, 0, digest)  # still moving: use it, never trust it again


class DigestCache:
    """path -> digest, trusting a stored digest only while (size, mtime, inode, ctime) match.

    Losing the database costs only rehashing, so every SQLite problem is a warning.
    """

    def __init__(self, db_path: Path | None = None) -> None:
        self._db_path = db_path
        self._known: dict[str, _Known] = {}
        self._dirty: dict[str, _Known] = {}
        self._imports: dict[str, tuple[ImportStatement, ...]] = {}
        self._dirty_imports: dict[str, tuple[ImportStatement, ...]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        if db_path is not None:
            self._load(db_path)

    def _load(self, db_path: Path) -> None:
        try:
            st = os.stat(db_path)
        except FileNotFoundError:
            return  # the first flush creates it
        except OSError as exc:
            log.warning("digests.unavailable", path=str(db_path), error=exc.strerror or str(exc))
            return
        if not stat.S_ISREG(st.st_mode):
            self._unusable(db_path, f"not a regular file ({kind_of(st.st_mode)})")
            return
        known: dict[str, _Known] = {}
        bad: list[int] = []
        foreign = foreign_imports = False
        try:
            with contextlib.closing(sqlite3.connect(db_path, timeout=2)) as conn:
                columns = [(row[1], row[5]) for row in conn.execute("PRAGMA table_info(digests)")]
                foreign = bool(columns) and columns != _COLUMNS
                # Every flush writes both tables in one transaction: a foreign imports_v1
                # would fail each of them, and the digests would never be kept again.
                imports = [(row[1], row[5]) for row in conn.execute("PRAGMA table_info(imports_v1)")]
                foreign_imports = bool(imports) and imports != _IMPORTS_COLUMNS
                if columns and not foreign:
                    known, bad = _valid_rows(conn.execute(f"SELECT rowid, {', '.join(_NAMES)} FROM digests"))
                if not foreign_imports:
                    self._imports = _read_imports_table(conn)
                if bad:
                    # Dropped from the file too, so that this is said once; a failure here only
                    # means it is said again next time.
                    with contextlib.suppress(sqlite3.Error), conn:
                        conn.executemany("DELETE FROM digests WHERE rowid = ?", [(rowid,) for rowid in bad])
        except sqlite3.Error as exc:
            if exc.sqlite_errorcode & 0xFF in _TRANSIENT:
                # Locked by another stagewatch, say: go without it this time, never delete it.
                log.warning("digests.unavailable", path=str(db_path), error=str(exc))
            else:
                self._unusable(db_path, str(exc))
            return
        if foreign or foreign_imports:
            table = "digests" if foreign else "imports_v1"
            self._unusable(db_path, f"it holds a table named {table} with other columns")
            return
        if bad:
            log.warning(
                "digests.unreadable",
                path=str(db_path),
                error=f"{len(bad)} malformed rows",
                action="dropped them",
            )
        self._known = known

    def _unusable(self, db_path: Path, problem: str) -> None:
        """Not a digest cache at all: say so once, and start a new one in its place."""
        try:
            db_path.unlink()
        except IsADirectoryError:
            # A folder under that name is someone's, not a cache to throw away: go without.
            self._db_path = None
            log.warning("digests.unreadable", path=str(db_path), error=problem, action="not using it")
            return
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._db_path = None
            log.warning("digests.unreadable", path=str(db_path), error=problem, action=exc.strerror)
            return
        log.warning("digests.unreadable", path=str(db_path), error=problem, action="starting a new one")

    def digests(self, paths: Iterable[str]) -> dict[str, str | None]:
        """Each path's SHA-256 hex, or None when it is missing or unreadable."""
        return {
            path: None if isinstance(got, OSError) else got for path, got in self.hash_files(paths).items()
        }

    def hash_files(self, paths: Iterable[str]) -> dict[str, str | OSError]:
        """Each path's SHA-256 hex, or the OSError that says why it has none (NotRegularFile for
        a FIFO or a device, which is never opened)."""
        result: dict[str, str | OSError] = {}
        to_hash: list[str] = []
        for path in paths:
            try:
                st = os.stat(path)
            except OSError as exc:
                result[path] = exc
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
                if isinstance(outcome, OSError):
                    result[path] = outcome
                    continue
                result[path], known = outcome
                self._known[path] = known
                self._dirty[path] = known
        return result

    def python_imports(
        self, path: str, read: Callable[[str], tuple[ImportStatement, ...]]
    ) -> tuple[ImportStatement, ...]:
        """The import statements of a source file: kept by its digest, read only when it changed."""
        digest = self.hash_files([path])[path]
        if not isinstance(digest, str):
            return read(path)  # gone or unreadable: nothing to keep it by
        with self._lock:
            known = self._imports.get(digest)
        if known is None:
            known = read(path)
            # Kept only if the bytes read are the bytes digested: a save in between would
            # file the new statements under the old content, for as long as the cache lives.
            if self.hash_files([path])[path] == digest:
                with self._lock:
                    self._imports[digest] = self._dirty_imports[digest] = known
        return known

    def flush(self) -> None:
        """Write what was hashed since the last flush; a failure only warns."""
        with self._lock:
            dirty, self._dirty = self._dirty, {}
            imports, self._dirty_imports = self._dirty_imports, {}
        if self._db_path is None or not (dirty or imports):
            return
        try:
            with sqlite3.connect(self._db_path, timeout=2) as conn:
                conn.execute(_SCHEMA)
                conn.execute(_IMPORTS_SCHEMA)
                conn.executemany(
                    f"INSERT OR REPLACE INTO digests ({', '.join(_NAMES)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        # Paths as bytes: a file name need not be UTF-8.
                        (os.fsencode(p), k.size, k.mtime_ns, k.ino, k.ctime_ns, k.hashed_at_ns, k.digest)
                        for p, k in dirty.items()
                    ],
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO imports_v1 (digest, statements) VALUES (?, ?)",
                    [(digest, json.dumps(statements)) for digest, statements in imports.items()],
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
