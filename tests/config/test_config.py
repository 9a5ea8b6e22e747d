"""The pipeline file (DESIGN §2): every key mapped onto Pipeline/Stage, every mistake one clear line."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stagewatch.config import load_pipeline, locate_config
from stagewatch.errors import ConfigError
from stagewatch.pipeline import Pipeline
from stagewatch.stage import OnBusy, WatcherKind
from tests.helpers.paths import REPO
from tests.helpers.project import Project

DURATION_FORMS = '(use seconds as a number, or "250ms", "90s", "15m", "6h", "2d")'

FULL_CONFIG = """
    [pipeline]
    output_dir = "site"
    python_path = [".", "lib"]
    jobs = 3
    debounce = "250ms"
    ignore = ["drafts/**"]
    on_busy = "restart"
    rescan = "15m"
    watcher = "polling"

    [[stage]]
    name = "fetch"
    command = ["curl", "-o", "_build/raw.json", "https://example.org/api"]
    outputs = ["_build/raw.json"]
    ttl = "6h"

    [[stage]]
    name = "stats"
    module = "pipeline.stats"
    function = "main"
    inputs = ["data/repos.toml", "_build/raw.json"]
    outputs = ["_build/stats.json"]
    ttl = "2d"
    timeout = "90s"
    after = ["fetch"]
    sources = ["templates/**"]
    on_busy = "queue"

    [[stage]]
    name = "pages"
    module = "pipeline.pages"
    inputs = ["content/**/*.md", "data/"]
    outputs = ["_build/site/pages/"]
    timeout = 30
