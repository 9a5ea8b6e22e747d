"""Shared fixtures: a temporary project on disk and the real CLI in a subprocess."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.daemon import SLOW
from tests.helpers.project import Project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(rel: str, text: str) -> Path:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the test, so a fixture can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def slow(project: Project) -> Project:
    """A stage that, while its input says "wait", holds until the file `go` exists."""
    project.write("stages/__init__.py", "")
    project.write(
        "stages/slow.py",
        """
        import os, sys, time

        def run(out):
            text = (out / "in/slow.txt").read_text()
            with open(out / "starts.log", "a") as log:
                log.write(f"{os.getpid()} {text}\\n")
            if "FAIL" in text:
                sys.exit(3)
            while "wait" in text and not (out / "go").exists():
                time.sleep(0.01)
            (out / "out").mkdir(exist_ok=True)
            (out / "out/slow.txt").write_text(text)
        """,
    )
    project.write("in/slow.txt", "first")
    project.write("sync/token", "0")
    project.config(SLOW.format(extra=""))
    return project
