"""The pipeline's one-writer lock: an flock on the output folder, its owner named in _build/.cache/.lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from pathlib import Path

from stagewatch.errors import LockHeldError
from stagewatch.layout import CacheLayout
from stagewatch.regular import kind_of, read_regular

# Filesystems where a folder cannot be flocked (NFS emulates flock with POSIX locks, which
# want a file open for writing): there the record file itself is locked, as it used to be.
_NO_FOLDER_LOCK = frozenset({errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP})


DAEMON_ROLES = frozenset({"watch", "serve"})
"""What a daemon's record says it is: the command it runs as, which keeps the lock until stopped."""


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


def _parse_record(data: bytes) -> tuple[int | None, str]:
    text = data[:256].decode("utf-8", errors="replace").split()
    pid = int(text[0]) if text and text[0].isdigit() else None
    return pid, text[1] if len(text) > 1 else ""


def _read_record(path: Path) -> tuple[int | None, str]:
    """(pid, role) from the owner's record; (None, "") when it is missing, empty or unreadable."""
    try:
        return _parse_record(read_regular(path, 4096))
    except OSError:  # a FIFO put there is never opened: it would wait for a writer
        return None, ""


def _holder_pid(folder_fd: int) -> int | None:
    """Who holds a write flock on this folder, from the kernel's table of locks (Linux): what
    names the owner when its record went away with a deleted _build/."""
    try:
        st = os.fstat(folder_fd)
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            lines = table.read().splitlines()
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:260072 0 EOF" (device in hex major:minor)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[3] == "WRITE" and fields[5] == where:
            return int(fields[4]) if fields[4].isdigit() else None
    return None


def _open_folder(output_dir: Path) -> int:
    return os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


class PipelineLock:
    """Held by `watch` and `build` for their whole life; released on close or process exit.

    The flock is on the output folder, which a clean step (`rm -rf _build`) cannot remove, so a
    second daemon or a build is refused even then. `_build/.cache/.lock` only says who holds it
    (for `status` and the refusal); the holder writes it again when it finds it gone.
    """

    def __init__(self, output_dir: Path) -> None:
        layout = CacheLayout(output_dir)
        self.output_dir = layout.output_dir
        self.path = layout.lock
        self._fd: int | None = None
        self._folder_fd: int | None = None  # the locked folder, where the record is written
        self._relative = self.path.relative_to(self.output_dir).as_posix()
        self._record = ""

    def acquire(self, role: str) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)  # an output_dir made by the first build
        fd = _open_folder(self.output_dir)
        try:
            _flock_briefly(fd, fcntl.LOCK_EX)
        except BlockingIOError:
            holder = _holder_pid(fd)
            os.close(fd)
            raise self._held(holder) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in _NO_FOLDER_LOCK:
                raise
            fd = self._lock_record_instead()
        else:
            self._folder_fd = fd
        self._fd = fd
        self._record = f"{os.getpid()} {role}\n"
        try:
            self._write_record()
        except BaseException:
            self.release()
            raise

    def _lock_record_instead(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _flock_briefly(fd, fcntl.LOCK_EX)
        except BlockingIOError:
            os.close(fd)
            raise self._held(None) from None
        return fd

    def _held(self, holder: int | None) -> LockHeldError:
        pid, role = _read_record(self.path)
        if pid is None:
            pid, role = holder, ""
        who = f"pid {pid}" if pid is not None else "unknown pid"
        if role in DAEMON_ROLES:
            advice = 'it keeps the pipeline fresh; use "stagewatch invalidate STAGE" to force a rerun'
        elif role:
            advice = "wait for it to finish"
        else:
            advice = 'wait for it to finish (a daemon never does: use "stagewatch invalidate STAGE")'
        name = f"stagewatch {role}" if role else "another stagewatch"
        return LockHeldError(
            f"{name} ({who}) is already running on this pipeline ({self.output_dir}); {advice}", pid
        )

    def _at(self, rel: str) -> tuple[str, int | None]:
        """A path below the output folder as os calls take it: relative to the locked folder
        when it is one, so that, should it be deleted or moved away, nothing is made again
        under its old path (a folder made there anew is not ours to write in)."""
        if self._folder_fd is None:
            return os.path.join(self.output_dir, rel), None
        return rel, self._folder_fd

    def _write_record(self) -> None:
        parts = self._relative.split("/")
        for depth in range(1, len(parts)):
            folder, dir_fd = self._at("/".join(parts[:depth]))
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, dir_fd=dir_fd)
        path, dir_fd = self._at(self._relative)
        with contextlib.suppress(FileNotFoundError):
            mode = os.stat(path, dir_fd=dir_fd, follow_symlinks=False).st_mode
            if not stat.S_ISREG(mode):
                raise OSError(
                    errno.EINVAL, f"is {kind_of(mode)}, not a regular file; remove it", str(self.path)
                )
        # O_NONBLOCK: a FIFO put there in between is an error, not a wait for a reader.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._record.encode(), 0)
        finally:
            os.close(fd)

    def refresh(self) -> None:
        """Write the owner's record again if a clean step removed it; one stat when it is there."""
        if self._fd is None:
            return
        path, dir_fd = self._at(self._relative)
        try:
            os.stat(path, dir_fd=dir_fd)
            return
        except OSError:
            pass
        with contextlib.suppress(OSError):  # a cache folder that cannot be made is said elsewhere
            self._write_record()

    def release(self) -> None:
        if self._fd is None:
            return
        # Emptied, not removed: an empty record means nobody, and the file stays for the next owner.
        path, dir_fd = self._at(self._relative)
        with contextlib.suppress(OSError):
            record = os.open(path, os.O_RDWR | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                if _parse_record(os.pread(record, 256, 0))[0] == os.getpid():
                    os.ftruncate(record, 0)
            finally:
                os.close(record)
        os.close(self._fd)
        self._fd = self._folder_fd = None

    def __enter__(self) -> PipelineLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_owner(output_dir: Path) -> tuple[int, str] | None:
    """(pid, role) of the stagewatch holding the lock, or None when nobody does (pid 0: unknown)."""
    layout = CacheLayout(output_dir)
    try:
        fd = _open_folder(layout.output_dir)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, role = _read_record(layout.lock)
            if pid is None:
                pid, role = _holder_pid(fd), ""
            return (pid if pid is not None else 0), role
        except OSError as exc:
            if exc.errno not in _NO_FOLDER_LOCK:
                raise
            return _record_lock_owner(layout.lock)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _record_lock_owner(path: Path) -> tuple[int, str] | None:
    """lock_owner where folders cannot be flocked: the record file is the lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, role = _read_record(path)
            return (pid if pid is not None else 0), role
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
