"""`status`, `graph`, `check`, `invalidate` and `accept` on a pattern stage, through the real CLI:
a pattern is one row, one node, one line; named (or in JSON) it is its instances."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from stagewatch.cli import _runnable_problems
from stagewatch.config import load_pipeline, with_listing
from stagewatch.graph_render import fold_patterns
from stagewatch.status_report import folded_rows, pattern_summaries
from tests.helpers.project import Project
from tests.helpers.waiting import wait_until

PAGES = """
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

PAGE_MODULE = """
import time

def run(output_dir, page):
    text = (output_dir / "content" / f"{page}.md").read_text()
    if "FAIL" in text:
        raise RuntimeError(f"cannot render {page}")
    if "WAIT" in text:
        (output_dir / "started").write_text(page)
        deadline = time.monotonic() + 30
        while not (output_dir / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    out = output_dir / "_build" / "site" / f"{page}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"<p>{text}</p>")
"""

INDEX_MODULE = """
def run(output_dir):
    site = output_dir / "_build" / "site"
    names = sorted(str(path.relative_to(site)) for path in site.rglob("*.html"))
    (output_dir / "_build" / "index.txt").write_text("\\n".join(names))
"""


def write_pages(project: Project, failing: tuple[str, ...] = ("guide/intro",)) -> Project:
    project.write("pipeline/__init__.py", "")
    project.write("pipeline/page.py", PAGE_MODULE)
    project.write("pipeline/index.py", INDEX_MODULE)
    for value in ("a", "b", *failing):
        project.write(f"content/{value}.md", "FAIL" if value in failing else f"page {value}")
    project.config(PAGES)
    return project


@pytest.fixture
def built(project: Project) -> Project:
    """Three pages built, one of them (guide/intro) failing, so the index is blocked."""
    write_pages(project)
    build = project.cli("build")
    assert build.returncode == 1, build.stderr[-2000:]
    assert (project.root / "_build/site/a.html").exists() and (project.root / "_build/site/b.html").exists()
    return project


def table(proc: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    """`status` output: each row's cells (split on two spaces or more), by stage name."""
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = proc.stdout.splitlines()[2:]
    return {cells[0]: cells for cells in ([c.strip() for c in row.split("  ") if c.strip()] for row in rows)}


@pytest.mark.timeout(60)
def test_status_shows_a_pattern_stage_as_one_row_that_names_the_failing_instance(built: Project) -> None:
    rows = table(built.cli("status"))
    assert list(rows) == ["page", "index"]
    page = rows["page"]
    assert page[1] == "2 fresh, 1 failed"
    assert page[2].endswith("ago")  # the newest success of its instances
    assert page[3] == "-"
    assert page[4] == "failed: page:guide/intro"
    assert rows["index"][1] == "never run"


@pytest.mark.timeout(60)
def test_status_names_a_few_failing_instances_and_counts_the_rest(project: Project) -> None:
    write_pages(project, failing=("f1", "f2", "f3", "f4", "f5"))
    assert project.cli("build").returncode == 1
    rows = table(project.cli("status"))
    assert rows["page"][1] == "2 fresh, 5 failed"
    assert rows["page"][-1] == "failed: page:f1, page:f2, page:f3 and 2 more"


@pytest.mark.timeout(60)
def test_status_names_an_instance_that_is_running(built: Project) -> None:
    built.write("content/slow.md", "WAIT")
    cmd = [sys.executable, "-m", "stagewatch", "--config", str(built.root / "stagewatch.toml"), "build"]
    quiet = subprocess.DEVNULL
    with subprocess.Popen(cmd, cwd=built.root, stdout=quiet, stderr=quiet) as running:
        try:
            wait_until(lambda: (built.root / "started").exists(), what="page:slow started")
            rows = table(built.cli("status"))
            document = json.loads(built.cli("status", "--json").stdout)
        finally:
            (built.root / "go").write_text("")
        assert running.wait(timeout=30) == 1  # guide/intro still fails
    assert rows["page"][1] == "2 fresh, 1 failed, 1 running"
    assert rows["page"][-1] == "failed: page:guide/intro; running: page:slow"
    (summary,) = document["patterns"]
    assert summary["running"] == ["page:slow"] and summary["failing"] == ["page:guide/intro"]
    assert rows_by_name(document)["page:slow"]["state"] == "running"


def rows_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in document["stages"]}