"""


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stagewatch.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    return caught.value


def only_problem(path: Path) -> str:
    """The single problem the file has; the message is that one line."""
    error = load_error(path)
    assert len(error.problems) == 1, error.problems
    assert str(error) == error.problems[0]
    assert "\n" not in str(error)
    return str(error)


# --- one mistake, one line naming the file and the key -------------------------------------------

# Each row: a pipeline file, and the one problem it has, as said after "<file>: ". "<root>" stands
# for the folder the file is in (output_dir).
ONE_PROBLEM = [
    # unknown keys and tables
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        input = ["content/a.md"]
        """,
        'stage "render": unknown key "input" (did you mean "inputs"?)',
        id="test_unknown_stage_key_suggests_the_right_one",
    ),
    pytest.param(
        """
        [pipeline]
        debounse = "1s"

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        '[pipeline]: unknown key "debounse" (did you mean "debounce"?)',
        id="test_unknown_pipeline_key_suggests_the_right_one",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        colour = "blue"
        """,
        'stage "render": unknown key "colour"',
        id="test_unknown_key_with_nothing_close_has_no_suggestion",
    ),
    pytest.param(
        """
        [[stages]]
        name = "render"
        module = "pipeline.render"
        """,
        'unknown table "stages" (did you mean "[[stage]]"?)',
        id="test_stages_array_suggests_stage",
    ),
    pytest.param(
        """
        [pipline]
        jobs = 2

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        'unknown table "pipline" (did you mean "pipeline"?)',
        id="test_misspelled_pipeline_table_suggests_pipeline",
    ),
    # wrong types
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        inputs = "content/a.md"
        """,
        'stage "render": "inputs" must be a list of strings, got a string "content/a.md"',
        id="test_inputs_given_as_a_string_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        inputs = ["content/a.md", 3]
        """,
        'stage "render": "inputs" must be a list of non-empty strings, got [\'content/a.md\', 3]',
        id="test_inputs_holding_a_number_is_rejected",
    ),
    pytest.param(
        """
        [pipeline]
        jobs = "2"

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        '[pipeline]: "jobs" must be a whole number >= 1, got "2"',
        id="test_jobs_given_as_a_string_is_rejected",
    ),
    pytest.param(
        """
        [pipeline]
        jobs = true

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        '[pipeline]: "jobs" must be a whole number >= 1, got True',
        id="test_jobs_given_as_a_boolean_is_rejected",
    ),
    pytest.param(
        """
        [pipeline]
        jobs = 0

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        '[pipeline]: "jobs" must be a whole number >= 1, got 0',
        id="test_jobs_of_zero_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        command = "make all"
        """,
        (
            'stage "render": "command" must be a list of strings (argv, no shell), got a'
            ' string; for a shell write ["sh", "-c", "make all"]'
        ),
        id="test_command_given_as_a_string_suggests_sh_c",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        command = []
        """,
        'stage "render": "command" must be a non-empty list of strings, got []',
        id="test_empty_command_is_rejected",
    ),
    pytest.param(
        """
        [pipeline]
        output_dir = 5

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        '[pipeline]: "output_dir" must be a string, got an integer 5',
        id="test_output_dir_given_as_a_number_is_rejected",
    ),
    pytest.param(
        """
        [[pipeline]]
        jobs = 1

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        "[pipeline]: must be a table, got a list",
        id="test_pipeline_written_as_array_of_tables_is_rejected",
    ),
    pytest.param(
        """
        [stage]
        name = "render"
        module = "pipeline.render"
        """,
        '"stage" must be an array of tables: write each stage as [[stage]]',
        id="test_stage_written_as_a_single_table_says_to_use_double_brackets",
    ),
    # names
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"

        [[stage]]
        name = "render"
        module = "pipeline.other"
        """,
        'stage "render": duplicate name (stage #1 is also "render")',
        id="test_duplicate_stage_name_points_at_the_first",
    ),
    pytest.param(
        """
        [[stage]]
        name = "my stage"
        module = "pipeline.render"
        """,
        'stage "my stage": "name" "my stage" is invalid: use letters, digits, "_", "-" and "."',
        id="test_stage_name_with_a_space_is_invalid",
    ),
    pytest.param(
        """
        [[stage]]
        name = "fetch"
        module = "pipeline.fetch"

        [[stage]]
        name = 5
        module = "pipeline.render"
        """,
        'stage #2: "name" 5 is invalid: use letters, digits, "_", "-" and "."',
        id="test_stage_name_that_is_a_number_is_invalid_and_named_by_position",
    ),
    pytest.param(
        """
        [[stage]]
        module = "pipeline.render"
        """,
        'stage #1: missing "name"',
        id="test_stage_without_a_name_is_named_by_position",
    ),
    # what a stage runs
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        command = ["make"]
        """,
        'stage "render": give either "module" or "command", not both',
        id="test_module_and_command_together_are_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        inputs = ["content/a.md"]
        """,
        'stage "render": missing "module" or "command": say what the stage runs',
        id="test_neither_module_nor_command_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline/render.py"
        """,
        'stage "render": "module" "pipeline/render.py" is not a dotted Python module name',
        id="test_module_that_is_not_a_dotted_name_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        command = ["make"]
        function = "main"
        """,
        'stage "render": "function" only goes with "module", not with "command"',
        id="test_function_with_command_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        function = "run()"
        """,
        'stage "render": "function" "run()" is not a Python identifier',
        id="test_function_that_is_not_an_identifier_is_rejected",
    ),
    # durations
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        ttl = "6 hours"
        """,
        f'stage "render": "ttl": bad duration "6 hours" {DURATION_FORMS}',
        id="test_unparseable_ttl_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        ttl = 0
        """,
        'stage "render": "ttl" must be longer than 0, got 0',
        id="test_zero_ttl_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        ttl = inf
        """,
        'stage "render": "ttl": duration must be a finite number of seconds >= 0, got inf',
        id="test_infinite_ttl_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        ttl = 12:00:00
        """,
        'stage "render": "ttl": expected a duration, got 12:00:00',
        id="test_ttl_written_as_a_toml_time_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        timeout = -5
        """,
        'stage "render": "timeout" must be longer than 0, got -5',
        id="test_negative_timeout_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        timeout = "-5s"
        """,
        f'stage "render": "timeout": bad duration "-5s" {DURATION_FORMS}',
        id="test_negative_timeout_string_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        timeout = "0s"
        """,
        'stage "render": "timeout" must be longer than 0, got "0s"',
        id="test_zero_timeout_is_rejected",
    ),
    pytest.param(
        """
        [pipeline]
        debounce = "fast"

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        f'[pipeline]: "debounce": bad duration "fast" {DURATION_FORMS}',
        id="test_unparseable_debounce_is_rejected",
    ),
    pytest.param(
        """
        [pipeline]
        debounce = nan

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        '[pipeline]: "debounce": duration must be a finite number of seconds >= 0, got nan',
        id="test_nan_debounce_is_rejected",
    ),
    pytest.param(
        """
        [pipeline]
        rescan = "10 min"

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        f'[pipeline]: "rescan": bad duration "10 min" {DURATION_FORMS}',
        id="test_unparseable_rescan_is_rejected",
    ),
    # outputs
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        outputs = ["../out.html"]
        """,
        'stage "render": "outputs": "../out.html" is outside output_dir (<root>)',
        id="test_output_above_output_dir_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        outputs = ["_build/*.html"]
        """,
        (
            'stage "render": "outputs": "_build/*.html" is a glob; outputs must be files or'
            ' folders ending in "/"'
        ),
        id="test_output_glob_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        outputs = ["_build/.cache/render.hash"]
        """,
        (
            'stage "render": "outputs": "_build/.cache/render.hash" overlaps stagewatch\'s'
            " own cache (_build/.cache/)"
        ),
        id="test_output_inside_the_cache_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "stats"
        module = "pipeline.stats"
        outputs = ["_build/out.json"]

        [[stage]]
        name = "render"
        module = "pipeline.render"
        outputs = ["_build/out.json"]
        """,
        'stage "render": "outputs": "_build/out.json" is also an output of stage "stats"',
        id="test_two_stages_writing_the_same_output_are_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "stats"
        module = "pipeline.stats"
        outputs = ["_build/site/"]

        [[stage]]
        name = "render"
        module = "pipeline.render"
        outputs = ["./_build/site"]
        """,
        'stage "render": "outputs": "./_build/site" is also an output of stage "stats"',
        id="test_same_output_spelled_differently_is_still_a_clash",
    ),
    # a stage reading its own output
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        inputs = ["_build/a.html"]
        outputs = ["_build/a.html"]
        """,
        'stage "render": "inputs": "_build/a.html" reads the stage\'s own output "_build/a.html"',
        id="test_input_file_that_is_its_own_output_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        inputs = ["_build/"]
        outputs = ["_build/a.html"]
        """,
        'stage "render": "inputs": "_build/" reads the stage\'s own output "_build/a.html"',
        id="test_input_folder_holding_its_own_output_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        inputs = ["_build/site/index.html"]
        outputs = ["_build/site/"]
        """,
        ('stage "render": "inputs": "_build/site/index.html" reads the stage\'s own output "_build/site/"'),
        id="test_input_file_inside_its_own_output_folder_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        inputs = ["**/*.html"]
        outputs = ["_build/a.html"]
        """,
        (
            'stage "render": "inputs": "**/*.html" reads the stage\'s own output'
            ' "_build/a.html" (add the output folder to [pipeline] ignore if it never holds inputs)'
        ),
        id="test_input_glob_matching_its_own_output_is_rejected_with_a_hint",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        sources = ["_build/**"]
        outputs = ["_build/a.html"]
        """,
        (
            'stage "render": "sources": "_build/**" reads the stage\'s own output'
            ' "_build/a.html" (add the output folder to [pipeline] ignore if it never holds inputs)'
        ),
        id="test_sources_glob_matching_its_own_output_is_rejected",
    ),
    # the graph
    pytest.param(
        """
        [[stage]]
        name = "a"
        module = "pipeline.a"
        inputs = ["b.txt"]
        outputs = ["a.txt"]

        [[stage]]
        name = "b"
        module = "pipeline.b"
        inputs = ["a.txt"]
        outputs = ["b.txt"]
        """,
        'stage "a": cycle a -> b -> a (a -> b: "a.txt" -> "a.txt"; b -> a: "b.txt" -> "b.txt")',
        id="test_cycle_between_two_stages_is_printed",
    ),
    pytest.param(
        """
        [[stage]]
        name = "a"
        module = "pipeline.a"
        inputs = ["c.txt"]
        outputs = ["a.txt"]

        [[stage]]
        name = "b"
        module = "pipeline.b"
        inputs = ["a.txt"]
        outputs = ["b.txt"]

        [[stage]]
        name = "c"
        module = "pipeline.c"
        inputs = ["b.txt"]
        outputs = ["c.txt"]
        """,
        (
            'stage "a": cycle a -> b -> c -> a (a -> b: "a.txt" -> "a.txt"; b -> c: "b.txt"'
            ' -> "b.txt"; c -> a: "c.txt" -> "c.txt")'
        ),
        id="test_cycle_through_three_stages_lists_every_stage",
    ),
    pytest.param(
        """
        [[stage]]
        name = "a"
        module = "pipeline.a"
        after = ["b"]

        [[stage]]
        name = "b"
        module = "pipeline.b"
        after = ["a"]
        """,
        'stage "a": cycle a -> b -> a (a -> b: after; b -> a: after)',
        id="test_cycle_of_after_edges_is_printed",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        after = ["render"]
        """,
        'stage "render": "after" names the stage itself',
        id="test_after_naming_the_stage_itself_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        after = ["fetc"]

        [[stage]]
        name = "fetch"
        module = "pipeline.fetch"
        """,
        'stage "render": "after": no stage named "fetc" (did you mean "fetch"?)',
        id="test_after_naming_an_unknown_stage_suggests_a_close_one",
    ),
    pytest.param(
        """
        [[stage]]
        name = "fetch"
        module = "pipeline.fetch"
        ttl = "soon"

        [[stage]]
        name = "render"
        module = "pipeline.render"
        after = ["fetch"]
        """,
        f'stage "fetch": "ttl": bad duration "soon" {DURATION_FORMS}',
        id="test_after_naming_a_stage_that_has_its_own_problem_reports_only_that_problem",
    ),
    # the file itself
    pytest.param(
        """
        [[stage]
        name = "render"
        """,
        "invalid TOML: Expected ']]' at the end of an array declaration (at line 2, column 8)",
        id="test_invalid_toml_names_the_file_and_line",
    ),
    pytest.param(
        "",
        "no stages: add at least one [[stage]] table",
        id="test_empty_file_has_no_stages",
    ),
    pytest.param(
        """
        [pipeline]
        jobs = 2
        """,
        "no stages: add at least one [[stage]] table",
        id="test_pipeline_table_without_stages_has_no_stages",
    ),
    # closed sets
    pytest.param(
        """
        [pipeline]
        on_busy = "kill"

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        '[pipeline]: "on_busy" must be "queue" or "restart", got "kill"',
        id="test_bad_pipeline_on_busy_is_rejected",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        on_busy = "kill"
        """,
        'stage "render": "on_busy" must be "queue" or "restart", got "kill"',
        id="test_bad_stage_on_busy_is_rejected",
    ),
    pytest.param(
        """
        [pipeline]
        watcher = "inotify"

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        '[pipeline]: "watcher" must be "native" or "polling", got "inotify"',
        id="test_bad_watcher_is_rejected",
    ),
]


