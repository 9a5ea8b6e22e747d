"""The pipeline's one-writer lock: an flock on _build/.cache/.lock holding the owner's pid."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from stagewatch.errors import LockHeldError
from stagewatch.layout import CacheLayout


def _flock_briefly(fd: int, kind: int, patience_s: float = 0.3) -> None:
    """flock without blocking, retried for a moment: a `status` probing the lock holds it for
    microseconds, and must not make a starting build or daemon give up."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _read_owner(handle: int) -> tuple[int | None, str]:
    try:
        text = os.pread(handle, 256, 0).decode("utf-8", errors="replace").split()
    except OSError:
        return None, ""
    pid = int(text[0]) if text and text[0].isdigit() else None
    return pid, text[1] if len(text) > 1 else ""


class PipelineLock:
    """Held by `watch` and `build` for their whole life; released on close or process exit."""

    def __init__(self, output_dir: Path) -> None:
        self.path = CacheLayout(output_dir).lock
        self._fd: int | None = None

    def acquire(self, role: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _flock_briefly(fd, fcntl.LOCK_EX)
        except BlockingIOError:
            pid, owner_role = _read_owner(fd)
            os.close(fd)
            who = f"pid {pid}" if pid is not None else "unknown pid"
            if owner_role == "watch":
                advice = 'it keeps the pipeline fresh; use "stagewatch invalidate STAGE" to force a rerun'
            else:
                advice = "wait for it to finish"
            raise LockHeldError(
                f"stagewatch {owner_role or '(another)'} ({who}) is already running on this pipeline"
                f" (lock {self.path}); {advice}",
                pid,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {role}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PipelineLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_owner(output_dir: Path) -> tuple[int, str] | None:
    """(pid, role) of the stagewatch holding the lock, or None when nobody does."""
    path = CacheLayout(output_dir).lock
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, role = _read_owner(fd)
            return (pid if pid is not None else 0), role
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
