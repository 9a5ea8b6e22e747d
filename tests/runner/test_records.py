"""Run records: an earlier run's survivors are stopped before a stage starts; live_run tells who runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import stagewatch.runner
import stagewatch.runrecord
from stagewatch.layout import CacheLayout
from stagewatch.runner import StageRunner
from stagewatch.runrecord import TOKEN_VAR, RunRecord, live_run, new_token, read_record
from stagewatch.stage import RunResult, Stage
from tests.helpers.project import Project
from tests.helpers.runner import (
    ESCAPING_SLEEPER,
    SLEEPER,
    end_sleepers,
    pids_when_written,
    read_pid,
    write_module,
)
from tests.helpers.waiting import eventually, pid_alive

pytestmark = pytest.mark.timeout(60)

# A stage whose first line says whether the process in old.pid is still alive.
CHECK_OLD = (
    "import os, sys\n"
    "pid = int(open('old.pid').read())\n"
    "try:\n"
    "    alive = open(f'/proc/{pid}/stat', 'rb').read().rsplit(b')', 1)[1].split()[0] != b'Z'\n"
    "except FileNotFoundError:\n"
    "    alive = False\n"
    "print('old alive' if alive else 'old dead', flush=True)\n"
)


def start_survivor(root: Path, env: dict[str, str]) -> int:
    """A process of an earlier run that left its group and its parent (setsid, double fork)."""
    subprocess.run(
        ["sh", "-c", 'setsid "$0" -c "$1" old.pid > /dev/null 2>&1 &', sys.executable, SLEEPER],
        cwd=root, env={**os.environ, **env}, check=True,
    )  # fmt: skip
    return pids_when_written(root, ["old.pid"])["old.pid"]


def leave_record(root: Path, stage: str, record: RunRecord | str) -> Path:
    path = CacheLayout(root).run_record(stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record if isinstance(record, str) else record.text())
    return path


def test_a_survivor_of_an_earlier_run_is_killed_before_the_stage_starts(tmp_path: Path) -> None:
    token = new_token()
    survivor = start_survivor(tmp_path, {TOKEN_VAR: token})
    try:
        leave_record(tmp_path, "gen", RunRecord(token, survivor, 1, "2024-01-01T00:00:00+00:00"))
        lines: list[str] = []
        runner = StageRunner(tmp_path, on_line=lambda _stage, _stream, line: lines.append(line))
        with capture_logs() as logs:
            result = runner.run(Stage(name="gen", command=(sys.executable, "-c", CHECK_OLD)))
        assert result.ok, result
        assert lines[0] == "old dead"
        killed = [entry for entry in logs if entry["event"] == "stage.orphans_killed"]
        assert killed == [
            {"event": "stage.orphans_killed", "stage": "gen", "pids": [survivor], "log_level": "warning"}
        ]
        assert not CacheLayout(tmp_path).run_record("gen").exists()
    finally:
        end_sleepers([survivor])


def test_no_record_means_nothing_is_looked_for(tmp_path: Path) -> None:
    # A process that merely looks like one of the stage's is not touched without a record.
    survivor = start_survivor(tmp_path, {"STAGEWATCH_STAGE": "gen", "STAGEWATCH_OUTPUT_DIR": str(tmp_path)})
    try:
        with capture_logs() as logs:
            assert StageRunner(tmp_path).run(Stage(name="gen", command=("true",))).ok
        assert pid_alive(survivor)
        assert [entry for entry in logs if entry["log_level"] == "warning"] == []
    finally:
        end_sleepers([survivor])


def test_a_malformed_record_is_a_warning_and_its_stage_is_still_cleared(tmp_path: Path) -> None:
    # Without a token, the stage's processes are known by its name and output folder.
    survivor = start_survivor(tmp_path, {"STAGEWATCH_STAGE": "gen", "STAGEWATCH_OUTPUT_DIR": str(tmp_path)})
    try:
        path = leave_record(tmp_path, "gen", "version=1\ntoken=???\n")
        lines: list[str] = []
        runner = StageRunner(tmp_path, on_line=lambda _stage, _stream, line: lines.append(line))
        with capture_logs() as logs:
            result = runner.run(Stage(name="gen", command=(sys.executable, "-c", CHECK_OLD)))
        assert result.ok, result
        assert lines[0] == "old dead"
        assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
            "run_record.corrupt",
            "stage.orphans_killed",
        ]
        assert logs[0]["path"] == str(path) and logs[0]["problem"] == "bad token '???'"
    finally:
        end_sleepers([survivor])


def test_a_survivor_that_cannot_be_stopped_keeps_the_stage_from_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for a process stuck in the kernel (uninterruptible sleep): SIGKILL does not take.
    monkeypatch.setattr(stagewatch.runrecord, "_sigkill", lambda pid: None)
    monkeypatch.setattr(stagewatch.runner, "ORPHAN_WAIT_S", 0.2)
    token = new_token()
    survivor = start_survivor(tmp_path, {TOKEN_VAR: token})
    try:
        path = leave_record(tmp_path, "gen", RunRecord(token, survivor, 1, "2024-01-01T00:00:00+00:00"))
        result = StageRunner(tmp_path).run(Stage(name="gen", command=("touch", "ran")))
        assert not result.ok and result.exit_code is None
        assert result.error == f"not started: processes of an earlier run survive SIGKILL (pids {survivor})"
        assert not (tmp_path / "ran").exists()
        assert read_record(path) == RunRecord(token, survivor, 1, "2024-01-01T00:00:00+00:00")
    finally:
        end_sleepers([survivor])


def test_a_run_whose_survivor_outlives_it_keeps_its_record_for_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The keeper is killed from outside, and its escapee withstands SIGKILL for a while.
    monkeypatch.setattr(stagewatch.runrecord, "_sigkill", lambda pid: None)
    monkeypatch.setattr(stagewatch.runner, "ORPHAN_WAIT_S", 0.2)
    script = 'echo $$ > sh.pid; "$0" -c "$1" old.pid & wait'
    stage = Stage(name="gen", command=("sh", "-c", script, sys.executable, ESCAPING_SLEEPER))
    results: list[RunResult] = []
    runner = StageRunner(tmp_path)
    thread = threading.Thread(target=lambda: results.append(runner.run(stage)))
    with capture_logs() as logs:
        thread.start()
        pids = pids_when_written(tmp_path, ["sh.pid", "old.pid"])
        try:
            os.kill(os.getpgid(pids["sh.pid"]), signal.SIGKILL)
            thread.join(20)
            assert results and results[0].error == "killed by SIGKILL"
            outlived = [entry for entry in logs if entry["event"] == "stage.outlived"]
            assert outlived and outlived[0]["pids"] == [pids["old.pid"]]
            record = read_record(CacheLayout(tmp_path).run_record("gen"))
            assert isinstance(record, RunRecord) and live_run(tmp_path, "gen") == pids["old.pid"]

            monkeypatch.undo()
            lines: list[str] = []
            runner = StageRunner(tmp_path, on_line=lambda _stage, _stream, line: lines.append(line))
            assert runner.run(Stage(name="gen", command=(sys.executable, "-c", CHECK_OLD))).ok
            assert lines[0] == "old dead"
            assert live_run(tmp_path, "gen") is None
        finally:
            end_sleepers(pids.values())


def test_a_restarted_stagewatch_stops_the_old_run_before_its_own(project: Project) -> None:
    """The daemon is SIGKILLed while its keeper cannot act yet (stopped, as if not yet scheduled):
    the worker outlives it, and the next stagewatch must end it before it starts the stage."""
    project.config(
        """
        [[stage]]
        name = "gen"
        module = "stages.gen"
        """
    )
    project.write(
        "stages/gen.py",
        f"""
        import os, pathlib, time
        def run(out):
            if not (out / "old.pid").exists():
                (out / "old.tmp").write_text(str(os.getpid()))
                os.rename(out / "old.tmp", out / "old.pid")
                time.sleep(120)
            exec({CHECK_OLD!r})
        """,
    )
    first = subprocess.Popen(
        [sys.executable, "-m", "stagewatch", "--config", str(project.root / "stagewatch.toml"),
         "--log-format", "json", "build"],
        cwd=project.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    old: list[int | None] = []
    try:
        worker = pids_when_written(project.root, ["old.pid"])["old.pid"]
        keeper = os.getpgid(worker)
        old += [worker, keeper]
        os.kill(keeper, signal.SIGSTOP)
        first.kill()
        first.wait(timeout=10)
        assert pid_alive(worker), "the situation to test: a process of the old run is alive"
        second = project.cli("build")
        assert second.returncode == 0, second.stderr
        events = [json.loads(line) for line in second.stdout.splitlines()]
        killed = [event for event in events if event["event"] == "stage.orphans_killed"]
        assert len(killed) == 1 and killed[0]["stage"] == "gen" and set(killed[0]["pids"]) == {worker, keeper}
        assert project.read("_build/.cache/gen.log").splitlines()[0] == "old dead"
        assert not pid_alive(worker) and not pid_alive(keeper)
    finally:
        first.kill()
        first.wait()
        for pid in old:
            if pid is not None and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_live_run_names_a_process_of_the_running_stage(tmp_path: Path) -> None:
    assert live_run(tmp_path, "slow") is None
    runner = StageRunner(tmp_path)
    stage = Stage(
        name="slow", command=("sh", "-c", "echo $$ > started; until [ -e go ]; do sleep 0.01; done")
    )
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(runner.run(stage)))
    thread.start()
    try:
        assert eventually(lambda: read_pid(tmp_path / "started"))
        running = live_run(tmp_path, "slow")
        # The keeper leads the stage's group, and the record names it.
        assert running is not None and running == os.getpgid(read_pid(tmp_path / "started") or 0)
        record = read_record(CacheLayout(tmp_path).run_record("slow"))
        assert isinstance(record, RunRecord) and record.pgid == running and record.owner_pid == os.getpid()
        assert live_run(tmp_path, "other") is None
    finally:
        (tmp_path / "go").touch()
        thread.join(10)
    assert results and results[0].ok
    assert live_run(tmp_path, "slow") is None


def test_live_run_is_none_for_a_record_without_live_processes(tmp_path: Path) -> None:
    # Its group id now belongs to a process that does not carry the token (pid reuse): not the run.
    leave_record(tmp_path, "gen", RunRecord(new_token(), os.getpid(), 1, "2024-01-01T00:00:00+00:00"))
    assert live_run(tmp_path, "gen") is None
    leave_record(tmp_path, "bad", "not a record at all")
    assert live_run(tmp_path, "bad") is None


def test_live_run_finds_a_process_that_left_the_group(tmp_path: Path) -> None:
    token = new_token()
    survivor = start_survivor(tmp_path, {TOKEN_VAR: token})
    try:
        leave_record(tmp_path, "gen", RunRecord(token, 999_999_999, 1, "2024-01-01T00:00:00+00:00"))
        assert live_run(tmp_path, "gen") == survivor
    finally:
        end_sleepers([survivor])


def test_every_process_of_a_run_carries_its_token(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "env",
        textwrap.dedent(
            f"""
            import os, subprocess, sys
            def run(out):
                child = subprocess.run([sys.executable, "-c", "import os; print(os.environ[{TOKEN_VAR!r}])"],
                                       capture_output=True, text=True, check=True)
                (out / "tokens.txt").write_text(os.environ[{TOKEN_VAR!r}] + " " + child.stdout.strip())
                (out / "record.txt").write_text((out / "_build/.cache/env.run").read_text())
            """
        ),
    )
    assert StageRunner(tmp_path).run(Stage(name="env", module="stages.env")).ok
    mine, childs = (tmp_path / "tokens.txt").read_text().split()
    assert mine == childs and len(mine) == 32
    assert f"token={mine}\n" in (tmp_path / "record.txt").read_text()
    assert not CacheLayout(tmp_path).run_record("env").exists()
