"""A pipeline folder in a temporary directory, and the real `stagewatch` CLI run on it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path


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
