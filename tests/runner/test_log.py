"""A stage's log file that cannot be written (a full disk, a file size limit) costs one warning,
never the run: its output is still drained, shown and kept for the failure report."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from stagewatch.capture import StageLog, open_log, shown_start
from stagewatch.runner import StageRunner
from stagewatch.stage import Stage
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(60)

# 20,000 lines (about 1 MB) on stdout, more than the pipe holds, then a last line on stderr.
CHATTY = """
[[stage]]
name = "chatty"
command = ["{python}", "-c", '''
import sys
for i in range(20000):
    print("line", i, "x" * 40)
print("the end", file=sys.stderr)
open("out.txt", "w").write("done")
sys.exit({code})''']
outputs = ["out.txt"]
"""
FILE_SIZE_LIMIT = 64 * 1024
# stagewatch under a file size limit: a write past it fails with EFBIG (Python ignores SIGXFSZ).
LIMITED = (
    "import os, resource, sys\n"
    f"resource.setrlimit(resource.RLIMIT_FSIZE, ({FILE_SIZE_LIMIT}, {FILE_SIZE_LIMIT}))\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'stagewatch', *sys.argv[1:]])\n"
)


def events(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def build(project: Project, *prefix: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "STAGEWATCH_CONFIG"}
    return subprocess.run(
        [*prefix, "--config", str(project.root / "stagewatch.toml"), "--log-format", "json", "build"],
        cwd=project.root, capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("code", [0, 3])
def test_a_log_past_the_file_size_limit_is_warned_about_once_and_the_run_goes_on(
    project: Project, code: int
) -> None:
    project.config(CHATTY.format(python=sys.executable, code=code))
    proc = build(project, sys.executable, "-c", LIMITED)
    log_path = project.root / "_build/.cache/chatty.log"
    said = events(proc)
    warnings = [e for e in said if e.get("event") == "stage.log_unwritable"]
    assert len(warnings) == 1, said
    assert warnings[0]["stage"] == "chatty" and warnings[0]["path"] == str(log_path)
    assert warnings[0]["error"] == "File too large"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert log_path.stat().st_size <= FILE_SIZE_LIMIT
    if code == 0:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        assert project.entry("chatty").exists()
    else:
        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
        [failed] = [e for e in said if e.get("event") == "stage.failed"]
        assert failed["error"] == "exit 3"
        assert failed["tail"] == ["the end"]


@pytest.fixture
def full_cache(project: Project) -> Any:
    """_build/.cache on a real filesystem of 256 KiB (a tmpfs): the stage's log fills it."""
    cache = project.root / "_build/.cache"
    cache.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(cache)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield cache
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=True)


def test_a_full_disk_under_the_log_is_warned_about_once_and_the_build_ends(
    project: Project, full_cache: Path
) -> None:
    project.config(CHATTY.format(python=sys.executable, code=3))
    proc = build(project, sys.executable, "-m", "stagewatch")
    said = events(proc)
    warnings = [e for e in said if e.get("event") == "stage.log_unwritable"]
    assert len(warnings) == 1, said
    assert warnings[0]["path"] == str(full_cache / "chatty.log")
    assert warnings[0]["error"] == "No space left on device"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    [failed] = [e for e in said if e.get("event") == "stage.failed"]
    assert failed["error"] == "exit 3" and failed["tail"] == ["the end"]


def test_a_log_whose_last_lines_fail_at_close_is_warned_about_once() -> None:
    # /dev/full takes the buffered lines and refuses them when they are flushed: at close.
    with capture_logs() as logs:
        stage_log = StageLog("small", Path("/dev/full"), open("/dev/full", "w"))  # noqa: SIM115
        stage_log.write("a short line")
        stage_log.close()
        stage_log.write("after the end")
        stage_log.close()
    assert logs == [
        {
            "event": "stage.log_unwritable",
            "log_level": "warning",
            "stage": "small",
            "path": "/dev/full",
            "error": "No space left on device",
        }
    ]


# 1,000,000 three-byte characters, no newline: 3 MB that a 64 KiB read cuts mid-character.
WIDE = "import sys; sys.stdout.write('€' * 1_000_000); sys.stdout.flush(); sys.exit(2)"


