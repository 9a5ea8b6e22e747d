"""Symlinked folders in the watch plan: found below inputs, kept out of the parent's recursion,
watched through their links, and followed when a link is swapped."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from stagewatch.config import load_pipeline
from stagewatch.daemon.impact import FolderLinks, ImpactMap
from stagewatch.daemon.watcher import Watcher, plan_watches
from stagewatch.paths import IgnoreRules
from stagewatch.stage import Change, WatcherKind
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(30)


def test_a_symlinked_folder_inside_a_recursive_watch_keeps_its_own() -> None:
    existing = {"/p", "/p/content", "/p/content/shared", "/p/content/shared/sub", "/p/content/real"}
    links = {"/p/content/shared"}
    wanted = {"/p/content": True, "/p/content/shared": True, "/p/content/shared/sub": False}
    wanted["/p/content/real"] = False
    plan = plan_watches(wanted, existing.__contains__, links.__contains__)
    assert plan == {"/p": False, "/p/content": True, "/p/content/shared": True}


def test_a_folder_below_a_link_that_is_not_watched_itself_keeps_its_own() -> None:
    existing = {"/p", "/p/content", "/p/content/shared", "/p/content/shared/sub"}
    plan = plan_watches(
        {"/p/content": True, "/p/content/shared/sub": False},
        existing.__contains__,
        {"/p/content/shared"}.__contains__,
    )
    # Its parent too, through the link: the one that sees it removed and made again.
    assert plan == {
        "/p": False,
        "/p/content": True,
        "/p/content/shared": False,
        "/p/content/shared/sub": False,
    }


def test_linked_folders_are_named_through_their_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    content = tmp_path / "content"
    (content / "real").mkdir(parents=True)
    (content / "real" / "shared").symlink_to(outside)
    (outside / "more").symlink_to(tmp_path / "elsewhere")  # a link inside a link's target
    (content / "inside").symlink_to(content / "real")  # already watched through content
    (content / "loop").symlink_to(content)  # must not walk forever
    (outside / "back").symlink_to(outside)
    (content / ".git").mkdir()
    (content / ".git" / "hidden").symlink_to(tmp_path / "elsewhere")  # in an ignored folder
    (content / "dangling").symlink_to(tmp_path / "missing")
    (content / "file.md").symlink_to(tmp_path / "missing.md")
    found = FolderLinks().below(str(content), IgnoreRules(str(tmp_path)))
    assert sorted(found) == [f"{content}/real/shared", f"{content}/real/shared/more"]


def test_wanted_watches_add_links_below_folder_inputs_and_glob_bases(project: Project) -> None:
    project.write("elsewhere/a/x.md", "x")
    project.write("elsewhere/b/y.md", "y")
    (project.root / "content").mkdir()
    (project.root / "content" / "a").symlink_to(project.root / "elsewhere" / "a")
    (project.root / "pages").mkdir()
    (project.root / "pages" / "b").symlink_to(project.root / "elsewhere" / "b")
    project.config(
        """
        [[stage]]
        name = "one"
        command = ["true"]
        inputs = ["content/", "pages/**/*.md"]
        """
    )
    root = project.root.as_posix()
    wanted = ImpactMap(load_pipeline(project.root / "stagewatch.toml"), {}).wanted_watches()
    assert wanted[f"{root}/content/a"] is True
    assert wanted[f"{root}/pages/b"] is True


class Changes:
    """What a Watcher reports, waited on with a deadline."""

    def __init__(self) -> None:
        self.seen: list[Change] = []
        self._cond = threading.Condition()

    def __call__(self, changes: list[Change]) -> None:
        with self._cond:
            self.seen.extend(changes)
            self._cond.notify_all()

    def wait_for(
        self, path: str, is_dir: bool | None = None, gone: bool = False, timeout: float = 10.0
    ) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for change in self.seen:
                    if change.path == path and change.gone is gone and is_dir in (None, change.is_dir):
                        return
                left = deadline - time.monotonic()
                assert left > 0, f"no change at {path}; saw {self.seen[-10:]}"
                self._cond.wait(left)


def test_the_watcher_reports_events_behind_a_link_under_the_links_name(tmp_path: Path) -> None:
    for version in ("v1", "v2"):
        (tmp_path / "releases" / version).mkdir(parents=True)
    content = tmp_path / "content"
    content.mkdir()
    (content / "current").symlink_to(tmp_path / "releases" / "v1")
    changes = Changes()
    watcher = Watcher(changes, lambda _reason: None, WatcherKind.NATIVE)
    watcher.start()
    try:
        plan = plan_watches({str(content): True, f"{content}/current": True})
        watcher.update(plan)
        assert f"{content}/current" in watcher.watched
        (tmp_path / "releases" / "v1" / "page.md").write_text("one")
        changes.wait_for(f"{content}/current/page.md")
        # Swapped atomically: the new link is a folder change, and the watch follows it.
        (content / "next").symlink_to(tmp_path / "releases" / "v2")
        os.replace(content / "next", content / "current")
        changes.wait_for(f"{content}/current", is_dir=True)
        watcher.update(plan)  # as the daemon's re-plan does, renewing nothing by name
        (tmp_path / "releases" / "v2" / "page.md").write_text("two")
        changes.wait_for(f"{content}/current/page.md")
        # A removed link is a folder gone, so the daemon plans again and drops its watch.
        os.unlink(content / "current")
        changes.wait_for(f"{content}/current", is_dir=True, gone=True)
    finally:
        watcher.stop()


def test_a_link_made_in_a_folder_read_before_is_found(tmp_path: Path) -> None:
    content = tmp_path / "content"
    (content / "a" / "b").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    long_ago = time.time() - 3600
    for folder in (content, content / "a", content / "a" / "b"):
        os.utime(folder, (long_ago, long_ago))  # old enough for its listing to be kept
    links = FolderLinks()
    rules = IgnoreRules(str(tmp_path))
    assert links.below(str(content), rules) == []
    links.sweep()
    (content / "a" / "b" / "shared").symlink_to(tmp_path / "outside")
    assert links.below(str(content), rules) == [f"{content}/a/b/shared"]
    (content / "a" / "b" / "shared").unlink()
    assert links.below(str(content), rules) == []


@pytest.mark.parametrize("kind", [WatcherKind.NATIVE, WatcherKind.POLLING])
def test_a_folder_named_through_a_link_is_watched_at_its_target(tmp_path: Path, kind: WatcherKind) -> None:
    (tmp_path / "release").mkdir()
    (tmp_path / "current").symlink_to(tmp_path / "release")
    changes = Changes()
    watcher = Watcher(changes, lambda _reason: None, kind)
    watcher.start()
    try:
        # A file input's folder (not recursive), reached through a link: "current/page.md".
        watcher.update(plan_watches({f"{tmp_path}/current": False}))
        (tmp_path / "release" / "page.md").write_text("one")
        changes.wait_for(f"{tmp_path}/current/page.md")
    finally:
        watcher.stop()
