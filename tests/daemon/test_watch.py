"""The real daemon on real files: edits, editors' saves, bursts, folders, code edits."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers.daemon import SYNC_STAGE, RunningDaemon
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(90)

SITE = (
    """
[pipeline]
jobs = 2
debounce = "100ms"

[[stage]]
name = "pages"
module = "stages.pages"
inputs = ["content/**/*.md"]
outputs = ["out/pages/"]

[[stage]]
name = "index"
module = "stages.index"
inputs = ["out/pages/"]
outputs = ["out/index.txt"]
"""
    + SYNC_STAGE
)


@pytest.fixture
def site(project: Project) -> Project:
    project.write("stages/__init__.py", "")
    project.write(
        "stages/helpers.py",
        """
        def shout(text):
            return text.upper()
        """,
    )
    project.write(
        "stages/pages.py",
        """
        from stages.helpers import shout

        def run(out):
            pages = out / "out" / "pages"
            pages.mkdir(parents=True, exist_ok=True)
            wanted = set()
            for source in sorted((out / "content").rglob("*.md")):
                target = pages / (source.stem + ".txt")
                text = shout(source.read_text())
                if not target.exists() or target.read_text() != text:
                    target.write_text(text)  # identical bytes are left alone
                wanted.add(target)
            for stale in pages.glob("*.txt"):
                if stale not in wanted:
                    stale.unlink()
        """,
    )
    project.write(
        "stages/index.py",
        """
        def run(out):
            pages = sorted((out / "out" / "pages").glob("*.txt"))
            (out / "out" / "index.txt").write_text("\\n".join(p.name for p in pages))
        """,
    )
    project.write("content/a.md", "alpha")
    project.write("content/b.md", "beta")
    project.write("sync/token", "0")
    project.config(SITE)
    return project


def ran(daemon: RunningDaemon, since: int, until: int) -> list[str]:
    """The stages run in that window, sorted; pages always before index when both ran."""
    started = daemon.started(since, until)
    if "pages" in started and "index" in started:
        assert started.index("pages") < started.index("index"), started
    return sorted(started)


@pytest.fixture
def daemon(site: Project) -> RunningDaemon:
    with RunningDaemon(site) as running:
        yield running
        running.stop()


def test_catch_up_runs_every_stage_once(daemon: RunningDaemon, site: Project) -> None:
    caught_up = daemon.wait_event("watch.idle")
    assert sorted(daemon.started(until=caught_up)) == ["index", "pages", "sync"]
    assert site.read("out/pages/a.txt") == "ALPHA"


def test_edit_reruns_the_stage_and_its_downstream(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    site.write("content/a.md", "alpha two")
    end = daemon.barrier(mark)
    assert ran(daemon, mark, end) == ["index", "pages", "sync", "sync"]
    assert site.read("out/pages/a.txt") == "ALPHA TWO"
    changed = daemon.named("watch.changed", mark, end)[0]
    assert "content/a.md" in changed["paths"] and "pages" in changed["stages"]


def test_touch_and_identical_rewrite_run_nothing(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    (site.root / "content/a.md").touch()
    site.write("content/b.md", "beta")
    end = daemon.barrier(mark)
    assert daemon.started(mark, end) == ["sync", "sync"]


def _replace_from(folder: Path, target: Path, text: str) -> None:
    temp = folder / ".tmp-save"
    temp.write_text(text)
    os.replace(temp, target)


def _vim_save(target: Path, text: str) -> None:
    probe = target.parent / "4913"
    probe.write_text("")
    probe.unlink()
    backup = target.with_name(target.name + "~")
    os.rename(target, backup)
    target.write_text(text)
    backup.unlink()


def _jetbrains_save(target: Path, text: str) -> None:
    temp = target.with_name(target.name + "___jb_tmp___")
    old = target.with_name(target.name + "___jb_old___")
    temp.write_text(text)
    os.rename(target, old)
    os.rename(temp, target)
    old.unlink()


def _cp_over(root: Path, target: Path, text: str) -> None:
    (root / "new.txt").write_text(text)
    shutil.copy(root / "new.txt", target)


def _vscode_save(target: Path, text: str) -> None:
    with open(target, "r+") as handle:
        handle.truncate(0)
        handle.flush()
        time.sleep(0.03)  # the editor's own pause between truncating and writing
        handle.write(text)


SAVES = {
    "os.replace inside the folder": lambda root, target, text: _replace_from(target.parent, target, text),
    "os.replace from another folder": lambda root, target, text: _replace_from(root, target, text),
    "sed -i": lambda root, target, text: subprocess.run(
        ["sed", "-i", f"s/.*/{text}/", str(target)], check=True
    ),
    "cp over": lambda root, target, text: _cp_over(root, target, text),
    "vim": lambda root, target, text: _vim_save(target, text),
    "jetbrains": lambda root, target, text: _jetbrains_save(target, text),
    "vscode": lambda root, target, text: _vscode_save(target, text),
}


@pytest.mark.parametrize("save", list(SAVES), ids=list(SAVES))
def test_each_editor_save_runs_the_stage_once_with_the_final_content(
    daemon: RunningDaemon, site: Project, save: str
) -> None:
    mark = daemon.ready()
    for round_number in range(3):
        text = f"saved{round_number}"
        SAVES[save](site.root, site.root / "content" / "a.md", text)
        # Wait for the run itself (a rename's two halves may reach watchdog apart), then make
        # sure nothing more follows: the stage ran once.
        built = daemon.wait_event("stage.succeeded", mark, stage="index")
        end = daemon.barrier(built)
        assert ran(daemon, mark, end) == ["index", "pages", "sync", "sync"], save
        assert site.read("out/pages/a.txt") == text.upper()
        mark = end
    leftovers = [p.name for p in (site.root / "content").iterdir()]
    assert sorted(leftovers) == ["a.md", "b.md"]


def test_new_file_matching_the_glob_runs_the_stage(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    site.write("content/deep/er/c.md", "gamma")
    end = daemon.barrier(mark)
    assert ran(daemon, mark, end) == ["index", "pages", "sync", "sync"]
    assert site.read("out/pages/c.txt") == "GAMMA"


def test_deleted_file_runs_the_stage(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    (site.root / "content/b.md").unlink()
    end = daemon.barrier(mark)
    assert ran(daemon, mark, end) == ["index", "pages", "sync", "sync"]
    assert site.read("out/index.txt") == "a.txt"


def test_folder_deleted_and_recreated_is_still_watched(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    shutil.rmtree(site.root / "content")
    site.write("content/z.md", "zeta")
    end = daemon.barrier(mark)
    assert "pages" in daemon.started(mark, end)
    assert site.read("out/index.txt") == "z.txt"
    site.write("content/z.md", "zeta two")  # the new folder's watch works
    later = daemon.barrier(end)
    assert ran(daemon, end, later) == ["index", "pages", "sync", "sync"]
    assert site.read("out/pages/z.txt") == "ZETA TWO"


def test_files_made_with_their_new_folders_at_once_are_seen(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    staging = site.root / "staging"
    (staging / "x" / "y").mkdir(parents=True)
    (staging / "x" / "y" / "moved.md").write_text("moved")
    os.rename(staging / "x", site.root / "content" / "x")  # a prepared tree moved in
    end = daemon.barrier(mark)
    assert "pages" in daemon.started(mark, end)
    assert site.read("out/pages/moved.txt") == "MOVED"


def test_a_burst_of_500_files_is_one_run(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    for number in range(500):
        (site.root / "content" / f"burst{number:03}.md").write_text(f"page {number}")
    end = daemon.barrier(mark)
    assert daemon.started(mark, end).count("pages") == 1
    assert len(list((site.root / "out/pages").glob("*.txt"))) == 502


def test_a_steady_writer_cannot_starve_a_rebuild(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    stop = threading.Event()

    def write_steadily() -> None:
        number = 0
        while not stop.is_set():
            site.write("content/a.md", f"tick {number}")
            number += 1
            time.sleep(0.05)  # every 50 ms: always inside the 100 ms quiet time

    writer = threading.Thread(target=write_steadily)
    writer.start()
    try:
        daemon.wait_event("stage.started", mark, timeout=10, stage="pages")
        assert writer.is_alive()  # it ran while the writer was still writing
    finally:
        stop.set()
        writer.join()
    daemon.barrier(mark)


def test_module_edit_reruns_its_stage(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    with open(site.root / "stages/index.py", "a") as handle:
        handle.write("\n# edited\n")
    end = daemon.barrier(mark)
    assert ran(daemon, mark, end) == ["index", "sync", "sync"]


def test_helper_module_edit_reruns_the_stage_importing_it(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    site.write("stages/helpers.py", "def shout(text):\n    return text.upper() + '!'\n")
    end = daemon.barrier(mark)
    assert ran(daemon, mark, end) == ["index", "pages", "sync", "sync"]
    assert site.read("out/pages/a.txt") == "ALPHA!"


def test_editor_temp_files_wake_nothing(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    for name in (".a.md.swp", "a.md~", "#a.md#", ".goutputstream-XYZ"):
        site.write(f"content/{name}", "noise")
    (site.root / "content" / ".#a.md").symlink_to("user@host.1234")  # Emacs' dangling lock link
    end = daemon.barrier(mark)
    assert daemon.started(mark, end) == ["sync", "sync"]


def test_a_pipeline_of_many_folders_takes_few_watches_and_sees_every_edit(
    project: Project,
) -> None:
    # 60 folders side by side: a watchdog thread each (and before watchdog 7.0 an inotify
    # instance each, half of a user's 128).
    stages = '[pipeline]\ndebounce = "50ms"\n'
    for n in range(60):
        project.write(f"d/s{n:02}/a.txt", f"{n}")
        stages += (
            f'[[stage]]\nname = "s{n:02}"\n'
            f'command = ["sh", "-c", "mkdir -p out && cat d/s{n:02}/*.txt > out/s{n:02}.txt"]\n'
            f'inputs = ["d/s{n:02}/*.txt"]\noutputs = ["out/s{n:02}.txt"]\n'
        )
    project.write("sync/token", "0")
    project.config(stages + SYNC_STAGE)
    with RunningDaemon(project) as daemon:
        started = daemon.wait_event("watch.started")
        assert daemon.events[started]["folders"] <= 32
        mark = daemon.wait_event("watch.idle") + 1
        project.write("d/s17/b.txt", "more")
        project.write("d/s59/a.txt", "changed")
        end = daemon.barrier(mark)
        assert sorted(daemon.started(mark, end)) == ["s17", "s59", "sync", "sync"]
        assert project.read("out/s17.txt") == "17more"
        assert not daemon.named("watch.limit", 0, end)
        daemon.stop()


def test_a_module_imported_from_another_folder_is_watched_once_imported(project: Project) -> None:
    # shared/ holds no stage's module and no input: only the import makes it the stage's code.
    project.write("stages/__init__.py", "")
    project.write("shared/__init__.py", "")
    project.write("shared/text.py", "def shout(text):\n    return text.upper()\n")
    project.write(
        "stages/pages.py",
        "def run(out):\n"
        "    from shared.text import shout\n"
        "    (out / 'out').mkdir(exist_ok=True)\n"
        "    (out / 'out' / 'page.txt').write_text(shout('hello'))\n",
    )
    project.write("sync/token", "0")
    project.config(
        '[pipeline]\ndebounce = "50ms"\n'
        '[[stage]]\nname = "pages"\nmodule = "stages.pages"\noutputs = ["out/page.txt"]\n' + SYNC_STAGE
    )
    with RunningDaemon(project) as daemon:
        mark = daemon.wait_event("watch.idle") + 1
        assert project.read("out/page.txt") == "HELLO"
        project.write("shared/text.py", "def shout(text):\n    return text.upper() + '!'\n")
        end = daemon.barrier(mark)
        assert sorted(daemon.started(mark, end)) == ["pages", "sync", "sync"]
        assert project.read("out/page.txt") == "HELLO!"
        daemon.stop()