@pytest.mark.parametrize(("toml", "said"), ONE_PROBLEM)
def test_a_file_with_one_mistake_says_it_in_one_line(tmp_path: Path, toml: str, said: str) -> None:
    path = write_config(tmp_path, toml)
    assert only_problem(path) == f"{path}: " + said.replace("<root>", tmp_path.as_posix())


# --- unknown keys and tables -----------------------------------------------------------------


def test_a_mistyped_serve_key_suggests_port(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [serve]
        prot = 8000

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
    )
    assert only_problem(path).endswith('unknown key "prot" (did you mean "port"?)')


def test_setting_written_above_pipeline_table_is_an_unknown_key_pointing_at_pipeline(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        """
        jobs = 2

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
    )
    message = only_problem(path)
    assert message.startswith(f'{path}: unknown key "jobs"')
    assert "[pipeline]" in message


# --- durations ---------------------------------------------------------------------------------


def test_ttl_too_large_for_a_float_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        f"""
        [[stage]]
        name = "render"
        module = "pipeline.render"
        ttl = {"9" * 400}
        """,
    )
    assert only_problem(path).startswith(f'{path}: stage "render": "ttl": ')


# --- outputs -----------------------------------------------------------------------------------


def test_absolute_output_elsewhere_is_rejected(tmp_path: Path) -> None:
    elsewhere = (tmp_path.parent / "elsewhere" / "out.html").as_posix()
    path = write_config(
        tmp_path,
        f"""
        [[stage]]
        name = "render"
        module = "pipeline.render"
        outputs = ["{elsewhere}"]
        """,
    )
    assert only_problem(path) == (
        f'{path}: stage "render": "outputs": "{elsewhere}" is outside output_dir ({tmp_path.as_posix()})'
    )


def test_an_output_inside_another_stages_output_folder_is_rejected(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [[stage]]
        name = "site"
        module = "pipeline.site"
        outputs = ["_build/site/"]

        [[stage]]
        name = "feed"
        module = "pipeline.feed"
        outputs = ["_build/site/blog/feed.xml", "_build/feed.json"]

        [[stage]]
        name = "blog"
        module = "pipeline.blog"
        outputs = ["_build/site/blog/"]
        """,
    )
    assert load_error(path).problems == [
        f'{path}: stage "feed": "outputs": "_build/site/blog/feed.xml" lies inside the output'
        ' folder "_build/site/blog/" of stage "blog"',
        f'{path}: stage "feed": "outputs": "_build/site/blog/feed.xml" lies inside the output'
        ' folder "_build/site/" of stage "site"',
        f'{path}: stage "blog": "outputs": "_build/site/blog/" lies inside the output'
        ' folder "_build/site/" of stage "site"',
    ]


