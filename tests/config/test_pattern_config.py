"""Pattern stages in the pipeline file: instances made from the driver's files, and every misuse
of the placeholder one line naming the stage and the placeholder (docs/design.md#pattern-stages)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stagewatch.config import load_pipeline, with_listing
from stagewatch.errors import ConfigError
from stagewatch.patterns import compile_driver, expand, instantiate, placeholder_problems
from stagewatch.stage import Stage

PAGE = """
    [[stage]]
    name = "page"
    module = "pipeline.page"
    inputs = ["content/{page}.md", "data/site.toml"]
    sources = ["templates/{page}.html"]
    outputs = ["_build/site/{page}.html"]

    [[stage]]
    name = "index"
    module = "pipeline.index"
    inputs = ["_build/site/"]
    outputs = ["_build/index.html"]
    after = ["page"]
"""


def _project(tmp_path: Path, config: str, files: tuple[str, ...] = ()) -> Path:
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    path = tmp_path / "stagewatch.toml"
    path.write_text(textwrap.dedent(config))
    return path


def test_each_file_the_driver_matches_is_an_instance_with_its_value_in_every_path(tmp_path: Path) -> None:
    files = ("content/guide/intro.md", "content/about.md", "content/notes.txt", "content/.#draft.md")
    pipeline = load_pipeline(_project(tmp_path, PAGE, files))
    assert pipeline.names == ("page:about", "page:guide/intro", "index")
    intro = pipeline.stage("page:guide/intro")
    assert intro.inputs == ("content/guide/intro.md", "data/site.toml")
    assert intro.sources == ("templates/guide/intro.html",)
    assert intro.outputs == ("_build/site/guide/intro.html",)
    assert intro.call_arguments == {"page": "guide/intro"}
    assert intro.pattern == "page"
    assert pipeline.instances_of("page") == ("page:about", "page:guide/intro")
    assert pipeline.resolve("page") == ("page:about", "page:guide/intro")
    assert pipeline.resolve("index") == ("index",)


def test_after_a_pattern_means_after_every_instance_and_each_instance_has_its_own_edges(
    tmp_path: Path,
) -> None:
    pipeline = load_pipeline(_project(tmp_path, PAGE, ("content/a.md", "content/b.md")))
    assert pipeline.stage("index").after == ("page:a", "page:b")
    assert pipeline.graph.upstream["index"] == {"page:a", "page:b"}
    assert pipeline.graph.upstream["page:a"] == frozenset()
    assert pipeline.graph.order[-1] == "index"


def test_a_pattern_with_no_file_has_no_instance(tmp_path: Path) -> None:
    pipeline = load_pipeline(_project(tmp_path, PAGE))
    assert pipeline.names == ("index",)
    assert pipeline.patterns == ("page",)
    assert pipeline.knows("page") and pipeline.resolve("page") == ()


def test_another_listing_makes_other_instances_and_keeps_the_declarations(tmp_path: Path) -> None:
    pipeline = load_pipeline(_project(tmp_path, PAGE, ("content/a.md",)))
    again = with_listing(pipeline, {"page": ("a", "b/c")})
    assert again.names == ("page:a", "page:b/c", "index")
    assert again.declared == pipeline.declared
    assert again.graph.upstream["index"] == {"page:a", "page:b/c"}


def test_a_command_pattern_stage_gets_its_value_in_its_argv() -> None:
    template = Stage(
        name="thumb",
        command=("convert", "photos/{photo}.jpg", "_build/thumbs/{photo}.png"),
        inputs=("photos/{photo}.jpg",),
        outputs=("_build/thumbs/{photo}.png",),
        placeholder="photo",
    )
    instance = instantiate(template, "2024/beach")
    assert instance.name == "thumb:2024/beach"
    assert instance.command == ("convert", "photos/2024/beach.jpg", "_build/thumbs/2024/beach.png")
    assert instance.call_arguments == {"photo": "2024/beach"}
    assert expand((template,), {}) == ()


def test_the_placeholder_matches_any_characters_and_a_second_occurrence_the_same_value() -> None:
    driver = compile_driver("doc", "docs/{name}/{name}.md", "name", "/site")
    assert driver.base == "/site/docs"
    assert driver.value_of("/site/docs/a/b/a/b.md") == "a/b"
    assert driver.value_of("/site/docs/a/b.md") is None
    assert driver.value_of("/site/docs/x.txt") is None


@pytest.mark.parametrize(
    ("inputs", "outputs", "sources", "wanted"),
    [
        (("content/{page}.md",), ("_build/all.html",), (), '"outputs": "_build/all.html" has no {page}'),
        (("content/x.md",), ("_build/{page}.html",), (), '"outputs": the placeholder {page} is in no input'),
        (
            ("content/{page}.md",),
            ("_build/{slug}.html",),
            (),
            "one placeholder name; found {page} and {slug}",
        ),
        (
            ("content/**/{page}.md",),
            ("_build/{page}.html",),
            (),
            '"inputs": the driver "content/**/{page}.md"',
        ),
        (("content/{page}/",), ("_build/{page}.html",), (), 'the driver "content/{page}/" of {page}'),
        (
            ("c/x.md",),
            ("_build/x.html",),
            ("t/{page}.html",),
            '"sources": the placeholder {page} is in no input',
        ),
    ],
)
def test_a_misused_placeholder_is_one_problem_naming_it(
    inputs: tuple[str, ...], outputs: tuple[str, ...], sources: tuple[str, ...], wanted: str
) -> None:
    _, problems = placeholder_problems(inputs, outputs, sources, None)
    assert len(problems) == 1 and wanted in problems[0], problems


def test_braces_that_are_no_placeholder_are_plain_characters() -> None:
    assert placeholder_problems(("data/{1}.csv", "a/{b-c}.txt"), ("_build/{}.json",), (), None) == (None, [])


@pytest.mark.parametrize(
    ("extra", "wanted"),
    [
        (
            '[[stage]]\nname = "gen"\ncommand = ["gen"]\noutputs = ["content/generated.md"]\n',
            '"content/generated.md", an output of stage "gen"',
        ),
        (
            '[[stage]]\nname = "gen"\ncommand = ["gen"]\noutputs = ["content/gen/"]\n',
            '"content/gen/", an output of stage "gen"',
        ),
        (
            '[[stage]]\nname = "copy"\ncommand = ["cp"]\ninputs = ["raw/{p}.txt"]\n'
            'outputs = ["content/{p}.md"]\n',
            '"content/{p}.md", an output of stage "copy"',
        ),
    ],
)
def test_a_driver_that_matches_another_stages_outputs_is_refused(
    tmp_path: Path, extra: str, wanted: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(_project(tmp_path, PAGE + textwrap.indent(extra, "    ")))
    problems = caught.value.problems
    assert len(problems) == 1, problems
    assert 'stage "page": "inputs": the driver "content/{page}.md" of {page} matches' in problems[0]
    assert wanted in problems[0]


def test_a_pattern_stages_problems_are_exit_2_from_the_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = _project(
        tmp_path, PAGE.replace('outputs = ["_build/site/{page}.html"]', 'outputs = ["_build/x.html"]')
    )
    done = subprocess.run(
        [sys.executable, "-m", "stagewatch", "--config", str(path), "check"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    said = 'stage "page": "outputs": "_build/x.html" has no {page}: every instance would write the same file'
    assert done.stderr.strip().endswith(said)
    assert "Traceback" not in done.stderr
