"""`stagewatch serve` in a real browser: Chromium (Debian's package) driven by Playwright, on a
real daemon and a real site. Screenshots of every open tab land in the test's temp folder when
a test fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.project import Project
from tests.helpers.serve import SHORT_WAIT, SITE_CONFIG, Served, make_site, serve, until

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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the whole module; each test has its own context (cookies, storage)."""
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 900, "height": 700})
    try:
        yield context
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            for index, page in enumerate(context.pages):
                page.screenshot(path=str(tmp_path / f"tab-{index}.png"))
            print(f"screenshots of the tabs: {tmp_path}/tab-*.png")
        context.close()


@pytest.fixture
def site(project: Project) -> Iterator[Served]:
    make_site(project)
    served = serve(project)
    try:
        yield served
    finally:
        served.daemon.stop()


def open_tab(context: Any, site: Served, path: str) -> Any:
    """A tab on `path`, once the server follows it."""
    page = context.new_page()
    page.goto(site.url.rstrip("/") + path)
    page.wait_for_function(FOLLOWED, timeout=WAIT_MS)
    return page


def wait_text(page: Any, text: str) -> None:
    page.wait_for_function(f"document.getElementById('text')?.textContent === {text!r}", timeout=WAIT_MS)


def test_a_saved_page_shows_its_new_text_where_the_reader_was(
    context: Any, site: Served, project: Project
) -> None:
    page = open_tab(context, site, "/a.html")
    page.evaluate("window.scrollTo(0, 1500); window.beforeTheSave = true")
    project.write("content/a.md", "second text of a\n")
    wait_text(page, "second text of a")
    assert page.evaluate("window.beforeTheSave") is None  # the page reloaded by itself
    page.wait_for_function("window.scrollY === 1500", timeout=WAIT_MS)


def test_a_page_whose_url_is_escaped_is_followed_not_reloaded_for_ever(
    context: Any, site: Served, project: Project
) -> None:
    project.write("content/sp ace é.md", "first text of a spacious page\n")
    until(lambda: (project.root / "site/sp ace é.html").exists(), "the page is made")
    page = open_tab(context, site, "/sp%20ace%20%C3%A9.html")
    other = open_tab(context, site, "/b.html")
    page.evaluate("window.beforeTheSave = true")
    project.write("content/b.md", "second text of b\n")  # a round that leaves the page as it is
    wait_text(other, "second text of b")
    other.wait_for_function(FOLLOWED, timeout=WAIT_MS)
    assert page.evaluate("window.beforeTheSave") is True  # told nothing: its bytes are the same
    project.write("content/sp ace é.md", "second text of a spacious page\n")
    wait_text(page, "second text of a spacious page")


def test_a_saved_stylesheet_is_swapped_in_place(context: Any, site: Served, project: Project) -> None:
    page = open_tab(context, site, "/a.html")
    color = "getComputedStyle(document.getElementById('text')).color"
    assert page.evaluate(color) == "rgb(0, 0, 255)"
    page.evaluate("window.beforeTheSave = true")
    project.write("styles/style.css", "p { color: rgb(255, 0, 0); }\n")
    page.wait_for_function(f"{color} === 'rgb(255, 0, 0)'", timeout=WAIT_MS)
    assert page.evaluate("window.beforeTheSave") is True  # no reload
    assert page.evaluate("document.querySelectorAll('link[rel=stylesheet]').length") == 1


def test_a_save_reloads_only_the_tab_that_shows_it(context: Any, site: Served, project: Project) -> None:
    page_a = open_tab(context, site, "/a.html")
    page_b = open_tab(context, site, "/b.html")
    for page in (page_a, page_b):
        page.evaluate("window.beforeTheSave = true")
    project.write("content/a.md", "second text of a\n")
    wait_text(page_a, "second text of a")
    page_a.wait_for_function(FOLLOWED, timeout=WAIT_MS)
    # One more round that changes a: whatever the first round told b has reached it by now.
    project.write("content/a.md", "third text of a\n")
    wait_text(page_a, "third text of a")
    assert page_a.evaluate("window.beforeTheSave") is None
    assert page_b.evaluate("window.beforeTheSave") is True
    assert page_b.evaluate("document.getElementById('text').textContent") == "first text of b"


