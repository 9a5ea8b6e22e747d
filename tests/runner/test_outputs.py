"""The folders a stage's declared outputs go in are there when it starts, in `build` and in the
daemon alike; made below output_dir only, never through a symlink, and a declared output
folder made for the run still has to be filled by it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagewatch.runner import StageRunner
from stagewatch.stage import Stage
from tests.helpers.daemon import RunningDaemon
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(60)

COPY = ("cp", "static/x.css", "_build/site/x.css")


@pytest.fixture
def static(tmp_path: Path) -> Path:
    (tmp_path / "static").mkdir()
    (tmp_path / "static/x.css").write_text("body {}")
    return tmp_path


@pytest.mark.parametrize("output", ["_build/site/x.css", "_build/site/"])
def test_the_folder_a_declared_output_goes_in_is_made_before_the_run(static: Path, output: str) -> None:
    result = StageRunner(static).run(Stage(name="css", command=COPY, outputs=(output,)))
    assert result.ok, result
    assert (static / "_build/site/x.css").read_text() == "body {}"


def test_a_declared_output_folder_made_for_the_run_and_left_empty_is_missing(tmp_path: Path) -> None:
    result = StageRunner(tmp_path).run(Stage(name="lazy", command=("true",), outputs=("out/empty/",)))
    assert not result.ok
    assert result.error == "exit 0 but declared output missing: out/empty/"
    # Not left behind either: `accept` must not find the output there.
    assert not (tmp_path / "out/empty").exists()


def test_an_empty_declared_output_folder_that_was_there_before_the_run_still_counts(tmp_path: Path) -> None:
    (tmp_path / "out/empty").mkdir(parents=True)
    assert StageRunner(tmp_path).run(Stage(name="lazy", command=("true",), outputs=("out/empty/",))).ok


def test_nothing_is_made_outside_output_dir(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    outside = tmp_path / "outside"
    stage = Stage(name="far", command=("true",), outputs=(f"{outside}/a/x.txt", "../beside/b/", "../c.txt"))
    assert not StageRunner(root).run(stage).ok
    assert sorted(os.listdir(tmp_path)) == ["project"]


@pytest.mark.parametrize("target", ["elsewhere", "nowhere"], ids=["folder", "dangling"])
def test_no_folder_is_made_through_a_symlink(tmp_path: Path, target: str) -> None:
    root = tmp_path / "project"
    (root / "_build").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "_build/site").symlink_to(tmp_path / target)
    stage = Stage(name="css", command=("true",), outputs=("_build/site/css/x.css", "_build/site/js/"))
    result = StageRunner(root).run(stage)
    assert not result.ok
    assert result.error == "exit 0 but declared output missing: _build/site/css/x.css, _build/site/js/"
    assert os.listdir(tmp_path / "elsewhere") == []
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "project"]


def test_an_output_folder_that_is_a_file_fails_the_run_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "public").write_text("not a folder")
    stage = Stage(name="css", command=("touch", "ran"), outputs=("public/site/x.css",))
    result = StageRunner(tmp_path).run(stage)
    assert not result.ok and result.exit_code is None
    assert result.error == (
        'could not make the folder for its output "public/site/x.css": public is a regular file, not a folder'
    )
    assert not (tmp_path / "ran").exists()


@pytest.fixture
def read_only_public(tmp_path: Path) -> Iterator[str]:
    """public/, a folder no one may write into; what mkdir says there."""
    build = tmp_path / "public"
    build.mkdir()
    if os.geteuid() != 0:
        build.chmod(0o555)
        yield "Permission denied"
        build.chmod(0o755)
        return
    # root writes into any folder: a read-only filesystem holds it back.
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(build)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"root, and cannot mount a read-only tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield "Read-only file system"
    finally:
        subprocess.run(["umount", "-l", str(build)], check=True)


def test_an_output_folder_that_cannot_be_made_fails_the_run_before_it_starts(
    tmp_path: Path, read_only_public: str
) -> None:
    stage = Stage(name="css", command=("touch", "ran"), outputs=("public/site/x.css",))
    result = StageRunner(tmp_path).run(stage)
    assert result.error == (
        f'could not make the folder for its output "public/site/x.css": public/site: {read_only_public}'
    )
    assert not (tmp_path / "ran").exists()


COPY_CONFIG = f"""
[[stage]]
name = "css"
command = {list(COPY)!r}
inputs = ["static/x.css"]
outputs = ["_build/site/x.css"]

[[stage]]
name = "js"
command = ["{sys.executable}", "-c", "open('_build/js/app.js', 'w').write('1')"]
outputs = ["_build/js/"]
"""


def test_a_clean_build_makes_the_output_folders(project: Project, static: Path) -> None:
    project.config(COPY_CONFIG)
    proc = project.cli("build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert project.read("_build/site/x.css") == "body {}"
    assert project.read("_build/js/app.js") == "1"


def test_the_daemon_makes_the_output_folders(project: Project, static: Path) -> None:
    project.config(COPY_CONFIG)
    with RunningDaemon(project) as daemon:
        daemon.wait_event("watch.idle")
        assert daemon.named("stage.failed") == []
        assert sorted(e["stage"] for e in daemon.named("stage.succeeded")) == ["css", "js"]
        assert daemon.stop() == 0
    assert project.read("_build/site/x.css") == "body {}"


def test_an_empty_folder_is_never_taken_away_through_a_symlink_the_stage_put_on_its_way(
    tmp_path: Path,
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (tmp_path / "outside/empty").mkdir(parents=True)
    # The stage makes the folder above its declared output folder a link to elsewhere.
    swap = "mv out out.old && ln -s ../outside out"
    result = StageRunner(root).run(Stage(name="swap", command=("sh", "-c", swap), outputs=("out/empty/",)))
    assert result.ok  # out/empty/ is there, through the link: the stage's own doing
    assert (tmp_path / "outside/empty").is_dir()
    assert (root / "out.old/empty").is_dir()  # and what was made for the run is not taken away either
