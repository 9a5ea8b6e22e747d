"""Signals that come before stagewatch is ready: a clean stop, or a reload carried out later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.helpers.daemon import RunningDaemon
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(60)

# The signal is sent while stagewatch imports its command line, long before it is ready.
EARLY = """
import os, signal, sys
signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as a plain start has it (a CI may ignore SIGHUP)
def hook(event, args):
    if event == "import" and args[0] == "stagewatch.cli" and not sent:
        sent.append(True)
        os.kill(os.getpid(), signal.{sig})
sent = []
sys.addaudithook(hook)
sys.argv[1:] = {argv!r}
"""


def launch_with_signal_at_start(project: Project, sig: str, *argv: str) -> subprocess.CompletedProcess[str]:
    code = EARLY.format(sig=sig, argv=["--config", str(project.root / "stagewatch.toml"), *argv])
    code += "from stagewatch.launch import run\nrun()\n"
    env = {key: value for key, value in os.environ.items() if key != "STAGEWATCH_CONFIG"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=project.root, capture_output=True, text=True, timeout=30,
        env=env, start_new_session=True,
    )  # fmt: skip


@pytest.fixture
def pipeline(project: Project) -> Project:
    project.write("in.txt", "x")
    project.config(
        """
        [[stage]]
        name = "copy"
        command = ["cp", "in.txt", "out.txt"]
        inputs = ["in.txt"]
        outputs = ["out.txt"]
        """
    )
    return project


def test_sigterm_before_the_daemon_is_ready_is_a_clean_stop(pipeline: Project) -> None:
    proc = launch_with_signal_at_start(pipeline, "SIGTERM", "watch")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "stagewatch: stopped by SIGTERM before it had started anything\n"
    assert not (pipeline.root / "out.txt").exists()


def test_sigterm_before_a_build_is_ready_fails_the_build_in_one_line(pipeline: Project) -> None:
    proc = launch_with_signal_at_start(pipeline, "SIGTERM", "build")
    assert proc.returncode == 1
    assert proc.stderr == "stagewatch: stopped by SIGTERM before it had started anything\n"


def test_a_sighup_while_the_daemon_starts_is_a_reload_once_it_watches(pipeline: Project) -> None:
    # No controlling terminal (a session of its own): SIGHUP asks for a reload.
    code = EARLY.format(sig="SIGHUP", argv=["--config", str(pipeline.root / "stagewatch.toml"),
                                            "--log-format", "json", "watch"])  # fmt: skip
    code += "from stagewatch.launch import run\nrun()\n"

    with RunningDaemon(pipeline, argv=[sys.executable, "-c", code]) as daemon:
        daemon.wait_event("config.unchanged", why="SIGHUP")
        assert daemon.stop(signal.SIGTERM) == 0