@pytest.mark.timeout(60)
def test_status_of_named_stages_lists_a_patterns_instances_each_on_its_row(built: Project) -> None:
    rows = table(built.cli("status", "page", "index"))
    assert list(rows) == ["page:a", "page:b", "page:guide/intro", "index"]
    assert rows["page:a"][1] == "fresh" and rows["page:guide/intro"][1] == "failed"
    assert "RuntimeError: cannot render guide/intro" in rows["page:guide/intro"][-1]
    assert list(table(built.cli("status", "page:b"))) == ["page:b"]


@pytest.mark.timeout(60)
def test_status_of_an_unknown_name_is_one_line_and_exit_2(built: Project) -> None:
    for name, said in (("pages", 'no stage named "pages"'), ("page:c", 'no instance named "page:c"')):
        proc = built.cli("--log-format", "console", "status", name)
        assert proc.returncode == 2 and proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1 and said in proc.stderr


@pytest.mark.timeout(60)
def test_status_json_lists_every_instance_and_sums_up_each_pattern(built: Project) -> None:
    proc = built.cli("status", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    document = json.loads(proc.stdout)
    assert {"config", "locked_by", "stages", "patterns"} <= set(document)
    rows = rows_by_name(document)
    assert list(rows) == ["page:a", "page:b", "page:guide/intro", "index"]
    assert rows["page:guide/intro"]["state"] == "failed"
    assert set(rows["page:a"]) == set(rows["index"])  # an instance's row is a stage's row
    (summary,) = document["patterns"]
    assert summary["name"] == "page" and summary["driver"] == "content/{page}.md"
    assert summary["instances"] == 3
    assert summary["counts"] == {"fresh": 2, "failed": 1}
    assert summary["failing"] == ["page:guide/intro"] and summary["running"] == []
    assert summary["last_success"] == max(rows["page:a"]["last_success"], rows["page:b"]["last_success"])
    named = json.loads(built.cli("status", "--json", "page:a").stdout)
    assert list(rows_by_name(named)) == ["page:a"] and named["patterns"] == []


@pytest.mark.timeout(60)
def test_graph_draws_a_pattern_stage_as_one_node_with_its_count(built: Project) -> None:
    text = built.cli("graph")
    assert text.returncode == 0, text.stderr[-2000:]
    assert text.stdout.splitlines() == [
        "page [3 instances]",
        "index",
        '  <- page  ("_build/site/{page}.html" -> "_build/site/")',
    ]
    dot = built.cli("graph", "--format", "dot").stdout.splitlines()
    assert '  "page" [label="page [3 instances]"];' in dot and '  "index";' in dot
    assert [line for line in dot if "->" in line] == [
        '  "page" -> "index" [label="\\"_build/site/{page}.html\\" -> \\"_build/site/\\""];'
    ]
    data = json.loads(built.cli("graph", "--format", "json").stdout)
    assert data["order"] == ["page", "index"]
    assert data["stages"][0] == {"name": "page", "instances": 3, "upstream": [], "downstream": ["index"]}
    assert data["stages"][1] == {"name": "index", "upstream": ["page"], "downstream": []}
    via = '"_build/site/{page}.html" -> "_build/site/"'
    assert data["edges"] == [{"from": "page", "to": "index", "via": via, "order_only": False}]


@pytest.mark.timeout(60)
def test_graph_folds_after_edges_to_every_instance_into_one(built: Project) -> None:
    built.config(
        PAGES
        + """
[[stage]]
name = "publish"
command = ["true"]
after = ["page"]
"""
    )
    lines = built.cli("graph").stdout.splitlines()
    assert lines[-2:] == ["publish", "  <- page  (after)"]


@pytest.mark.timeout(60)
def test_check_prints_a_pattern_stage_as_one_line_with_its_count_and_driver(built: Project) -> None:
    proc = built.cli("check")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].endswith(f"valid, 2 stages, 3 instances of 1 pattern stage, output_dir {built.root}")
    assert lines[1:] == [
        "  1. page: pipeline.page:run (3 instances of content/{page}.md; 1 input, 1 output)",
        "  2. index: pipeline.index:run (1 input, 1 output)",
    ]


