"""Ctrl-C while stagewatch starts: one line, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(120)


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for the signal (SigCgt in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except OSError:
        pass
    return False


def test_sigint_while_watch_starts_is_one_line_never_a_traceback(project: Project) -> None:
    project.config(
        """
[[stage]]
name = "copy"
command = ["sh", "-c", "cp in.txt out.txt"]
inputs = ["in.txt"]
outputs = ["out.txt"]
"""
    )
    project.write("in.txt", "one")
    env = {k: v for k, v in os.environ.items() if k != "STAGEWATCH_CONFIG"}
    argv = [sys.executable, "-m", "stagewatch", "--config", str(project.root / "stagewatch.toml"), "watch"]
    # From the moment stagewatch's own first step (launch.py) handles SIGTERM, a Ctrl-C is
    # stagewatch's to answer; each moment of the start after it is tried, 10 ms apart.
    for delay_ms in range(0, 200, 10):
        proc = subprocess.Popen(
            argv, cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not catches(proc.pid, signal.SIGTERM) and proc.poll() is None:
            assert time.monotonic() < deadline, "launch never handled SIGTERM"
            time.sleep(0.001)
        time.sleep(delay_ms / 1000)
        proc.send_signal(signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"watch did not stop on SIGINT {delay_ms} ms into its start")
        assert "Traceback" not in err, f"SIGINT {delay_ms} ms into the start:\n{err}"
        assert proc.returncode >= 0, f"killed by SIGINT {delay_ms} ms into the start"
