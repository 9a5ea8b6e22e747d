"""The real daemon meets hostile files: a pipeline file swapped for a FIFO is refused, never waited on."""

from __future__ import annotations

import os

import pytest

from tests.helpers.daemon import SYNC_STAGE, RunningDaemon
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(60)

COPY = (
    """
[pipeline]
debounce = "50ms"

[[stage]]
name = "copy"
command = ["sh", "-c", "mkdir -p out && cp in.txt out/copy.txt"]
inputs = ["in.txt"]
outputs = ["out/copy.txt"]
"""
    + SYNC_STAGE
)


def test_a_pipeline_file_replaced_by_a_fifo_is_refused_and_the_old_one_keeps_running(
    project: Project,
) -> None:
    project.write("in.txt", "one")
    project.write("sync/token", "0")
    config = project.config(COPY)
    with RunningDaemon(project) as daemon:
        mark = daemon.ready()
        config.unlink()
        os.mkfifo(config)
        invalid = daemon.wait_event("config.invalid", mark)
        assert daemon.events[invalid]["problems"] == [f"{config}: not a regular file (a FIFO)"]
        project.write("in.txt", "two")
        daemon.wait_event("stage.succeeded", invalid, stage="copy")
        assert project.read("out/copy.txt") == "two"
        assert daemon.stop() == 0
