"""Hostile files (FIFOs, devices, huge or damaged cache files): one clear line, never a hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project

pytestmark = pytest.mark.timeout(60)


def stagewatch(config: Path | str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI on a given pipeline file; a hang fails the test at the timeout."""
    return subprocess.run(
        [sys.executable, "-m", "stagewatch", "--config", str(config), "--log-format", "json", *args],
        cwd=cwd, capture_output=True, text=True, timeout=20,
    )  # fmt: skip


def one_line_refusal(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- the pipeline file -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "build", "status", "watch"])
def test_a_fifo_as_the_pipeline_file_is_refused_without_waiting(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "stagewatch.toml"
    os.mkfifo(fifo)
    line = one_line_refusal(stagewatch(fifo, command, cwd=tmp_path))
    assert line == f"{fifo}: not a regular file (a FIFO)"


def test_a_device_as_the_pipeline_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    line = one_line_refusal(stagewatch("/dev/zero", "check", cwd=tmp_path))
    assert line == "/dev/zero: not a regular file (a character device)"


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "stagewatch.toml"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    try:
        yield path
    finally:
        server.close()


def test_a_socket_as_the_pipeline_file_is_refused(tmp_path: Path, unix_socket: Path) -> None:
    line = one_line_refusal(stagewatch(unix_socket, "check", cwd=tmp_path))
    assert line == f"{unix_socket}: not a regular file (a socket)"


def test_a_huge_pipeline_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "stagewatch.toml"
    with open(path, "wb") as handle:
        handle.truncate(11 * 1024 * 1024)  # sparse: no disk used, still 11 MiB to read
    line = one_line_refusal(stagewatch(path, "check", cwd=tmp_path))
    assert line == f"{path}: 11.0 MiB is too large for a pipeline file (at most 10 MiB)"


def test_a_symlink_to_a_regular_pipeline_file_is_read(project: Project) -> None:
    project.write("real.toml", '[[stage]]\nname = "a"\ncommand = ["true"]\n')
    (project.root / "stagewatch.toml").symlink_to("real.toml")
    proc = project.cli("check")
    assert proc.returncode == 0, proc.stderr
    assert "valid, 1 stage" in proc.stdout
