"""A stage's whole process tree, not only its first process, ends with its run and with stagewatch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from stagewatch.runner import StageRunner
from stagewatch.stage import RunResult, Stage
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


def group_members(pgid: int) -> list[int]:
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if fields[0] != b"Z" and int(fields[2]) == pgid:
                members.append(int(name))
    return members


def write_tree_project(root: Path) -> None:
    """Two stages that build trees: a shell with a grandchild and a double-forked orphan, and a
    module stage with a child and a child that left the group (setsid)."""
    (root / "stagewatch.toml").write_text(
        textwrap.dedent(
            f"""
            [pipeline]
            jobs = 2

            [[stage]]
            name = "cmd"
            command = ["sh", "-c", '''
                echo $$ > cmd-sh.pid
                ("$0" -c "$1" cmd-orphan.pid &)
                "$0" -c "$1" cmd-grandchild.pid &
                wait''', {sys.executable!r}, {SLEEPER!r}]

            [[stage]]
            name = "mod"
            module = "stages.tree"
            """
        )
    )
    write_module(
        root,
        "tree",
        f"import os, subprocess, sys, time\n"
        f"def run(out):\n"
        f"    subprocess.Popen([sys.executable, '-c', {SLEEPER!r}, 'mod-child.pid'])\n"
        f"    subprocess.Popen([sys.executable, '-c', {ESCAPING_SLEEPER!r}, 'mod-escapee.pid'])\n"
        f"    (out / 'mod-worker.pid').write_text(str(os.getpid()))\n"
        f"    time.sleep(120)\n",
    )


def test_sigkill_of_stagewatch_ends_every_process_of_every_running_stage(tmp_path: Path) -> None:
    write_tree_project(tmp_path)
    build = subprocess.Popen(
        [sys.executable, "-m", "stagewatch", "--config", str(tmp_path / "stagewatch.toml"),
         "--log-format", "json", "build"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    everything: set[int] = set()
    try:
        names = ["cmd-sh.pid", "cmd-orphan.pid", "cmd-grandchild.pid"]
        names += ["mod-worker.pid", "mod-child.pid", "mod-escapee.pid"]
        pids = pids_when_written(tmp_path, names)
        # The keepers (each stage's group leader) and whatever else is in the groups count too.
        leaders = {os.getpgid(pids["cmd-grandchild.pid"]), os.getpgid(pids["mod-child.pid"])}
        everything = set(pids.values()) | {pid for pgid in leaders for pid in group_members(pgid)}
        assert leaders <= everything
        assert all(pid_alive(pid) for pid in everything)
        build.send_signal(signal.SIGKILL)
        build.wait(timeout=10)
        assert eventually(lambda: not any(pid_alive(pid) for pid in everything), 10), [
            pid for pid in everything if pid_alive(pid)
        ]
    finally:
        build.kill()
        build.wait()
        end_sleepers(everything)


def test_the_stage_tree_is_gone_when_the_run_returns(tmp_path: Path) -> None:
    # Left behind at exit: a double-forked orphan in the group, and one that left it (setsid).
    script = '("$0" -c "$1" orphan.pid &); "$0" -c "$2" escapee.pid &'
    script += " until [ -e orphan.pid ] && [ -e escapee.pid ]; do sleep 0.01; done; exit 0"
    stage = Stage(name="leaves", command=("sh", "-c", script, sys.executable, SLEEPER, ESCAPING_SLEEPER))
    runner = StageRunner(tmp_path, grace_s=0.5)
    result = runner.run(stage)
    pids = [read_pid(tmp_path / "orphan.pid"), read_pid(tmp_path / "escapee.pid")]
    try:
        # No wait here: the run ends only once its keeper has reaped every descendant.
        assert [pid for pid in pids if pid is None or pid_alive(pid)] == []
        # Both were still running when the grace period was over: they had to be killed.
        assert not result.ok and result.exit_code == 0, result
        assert result.error is not None and "had to be killed" in result.error
        assert all(f"pid {pid} (" in result.error for pid in pids), result.error
    finally:
        end_sleepers(pids)
    assert not (tmp_path / "_build/.cache/leaves.run").exists()


def test_a_keeper_killed_from_outside_leaves_nothing_behind(tmp_path: Path) -> None:
    # Its worker is in the group; the escapee is found by the run's token.
    script = 'echo $$ > sh.pid; "$0" -c "$1" escapee.pid & wait'
    stage = Stage(name="k", command=("sh", "-c", script, sys.executable, ESCAPING_SLEEPER))
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(StageRunner(tmp_path, grace_s=5.0).run(stage)))
    thread.start()
    pids = pids_when_written(tmp_path, ["sh.pid", "escapee.pid"])
    try:
        os.kill(os.getpgid(pids["sh.pid"]), signal.SIGKILL)
        thread.join(20)
        assert results and results[0].error == "killed by SIGKILL"
        assert [pid for pid in pids.values() if pid_alive(pid)] == []
        assert not (tmp_path / "_build/.cache/k.run").exists()
    finally:
        end_sleepers(pids.values())


@pytest.mark.parametrize(
    ("stage", "error"),
    [
        (Stage(name="c", command=("sh", "-c", "kill -TERM $$")), "killed by SIGTERM"),
        (Stage(name="m", module="stages.selfkill"), "killed by SIGTERM"),
        (Stage(name="s", command=("sh", "-c", "kill -SEGV $$")), "killed by SIGSEGV"),
        (Stage(name="x", command=("sh", "-c", "exit 7")), "exit 7"),
    ],
    ids=["command", "module", "segv", "exit"],
)
def test_the_stage_exit_is_told_as_its_own(tmp_path: Path, stage: Stage, error: str) -> None:
    write_module(
        tmp_path, "selfkill", "import os, signal\ndef run(out):\n    os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    result = StageRunner(tmp_path).run(stage)
    assert not result.ok
    assert result.error == error


def test_a_module_stage_starts_one_interpreter(tmp_path: Path) -> None:
    # The worker is forked from its keeper: the group holds exactly the two, one program.
    write_module(
        tmp_path,
        "peek",
        "import os\n"
        "def run(out):\n"
        "    group = [p for p in os.listdir('/proc') if p.isdigit() and os.path.exists(f'/proc/{p}/stat')\n"
        "             and int(open(f'/proc/{p}/stat', 'rb').read().rsplit(b')', 1)[1].split()[2])\n"
        "             == os.getpgrp()]\n"
        "    (out / 'group.txt').write_text(' '.join(sorted(group)))\n"
        "    (out / 'me.txt').write_text(f'{os.getpid()} {os.getppid()} {os.getpgrp()}')\n",
    )
    assert StageRunner(tmp_path).run(Stage(name="peek", module="stages.peek")).ok
    me, parent, group = map(int, (tmp_path / "me.txt").read_text().split())
    assert parent == group != me
    assert sorted(map(int, (tmp_path / "group.txt").read_text().split())) == sorted([me, group])
