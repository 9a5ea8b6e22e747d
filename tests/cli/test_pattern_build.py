"""`build` of a pattern stage: an instance per page, a saved page reruns its own instance and
what reads it, a deleted page leaves the site, one broken page fails alone."""

from __future__ import annotations

import json

import pytest

from tests.helpers.project import Project

PIPELINE = """
    [[stage]]
    name = "page"
    module = "pipeline.page"
    inputs = ["content/{page}.md"]
    outputs = ["_build/site/{page}.html"]

    [[stage]]
    name = "index"
    module = "pipeline.index"
    inputs = ["_build/site/"]
    outputs = ["_build/index.html"]
    after = ["page"]
"""

PAGE = """
    import os

    def run(output_dir, page):
        text = (output_dir / "content" / f"{page}.md").read_text()
        if "broken" in text:
            raise ValueError(f"cannot render {page}")
        out = output_dir / "_build" / "site" / f"{page}.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(f"<p>{text}</p> {os.environ['STAGEWATCH_STAGE']}")
"""

INDEX = """
    def run(output_dir):
        site = output_dir / "_build" / "site"
        pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
        (output_dir / "_build" / "index.html").write_text("\\n".join(pages))
"""


@pytest.fixture
def site(project: Project) -> Project:
    project.config(PIPELINE)
    project.write("pipeline/__init__.py", "")
    project.write("pipeline/page.py", PAGE)
    project.write("pipeline/index.py", INDEX)
    for name in ("a", "b", "guide/intro"):
        project.write(f"content/{name}.md", name)
    return project


def _started(result_stdout: str) -> list[str]:
    events = [json.loads(line) for line in result_stdout.splitlines() if line.startswith("{")]
    return [event["stage"] for event in events if event["event"] == "stage.started"]


def test_each_page_is_its_own_instance_and_a_save_reruns_only_it_and_the_index(site: Project) -> None:
    first = site.cli("build")
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(_started(first.stdout)) == ["index", "page:a", "page:b", "page:guide/intro"]
    assert site.read("_build/site/guide/intro.html") == "<p>guide/intro</p> page:guide/intro"
    assert site.entry("page:guide/intro").is_file()
    assert site.read("_build/index.html") == "a.html\nb.html\nguide/intro.html"

    site.write("content/b.md", "b, edited")
    second = site.cli("build")
    assert second.returncode == 0
    assert _started(second.stdout) == ["page:b", "index"]
    assert site.read("_build/site/b.html").startswith("<p>b, edited</p>")
    assert _started(site.cli("build").stdout) == []


def test_a_new_page_is_built_and_a_deleted_one_leaves_the_site(site: Project) -> None:
    assert site.cli("build").returncode == 0
    site.write("content/new.md", "new")
    (site.root / "content" / "guide" / "intro.md").unlink()
    dry = site.cli("build", "--dry-run")
    assert "remove page:guide/intro" in dry.stdout
    assert site.entry("page:guide/intro").exists()  # a dry run changes nothing

    done = site.cli("build")
    assert done.returncode == 0
    assert sorted(_started(done.stdout)) == ["index", "page:new"]
    assert not (site.root / "_build/site/guide/intro.html").exists()
    assert not (site.root / "_build/site/guide").exists()  # the folder the value made, left empty
    assert (site.root / "_build/site").is_dir()
    assert not site.entry("page:guide/intro").exists()
    assert not (site.root / "_build/.cache/page:guide/intro.log").exists()
    assert site.read("_build/index.html") == "a.html\nb.html\nnew.html"
    state = json.loads(site.read("_build/.cache/state.json"))
    assert "page:guide/intro" not in state["stages"]


def test_a_broken_page_fails_alone_and_blocks_only_what_reads_it(site: Project) -> None:
    site.write("content/b.md", "broken")
    done = site.cli("build")
    assert done.returncode == 1
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    failed = [e["stage"] for e in events if e["event"] == "stage.failed"]
    blocked = [e["stage"] for e in events if e["event"] == "stage.blocked"]
    assert failed == ["page:b"] and blocked == ["index"]
    assert site.entry("page:a").is_file() and not site.entry("page:b").exists()
    assert "cannot render b" in site.read("_build/.cache/page:b.log")


def test_build_takes_an_instance_or_the_pattern_and_names_a_mistyped_instance(site: Project) -> None:
    one = site.cli("build", "page:guide/intro")
    assert _started(one.stdout) == ["page:guide/intro"]
    every = site.cli("build", "page", "--force")
    assert sorted(_started(every.stdout)) == ["page:a", "page:b", "page:guide/intro"]
    wrong = site.cli("build", "page:guide/intr")
    assert wrong.returncode == 2
    assert (
        'no instance named "page:guide/intr" of pattern stage "page" (did you mean "page:guide/intro"?)'
        in (wrong.stderr)
    )


def test_explain_of_a_pattern_explains_the_instances_that_would_run(site: Project) -> None:
    assert site.cli("build").returncode == 0
    site.write("content/a.md", "a, edited")
    done = site.cli("explain", "page")
    assert done.returncode == 0
    assert "page:a" in done.stdout and "content/a.md" in done.stdout
    assert "page:b" not in done.stdout
    assert done.stdout.strip().endswith("page: 2 of 3 instances fresh")


def test_a_command_pattern_stage_runs_a_process_per_instance_with_its_value(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "copy"
        command = ["sh", "-c", "mkdir -p _build/out && cp $1 $2 && echo $STAGEWATCH_STAGE >> _build/seen",
                   "-", "raw/{item}.txt", "_build/out/{item}.txt"]
        inputs = ["raw/{item}.txt"]
        outputs = ["_build/out/{item}.txt"]
        """
    )
    project.write("raw/one.txt", "1")
    project.write("raw/two.txt", "2")
    done = project.cli("build")
    assert done.returncode == 0, done.stdout + done.stderr
    assert project.read("_build/out/two.txt") == "2"
    assert sorted(project.read("_build/seen").split()) == ["copy:one", "copy:two"]


def test_only_what_the_gone_instance_declared_is_removed(site: Project) -> None:
    assert site.cli("build").returncode == 0
    (site.root / "content" / "a.md").unlink()
    (site.root / "_build" / "site" / "keep.txt").write_text("mine")
    assert site.cli("build").returncode == 0
    assert not (site.root / "_build/site/a.html").exists()
    assert (site.root / "_build/site/keep.txt").read_text() == "mine"
    assert (site.root / "content/b.md").exists()