def test_a_huge_line_without_a_newline_is_kept_whole_in_the_log(tmp_path: Path) -> None:
    result = StageRunner(tmp_path).run(Stage(name="wide", command=(sys.executable, "-c", WIDE)))
    assert result.error == "exit 2"
    assert (tmp_path / "_build/.cache/wide.log").read_text(encoding="utf-8") == "€" * 1_000_000 + "\n"


def test_a_huge_line_without_a_newline_leaves_a_short_tail_with_both_its_ends(tmp_path: Path) -> None:
    result = StageRunner(tmp_path).run(Stage(name="wide", command=(sys.executable, "-c", WIDE)))
    [line] = result.output_tail
    assert len(line) < 1100
    assert line.startswith("€" * 500 + " ") and line.endswith(" " + "€" * 500)
    assert "[999000 characters left out]" in line


def test_a_long_line_is_shown_by_its_start_and_kept_whole_in_its_log(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "minify"
        command = ["sh", "-c", "head -c 200000 /dev/zero | tr '\\\\0' x; echo; echo short"]
        outputs = []
        """
    )
    proc = project.cli("build")
    assert proc.returncode == 0, proc.stderr
    assert max(len(line.encode()) for line in proc.stdout.splitlines()) < 48 * 1024  # journald's LineMax
    lines = [json.loads(line)["line"] for line in proc.stdout.splitlines() if '"stage.output"' in line]
    assert lines == ["x" * 4096 + " … (more in its log)", "short"]
    assert project.read("_build/.cache/minify.log") == "x" * 200000 + "\nshort\n"


@pytest.mark.parametrize(
    ("piece", "complete", "shown"),
    [
        ("short", True, "short"),
        ("x" * 4096, True, "x" * 4096),
        ("x" * 4100, True, "x" * 4096 + " … (4 characters more in its log)"),
        ("x" * 65536, False, "x" * 4096 + " … (more in its log)"),
    ],
)
def test_a_line_is_shown_whole_or_by_its_start(piece: str, complete: bool, shown: str) -> None:
    assert shown_start(piece, complete) == shown


def test_a_build_of_stages_printing_huge_lines_keeps_state_json_small(project: Project) -> None:
    stages = "".join(
        f'[[stage]]\nname = "wide{n}"\ncommand = [{sys.executable!r}, "-c", "{WIDE}"]\n\n' for n in range(3)
    )
    project.config(stages)
    proc = project.cli("build")
    assert proc.returncode == 1
    assert (project.root / "_build/.cache/state.json").stat().st_size < 100_000
    failures = [e for e in events(proc) if e.get("event") == "stage.failed"]
    assert len(failures) == 3 and all(len(json.dumps(e)) < 10_000 for e in failures)


def test_a_stage_log_that_is_a_folder_is_refused_and_said(tmp_path: Path) -> None:
    log_path = tmp_path / "_build/.cache/copy.log"
    log_path.mkdir(parents=True)
    result = StageRunner(tmp_path).run(Stage(name="copy", command=("touch", "ran")))
    assert result.error == f"could not write its log {log_path}: not a regular file (a folder)"
    assert not (tmp_path / "ran").exists() and log_path.is_dir()


def test_a_stage_log_that_is_a_symlink_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    log_path = tmp_path / "_build/.cache/copy.log"
    log_path.parent.mkdir(parents=True)
    log_path.symlink_to(target)
    result = StageRunner(tmp_path).run(Stage(name="copy", command=("echo", "hi")))
    assert result.error == f"could not write its log {log_path}: not a regular file (a symlink)"
    assert target.read_text() == "keep me"


def test_a_symlink_swapped_in_for_the_log_as_it_is_opened_is_never_followed(tmp_path: Path) -> None:
    # Whoever can write into the cache folder may swap the log for a link between its check and
    # its open: the open itself must refuse the link (truncating its target would be the cost).
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    cache = tmp_path / "_build/.cache"
    cache.mkdir(parents=True)
    log_path = cache / "s.log"
    done = threading.Event()

    def swap() -> None:
        spare = cache / "spare"
        while not done.is_set():
            spare.write_text("")
            os.replace(spare, log_path)
            spare.symlink_to(target)
            os.replace(spare, log_path)

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and target.read_text() == "keep me":
            with contextlib.suppress(OSError):
                open_log(log_path, tmp_path).close()
    finally:
        done.set()
        swapper.join()
    assert target.read_text() == "keep me"
