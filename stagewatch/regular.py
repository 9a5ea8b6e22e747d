"""Open and read only regular files: a FIFO, a device or a socket is refused by its kind, never waited on."""

from __future__ import annotations

import errno
import os
import stat
from io import BufferedReader

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symlink"),
)


def kind_of(mode: int) -> str:
    """What a stat mode is, for people: "a regular file", "a FIFO", "a folder", ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    for test, name in _KINDS:
        if test(mode):
            return name
    return "an unknown kind of file"


class NotRegularFile(OSError):
    """A path that is a FIFO, a device, a socket or a folder where a file's bytes were wanted."""

    def __init__(self, path: str, kind: str) -> None:
        # EISDIR for a folder, otherwise EINVAL: no errno says "a FIFO"; strerror carries the words.
        code = errno.EISDIR if kind == "a folder" else errno.EINVAL
        super().__init__(code, f"not a regular file ({kind})", path)
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class FileTooLarge(OSError):
    """A file larger than its reader accepts (a pipeline file of 11 MiB, say)."""

    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(errno.EFBIG, f"{_mib(size)} is too large (at most {_mib(limit)})", path)
        self.size = size
        self.limit = limit

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def _mib(size: int) -> str:
    mib = size / (1024 * 1024)
    return f"{mib:.0f} MiB" if mib == int(mib) else f"{mib:.1f} MiB"


def open_regular(path: str | os.PathLike[str]) -> BufferedReader:
    """Open a file for reading, only if it is a regular file (symlinks followed).

    O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    The kind is checked on the open descriptor, so a file swapped for a FIFO between a
    caller's stat and this open is still refused.
    """
    name = os.fspath(path)
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(name, kind_of(mode))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """A regular file's bytes, refusing one larger than `limit` before reading it (and while reading:
    a file that grows is not read forever)."""
    name = os.fspath(path)
    st = os.stat(name)  # before any open: a socket cannot be opened, but its stat says what it is
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(name, kind_of(st.st_mode))
    if st.st_size > limit:
        raise FileTooLarge(name, st.st_size, limit)
    with open_regular(name) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(name, len(data), limit)
    return data
