"""The log's stream guard: a stream that goes away is told once and never raises into the program."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest
import structlog

from stagewatch.log import GuardedStream, configure_logging, line_sink, on_output_gone, output_gone

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def closed_pipe() -> Iterator[io.TextIOWrapper]:
    """A text stream on a pipe whose reader has gone: writes fail with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = os.fdopen(write_end, "w")
    yield stream
    stream.close()


def test_a_write_to_a_closed_pipe_breaks_the_stream_once(closed_pipe: io.TextIOWrapper) -> None:
    guard = GuardedStream(closed_pipe)
    told: list[str] = []
    guard.on_broken(told.append)
    guard.write("first line\n")
    guard.flush()  # the pipe's buffer is written here: EPIPE
    guard.write("second line\n")
    guard.flush()
    assert guard.broken == "Broken pipe"
    assert told == ["Broken pipe"]


def test_the_broken_fd_is_pointed_at_dev_null(closed_pipe: io.TextIOWrapper) -> None:
    guard = GuardedStream(closed_pipe)
    print("a line", file=guard, flush=True)
    assert os.readlink(f"/proc/self/fd/{closed_pipe.fileno()}") == os.devnull
    closed_pipe.write("what was still buffered\n")
    closed_pipe.flush()  # and Python's own flush at exit succeeds


def test_a_callback_registered_after_the_break_is_told_at_once() -> None:
    stream = io.StringIO()
    stream.close()
    guard = GuardedStream(stream)
    guard.write("x")
    told: list[str] = []
    guard.on_broken(told.append)
    assert told == ["closed"]


def test_a_full_disk_and_a_failing_callback_are_both_survived() -> None:
    with open("/dev/full", "w") as full:
        guard = GuardedStream(full)
        told: list[str] = []

        def fails(_reason: str) -> None:
            raise RuntimeError("the loop is closed")

        guard.on_broken(fails)
        guard.on_broken(told.append)
        print("a line", file=guard, flush=True)
    assert told == ["No space left on device"]


def test_an_undone_callback_is_not_told(closed_pipe: io.TextIOWrapper) -> None:
    guard = GuardedStream(closed_pipe)
    told: list[str] = []
    undo = guard.on_broken(told.append)
    undo()
    print("a line", file=guard, flush=True)
    assert guard.broken == "Broken pipe" and told == []


def test_log_calls_and_stage_lines_on_a_lost_stream_never_raise(closed_pipe: io.TextIOWrapper) -> None:
    told: list[str] = []
    try:
        configure_logging("json", 0, closed_pipe)
        on_output_gone(told.append)
        structlog.get_logger("test").info("watch.idle", fresh=1)
        line_sink("json", closed_pipe)("render", "stdout", "a line from a stage")
        assert output_gone() == "Broken pipe"
        assert told == ["Broken pipe"]
    finally:
        structlog.reset_defaults()
