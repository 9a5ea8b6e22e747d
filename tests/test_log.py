"""The console story: a failure told once, led by what went wrong."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stagewatch.log import StoryRenderer
from tests.helpers.project import Project


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
    assert failed[0].endswith("""s: KeyError: 'missing-3' (at pipeline/render.py:2)""")
    assert "render | rendering 3 pages" in shown


def test_a_quiet_console_shows_a_failures_last_lines_once(broken: Project) -> None:
    shown = console_build(broken, "-q")
    assert shown.count("Traceback (most recent call last):") == 1
    assert "render |" not in shown
    first = shown.splitlines()[0]
    assert "KeyError: 'missing-3' (at pipeline/render.py:2); last 7 lines of its output:" in first
    assert "  | KeyError: 'missing-3'" in shown


def test_a_verdict_on_an_exit_is_not_explained_by_the_last_line_of_output() -> None:
    fields = {"stage": "a", "error": "exit 0 but declared output missing: out/", "duration_s": 0.1,
              "tail": ["drwxr-xr-x 5 root root 4096 out"]}  # fmt: skip
    said = StoryRenderer(colors=False, output_shown=True)(None, "error", {"event": "stage.failed", **fields})
    assert said == '✗ stage "a" failed (exit 0 but declared output missing: out/) after 0.1s'


@pytest.mark.parametrize(
    ("event", "fields", "said"),
    [
        ("watch.idle", {"fresh": 1}, "idle: the stage is fresh"),
        ("watch.idle", {"fresh": 4}, "idle: all 4 stages fresh"),
        ("watch.idle", {"fresh": 3, "failing": ["css"]}, "idle: 3 fresh; failing: css"),
        (
            "watch.idle",
            {"fresh": 2, "failing": ["css"], "blocked": ["index"], "looping": ["pages"]},
            "idle: 2 fresh; failing: css; blocked: index; held: pages (each keeps changing what it reads)",
        ),
        (
            "watch.started",
            {"folders": 1, "stages": 1, "watcher": "native"},
            "watching 1 folder for 1 stage (native); catching up",
        ),
        ("build.started", {"stages": 1, "jobs": 2}, "checking 1 stage (2 at once)"),
        (
            "watch.changed",
            {"paths": ["static/x.css"], "count": 1, "stages": ["css"]},
            "~ static/x.css changed: checking css",
        ),
        (
            "stage.log_unwritable",
            {"stage": "css", "path": "_build/.cache/css.log", "error": "Disk full"},
            "css: cannot write its log _build/.cache/css.log (Disk full); its output is still shown",
        ),
        (
            "stage.orphans_killed",
            {"stage": "css", "pids": [41, 42]},
            "css: stopped what an earlier run of it left running (pid 41, 42) before running it",
        ),
    ],
)
def test_the_daemons_sentences(event: str, fields: dict[str, object], said: str) -> None:
    assert StoryRenderer(colors=False)(None, "info", {"event": event, **fields}) == said