def test_a_failing_stage_shows_in_every_tab_until_it_is_fixed(
    context: Any, site: Served, project: Project
) -> None:
    page_a = open_tab(context, site, "/a.html")
    page_b = open_tab(context, site, "/b.html")
    project.write("content/a.md", "broken text\nBROKEN\n")
    overlay = page_a.locator("#stagewatch-overlay .failure")
    for page in (page_a, page_b):
        failure = page.locator("#stagewatch-overlay .failure")
        failure.wait_for(timeout=WAIT_MS)
        assert 'stage "pages" failed (exit 3)' in failure.locator("h2").inner_text()
        assert "render.py" in failure.inner_text()
        assert "has a BROKEN line, giving up" in failure.locator("pre").inner_text()
    # A tab opened now gets the last good page, with the failure shown.
    page_c = open_tab(context, site, "/a.html")
    page_c.locator("#stagewatch-overlay .failure").wait_for(timeout=WAIT_MS)
    assert page_c.evaluate("document.getElementById('text').textContent") == "first text of a"
    project.write("content/a.md", "fixed text of a\n")
    wait_text(page_a, "fixed text of a")
    for page in (page_a, page_b):
        page.wait_for_function("!document.getElementById('stagewatch-overlay')", timeout=WAIT_MS)
    assert overlay.count() == 0


def test_an_invalid_pipeline_file_shows_in_every_tab_until_it_is_fixed(
    context: Any, site: Served, project: Project
) -> None:
    page = open_tab(context, site, "/a.html")
    project.config(SITE_CONFIG.replace('name = "css"', 'nmae = "css"'))
    failure = page.locator("#stagewatch-overlay .failure")
    failure.wait_for(timeout=WAIT_MS)
    config = project.root / "stagewatch.toml"
    assert (
        f"{config} is invalid: the pipeline running is the one before" in failure.locator("h2").inner_text()
    )
    assert 'unknown key "nmae" (did you mean "name"?)' in failure.locator("pre").inner_text()
    assert site.get("/_stagewatch/status.json").text.count('unknown key \\"nmae\\"') == 1
    assert "The pipeline file is invalid" in site.get("/_stagewatch/").text
    project.config(SITE_CONFIG)
    page.wait_for_function("!document.getElementById('stagewatch-overlay')", timeout=WAIT_MS)
    assert '"pipeline_problems": []' in site.get("/_stagewatch/status.json").text
    assert "The pipeline file is invalid" not in site.get("/_stagewatch/").text


def test_a_page_still_written_after_the_wait_says_so_until_it_is_done(context: Any, project: Project) -> None:
    make_site(project)
    served = serve(project, env=SHORT_WAIT)
    try:
        mark = served.daemon.mark()
        project.write("content/a.md", "the new text\nHOLD\n")
        served.daemon.wait_event("stage.started", mark, stage="pages")
        written = project.root / "site" / "a.html"
        until(lambda: "PART ONE" in written.read_text(), "the stage has written half of the page")
        page = open_tab(context, served, "/a.html")
        banner = page.locator("#stagewatch-stale .bar")
        banner.wait_for(timeout=WAIT_MS)
        assert 'stage "pages" is still writing this page' in banner.inner_text()
        assert page.evaluate("document.getElementById('text').textContent") == "first text of a"
        (project.root / "release").touch()
        wait_text(page, "the new text")
        page.wait_for_function("!document.getElementById('stagewatch-stale')", timeout=WAIT_MS)
    finally:
        served.daemon.stop()


def test_a_page_still_written_whose_stage_then_fails_shows_the_failure_not_the_wait(
    context: Any, project: Project
) -> None:
    make_site(project)
    served = serve(project, env=SHORT_WAIT)
    try:
        mark = served.daemon.mark()
        project.write("content/a.md", "the new text\nCLEAN\nHOLD\nBROKEN\n")
        served.daemon.wait_event("stage.started", mark, stage="pages")
        written = project.root / "site" / "a.html"
        until(lambda: not written.exists(), "the stage has removed the page")
        page = open_tab(context, served, "/a.html")
        page.locator("#stagewatch-stale .bar").wait_for(timeout=WAIT_MS)
        (project.root / "release").touch()
        page.locator("#stagewatch-overlay .failure").wait_for(timeout=WAIT_MS)
        # It is done, and failed: the overlay says so, and no banner says it is still writing.
        page.wait_for_function("!document.getElementById('stagewatch-stale')", timeout=WAIT_MS)
        assert page.evaluate("document.getElementById('text').textContent") == "first text of a"
    finally:
        served.daemon.stop()


