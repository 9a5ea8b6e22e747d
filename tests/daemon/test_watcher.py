"""The watch plan, what a change affects, and the watcher's safety nets."""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.inotify import InotifyObserver

from stagewatch.config import load_pipeline
from stagewatch.daemon.impact import ImpactMap
from stagewatch.daemon.watcher import Watcher, plan_watches
from stagewatch.stage import Change, WatcherKind
from tests.helpers.daemon import SYNC_STAGE, RunningDaemon
from tests.helpers.project import Project


def test_plan_watches_parents_too_and_skips_folders_inside_recursive_ones() -> None:
    existing = {"/p", "/p/content", "/p/content/sub", "/p/data"}
    plan = plan_watches(
        {"/p/content": True, "/p/content/sub": False, "/p/data": False}, existing.__contains__
    )
    assert plan == {"/p": False, "/p/content": True, "/p/data": False}


def test_plan_watches_a_missing_folder_through_its_nearest_existing_parent() -> None:
    plan = plan_watches({"/p/_build/site": True}, {"/p"}.__contains__)
    assert plan == {"/": False, "/p": False}


def test_many_watches_side_by_side_become_one_recursive_watch_of_their_folder() -> None:
    # watchdog spends an inotify instance per watch, and a user has 128 of them in all.
    folders = [f"/p/d/s{n:04}" for n in range(2000)]
    existing = {"/", "/p", "/p/d", "/p/out", *folders}
    plan = plan_watches(
        {**dict.fromkeys(folders, False), "/p/out": False}, existing.__contains__, within="/p"
    )
    assert plan == {"/p": False, "/p/d": True, "/p/out": False}


def test_merging_takes_the_deepest_folder_that_holds_enough_and_never_the_project_itself() -> None:
    nested = [f"/p/site/content/s{n:02}" for n in range(40)]
    tops = [f"/p/t{n:02}" for n in range(40)]
    existing = {"/", "/p", "/p/site", "/p/site/content", *nested, *tops}
    plan = plan_watches(dict.fromkeys(nested, True), existing.__contains__, within="/p", budget=4)
    assert plan == {"/p/site": False, "/p/site/content": True}
    # Folders straight below the project have no folder below it to share: left as they are.
    plan = plan_watches(dict.fromkeys(tops, False), existing.__contains__, within="/p", budget=4)
    assert set(plan) == {"/p", *tops}


def test_a_watch_through_a_symlink_is_never_merged_away() -> None:
    folders = [f"/p/d/s{n:02}" for n in range(20)]
    existing = {"/", "/p", "/p/d", "/p/d/linked", *folders}
    wanted = {**dict.fromkeys(folders, False), "/p/d/linked": True}
    plan = plan_watches(wanted, existing.__contains__, {"/p/d/linked"}.__contains__, within="/p", budget=4)
    assert plan == {"/p": False, "/p/d": True, "/p/d/linked": True}


def test_a_plan_within_budget_is_left_as_planned() -> None:
    folders = [f"/p/d/s{n:02}" for n in range(5)]
    existing = {"/", "/p", "/p/d", *folders}
    plan = plan_watches(dict.fromkeys(folders, False), existing.__contains__, within="/p", budget=10)
    assert plan == {"/p/d": False, **dict.fromkeys(folders, False)}


@pytest.fixture
def impact(project: Project) -> ImpactMap:
    project.config(
        """
        [pipeline]
        ignore = ["drafts/"]
        [[stage]]
        name = "pages"
        module = "stages.pages"
        inputs = ["content/**/*.md", "data/site.toml"]
        outputs = ["_build/pages/"]
        [[stage]]
        name = "index"
        command = ["true"]
        inputs = ["_build/pages/"]
        outputs = ["_build/index.html"]
        """
    )
    pipeline = load_pipeline(project.root / "stagewatch.toml")
    return ImpactMap(pipeline, {"pages": [f"{project.root}/stages/pages.py"]})


def _at(impact: ImpactMap, rel: str, is_dir: bool = False, gone: bool = False) -> set[str]:
    return impact.affected(Change(f"{impact.root}/{rel}", is_dir, gone))


