"""Every name under <output_dir>/_build/.cache but an entry's (stagewatch.entry), and the atomic
write that puts files there."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from stagewatch.paths import CACHE_DIR

LOG_SUFFIX = ".log"
RUN_SUFFIX = ".run"
STATE_NAME = "state.json"
DIGESTS_NAME = "digests.sqlite"
LOCK_NAME = ".lock"

_UMASK = os.umask(0o022)
os.umask(_UMASK)


class CacheLayout:
    """Where each of stagewatch's own files lives, for one output_dir."""

    def __init__(self, output_dir: Path | str) -> None:
        self.output_dir = Path(os.path.abspath(output_dir))
        self.dir = self.output_dir / CACHE_DIR

    def log(self, stage: str) -> Path:
        """The output of the stage's last run."""
        return self.dir / f"{stage}{LOG_SUFFIX}"

    def run_record(self, stage: str) -> Path:
        """Which process group a run of the stage is using, while it runs."""
        return self.dir / f"{stage}{RUN_SUFFIX}"

    @property
    def state(self) -> Path:
        return self.dir / STATE_NAME

    @property
    def digests(self) -> Path:
        return self.dir / DIGESTS_NAME

    @property
    def lock(self) -> Path:
        return self.dir / LOCK_NAME


def remove_emptied_folders(path: Path, stop: Path) -> None:
    """Remove the folders above a removed `path` that it left empty, up to `stop` (kept): a
    folder that still holds anything ends the climb."""
    folder = path.parent
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def write_atomic(path: Path, text: str, within: Path | None = None, durable: bool = True) -> None:
    """Write a file so that a crash leaves the old one or the new one, never half of either.

    Missing folders are made, but only below `within` (the output folder) while it exists:
    an output folder deleted or moved away is never made again under its old path. An
    OSError names `path` itself (never the temporary file beside it), so that the one line a
    person reads says which file could not be written. `durable=False` skips the fsyncs, for
    a file whose loss in a power cut costs nothing (its reader takes a damaged one as none).
    """
    try:
        if within is not None and not within.is_dir():
            raise FileNotFoundError(errno.ENOENT, "the output folder is gone", str(within))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; others may read the cache (status)
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                # fsync before rename: a crash must never leave an empty entry under the real name.
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    if not durable:
        return
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
