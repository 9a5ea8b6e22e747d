"""Shared fixtures: a temporary project on disk and the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Project:
    """A pipeline folder in tmp_path: write files, run the real `stagewatch` CLI on it."""

    root: Path

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text(encoding="utf-8")

    def config(self, text: str) -> Path:
        return self.write("stagewatch.toml", text)

    def cli(
        self, *args: str, timeout: float = 30, env: dict[str, str] | None = None, wrap: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        """Run `python -m stagewatch --config stagewatch.toml --log-format json ARGS` in the project
        (behind `wrap`, a command that runs it, when given)."""
        full_env = {**os.environ, **(env or {})}
        full_env.pop("STAGEWATCH_CONFIG", None)
        return subprocess.run(
            [*wrap, sys.executable, "-m", "stagewatch", "--config", str(self.root / "stagewatch.toml"),
             "--log-format", "json", *args],
            cwd=self.root, capture_output=True, text=True, timeout=timeout, env=full_env,
        )  # fmt: skip

    def entry(self, stage: str) -> Path:
        return self.root / "_build" / ".cache" / f"{stage}.hash"


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