# --- the file itself ---------------------------------------------------------------------------


def test_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    assert only_problem(path) == (
        f"{path}: no such file (pass --config PATH, set STAGEWATCH_CONFIG, or create ./stagewatch.toml)"
    )


def test_file_that_is_not_utf8_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "stagewatch.toml"
    path.write_bytes(b'[[stage]]\nname = "r\xff"\n')
    assert only_problem(path) == f"{path}: not UTF-8 text (invalid start byte at byte 19)"


# --- several problems --------------------------------------------------------------------------


def test_every_problem_is_reported_one_per_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [pipeline]
        jobs = 0

        [[stage]]
        name = "render"
        module = "pipeline.render"
        input = ["a.md"]
        ttl = "soon"
        """,
    )
    error = load_error(path)
    assert error.problems == [
        f'{path}: [pipeline]: "jobs" must be a whole number >= 1, got 0',
        f'{path}: stage "render": unknown key "input" (did you mean "inputs"?)',
        f'{path}: stage "render": "ttl": bad duration "soon" {DURATION_FORMS}',
    ]
    assert str(error) == "\n".join(error.problems)


# --- valid files -------------------------------------------------------------------------------


@pytest.fixture
def full_pipeline(tmp_path: Path) -> Pipeline:
    return load_pipeline(write_config(tmp_path, FULL_CONFIG))


def test_full_config_keeps_stages_in_file_order(full_pipeline: Pipeline) -> None:
    assert full_pipeline.names == ("fetch", "stats", "pages")


def test_config_path_is_recorded_absolute(tmp_path: Path, full_pipeline: Pipeline) -> None:
    assert full_pipeline.config_path == tmp_path / "stagewatch.toml"


def test_output_dir_resolves_against_the_config_folder(tmp_path: Path, full_pipeline: Pipeline) -> None:
    assert full_pipeline.output_dir == tmp_path / "site"


def test_pipeline_settings_are_mapped(full_pipeline: Pipeline) -> None:
    assert full_pipeline.jobs == 3
    assert full_pipeline.python_path == (".", "lib")
    assert full_pipeline.ignore == ("drafts/**",)
    assert full_pipeline.on_busy is OnBusy.RESTART
    assert full_pipeline.watcher is WatcherKind.POLLING


def test_pipeline_durations_are_parsed_to_seconds(full_pipeline: Pipeline) -> None:
    assert full_pipeline.debounce_s == pytest.approx(0.25)
    assert full_pipeline.rescan_s == 900.0


def test_stage_durations_are_parsed_to_seconds(full_pipeline: Pipeline) -> None:
    assert full_pipeline.stage("fetch").ttl_s == 6 * 3600.0
    assert full_pipeline.stage("stats").ttl_s == 2 * 86400.0
    assert full_pipeline.stage("stats").timeout_s == 90.0
    assert full_pipeline.stage("pages").timeout_s == 30.0
    assert full_pipeline.stage("pages").ttl_s is None


def test_module_stage_keys_are_mapped(full_pipeline: Pipeline) -> None:
    stats = full_pipeline.stage("stats")
    assert stats.module == "pipeline.stats"
    assert stats.function == "main"
    assert stats.command is None
    assert stats.inputs == ("data/repos.toml", "_build/raw.json")
    assert stats.outputs == ("_build/stats.json",)
    assert stats.after == ("fetch",)
    assert stats.sources == ("templates/**",)
    assert stats.on_busy is OnBusy.QUEUE


def test_function_defaults_to_run(full_pipeline: Pipeline) -> None:
    assert full_pipeline.stage("pages").function == "run"


def test_command_stage_keys_are_mapped(full_pipeline: Pipeline) -> None:
    fetch = full_pipeline.stage("fetch")
    assert fetch.command == ("curl", "-o", "_build/raw.json", "https://example.org/api")
    assert fetch.module is None
    assert fetch.outputs == ("_build/raw.json",)


def test_python_path_and_ignore_are_copied_onto_each_stage(full_pipeline: Pipeline) -> None:
    for stage in full_pipeline.stages:
        assert stage.python_path == (".", "lib")
        assert stage.ignore == ("drafts/**",)


def test_stage_on_busy_overrides_the_pipeline_default(full_pipeline: Pipeline) -> None:
    assert full_pipeline.on_busy_for(full_pipeline.stage("stats")) is OnBusy.QUEUE
    assert full_pipeline.stage("pages").on_busy is None
    assert full_pipeline.on_busy_for(full_pipeline.stage("pages")) is OnBusy.RESTART


def test_defaults_apply_without_a_pipeline_table(tmp_path: Path) -> None:
    pipeline = load_pipeline(
        write_config(
            tmp_path,
            """
            [[stage]]
            name = "render"
            module = "pipeline.render"
            """,
        )
    )
    assert pipeline.output_dir == tmp_path
    assert pipeline.jobs == 2
    assert pipeline.debounce_s == pytest.approx(0.1)
    assert pipeline.rescan_s == 600.0
    assert pipeline.on_busy is OnBusy.QUEUE
    assert pipeline.watcher is WatcherKind.NATIVE
    assert pipeline.python_path == (".",)
    assert pipeline.ignore == ()
    assert pipeline.stage("render").python_path == (".",)


def test_output_dir_of_a_relative_config_path_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "proj").mkdir()
    write_config(tmp_path / "proj", '[[stage]]\nname = "render"\nmodule = "pipeline.render"\n')
    monkeypatch.chdir(tmp_path)
    pipeline = load_pipeline(Path("proj/stagewatch.toml"))
    assert pipeline.output_dir == tmp_path / "proj"
    assert pipeline.config_path == tmp_path / "proj" / "stagewatch.toml"


def test_output_dir_going_up_is_normalized(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    pipeline = load_pipeline(
        write_config(
            tmp_path / "conf",
            """
            [pipeline]
            output_dir = "../site"

            [[stage]]
            name = "render"
            module = "pipeline.render"
            """,
        )
    )
    assert pipeline.output_dir == tmp_path / "site"


def test_absolute_output_dir_is_kept(tmp_path: Path) -> None:
    site = tmp_path / "elsewhere" / "site"
    pipeline = load_pipeline(
        write_config(
            tmp_path,
            f"""
            [pipeline]
            output_dir = "{site.as_posix()}"

            [[stage]]
            name = "render"
            module = "pipeline.render"
            """,
        )
    )
    assert pipeline.output_dir == site


# Each row: a pipeline file, what is read of the Pipeline it makes, and the value expected.
PARSED: list[Any] = [
    pytest.param(
        """
        [pipeline]
        ignore = ["_build/"]

        [[stage]]
        name = "render"
        module = "pipeline.render"
        inputs = ["**/*.html"]
        outputs = ["_build/a.html"]
        """,
        lambda pipeline: pipeline.names,
        ("render",),
        id="test_input_glob_is_allowed_when_its_own_output_folder_is_ignored",
    ),
    pytest.param(
        """
        [pipeline]
        debounce = 0.5

        [[stage]]
        name = "render"
        module = "pipeline.render"
        ttl = 90
        """,
        lambda pipeline: (pipeline.debounce_s, pipeline.stage("render").ttl_s),
        (0.5, 90.0),
        id="test_numeric_durations_are_seconds",
    ),
    pytest.param(
        """
        [pipeline]
        rescan = 0

        [[stage]]
        name = "render"
        module = "pipeline.render"
        """,
        lambda pipeline: pipeline.rescan_s,
        0.0,
        id="test_rescan_of_zero_turns_reconciliation_off",
    ),
    pytest.param(
        """
        [[stage]]
        name = "Render_v2.site-en"
        module = "pipeline.render"
        """,
        lambda pipeline: pipeline.names,
        ("Render_v2.site-en",),
        id="test_stage_names_may_use_digits_dots_dashes_and_underscores",
    ),
]


@pytest.mark.parametrize(("toml", "read", "expected"), PARSED)
def test_a_valid_file_is_read_into_the_pipeline(
    tmp_path: Path, toml: str, read: Callable[[Pipeline], object], expected: object
) -> None:
    assert read(load_pipeline(write_config(tmp_path, toml))) == expected


def test_inputs_may_live_outside_output_dir(tmp_path: Path) -> None:
    shared = (tmp_path.parent / "shared" / "data.json").as_posix()
    pipeline = load_pipeline(
        write_config(
            tmp_path,
            f"""
            [[stage]]
            name = "render"
            module = "pipeline.render"
            inputs = ["{shared}", "../notes/"]
            outputs = ["_build/out.html"]
            """,
        )
    )
    assert pipeline.stage("render").inputs == (shared, "../notes/")


def test_bundled_example_config_is_valid() -> None:
    example = REPO / "config.example.toml"
    pipeline = load_pipeline(example)
    assert pipeline.names == ("page:about", "page:hello", "page:notes", "stats", "assets", "index")
    assert pipeline.patterns == ("page",)
    assert pipeline.output_dir == example.parent / "examples" / "site"


# --- locating the file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("explicit", "environ", "found"),
    [
        pytest.param(
            "given.toml",
            {"STAGEWATCH_CONFIG": "from-env.toml"},
            "given.toml",
            id="test_locate_config_prefers_the_explicit_path",
        ),
        pytest.param(
            None,
            {"STAGEWATCH_CONFIG": "from-env.toml"},
            "from-env.toml",
            id="test_locate_config_uses_the_environment_without_an_explicit_path",
        ),
        pytest.param(None, {}, "stagewatch.toml", id="test_locate_config_falls_back_to_stagewatch_toml"),
        pytest.param(
            None,
            {"STAGEWATCH_CONFIG": ""},
            "stagewatch.toml",
            id="test_locate_config_skips_an_empty_environment_variable",
        ),
    ],
)
def test_locate_config(explicit: str | None, environ: dict[str, str], found: str) -> None:
    assert locate_config(explicit, environ=environ) == Path(found)


# --- the real command line ---------------------------------------------------------------------


# Each row: a pipeline file `stagewatch check` refuses, and the one line it says after "<file>: ".
CHECK_REFUSES = [
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        input = ["content/a.md"]
        """,
        'stage "render": unknown key "input" (did you mean "inputs"?)',
        id="test_cli_check_on_an_unknown_key_exits_2_with_one_line",
    ),
    pytest.param(
        """
        [[stage]]
        name = "a"
        module = "pipeline.a"
        after = ["b"]

        [[stage]]
        name = "b"
        module = "pipeline.b"
        after = ["a"]
        """,
        'stage "a": cycle a -> b -> a (a -> b: after; b -> a: after)',
        id="test_cli_check_on_a_cycle_exits_2_and_prints_it",
    ),
    pytest.param(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        timeout = "soon"
        """,
        f'stage "render": "timeout": bad duration "soon" {DURATION_FORMS}',
        id="test_cli_check_on_a_bad_duration_exits_2",
    ),
]


@pytest.mark.parametrize(("toml", "said"), CHECK_REFUSES)
def test_cli_check_on_a_mistake_exits_2_with_one_line(project: Project, toml: str, said: str) -> None:
    path = project.config(toml)
    result = project.cli("check")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"{path}: {said}"]
    assert "Traceback" not in result.stdout + result.stderr


def test_cli_check_on_a_missing_file_exits_2(project: Project) -> None:
    result = project.cli("check")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{project.root / 'stagewatch.toml'}: no such file"
        " (pass --config PATH, set STAGEWATCH_CONFIG, or create ./stagewatch.toml)"
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_cli_check_on_a_ttl_too_large_for_a_float_exits_2_without_traceback(project: Project) -> None:
    project.config(
        f"""
        [[stage]]
        name = "render"
        module = "pipeline.render"
        ttl = {"9" * 400}
        """
    )
    result = project.cli("check")
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert 'stage "render": "ttl"' in result.stderr


def test_cli_check_on_a_valid_config_exits_0(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "render"
        module = "pipeline.render"
        """
    )
    project.write("pipeline/__init__.py", "")
    project.write("pipeline/render.py", "def run(out):\n    pass\n")
    result = project.cli("check")
    assert result.returncode == 0, result.stderr
    assert "render" in result.stdout


