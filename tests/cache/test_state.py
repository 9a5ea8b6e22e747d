"""state.json: each start and end recorded, a burst of them in a few writes, all of it at close."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from stagewatch.stage import RunResult, StageState
from stagewatch.state import SAVE_EVERY_S, StateRecorder, read_state, state_path

pytestmark = pytest.mark.timeout(30)


def test_a_start_after_a_quiet_moment_is_on_disk_at_once(tmp_path: Path) -> None:
    recorder = StateRecorder(tmp_path, "build")
    recorder.started("pages")
    assert read_state(tmp_path).stages["pages"].result is StageState.RUNNING
    recorder.close()


def test_a_burst_of_starts_and_ends_is_a_few_writes_and_all_of_it_lands(tmp_path: Path) -> None:
    recorder = StateRecorder(tmp_path, "watch")
    recorder.started("warm-up")  # the burst below comes right after a write
    files: set[int] = set()
    began = time.monotonic()
    for index in range(300):
        recorder.started(f"s{index}")
        recorder.finished(f"s{index}", RunResult(True, 0, 0.01))
        files.add(os.stat(state_path(tmp_path)).st_ino)  # every write is a new file, renamed in
    spent = time.monotonic() - began
    # Each write is the whole file: twice a run would be quadratic in a burst.
    assert len(files) <= 2 + int(spent / SAVE_EVERY_S) + 1, (len(files), spent)
    deadline = time.monotonic() + 5
    while len(read_state(tmp_path).stages) < 301:
        assert time.monotonic() < deadline, "the last of the burst never reached the disk"
        time.sleep(0.01)
    recorder.close()
    state = read_state(tmp_path)
    assert state.pid is None
    assert all(state.stages[f"s{index}"].result is StageState.SUCCEEDED for index in range(300))


def test_a_recorder_that_recorded_nothing_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    first = StateRecorder(tmp_path, "build")
    first.started("pages")
    first.finished("pages", RunResult(True, 0, 0.1))
    first.close()
    before = os.stat(state_path(tmp_path))
    StateRecorder(tmp_path, "build").close()  # a no-op build
    after = os.stat(state_path(tmp_path))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert read_state(tmp_path).stages["pages"].result is StageState.SUCCEEDED


def test_a_start_still_waiting_to_be_written_is_written_at_close(tmp_path: Path) -> None:
    StateRecorder(tmp_path, "build").close()
    recorder = StateRecorder(tmp_path, "watch")
    recorder.started("a")  # written at once
    recorder.started("b")  # within SAVE_EVERY_S of that: held back
    recorder.close()
    state = read_state(tmp_path)
    assert {name: attempt.result for name, attempt in state.stages.items()} == {
        "a": StageState.CANCELLED,
        "b": StageState.CANCELLED,
    }
