"""A hostile run record: a FIFO where a stage's `.run` record goes is never waited on."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.helpers.daemon import RunningDaemon
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(60)

COPY = """
[[stage]]
name = "copy"
command = ["sh", "-c", "mkdir -p out && cp in.txt out/copy.txt"]
inputs = ["in.txt"]
outputs = ["out/copy.txt"]
"""


def fifo_record(project: Project) -> None:
    project.config(COPY)
    project.write("in.txt", "one")
    cache = project.root / "_build" / ".cache"
    cache.mkdir(parents=True)
    os.mkfifo(cache / "copy.run")


def test_a_fifo_run_record_does_not_hang_the_daemon(project: Project) -> None:
    fifo_record(project)
    with RunningDaemon(project) as daemon:
        started = daemon.wait_event("stage.started", stage="copy")
        # The record is refused in one line (as a FIFO log or lock record is), and the round ends.
        daemon.wait_event("watch.idle", started, timeout=15)
        assert daemon.stop() == 0


def test_sigterm_stops_a_daemon_whose_stage_meets_a_fifo_run_record(project: Project) -> None:
    fifo_record(project)
    with RunningDaemon(project) as daemon:
        daemon.wait_event("stage.started", stage="copy")
        daemon.proc.send_signal(signal.SIGTERM)
        # Nothing can prevent a stop (DESIGN §5): within its own stop deadline, not never.
        assert daemon.proc.wait(timeout=25) == 0


def test_a_fifo_run_record_does_not_hang_a_build(project: Project) -> None:
    fifo_record(project)
    try:
        proc = project.cli("build", timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("build waited on the FIFO at _build/.cache/copy.run")
    assert "Traceback" not in proc.stderr
