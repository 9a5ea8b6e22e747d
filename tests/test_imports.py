"""One-shot commands load only what they use: no asyncio, no watchdog (DESIGN §9)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import Project

pytestmark = pytest.mark.timeout(60)

DAEMON_ONLY = ("asyncio", "ssl", "watchdog", "aiohttp")


def imported(project: Project, *argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the command as a user does, and the modules Python loaded for it."""
    env = {key: value for key, value in os.environ.items() if key != "STAGEWATCH_CONFIG"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stagewatch", *argv],
        cwd=project.root, capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return proc, modules


@pytest.fixture
def built(project: Project) -> Project:
    project.write("pipeline/__init__.py", "")
    project.write("pipeline/page.py", "def run(out):\n    (out / 'page.txt').write_text('hi')\n")
    project.write("content/a.md", "a")
    project.config(
        """
        [[stage]]
        name = "page"
        module = "pipeline.page"
        inputs = ["content/**/*.md"]
        outputs = ["page.txt"]
        """
    )
    return project


def test_a_build_that_runs_and_a_no_op_build_never_load_the_daemons_modules(built: Project) -> None:
    for _ in range(2):  # the first runs the stage and logs through structlog; the second is a no-op
        proc, modules = imported(built, "build")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "stagewatch.build" in modules
        assert sorted(m for m in modules if m.split(".")[0] in DAEMON_ONLY) == []
    assert built.read("page.txt") == "hi"


@pytest.mark.parametrize("argv", [("status",), ("check",), ("explain", "page")])
def test_other_one_shot_commands_never_load_the_daemons_modules(
    built: Project, argv: tuple[str, ...]
) -> None:
    assert built.cli("build").returncode == 0
    proc, modules = imported(built, *argv)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stagewatch.cli" in modules
    assert sorted(m for m in modules if m.split(".")[0] in DAEMON_ONLY) == []


def test_the_stand_in_for_asyncio_becomes_asyncio_at_its_first_use(tmp_path: object) -> None:
    code = (
        "import sys\n"
        "from stagewatch import launch\n"
        "launch._asyncio_on_first_use()\n"
        "import structlog, asyncio\n"
        "assert 'base_events' not in dir(asyncio)\n"
        "async def answer():\n"
        "    await asyncio.sleep(0)\n"
        "    return 42\n"
        "print(asyncio.run(answer()), sys.modules['asyncio'] is not asyncio, asyncio.Future)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("42 True <class '_asyncio.Future'>")
