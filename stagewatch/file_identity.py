"""Which file a path is and which version of it, as its stat says, and when that stat can be
trusted to show the next change (the "racy" window)."""

from __future__ import annotations

import os
from dataclasses import dataclass

# What was read of a file (its digest, a listing, its bytes) while its mtime was this close to
# the moment of reading is not trusted next time ("racy git"): a same-size edit inside one
# timestamp tick is invisible to stat. Two seconds covers the coarsest filesystems still in
# use (FAT).
RACY_WINDOW_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """A file and its version: another inode (or device) is another file; another size, mtime
    or ctime is another version. The ctime changes with every write and no tool can set it
    back, so a content change that restores the old mtime still shows."""

    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    dev: int | None = None  # None where device numbers are not kept (they need not last a reboot)


def identity_of(st: os.stat_result, *, with_device: bool = True) -> FileIdentity:
    return FileIdentity(
        st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_dev if with_device else None
    )


def identity_at(path: str) -> FileIdentity | None:
    """The identity of what `path` names now; None while nothing is there (or it cannot be
    looked at): as long as that stays so, there is nothing to read either."""
    try:
        return identity_of(os.stat(path))
    except OSError:
        return None


def settled(mtime_ns: int, at_ns: int) -> bool:
    """Whether a file last changed at `mtime_ns` had been still for the racy window at `at_ns`,
    so that what was read of it then may be reused while its identity stays the same."""
    return at_ns - mtime_ns > RACY_WINDOW_NS
