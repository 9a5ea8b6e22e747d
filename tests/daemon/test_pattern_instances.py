"""The real daemon follows a pattern stage's files: pages saved, added, deleted, renamed, in a
burst, invalidated, and deleted while it was stopped."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from stagewatch.config import load_pipeline
from stagewatch.daemon.impact import ImpactMap
from stagewatch.stage import Change
from tests.helpers.daemon import SYNC_STAGE, RunningDaemon
from tests.helpers.project import Project
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

SITE = (
    """
[pipeline]
debounce = "50ms"

[[stage]]
name = "page"
module = "pipeline.page"
inputs = ["content/{page}.md"]
outputs = ["_build/site/{page}.html"]

[[stage]]
name = "index"
module = "pipeline.index"
inputs = ["_build/site/"]
outputs = ["_build/index.txt"]
"""
    + SYNC_STAGE
)

PAGES = ("a", "b", "guide/intro")


@pytest.fixture
def site(project: Project) -> Project:
    project.write("pipeline/__init__.py", "")
    project.write(
        "pipeline/page.py",
        """
        def run(output_dir, page):
            target = output_dir / "_build" / "site" / f"{page}.html"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("<p>" + (output_dir / "content" / f"{page}.md").read_text() + "</p>")
        """,
    )
    project.write(
        "pipeline/index.py",
        """
        def run(output_dir):
            site = output_dir / "_build" / "site"
            pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
            (output_dir / "_build" / "index.txt").write_text("\\n".join(pages))
        """,
    )
    for page in PAGES:
        project.write(f"content/{page}.md", page)
    project.write("sync/token", "0")
    project.config(SITE)
    return project


@pytest.fixture
def daemon(site: Project) -> Iterator[RunningDaemon]:
    with RunningDaemon(site) as running:
        yield running
        assert running.stop() == 0


def html(site: Project, page: str) -> str:
    return f"_build/site/{page}.html"


def index(site: Project) -> list[str]:
    path = site.root / "_build/index.txt"
    return path.read_text().splitlines() if path.exists() else []


def ran(daemon: RunningDaemon, since: int, until: int | None = None) -> list[str]:
    """The stages run in that window but the barrier's, sorted."""
    return sorted(name for name in daemon.started(since, until) if name != "sync")