@pytest.mark.parametrize(
    ("rel", "is_dir", "gone", "bookkeeping"),
    [
        ("_build/.cache/state.json", False, False, True),
        ("_build/.cache/.state.json.x1y2.tmp", False, True, True),
        ("_build/.cache/digests.sqlite-journal", False, False, True),
        ("_build/.cache/pages.log", False, False, True),
        ("_build/.cache/pages.hash", False, False, True),  # a run's own entry, written
        ("_build/.cache/pages.hash", False, True, False),  # removed: a person's invalidate
        ("_build/.cache", True, True, False),  # the cache itself gone: the ground may be too
        ("_build/pages/x.html", False, False, False),
        ("content/a.md", False, False, False),
    ],
)
def test_the_daemons_own_bookkeeping_is_told_from_what_matters(
    impact: ImpactMap, rel: str, is_dir: bool, gone: bool, bookkeeping: bool
) -> None:
    # Its own writes as it goes idle must not hold a person's next save back by a debounce.
    assert impact.is_bookkeeping(Change(f"{impact.root}/{rel}", is_dir, gone)) is bookkeeping


def test_a_change_affects_the_stages_that_read_it(impact: ImpactMap) -> None:
    assert _at(impact, "content/a/b.md") == {"pages"}
    assert _at(impact, "data/site.toml") == {"pages"}
    assert _at(impact, "_build/pages/x.html") == {"index"}
    assert _at(impact, "content/a/b.txt") == set()


def test_editor_temp_files_and_ignored_folders_affect_nothing(impact: ImpactMap) -> None:
    assert _at(impact, "content/.b.md.swp") == set()
    assert _at(impact, "content/b.md~") == set()
    assert _at(impact, "drafts/x.md") == set()
    assert _at(impact, "_build/.cache/state.json") == set()


def test_a_removed_folder_affects_every_stage_below_it(impact: ImpactMap) -> None:
    assert _at(impact, "content", is_dir=True, gone=True) == {"pages"}
    assert _at(impact, "_build", is_dir=True, gone=True) == {"index", "pages"}  # outputs gone too


def test_code_and_new_modules_affect_module_stages(impact: ImpactMap) -> None:
    assert _at(impact, "stages/pages.py") == {"pages"}
    assert _at(impact, "stages/new_helper.py") == {"pages"}  # on python_path: the key decides


def test_an_entry_removed_by_invalidate_names_its_stage(impact: ImpactMap) -> None:
    assert impact.invalidated(Change(f"{impact.root}/_build/.cache/pages.hash", False, True)) == "pages"
    assert impact.invalidated(Change(f"{impact.root}/_build/.cache/pages.hash", False, False)) is None
    assert impact.invalidated(Change(f"{impact.root}/_build/.cache/ghost.hash", False, True)) is None


def test_wanted_watches_cover_inputs_code_config_and_cache(impact: ImpactMap) -> None:
    wanted = impact.wanted_watches()
    root = impact.root
    assert wanted[f"{root}/content"] is True
    assert wanted[f"{root}/data"] is False
    assert wanted[f"{root}/_build/pages"] is True
    assert wanted[f"{root}/stages"] is False
    assert wanted[f"{root}/_build/.cache"] is False
    assert root in wanted  # the config file's folder


def test_a_kernel_queue_overflow_becomes_a_rescan() -> None:
    reasons: list[str] = []
    watcher = Watcher(lambda changes: None, reasons.append, WatcherKind.POLLING)
    watcher.start()
    try:
        # What watchdog logs when inotify reports IN_Q_OVERFLOW (and does nothing else about).
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
    finally:
        watcher.stop()
    assert reasons == ["overflow"]


