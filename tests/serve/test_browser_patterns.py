"""`stagewatch serve` of a pattern stage's site in a real browser: a saved page re-renders its
own instance and shows in its tab; a new page appears in the site and on the index; a deleted
one disappears from both (docs/design.md#pattern-stages)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.project import Project
from tests.helpers.serve import Served, serve

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]  # fmt: skip
WAIT_MS = 20_000
FOLLOWED = "window.__stagewatch && window.__stagewatch.followed === true"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'"
)
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium", allow_module_level=True)

PIPELINE = """
[pipeline]
debounce = "50ms"

[serve]
root = "site"

[[stage]]
name = "page"
module = "pipeline.page"
inputs = ["content/{page}.md"]
outputs = ["site/pages/{page}.html"]

[[stage]]
name = "index"
module = "pipeline.index"
inputs = ["site/pages/"]
outputs = ["site/index.html"]
"""

PAGE = """
def run(output_dir, page):
    text = (output_dir / "content" / f"{page}.md").read_text().strip()
    target = output_dir / "site" / "pages" / f"{page}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f'<!doctype html><html><body><p id="text">{text}</p></body></html>')
"""

INDEX = """
def run(output_dir):
    pages = output_dir / "site" / "pages"
    names = sorted(p.relative_to(pages).as_posix() for p in pages.rglob("*.html"))
    items = "".join(f"<li>{name}</li>" for name in names)
    (output_dir / "site" / "index.html").write_text(
        f'<!doctype html><html><body><ul id="pages">{items}</ul></body></html>'
    )
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 900, "height": 700})
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def site(project: Project) -> Iterator[Served]:
    project.config(PIPELINE)
    project.write("pipeline/__init__.py", "")
    project.write("pipeline/page.py", PAGE)
    project.write("pipeline/index.py", INDEX)
    project.write("content/a.md", "text of a\n")
    project.write("content/guide/b.md", "text of b\n")
    served = serve(project)
    try:
        yield served
    finally:
        served.daemon.stop()


def open_tab(context: Any, site: Served, path: str) -> Any:
    page = context.new_page()
    page.goto(site.url.rstrip("/") + path)
    page.wait_for_function(FOLLOWED, timeout=WAIT_MS)
    return page


def wait_js(page: Any, expression: str) -> None:
    page.wait_for_function(expression, timeout=WAIT_MS)


def listed(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#pages li", "items => items.map(i => i.textContent)"))


def test_a_saved_page_shows_in_its_tab_and_only_its_instance_runs(
    context: Any, site: Served, project: Project
) -> None:
    tab = open_tab(context, site, "/pages/guide/b.html")
    assert tab.text_content("#text") == "text of b"
    mark = len(site.daemon.events)
    project.write("content/guide/b.md", "b, saved\n")
    wait_js(tab, "document.getElementById('text')?.textContent === 'b, saved'")
    site.daemon.wait_event("watch.idle", since=mark)
    started = [e["stage"] for e in site.daemon.events[mark:] if e["event"] == "stage.started"]
    assert "page:a" not in started and "page:guide/b" in started


def test_a_new_page_appears_and_a_deleted_one_disappears_from_the_site(
    context: Any, site: Served, project: Project
) -> None:
    index = open_tab(context, site, "/")
    assert listed(index) == ["a.html", "guide/b.html"]
    project.write("content/new.md", "a new page\n")
    wait_js(index, "document.querySelectorAll('#pages li').length === 3")
    assert listed(index) == ["a.html", "guide/b.html", "new.html"]
    new = open_tab(context, site, "/pages/new.html")
    assert new.text_content("#text") == "a new page"

    (project.root / "content" / "guide" / "b.md").unlink()
    wait_js(index, "document.querySelectorAll('#pages li').length === 2")
    assert listed(index) == ["a.html", "new.html"]
    gone = context.new_page().goto(site.url.rstrip("/") + "/pages/guide/b.html")
    assert gone is not None and gone.status == 404
    assert not (project.root / "site" / "pages" / "guide" / "b.html").exists()