def test_a_saved_page_reruns_its_instance_and_the_index(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    site.write("content/b.md", "bee")
    end = daemon.barrier(daemon.wait_event("stage.succeeded", mark, stage="index"))
    assert ran(daemon, mark, end) == ["index", "page:b"]
    assert site.read(html(site, "b")) == "<p>bee</p>"


def test_a_new_page_runs_its_instance_and_joins_the_index(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    site.write("content/guide/setup.md", "setup")
    daemon.wait_event("stage.succeeded", mark, stage="page:guide/setup")
    assert site.read(html(site, "guide/setup")) == "<p>setup</p>"
    wait_until(lambda: "guide/setup.html" in index(site), what="the index lists the new page")
    added = daemon.named("pattern.instances_changed", mark)
    assert added[0]["added"] == ["page:guide/setup"]


def test_a_deleted_page_leaves_the_site_without_a_failure(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    (site.root / "content/b.md").unlink()
    daemon.wait_event("stage.instance_removed", mark, stage="page:b")
    wait_until(lambda: index(site) == ["a.html", "guide/intro.html"], what="the index without b")
    end = daemon.barrier(mark)
    assert not (site.root / html(site, "b")).exists()
    assert not site.entry("page:b").exists()
    assert daemon.named("stage.failed", mark, end) == []
    assert "page:b" not in ran(daemon, mark, end)


def test_a_renamed_page_moves_its_html(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    os.rename(site.root / "content/a.md", site.root / "content/c.md")
    daemon.wait_event("stage.succeeded", mark, stage="page:c")
    daemon.wait_event("stage.instance_removed", mark, stage="page:a")
    assert site.read(html(site, "c")) == "<p>a</p>"
    assert not (site.root / html(site, "a")).exists()
    wait_until(lambda: index(site) == ["b.html", "c.html", "guide/intro.html"], what="the index renamed")


def test_a_burst_of_new_pages_runs_each_once(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    names = [f"burst/p{number:02d}" for number in range(50)]
    for name in names:
        site.write(f"content/{name}.md", name)
    wait_until(lambda: len(index(site)) == len(PAGES) + len(names), what="the index lists every new page")
    end = daemon.barrier(mark)
    started = daemon.started(mark, end)
    assert sorted(name for name in started if name.startswith("page:")) == [f"page:{n}" for n in names]
    assert daemon.named("stage.failed", mark, end) == []


def test_invalidate_beside_the_daemon_reruns_a_nested_instance(daemon: RunningDaemon, site: Project) -> None:
    mark = daemon.ready()
    result = site.cli("invalidate", "page:guide/intro")
    assert result.returncode == 0, result.stderr
    daemon.wait_event("stage.invalidated", mark, stage="page:guide/intro")
    daemon.wait_event("stage.succeeded", mark, stage="page:guide/intro")
    assert site.entry("page:guide/intro").exists()


def test_a_page_deleted_while_stopped_leaves_at_start(site: Project) -> None:
    with RunningDaemon(site) as first:
        first.ready()
        assert first.stop() == 0
    assert (site.root / html(site, "guide/intro")).exists()
    (site.root / "content/guide/intro.md").unlink()
    with RunningDaemon(site) as second:
        mark = second.wait_event("watch.idle")
        removed = second.named("stage.instance_removed", 0, mark)
        assert [event["stage"] for event in removed] == ["page:guide/intro"]
        assert not (site.root / html(site, "guide/intro")).exists()
        assert not site.entry("page:guide/intro").exists()
        wait_until(lambda: index(site) == ["a.html", "b.html"], what="the index without the page")
        assert second.named("stage.failed") == []
        assert second.stop() == 0


# Every page reads what gen writes, and gen reads the special page: that page closes a cycle.
CYCLE = (
    SITE.replace('inputs = ["content/{page}.md"]', 'inputs = ["content/{page}.md", "_build/gen/*.txt"]')
    + """
[[stage]]
name = "gen"
command = ["sh", "-c", "mkdir -p _build/gen && echo gen > _build/gen/special.txt"]
inputs = ["_build/site/special*.html"]
outputs = ["_build/gen/special.txt"]
"""
)


def test_a_page_that_closes_a_cycle_is_refused_and_the_running_stages_go_on(site: Project) -> None:
    site.config(CYCLE)
    with RunningDaemon(site) as daemon:
        mark = daemon.ready()
        site.write("content/special.md", "loops through gen")
        refused = daemon.wait_event("pattern.instances_refused", mark)
        assert "cycle" in " ".join(daemon.events[refused]["problems"])
        site.write("content/a.md", "still here")
        daemon.wait_event("stage.succeeded", refused, stage="page:a")
        assert "page:special" not in daemon.started(mark)
        assert daemon.stop() == 0


# --- which changes make the daemon list the drivers again (ImpactMap.alters_listing) ---


@pytest.mark.parametrize(
    ("path", "is_dir", "gone", "alters"),
    [
        ("content/new.md", False, False, True),  # a new page
        ("content/guide/new.md", False, False, True),  # a new page in a folder
        ("content/a.md", False, False, False),  # a page saved
        ("content/a.md", False, True, True),  # a page deleted, or renamed away
        ("content/never.md", False, True, False),  # made and deleted before it was listed
        ("content/a.txt", False, False, False),  # not what the driver matches
        ("content/.a.md.swp", False, False, False),  # an editor's temp file
        ("content/guide", True, True, True),  # a folder of pages deleted
        ("content/more", True, False, True),  # a folder made (moved in)
        ("content", True, True, True),  # the driver's folder itself
        ("elsewhere", True, False, False),  # a folder no driver looks in
        ("elsewhere/new.md", False, False, False),
    ],
)
def test_which_changes_list_the_drivers_again(
    site: Project, path: str, is_dir: bool, gone: bool, alters: bool
) -> None:
    impact = ImpactMap(load_pipeline(site.root / "stagewatch.toml"), {})
    change = Change(str(site.root / path), is_dir, gone)
    assert impact.alters_listing(change) is alters


def test_driver_folders_and_the_cache_are_watched_recursively(site: Project) -> None:
    wanted = ImpactMap(load_pipeline(site.root / "stagewatch.toml"), {}).wanted_watches()
    assert wanted[str(site.root / "content")] is True
    assert wanted[str(site.root / "_build/.cache")] is True


HOLDING_PAGE = """
import time


def run(output_dir, page):
    source = (output_dir / "content" / f"{page}.md").read_text()
    target = output_dir / "_build" / "site" / f"{page}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("<p>" + source + "</p>")
    if source == "wait":  # written its page, it holds until told to go
        (output_dir / "holding").write_text(page)
        deadline = time.monotonic() + 20
        while not (output_dir / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
"""


def test_a_page_deleted_while_its_run_holds_is_retired_once_the_run_ends(site: Project) -> None:
    site.write("pipeline/page.py", HOLDING_PAGE)
    with RunningDaemon(site) as daemon:
        mark = daemon.ready()
        site.write("content/slow.md", "wait")
        wait_until(lambda: (site.root / "holding").exists(), what="the page's run holding")
        (site.root / "content/slow.md").unlink()
        daemon.wait_event("stage.instance_removed", mark, stage="page:slow")
        assert not (site.root / html(site, "slow")).exists()
        assert not site.entry("page:slow").exists()
        wait_until(lambda: "slow.html" not in index(site), what="the index without the page")
        assert daemon.named("stage.failed", mark) == []
        assert daemon.stop() == 0