class _NoWatchesLeft(BaseObserver):
    """Stands in for the kernel refusing a watch: raising ENOSPC needs a machine-wide sysctl."""

    def __init__(self) -> None:
        super().__init__(emitter_class=object)  # type: ignore[arg-type]

    def schedule(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


def test_the_watch_limit_falls_back_to_polling_and_names_the_sysctl(tmp_path: Path) -> None:
    reasons: list[str] = []
    changed = threading.Event()
    watcher = Watcher(lambda changes: changed.set(), reasons.append, WatcherKind.NATIVE)
    watcher.start()
    assert watcher._native is not None
    watcher._native.stop()
    watcher._native = _NoWatchesLeft()
    watcher._native.start()
    try:
        with capture_logs() as logs:
            watcher.update({str(tmp_path): True})
        assert watcher.polling_count == 1
        assert reasons == ["watch-limit"]
        limit = next(log for log in logs if log["event"] == "watch.limit")
        assert "fs.inotify.max_user_watches" in limit["raise_it_with"]
        (tmp_path / "new.txt").write_text("seen by polling")
        assert changed.wait(10)
    finally:
        watcher.stop()


class _ChangesWhileScheduling(InotifyObserver):
    """The real observer, with a change made on disk the moment the next watch is asked for:
    a hostile machine's timing, the middle of a watch update, made certain."""

    def __init__(self) -> None:
        super().__init__()
        self.before_next_watch: Callable[[], object] | None = None

    def schedule(self, *args: Any, **kwargs: Any) -> ObservedWatch:
        change, self.before_next_watch = self.before_next_watch, None
        if change is not None:
            change()
        return super().schedule(*args, **kwargs)


@pytest.mark.timeout(30)
def test_a_change_made_while_watches_are_merged_is_seen(tmp_path: Path) -> None:
    # Folders made on disk (a git checkout, a new section) take the plan over the budget:
    # the folders' own watches give way to one recursive watch of the folder holding them.
    folders = {str(tmp_path / "d" / f"s{n:02}"): False for n in range(40)}
    for folder in folders:
        Path(folder).mkdir(parents=True)
    edited = tmp_path / "d" / "s05" / "a.txt"
    seen = threading.Event()

    def sink(changes: list[Change]) -> None:
        if any(change.path == str(edited) for change in changes):
            seen.set()

    watcher = Watcher(sink, lambda reason: None, WatcherKind.NATIVE)
    watcher.start()
    assert watcher._native is not None
    watcher._native.stop()
    observer = watcher._native = _ChangesWhileScheduling()
    observer.start()
    try:
        watcher.update(plan_watches(folders))  # one watch each
        observer.before_next_watch = lambda: edited.write_text("edited")
        merged = plan_watches(folders, within=str(tmp_path))
        assert merged == {str(tmp_path): False, str(tmp_path / "d"): True}
        watcher.update(merged)
        assert seen.wait(5), "the edit made while the watches were swapped was lost"
    finally:
        watcher.stop()


@pytest.mark.timeout(90)
def test_the_polling_watcher_sees_an_edit(project: Project) -> None:
    project.config(
        """
        [pipeline]
        watcher = "polling"
        [[stage]]
        name = "copy"
        command = ["sh", "-c", "cp in.txt out.txt"]
        inputs = ["in.txt"]
        outputs = ["out.txt"]
        """
        + SYNC_STAGE
    )
    project.write("in.txt", "one")
    project.write("sync/token", "0")
    with RunningDaemon(project) as daemon:
        mark = daemon.wait_event("watch.idle") + 1
        project.write("in.txt", "two, longer")
        daemon.wait_event("stage.succeeded", mark, stage="copy")
        assert project.read("out.txt") == "two, longer"
        assert daemon.named("watch.started")[0]["watcher"] == "polling"
        daemon.stop()


def test_a_module_edit_names_only_the_stages_that_import_it(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "a"
        module = "stages.a"
        [[stage]]
        name = "b"
        module = "stages.b"
        """
    )
    pipeline = load_pipeline(project.root / "stagewatch.toml")
    root = pipeline.output_dir.as_posix()
    impact = ImpactMap(pipeline, {"a": [f"{root}/stages/a.py"], "b": [f"{root}/stages/b.py"]})
    assert impact.affected(Change(f"{root}/stages/a.py", False, False)) == {"a"}