# --- a failure, where a person sees it ------------------------------------------------------

EXCEPTION = "ValueError: content/a.md: bad front matter, expected a line '---' before line 3"
OVERLAY_OUTPUT = "document.getElementById('stagewatch-overlay')?.shadowRoot.querySelector('.output')"


def test_a_failure_overlay_opens_at_the_end_of_its_output_led_by_the_exception(
    context: Any, site: Served, project: Project
) -> None:
    page = open_tab(context, site, "/a.html")
    page.set_viewport_size({"width": 900, "height": 500})
    project.write("content/a.md", "TRACEBACK\n")
    failure = page.locator("#stagewatch-overlay .failure")
    failure.wait_for(timeout=WAIT_MS)
    scrolls = f"{OVERLAY_OUTPUT}.scrollHeight > {OVERLAY_OUTPUT}.clientHeight"
    assert page.evaluate(scrolls)  # more output than the overlay shows at once
    # Its last line, the exception, is in view: the overlay is scrolled to its end.
    at_end = (
        f"(output => output.scrollTop + output.clientHeight >= output.scrollHeight - 1)({OVERLAY_OUTPUT})"
    )
    page.wait_for_function(at_end, timeout=WAIT_MS)
    headline = failure.locator("h2").inner_text()
    assert headline.startswith(EXCEPTION) and 'stage "pages" failed (exit 1)' in headline
    # The headline stays in view above the end of the output.
    in_view = (
        f"(output => {{ const shown = output.getBoundingClientRect();"
        f" const headline = output.querySelector('h2').getBoundingClientRect();"
        f" return headline.top >= shown.top && headline.bottom <= shown.bottom; }})({OVERLAY_OUTPUT})"
    )
    assert page.evaluate(in_view)


def status_page(context: Any, site: Served) -> Any:
    page = context.new_page()
    page.set_viewport_size({"width": 1000, "height": 700})
    page.goto(site.url.rstrip("/") + "/_stagewatch/")
    return page


def test_the_status_page_fits_a_window_1000_px_wide(context: Any, site: Served, project: Project) -> None:
    mark = site.daemon.mark()
    project.write("content/a.md", "TRACEBACK\n")  # long lines of output in the failure shown
    site.daemon.wait_event("stage.failed", mark, stage="pages")
    page = status_page(context, site)
    page.locator("pre").first.wait_for(timeout=WAIT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1000


def failure_colours(page: Any) -> tuple[str, str]:
    """The classes of the failure shown for "pages" and the background of its output."""
    found = page.evaluate(
        "(() => { const failure = document.querySelector('.failure[data-stage=\"pages\"]');"
        " return [failure.className, getComputedStyle(failure.querySelector('pre')).backgroundColor]; })()"
    )
    return found[0], found[1]


def test_a_failure_on_the_status_page_is_greyed_once_its_stage_succeeds(
    context: Any, site: Served, project: Project
) -> None:
    mark = site.daemon.mark()
    project.write("content/a.md", "broken text\nBROKEN\n")
    site.daemon.wait_event("stage.failed", mark, stage="pages")
    page = status_page(context, site)
    classes, background = failure_colours(page)
    assert "resolved" not in classes and background == "rgb(255, 238, 238)"  # the alarm's pink
    mark = site.daemon.mark()
    project.write("content/a.md", "fixed text of a\n")
    site.daemon.wait_event("stage.succeeded", mark, stage="pages")
    page.goto(site.url.rstrip("/") + "/_stagewatch/")
    classes, background = failure_colours(page)
    assert "resolved" in classes.split()
    red, green, blue = (int(part) for part in background.removeprefix("rgb(").rstrip(")").split(","))
    assert red == green == blue  # a grey: no alarm left
