"""What the pipeline file read again means for the running pipeline: decisions as values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stagewatch.config import load_pipeline
from stagewatch.daemon.reload import (
    Refused,
    Replace,
    Reread,
    SameBytes,
    StageChanges,
    Unchanged,
    judge_reload,
)
from stagewatch.pipeline import Pipeline
from stagewatch.stage import WatcherKind

STAGE = """
[[stage]]
name = "{name}"
command = ["cp", "{source}", "{name}.txt"]
inputs = ["{source}"]
outputs = ["{name}.txt"]
"""


def pipeline(tmp_path: Path, *stages: tuple[str, str]) -> Pipeline:
    path = tmp_path / "stagewatch.toml"
    path.write_text("".join(STAGE.format(name=name, source=source) for name, source in stages))
    return load_pipeline(path)


def test_a_file_with_problems_is_refused_and_said_to_be_wrong(tmp_path: Path) -> None:
    running = pipeline(tmp_path, ("a", "in.txt"))
    decision = judge_reload(Reread(None, "d2", ("bad key",)), running, invalid=False)
    assert decision == Refused(("bad key",), file_invalid=True)


def test_the_same_bytes_change_nothing_and_end_an_alarm(tmp_path: Path) -> None:
    running = pipeline(tmp_path, ("a", "in.txt"))
    assert judge_reload(Reread(None, "d1"), running, invalid=False) == SameBytes(restored=False)
    assert judge_reload(Reread(None, "d1"), running, invalid=True) == SameBytes(restored=True)


def test_another_output_folder_is_refused_without_calling_the_file_wrong(tmp_path: Path) -> None:
    running = pipeline(tmp_path, ("a", "in.txt"))
    elsewhere = dataclasses.replace(running, output_dir=tmp_path / "elsewhere")
    decision = judge_reload(Reread(elsewhere, "d2"), running, invalid=False)
    assert isinstance(decision, Refused)
    assert not decision.file_invalid
    assert decision.problems == (
        f"{running.config_path}: output_dir cannot change while watching; restart stagewatch",
    )


def test_new_bytes_for_the_same_pipeline_take_the_new_digest(tmp_path: Path) -> None:
    running = pipeline(tmp_path, ("a", "in.txt"))
    again = pipeline(tmp_path, ("a", "in.txt"))
    assert judge_reload(Reread(again, "d2"), running, invalid=True) == Unchanged("d2")


def test_a_new_pipeline_replaces_the_running_one_naming_what_changed(tmp_path: Path) -> None:
    running = pipeline(tmp_path, ("a", "in.txt"), ("b", "in.txt"), ("c", "in.txt"))
    new = pipeline(tmp_path, ("a", "in.txt"), ("b", "other.txt"), ("d", "in.txt"))
    decision = judge_reload(Reread(new, "d2"), running, invalid=False)
    assert decision == Replace(new, "d2", StageChanges(("d",), ("b",), ("c",)), watcher_changed=False)
    assert isinstance(decision, Replace)
    assert decision.forgotten == ("c", "b")


def test_another_watcher_kind_is_flagged_as_not_applied(tmp_path: Path) -> None:
    running = pipeline(tmp_path, ("a", "in.txt"))
    polling = dataclasses.replace(running, watcher=WatcherKind.POLLING)
    decision = judge_reload(Reread(polling, "d2"), running, invalid=False)
    assert isinstance(decision, Replace)
    assert decision.watcher_changed
    assert decision.changes == StageChanges((), (), ())
