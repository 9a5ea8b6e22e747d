"""The one-writer lock: held on the output folder, its owner's record kept beside the cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stagewatch.errors import LockHeldError
from stagewatch.lock import PipelineLock, lock_owner
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(30)

# Another process holding the lock until its stdin closes: flock conflicts between processes
# as it does between two opens in one, but a separate pid is what the kernel's table names.
HOLDER = """
import sys
from pathlib import Path
from stagewatch.lock import PipelineLock
lock = PipelineLock(Path(sys.argv[1]))
lock.acquire(sys.argv[2])
print("held", flush=True)
sys.stdin.read()
"""


class Holder:
    def __init__(self, output_dir: Path, role: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(output_dir), role],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == "held\n"

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        self.proc.stdout.close()


def test_the_second_writer_is_refused_with_the_owners_pid_and_role(tmp_path: Path) -> None:
    with Holder(tmp_path, "watch") as holder:
        assert lock_owner(tmp_path) == (holder.proc.pid, "watch")
        with pytest.raises(LockHeldError) as refused:
            PipelineLock(tmp_path).acquire("build")
    assert refused.value.pid == holder.proc.pid
    assert f"stagewatch watch (pid {holder.proc.pid}) is already running" in str(refused.value)
    assert 'use "stagewatch invalidate STAGE"' in str(refused.value)


def test_a_deleted_build_folder_still_refuses_and_names_the_pid(tmp_path: Path) -> None:
    with Holder(tmp_path, "build") as holder:
        shutil.rmtree(tmp_path / "_build")
        assert lock_owner(tmp_path) == (holder.proc.pid, "")  # from the kernel's table of locks
        with pytest.raises(LockHeldError) as refused:
            PipelineLock(tmp_path).acquire("watch")
    assert f"another stagewatch (pid {holder.proc.pid}) is already running" in str(refused.value)
    assert lock_owner(tmp_path) is None


def test_the_lock_is_free_once_released_and_its_record_emptied(tmp_path: Path) -> None:
    with PipelineLock(tmp_path) as lock:
        lock.acquire("build")
        assert (tmp_path / "_build/.cache/.lock").read_text() == f"{os.getpid()} build\n"
    assert lock_owner(tmp_path) is None
    assert (tmp_path / "_build/.cache/.lock").read_text() == ""
    with PipelineLock(tmp_path) as again:
        again.acquire("watch")


def test_refresh_writes_a_removed_record_again_and_nothing_else(tmp_path: Path) -> None:
    record = tmp_path / "_build/.cache/.lock"
    with PipelineLock(tmp_path) as lock:
        lock.acquire("watch")
        shutil.rmtree(tmp_path / "_build")
        lock.refresh()
        assert record.read_text() == f"{os.getpid()} watch\n"
        assert sorted(p.name for p in record.parent.iterdir()) == [".lock"]
    unheld = PipelineLock(tmp_path)
    record.unlink()
    unheld.refresh()  # not the owner: writes nothing
    assert not record.exists()


def test_an_output_dir_that_does_not_exist_yet_is_made(tmp_path: Path) -> None:
    with PipelineLock(tmp_path / "site") as lock:
        lock.acquire("build")
        assert lock_owner(tmp_path / "site") == (os.getpid(), "build")
    assert lock_owner(tmp_path / "nowhere") is None


@pytest.mark.timeout(20)
def test_a_fifo_in_place_of_the_lock_record_never_hangs_status(project: Project) -> None:
    project.config('[[stage]]\nname = "a"\ncommand = ["true"]\n')
    record = project.root / "_build/.cache/.lock"
    record.parent.mkdir(parents=True)
    os.mkfifo(record)
    status = project.cli("status", "--json", timeout=10)
    assert status.returncode == 0 and '"locked_by": null' in status.stdout
    build = project.cli("build", timeout=10)
    assert build.returncode == 1 and str(record) in build.stderr and "Traceback" not in build.stderr
