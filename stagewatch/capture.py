"""Carry a run's output from its pipes to the stage's log file, its tail and the console.

Draining comes first: a pipe nobody reads blocks the stage as soon as it is full, so nothing
that goes wrong downstream of a pipe (a log file on a full disk, a console that has gone)
ever stops its pump. A log that cannot be written costs one warning, and the rest of the
run's output still reaches the tail (for the failure report) and the console.
"""

from __future__ import annotations

import codecs
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
# A tail line keeps this many characters at each end: the tail goes into every failure's event,
# state.json and the preview's overlay, and a stage printing megabytes without a newline must
# not put them there.
TAIL_EDGE = 500
LINE_LIMIT = 64 * 1024

log = structlog.get_logger(__name__)


# journald splits a line longer than its LineMax (48 KiB by default), and a JSON event split
# is two lines that are no JSON: a line is shown this long at most, on the console and in the
# journal alike (the stage's log keeps it whole).
SHOWN_CHARS = 4096


def shown_start(piece: str, complete: bool) -> str:
    """How a line that starts with `piece` is shown: whole, or its start and where the rest is.
    A piece that is not complete filled a whole bounded read: its line is long."""
    if complete and len(piece) <= SHOWN_CHARS:
        return piece
    more = f"{len(piece) - SHOWN_CHARS} characters more" if complete else "more"
    return f"{piece[:SHOWN_CHARS]} … ({more} in its log)"


def open_log(path: Path, output_dir: Path) -> IO[str]:
    """The stage's log, truncated: made only below an output folder that is still there, and
    never a FIFO, a device (opening one would wait for a reader, or write into it) or a symlink."""
    if not output_dir.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the output folder is gone", str(output_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file ({kind_of(mode)})", str(path))
    # O_NOFOLLOW: a link put in its place after the check is refused too, never followed (and
    # its target truncated).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
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

    def write(self, text: str, end: str = "\n") -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(text + end)
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
        # Characters cut by a bounded read are joined again, not replaced with U+FFFD.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        line = _TailLine()
        partial = False  # what reached the log last ended mid-line
        try:
            # Bounded reads: a stage printing 300 MB without a newline must not hold it in memory.
            for raw in iter(lambda: pipe.readline(LINE_LIMIT), b""):
                complete = raw.endswith(b"\n")
                text = decoder.decode(raw)
                piece = text.rstrip("\r\n") if complete else text
                with self._lock:
                    if self._detached:
                        break  # the run is over; what a stray process still writes is not ours
                    # Under the lock: the log's lines and the tail's in the same order. The log
                    # has the line as printed, however long; the tail a short copy of it.
                    self.log.write(piece, end="\n" if complete else "")
                    line.add(piece)
                    if complete:
                        self._keep(line.text(), stream)
                        line = _TailLine()
                shown = None if partial else shown_start(piece, complete)  # a line is shown once
                partial = not complete
                sink = self._sink
                if sink is not None and shown is not None:
                    try:
                        sink(self.stage, stream, shown)
                    except Exception:
                        self._sink = None  # keep draining the pipe: a full pipe would hang the stage
            else:
                rest = decoder.decode(b"", final=True)  # a character cut short by the end
                with self._lock:
                    if (partial or rest) and not self._detached:
                        self.log.write(rest)  # the log's last line is ended, as a terminal would show it
                        line.add(rest)
                        self._keep(line.text(), stream)
        finally:
            with contextlib.suppress(OSError):
                pipe.close()

    def _keep(self, text: str, stream: str) -> None:
        self._everything.append(text)
        if stream == "stderr":
            self._errors.append(text)


class _TailLine:
    """A line as the tail keeps it, from however many pieces it comes in: its first and last
    TAIL_EDGE characters, and how many were left out between them."""

    def __init__(self) -> None:
        self.head = ""
        self.end = ""
        self.cut = 0

    def add(self, text: str) -> None:
        if len(self.head) < TAIL_EDGE:
            room = TAIL_EDGE - len(self.head)
            self.head, text = self.head + text[:room], text[room:]
        end = self.end + text
        if len(end) > TAIL_EDGE:
            self.cut += len(end) - TAIL_EDGE
            end = end[-TAIL_EDGE:]
        self.end = end

    def text(self) -> str:
        if not self.cut:
            return self.head + self.end
        return f"{self.head} [{self.cut} characters left out] {self.end}"