def test_cli_check_refuses_a_module_it_cannot_find(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "render"
        module = "pipeline.rendr"
        inputs = ["content/missing.md"]
        """
    )
    result = project.cli("check")
    assert result.returncode == 2
    path = project.root / "stagewatch.toml"
    assert result.stderr.splitlines() == [
        f'warning: {path}: stage "render": input "content/missing.md" does not exist (yet),'
        " and no stage makes it",
        f'{path}: stage "render": "module": pipeline.rendr not found on python_path ({project.root})',
    ]


@pytest.mark.parametrize(
    ("module", "python_path", "meant"),
    [
        ("pipeline.rendr", ".", "pipeline.render"),
        ("render", ".", "pipeline.render"),
        ("rendr", "pipeline", "render"),
    ],
)
def test_cli_check_suggests_the_module_meant(
    project: Project, module: str, python_path: str, meant: str
) -> None:
    project.write("pipeline/__init__.py", "")
    project.write("pipeline/render.py", "def run(out):\n    pass\n")
    project.config(
        f"""
        [pipeline]
        python_path = ["{python_path}"]

        [[stage]]
        name = "render"
        module = "{module}"
        """
    )
    result = project.cli("check")
    assert result.returncode == 2
    searched = project.root if python_path == "." else project.root / python_path
    assert result.stderr.rstrip().endswith(f'not found on python_path ({searched}) (did you mean "{meant}"?)')


def test_cli_check_warns_of_a_glob_whose_folder_is_not_there(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "pages"
        command = ["true"]
        inputs = ["site/content/*.md"]
        outputs = ["_build/site/"]

        [[stage]]
        name = "index"
        command = ["true"]
        inputs = ["_build/site/**/*.html"]
        outputs = ["_build/index.html"]
        """
    )
    result = project.cli("check")
    assert result.returncode == 0
    path = project.root / "stagewatch.toml"
    assert result.stderr.splitlines() == [
        f'warning: {path}: stage "pages": input "site/content/*.md" matches nothing: site/content is no'
        f" folder (yet), and no stage makes it (paths are relative to {project.root})"
    ]


