"""What a stage leaves running when its main process ends: given the grace period to finish, then
stopped, and then the run is a failure that names what had to be killed (never a success)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stagewatch.outcome import leftovers_error
from stagewatch.runner import StageRunner
from stagewatch.stage import Stage
from tests.helpers.daemon import RunningDaemon
from tests.helpers.project import Project
from tests.helpers.runner import end_sleepers, read_pid, write_module
from tests.helpers.waiting import eventually, pid_alive

pytestmark = pytest.mark.timeout(60)

# A helper that leaves the stage's process group (setsid) and writes the stage's output line by
# line: its pid first, then `lines` lines (0: until it is stopped), then "done". A "stubborn"
# one ignores SIGTERM. The stage's main process ends as soon as the pid is there.
HELPER = """\
import os, signal, sys, time
os.setsid()
path, mode, lines = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(path + ".part", "w") as out:
    out.write(f"{os.getpid()}\\n")
    out.flush()
    os.rename(path + ".part", path)
    i = 0
    while lines == 0 or i < lines:
        out.write(f"line {i}\\n")
        out.flush()
        time.sleep(0.05)
        i += 1
    out.write("done\\n")
"""
# time.sleep(120) in its command line lets end_sleepers() recognize a helper a failed test left.
LAUNCH = '"$0" helper.py out.txt "$1" "$2" time.sleep\\(120\\) & until [ -s out.txt ]; do sleep 0.01; done'


def command_stage(mode: str, lines: int) -> Stage:
    argv = ("sh", "-c", LAUNCH, sys.executable, mode, str(lines))
    return Stage(name="gen", command=argv, outputs=("out.txt",))


def module_stage(root: Path, mode: str, lines: int) -> Stage:
    write_module(
        root,
        "gen",
        "import subprocess, sys, time\n"
        "def run(out):\n"
        f"    argv = ['helper.py', 'out.txt', {mode!r}, {str(lines)!r}, 'time.sleep(120)']\n"
        "    subprocess.Popen([sys.executable, *argv])\n"
        "    while not (out / 'out.txt').exists() or not (out / 'out.txt').read_text():\n"
        "        time.sleep(0.01)\n",
    )
    return Stage(name="gen", module="stages.gen", outputs=("out.txt",))


def write_helper(root: Path) -> None:
    (root / "helper.py").write_text(HELPER)


def helper_pid(root: Path) -> int:
    return int((root / "out.txt").read_text().splitlines()[0])


@pytest.mark.parametrize("kind", ["command", "module"])
@pytest.mark.parametrize("mode", ["polite", "stubborn"])
def test_a_helper_still_writing_after_the_stage_ended_is_killed_and_the_run_fails(
    tmp_path: Path, kind: str, mode: str
) -> None:
    write_helper(tmp_path)
    stage = command_stage(mode, 0) if kind == "command" else module_stage(tmp_path, mode, 0)
    result = StageRunner(tmp_path, grace_s=0.5).run(stage)
    pid = helper_pid(tmp_path)
    try:
        assert not result.ok, result
        assert result.exit_code == 0
        assert result.error is not None
        assert result.error.startswith("exit 0, but "), result.error
        assert "had to be killed" in result.error
        assert f"pid {pid} (" in result.error and "helper.py out.txt" in result.error
        # No wait here: the run ends once what it left running is gone.
        assert not pid_alive(pid)
        assert (tmp_path / "out.txt").read_text().splitlines()[-1] != "done"
    finally:
        end_sleepers([pid])


@pytest.mark.parametrize("kind", ["command", "module"])
def test_a_helper_that_finishes_within_the_grace_period_keeps_the_success(tmp_path: Path, kind: str) -> None:
    write_helper(tmp_path)
    stage = command_stage("polite", 10) if kind == "command" else module_stage(tmp_path, "polite", 10)
    result = StageRunner(tmp_path, grace_s=5.0).run(stage)
    assert result.ok, result
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert lines[1:] == [f"line {i}" for i in range(10)] + ["done"]
    assert not pid_alive(int(lines[0]))


LEFTOVER_CONFIG = f"""
[[stage]]
name = "gen"
command = ["sh", "-c", '{LAUNCH}', {sys.executable!r}, "polite", "0"]
outputs = ["out.txt"]
"""


def test_build_fails_a_stage_whose_helper_had_to_be_killed_and_records_no_entry(project: Project) -> None:
    write_helper(project.root)
    project.config(LEFTOVER_CONFIG)
    proc = project.cli("build", timeout=40)
    pid = helper_pid(project.root)
    try:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        failed = [e for e in events if e.get("event") == "stage.failed"]
        assert len(failed) == 1, events
        assert failed[0]["exit_code"] == 0
        assert "had to be killed" in failed[0]["error"] and f"pid {pid} (" in failed[0]["error"]
        assert not project.entry("gen").exists()
        assert not pid_alive(pid)
    finally:
        end_sleepers([pid])


def test_the_daemon_fails_a_stage_whose_helper_had_to_be_killed_and_writes_no_entry(project: Project) -> None:
    write_helper(project.root)
    project.config(LEFTOVER_CONFIG)
    pid = None
    with RunningDaemon(project) as daemon:
        try:
            index = daemon.wait_for(
                lambda e: e.get("event") in ("stage.failed", "stage.succeeded") and e.get("stage") == "gen"
            )
            pid = helper_pid(project.root)
            assert daemon.events[index]["event"] == "stage.failed", daemon.events[index]
            error = daemon.events[index]["error"]
            assert daemon.events[index]["exit_code"] == 0
            assert "had to be killed" in error and f"pid {pid} (" in error
            assert not project.entry("gen").exists()
            assert not pid_alive(pid)
            assert daemon.stop() == 0
        finally:
            end_sleepers([pid])


def test_a_helper_that_dropped_the_runs_environment_is_still_found_and_killed(tmp_path: Path) -> None:
    # env -i: no token to find it by; it is found below the keeper, which reaps its tree.
    write_helper(tmp_path)
    argv = ("sh", "-c", "env -i " + LAUNCH, sys.executable, "stubborn", "0")
    stage = Stage(name="gen", command=argv, outputs=("out.txt",))
    result = StageRunner(tmp_path, grace_s=0.5).run(stage)
    pid = helper_pid(tmp_path)
    try:
        assert result.error is not None and f"pid {pid} (" in result.error, result
        assert not pid_alive(pid)
    finally:
        end_sleepers([pid])


@pytest.mark.parametrize("environment", ["kept", "dropped"])
def test_sigkill_of_stagewatch_while_a_helper_outlives_the_stage_takes_the_helper_with_it(
    project: Project, environment: str
) -> None:
    write_helper(project.root)
    launch = "echo $$ > main.pid; " + ("env -i " if environment == "dropped" else "") + LAUNCH
    project.config(
        f"""
        [[stage]]
        name = "gen"
        command = ["sh", "-c", '{launch}', {sys.executable!r}, "stubborn", "0"]
        outputs = ["out.txt"]
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "STAGEWATCH_CONFIG"}
    build = subprocess.Popen(
        [sys.executable, "-m", "stagewatch", "--config", str(project.root / "stagewatch.toml"), "build"],
        cwd=project.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    pid = None
    try:
        assert eventually(lambda: (project.root / "out.txt").exists() and read_pid(project.root / "main.pid"))
        pid = helper_pid(project.root)
        main = read_pid(project.root / "main.pid") or 0
        # The stage's main process has ended: stagewatch is giving the helper its grace period.
        assert eventually(lambda: not pid_alive(main))
        assert build.poll() is None and pid_alive(pid)
        build.kill()
        build.wait(timeout=10)
        assert eventually(lambda: not pid_alive(pid), 10), "the helper outlived its stagewatch"
        # And the next build (of a stage that now leaves nothing behind) is not held up by anything
        # of that run.
        project.config(
            '[[stage]]\nname = "gen"\ncommand = ["sh", "-c", "echo made > out.txt"]\noutputs = ["out.txt"]\n'
        )
        proc = project.cli("build", timeout=40)
        assert proc.returncode == 0, proc.stdout[-2000:]
        assert "earlier run" not in proc.stdout + proc.stderr
    finally:
        build.kill()
        build.wait()
        end_sleepers([pid])


def test_the_timeout_bounds_the_grace_period_of_what_the_stage_left_running(tmp_path: Path) -> None:
    write_helper(tmp_path)
    argv = ("sh", "-c", LAUNCH, sys.executable, "polite", "0")
    stage = Stage(name="gen", command=argv, outputs=("out.txt",), timeout_s=1.0)
    started = time.monotonic()
    result = StageRunner(tmp_path, grace_s=5.0).run(stage)
    pid = helper_pid(tmp_path)
    try:
        assert time.monotonic() - started < 4.0
        assert result.timed_out and not result.ok and result.exit_code == 0
        assert result.error is not None, result
        assert result.error.startswith("timed out after 1.0s: exit 0, but ")
        assert f"pid {pid} (" in result.error
        assert not pid_alive(pid)
    finally:
        end_sleepers([pid])


def test_a_daemon_stopped_while_a_stubborn_helper_outlives_its_stage_stops_and_takes_it(
    project: Project,
) -> None:
    write_helper(project.root)
    project.config(
        f"""
        [[stage]]
        name = "gen"
        command = ["sh", "-c", 'echo $$ > main.pid; {LAUNCH}', {sys.executable!r}, "stubborn", "0"]
        outputs = ["out.txt"]
        """
    )
    pid = None
    with RunningDaemon(project) as daemon:
        try:
            assert eventually(
                lambda: (project.root / "out.txt").exists() and read_pid(project.root / "main.pid")
            )
            pid = helper_pid(project.root)
            assert eventually(lambda: not pid_alive(read_pid(project.root / "main.pid") or 0))
            started = time.monotonic()
            assert daemon.stop() == 0
            assert time.monotonic() - started < 10.0
            assert not pid_alive(pid)
            assert [e["stage"] for e in daemon.named("stage.cancelled")] == ["gen"]
            assert not project.entry("gen").exists()
        finally:
            end_sleepers([pid])


@pytest.mark.parametrize(
    ("code", "stopped", "timed_out_s", "error"),
    [
        (0, ("pid 7 (sleep 60)",), None, "exit 0, but a process it started was still running 5.0s after it"
         " ended and had to be killed: pid 7 (sleep 60); a stage must wait for what it starts"),
        (3, tuple(f"pid {n}" for n in range(5)), None, "exit 3, but processes it started were still running"
         " 5.0s after it ended and had to be killed: pid 0, pid 1, pid 2 and 2 more; a stage must wait for"
         " what it starts"),
        (0, ("pid 7",), 2.0, "timed out after 2.0s: exit 0, but a process it started was still running when"
         " its time was up and had to be killed: pid 7; a stage must wait for what it starts"),
    ],
    ids=["one", "many", "timed-out"],
)  # fmt: skip
def test_a_run_that_left_processes_running_says_which_and_how_it_ended(
    code: int, stopped: tuple[str, ...], timed_out_s: float | None, error: str
) -> None:
    assert leftovers_error(code, stopped, 5.0, timed_out_s) == error
