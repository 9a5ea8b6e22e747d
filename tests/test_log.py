"""The console story: a failure told once, led by what went wrong."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stagewatch.log import exception_line
from tests.conftest import Project

TRACEBACK = [
    "rendering 3 pages",
    "Traceback (most recent call last):",
    '  File "pipeline/render.py", line 6, in run',
    "    helper(3)",
    "jinja2.exceptions.UndefinedError: 'title' is undefined",
]
CHAINED = [
    "Traceback (most recent call last):",
    "  x",
    "KeyError: 'a'",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    "  y",
    "ValueError: b",
]
NO_SPACE = "OSError: [Errno 28] No space left on device"
CP = "cp: cannot stat 'static/x.css': No such file or directory"


@pytest.mark.parametrize(
    ("tail", "line"),
    [
        (TRACEBACK, TRACEBACK[-1]),
        ([*TRACEBACK, "", "  "], TRACEBACK[-1]),
        (CHAINED, "ValueError: b"),
        ([NO_SPACE, "cleaning up"], NO_SPACE),
        (["copying", CP], CP),
        ([], None),
        (["", " "], None),
    ],
)
def test_the_line_that_says_what_went_wrong(tail: list[str], line: str | None) -> None:
    assert exception_line(tail) == line


@pytest.fixture
def broken(project: Project) -> Project:
    project.write("pipeline/__init__.py", "")
    project.write(
        "pipeline/render.py",
        """\
        def helper(n):
            return {}["missing-" + str(n)]

        def run(out):
            print("rendering 3 pages")
            helper(3)
        """,
    )
    project.write("in.txt", "x")
    project.config(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        inputs = ["in.txt"]
        outputs = ["out.txt"]
        """
    )
    return project


def console_build(project: Project, *options: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "stagewatch", "--config", str(project.root / "stagewatch.toml"),
         "--log-format", "console", *options, "build"],
        cwd=project.root, capture_output=True, text=True, timeout=30, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr == ""
    return proc.stdout


def test_a_failure_on_the_console_is_told_once_and_names_its_exception(broken: Project) -> None:
    shown = console_build(broken)
    assert shown.count("Traceback (most recent call last):") == 1
    assert shown.count("KeyError: 'missing-3'") == 2  # the stage's own line, and the failure's
    failed = [line for line in shown.splitlines() if "failed (exit 1)" in line]
    assert len(failed) == 1
    assert failed[0].endswith("""s: KeyError: 'missing-3'""")
    assert "render | rendering 3 pages" in shown


def test_a_quiet_console_shows_a_failures_last_lines_once(broken: Project) -> None:
    shown = console_build(broken, "-q")
    assert shown.count("Traceback (most recent call last):") == 1
    assert "render |" not in shown
    first = shown.splitlines()[0]
    assert "KeyError: 'missing-3'; last 7 lines of its output:" in first
    assert "  | KeyError: 'missing-3'" in shown