# --- names that cannot work on disk or in Python -----------------------------------------------


def test_a_stage_name_too_long_for_its_cache_files_is_refused(tmp_path: Path) -> None:
    name = "n" * 237
    path = write_config(tmp_path, f'[[stage]]\nname = "{name}"\ncommand = ["true"]\n')
    assert only_problem(path) == (
        f'{path}: stage #1 ("{"n" * 20}..."): "name" is 237 characters long; at most 236 fit'
        f' in the file names stagewatch keeps for it (the longest is ".{"n" * 20}....hash.XXXXXXXX.tmp")'
    )


def test_the_longest_stage_name_allowed_builds_and_is_fresh(project: Project) -> None:
    name = "n" * 236
    project.config(
        f'[[stage]]\nname = "{name}"\ncommand = ["sh", "-c", "echo > out"]\noutputs = ["out"]\nttl = 60\n'
    )
    first = project.cli("build")
    assert first.returncode == 0, first.stderr
    assert project.entry(name).exists()
    assert "fresh" in project.cli("status").stdout.splitlines()[2]


STDLIB_MODULES = {
    "json": "json",
    "statistics": "statistics",
    "email.render": "email",
    "html.pages": "html",
}


@pytest.mark.parametrize(("module", "stdlib"), STDLIB_MODULES.items())
def test_cli_check_refuses_a_module_named_like_the_standard_library(
    project: Project, module: str, stdlib: str
) -> None:
    # In lib/, not in the project's root: `python -m stagewatch` run there would import it itself.
    project.config(f'[pipeline]\npython_path = ["lib"]\n\n[[stage]]\nname = "render"\nmodule = "{module}"\n')
    source = project.write("lib/" + module.replace(".", "/") + ".py", "def run(out):\n    pass\n")
    if "." in module:
        project.write("lib/" + module.split(".")[0] + "/__init__.py", "")
    result = project.cli("check")
    assert result.returncode == 2
    path = project.root / "stagewatch.toml"
    assert source.exists()
    assert result.stderr.splitlines() == [
        f'{path}: stage "render": "module": {module} is named like the standard library\'s {stdlib}:'
        f" the run would import Python's own {stdlib}; rename it"
    ]


