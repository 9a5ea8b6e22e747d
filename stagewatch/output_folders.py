"""Make the folders declared outputs go in before a run: below output_dir only, never through a symlink.

A stage sees the same world on a clean build as on the hundredth: the folder of every declared
output file is there, and so is every declared output folder (a stage writing
`_build/site/x.css` must not depend on another stage having made `_build/site/` first).
A declared output folder made for the run is taken away again if the run leaves it empty, so
"the output exists" keeps meaning that the stage made something there.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from stagewatch.paths import absolute, is_within, label
from stagewatch.regular import kind_of

_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class OutputFolders:
    """What was made for a run: the declared output folders that were not there before it
    (absolute), or why a folder could not be made (then the run must not start)."""

    made: tuple[str, ...] = ()
    problem: str | None = None


class _Refused(Exception):
    """A folder on the way cannot be made: why, for people."""


def make_output_folders(outputs: Iterable[str], output_dir: str) -> OutputFolders:
    made: list[str] = []
    for output in outputs:
        target = absolute(output, output_dir)
        if target == output_dir or not is_within(target, output_dir):
            continue  # not ours to make (config refuses them; a library caller may pass anything)
        folder = target if output.endswith("/") else os.path.dirname(target)
        if folder == output_dir or os.path.isdir(folder):
            continue  # there already (through a symlink or not): nothing is made
        try:
            if _make_below(output_dir, folder) and output.endswith("/"):
                made.append(folder)
        except _Refused as exc:
            return OutputFolders(tuple(made), f'could not make the folder for its output "{output}": {exc}')
    return OutputFolders(tuple(made))


def _make_below(output_dir: str, folder: str) -> bool:
    """Make `folder` and the folders above it, one at a time from output_dir down, each opened
    without following a symlink: a link on the way (to anywhere) is never made through, and
    the folder is left for the stage to make. Whether the last folder was made now."""
    try:
        fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _Refused(f"{output_dir}: {exc.strerror or exc}") from None
    try:
        made = False
        parts = folder[len(output_dir.rstrip("/")) + 1 :].split("/")
        for depth, name in enumerate(parts):
            where = label(os.path.join(output_dir, *parts[: depth + 1]), output_dir)
            try:
                os.mkdir(name, 0o777, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            except OSError as exc:
                raise _Refused(f"{where}: {exc.strerror or exc}") from None
            try:
                inner = os.open(name, _OPEN_FOLDER, dir_fd=fd)
            except OSError as exc:
                if _is_symlink(name, fd):
                    return False
                if exc.errno == errno.ENOTDIR:
                    kind = _kind(name, fd)
                    raise _Refused(f"{where} is {kind}, not a folder") from None
                raise _Refused(f"{where}: {exc.strerror or exc}") from None
            os.close(fd)
            fd = inner
        return made
    finally:
        os.close(fd)


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _kind(name: str, dir_fd: int) -> str:
    try:
        return kind_of(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return "gone"


def remove_left_empty(made: Iterable[str], output_dir: str) -> None:
    """Take away the declared output folders made for a run that it left empty: a folder
    stagewatch made must never pass for the stage's output (nor let `accept` vouch for it).
    The way down is walked as it was made, never through a symlink (the stage may have put one
    there): an empty folder elsewhere is not ours to take away."""
    for folder in made:
        parts = folder[len(output_dir.rstrip("/")) + 1 :].split("/")
        try:
            fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            for name in parts[:-1]:
                inner = os.open(name, _OPEN_FOLDER, dir_fd=fd)
                os.close(fd)
                fd = inner
            os.rmdir(parts[-1], dir_fd=fd)
        except OSError:
            pass  # not empty (the stage's output), not a folder now, or a link on the way
        finally:
            os.close(fd)