@pytest.mark.timeout(60)
def test_check_says_a_pattern_stages_missing_module_once(built: Project) -> None:
    built.config(PAGES.replace('"pipeline.page"', '"pipeline.pages"'))
    proc = built.cli("check")
    assert proc.returncode == 2
    said = [line for line in proc.stderr.splitlines() if "pipeline.pages" in line]
    assert len(said) == 1 and 'stage "page": "module": pipeline.pages' in said[0], proc.stderr


@pytest.mark.timeout(60)
def test_check_warns_of_an_instances_missing_input_by_name(built: Project) -> None:
    driver_only = 'inputs = ["content/{page}.md"]'
    built.config(PAGES.replace(driver_only, 'inputs = ["content/{page}.md", "meta/{page}.toml"]'))
    built.write("meta/a.toml", "")
    proc = built.cli("check")
    assert proc.returncode == 0, proc.stderr[-2000:]
    warned = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert [line.split(": ")[2] for line in warned] == ['stage "page:b"', 'stage "page:guide/intro"']
    assert 'input "meta/b.toml" does not exist (yet)' in warned[0]


@pytest.mark.timeout(60)
def test_invalidate_a_pattern_stage_removes_every_instances_entry(built: Project) -> None:
    assert built.entry("page:a").exists() and built.entry("page:b").exists()
    proc = built.cli("invalidate", "page")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [
        "page:a: invalidated",
        "page:b: invalidated",
        "page:guide/intro: no entry (already runs next round)",
    ]
    assert not built.entry("page:a").exists() and not built.entry("page:b").exists()
    assert table(built.cli("status"))["page"][1] == "2 never run, 1 failed"  # no entry left


@pytest.mark.timeout(60)
def test_accept_a_pattern_stage_records_every_instance_whose_outputs_exist(built: Project) -> None:
    assert built.cli("invalidate", "page").returncode == 0
    proc = built.cli("accept", "page")
    assert proc.returncode == 1  # guide/intro has no output to accept
    assert proc.stdout.splitlines() == [
        "page:a: accepted (current inputs recorded as built)",
        "page:b: accepted (current inputs recorded as built)",
    ]
    assert "page:guide/intro: not accepted: output missing: _build/site/guide/intro.html" in proc.stderr
    assert built.entry("page:a").exists() and built.entry("page:b").exists()
    assert not built.entry("page:guide/intro").exists()
    assert table(built.cli("status"))["page"][1] == "2 fresh, 1 failed"


@pytest.mark.timeout(60)
def test_the_views_of_ten_thousand_instances_are_built_in_one_pass(project: Project) -> None:
    """What check, graph and status add to loading the pipeline stays small at 10,000 instances."""
    write_pages(project)
    values = [f"section{i % 100}/page{i}" for i in range(10_000)]
    pipeline = with_listing(load_pipeline(project.root / "stagewatch.toml"), {"page": values})
    rows = [
        {
            "name": name,
            "state": "failed" if name.endswith("7") else "fresh",
            "last_success": None,
            "ttl_left_s": None,
        }
        for name in pipeline.graph.order
    ]
    started = time.monotonic()
    folded, counts = fold_patterns(pipeline.graph, pipeline)
    problems, _ = _runnable_problems(pipeline)
    summaries = pattern_summaries(
        rows, lambda name: pipeline.stage(name).pattern, {"page": "content/{page}.md"}
    )
    table_rows = folded_rows(rows, lambda name: pipeline.stage(name).pattern, summaries)
    took = time.monotonic() - started
    assert folded.order == ("page", "index") and counts == {"page": 10_000} and problems == []
    assert [row["name"] for row in table_rows] == ["page", "index"]
    assert table_rows[0]["state"] == "9000 fresh, 1000 failed"
    assert took < 0.5, f"{took:.2f} s"