def test_cli_check_accepts_a_project_package_named_like_no_standard_module(project: Project) -> None:
    project.config('[[stage]]\nname = "render"\nmodule = "pipeline.json"\n')
    project.write("pipeline/__init__.py", "")
    project.write("pipeline/json.py", "def run(out):\n    pass\n")
    result = project.cli("check")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", ["statistics", "os"])
def test_a_run_of_a_module_named_like_the_standard_library_is_refused_saying_why(
    project: Project, module: str
) -> None:
    project.config(f'[pipeline]\npython_path = ["lib"]\n\n[[stage]]\nname = "render"\nmodule = "{module}"\n')
    project.write(f"lib/{module}.py", "def run(out):\n    pass\n")
    why = (
        f"module {module} is named like the standard library's {module}:"
        f" the run would import Python's own {module}; rename it"
    )
    result = project.cli("build")
    assert result.returncode == 1
    events = [json.loads(line) for line in result.stdout.splitlines()]
    # Refused before it starts: neither the project's module nor Python's own ever runs.
    assert [e["error"] for e in events if e["event"] == "stage.failed"] == [why]
    assert f"    - {why}" in project.cli("explain", "render").stdout
    accept = project.cli("accept", "render")
    assert accept.returncode == 1
    assert accept.stderr == f"render: not accepted: {why}\n"


def test_cli_check_warns_of_an_input_that_is_not_a_regular_file(project: Project) -> None:
    project.config('[[stage]]\nname = "render"\ncommand = ["true"]\ninputs = ["in.fifo", "/dev/null"]\n')
    os.mkfifo(project.root / "in.fifo")
    result = project.cli("check")
    assert result.returncode == 0, result.stderr
    path = project.root / "stagewatch.toml"
    assert result.stderr.splitlines() == [
        f'warning: {path}: stage "render": input "in.fifo" is not a regular file (a FIFO):'
        " stagewatch never reads it, so the stage fails until it is one",
        f'warning: {path}: stage "render": input "/dev/null" is not a regular file (a character device):'
        " stagewatch never reads it, so the stage fails until it is one",
    ]
