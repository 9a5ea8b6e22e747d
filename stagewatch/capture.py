"""Carry a run's output from its pipes to the stage's log file, its tail and the console.

Draining comes first: a pipe nobody reads blocks the stage as soon as it is full, so nothing
that goes wrong downstream of a pipe (a log file on a full disk, a console that has gone)
ever stops its pump. A log that cannot be written costs one warning, and the rest of the
run's output still reaches the tail (for the failure report) and the console.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections import deque
from pathlib import Path
from typing import IO

import structlog

from stagewatch.regular import kind_of
from stagewatch.stage import LineSink

TAIL_LINES = 20
LINE_LIMIT = 64 * 1024

log = structlog.get_logger(__name__)


def open_log(path: Path, output_dir: Path) -> IO[str]:
    """The stage's log, truncated: made only below an output folder that is still there, and
    never a FIFO or a device (opening one would wait for a reader, or write into it)."""
    if not output_dir.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the output folder is gone", str(output_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file ({kind_of(mode)})", str(path))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file ({kind_of(mode)})", str(path))
        os.ftruncate(fd, 0)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "w", encoding="utf-8", errors="replace")
    except BaseException:
        os.close(fd)
        raise


class StageLog:
    """One run's log file, written while it can be: its first failure is said once, and the
    file is then closed and left as it is (what could be written of the run's output)."""

    def __init__(self, stage: str, path: Path, file: IO[str]) -> None:
        self.stage = stage
        self.path = path
        self._file: IO[str] | None = file
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(line + "\n")
            except (OSError, ValueError) as exc:
                self._give_up(exc)

    def close(self) -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.close()  # the buffer's flush may be what finds the disk full
            except (OSError, ValueError) as exc:
                self._give_up(exc)
            self._file = None

    def _give_up(self, exc: Exception) -> None:
        error = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        log.warning("stage.log_unwritable", stage=self.stage, path=str(self.path), error=error)
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError, ValueError):
                file.close()  # closes the descriptor even when its flush fails again

    def __enter__(self) -> StageLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class OutputCapture:
    """Drains a run's stdout and stderr, each in its own thread, into the log, the tail and
    the line sink, until the pipes close or the run is declared over."""

    def __init__(self, stage: str, stage_log: StageLog, sink: LineSink | None) -> None:
        self.stage = stage
        self.log = stage_log
        self._sink = sink
        self._lock = threading.Lock()
        self._detached = False
        self._errors: deque[str] = deque(maxlen=TAIL_LINES)
        self._everything: deque[str] = deque(maxlen=TAIL_LINES)
        self._threads: list[threading.Thread] = []

    def start(self, stdout: IO[bytes], stderr: IO[bytes]) -> None:
        for pipe, stream in ((stdout, "stdout"), (stderr, "stderr")):
            thread = threading.Thread(target=self._pump, args=(pipe, stream), daemon=True)
            thread.start()
            self._threads.append(thread)

    def finish(self, wait_s: float) -> tuple[str, ...]:
        """Wait up to wait_s for each pipe to close; from then on the output is not the run's.
        Returns the tail: the last lines of stderr, or of all output when stderr was silent."""
        for thread in self._threads:
            # A process that left the group (setsid) may still hold the pipes: not waited for.
            thread.join(wait_s)
        with self._lock:
            self._detached = True
            return tuple(self._errors) or tuple(self._everything)

    def _pump(self, pipe: IO[bytes], stream: str) -> None:
        try:
            # Bounded reads: a stage printing 300 MB without a newline must not hold it in memory.
            for raw in iter(lambda: pipe.readline(LINE_LIMIT), b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                with self._lock:
                    if self._detached:
                        break  # the run is over; what a stray process still writes is not ours
                    self._everything.append(line)
                    if stream == "stderr":
                        self._errors.append(line)
                    self.log.write(line)  # under the lock: the log's lines in the tail's order
                sink = self._sink
                if sink is not None:
                    try:
                        sink(self.stage, stream, line)
                    except Exception:
                        self._sink = None  # keep draining the pipe: a full pipe would hang the stage
        finally:
            with contextlib.suppress(OSError):
                pipe.close()
