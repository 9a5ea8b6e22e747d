"""What a person asks while a run is under way is not lost: an invalidate during a run that
fails, and a reload that removes a stage the moment its run starts."""

from __future__ import annotations

import signal

import pytest

from tests.helpers.daemon import SYNC_STAGE, RunningDaemon
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(90)


def test_an_invalidate_during_a_failing_run_runs_the_stage_again(project: Project) -> None:
    project.config(
        """
[[stage]]
name = "flaky"
command = ["sh", "-c", "sleep 2; echo the service is down >&2; exit 3"]
inputs = ["in.txt"]
outputs = ["out.txt"]
"""
        + SYNC_STAGE
    )
    project.write("in.txt", "one")
    project.write("sync/token", "0")
    with RunningDaemon(project) as daemon:
        started = daemon.wait_event("stage.started", stage="flaky")
        proc = project.cli("invalidate", "flaky")
        assert "runs again once this run ends" in proc.stdout  # what the person was promised
        failed = daemon.wait_event("stage.failed", started, stage="flaky")
        # DESIGN §5: an invalidate of a running stage makes it run again once the run ends,
        # whatever that run's outcome.
        again = daemon.wait_event("stage.started", failed, stage="flaky", timeout=10)
        assert "forced" in daemon.events[again]["reasons"]
        assert daemon.stop() == 0


STAYS = """
[[stage]]
name = "{name}"
command = ["sh", "-c", "{sleep}mkdir -p out && echo {name} > out/shared.txt"]
inputs = ["in.txt"]
outputs = ["out/shared.txt"]
"""


@pytest.mark.parametrize("attempt", range(3))
def test_a_stage_removed_as_its_run_starts_is_stopped(project: Project, attempt: int) -> None:
    project.config(STAYS.format(name="old", sleep="sleep 60; ") + SYNC_STAGE)
    project.write("in.txt", "one")
    project.write("sync/token", "0")
    with RunningDaemon(project) as daemon:
        started = daemon.wait_event("stage.started", stage="old")
        # The reload comes a moment after the run was started (a person saving the pipeline
        # file, ExecReload): the removed stage's run must be stopped, not left to run its course.
        project.config(STAYS.format(name="new", sleep="") + SYNC_STAGE)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_event("config.reloaded", started)
        cancelled = daemon.wait_event("stage.cancelled", started, stage="old", timeout=12)
        assert daemon.wait_event("stage.succeeded", cancelled, stage="new") > cancelled
        assert project.read("out/shared.txt") == "new\n"
        assert daemon.stop() == 0
