"""A stop while work waits for the I/O thread: the work is dropped without a word, never with a
traceback on stderr (DESIGN §5: stop cleanly; errors are one line)."""

from __future__ import annotations

import pytest

from tests.helpers.daemon import RunningDaemon
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(120)


def test_sigterm_with_checks_waiting_for_the_io_thread_prints_no_traceback(project: Project) -> None:
    # Each stage's check reads a large module's imports (seconds of `ast`, which no stop
    # interrupts): whichever is checked first, the other's check waits on the one I/O thread.
    project.write("stages/__init__.py", "")
    stages = ""
    for name in ("huge1", "huge2"):
        body = f"import os\n{name} = [1, 2, 3]\n" + "x = [1, 2, 3]\n" * 150_000
        project.write(f"stages/{name}.py", body + "def run(out):\n    pass\n")
        stages += f'[[stage]]\nname = "{name}"\nmodule = "stages.{name}"\noutputs = []\n\n'
    project.config(stages)
    with RunningDaemon(project) as daemon:
        daemon.wait_event("watch.started")
        assert daemon.stop() == 0
    assert "Traceback" not in "".join(daemon.stderr), "".join(daemon.stderr)
