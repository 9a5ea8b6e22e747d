"""The stage graph: which output feeds which input, `after`, order, neighbours and cycles."""

from __future__ import annotations

import random

import pytest

from stagewatch.graph import CycleError, Edge, build_graph, find_cycle, output_feeds, stage_edges
from stagewatch.paths import IgnoreRules
from stagewatch.stage import Stage

ROOT = "/proj"


def stage(
    name: str,
    inputs: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
    after: tuple[str, ...] = (),
    sources: tuple[str, ...] = (),
) -> Stage:
    return Stage(name=name, command=("true",), inputs=inputs, outputs=outputs, after=after, sources=sources)


def pairs(stages: list[Stage], ignore: tuple[str, ...] = ()) -> set[tuple[str, str]]:
    return {(edge.upstream, edge.downstream) for edge in stage_edges(stages, ROOT, ignore)}


def feeds(output: str, read: str, ignore: tuple[str, ...] = ()) -> bool:
    """Whether a writer of `output` comes before a reader of `read`."""
    writer = stage("writer", outputs=(output,))
    reader = stage("reader", inputs=(read,))
    return ("writer", "reader") in pairs([writer, reader], ignore)


# --- data edges ---


def test_output_file_equal_to_input_file_makes_an_edge() -> None:
    assert feeds("_build/stats.json", "_build/stats.json")


def test_edge_says_which_output_feeds_which_input() -> None:
    writer = stage("writer", outputs=("_build/stats.json",))
    reader = stage("reader", inputs=("_build/stats.json",))
    assert stage_edges([writer, reader], ROOT) == [
        Edge("writer", "reader", '"_build/stats.json" -> "_build/stats.json"')
    ]


def test_unrelated_files_make_no_edge() -> None:
    assert not feeds("_build/stats.json", "data/repos.toml")


def test_output_file_inside_input_folder_makes_an_edge() -> None:
    assert feeds("_build/pages/index.html", "_build/pages/")


def test_output_file_inside_input_folder_written_without_slash_makes_an_edge() -> None:
    assert feeds("_build/pages/index.html", "_build/pages")


def test_output_file_beside_a_prefix_sharing_folder_makes_no_edge() -> None:
    assert not feeds("_build/pages2/index.html", "_build/pages/")


def test_output_file_matched_by_input_glob_makes_an_edge() -> None:
    assert feeds("_build/data/stats.json", "_build/**/*.json")


def test_output_file_not_matched_by_input_glob_makes_no_edge() -> None:
    assert not feeds("_build/data/stats.csv", "_build/**/*.json")


def test_ignored_output_file_matched_by_a_glob_makes_no_edge() -> None:
    assert not feeds("_build/notes.bak", "_build/*", ignore=("*.bak",))


def test_output_folder_containing_input_file_makes_an_edge() -> None:
    assert feeds("_build/data/", "_build/data/stats.json")


def test_output_folder_inside_input_folder_makes_an_edge() -> None:
    assert feeds("_build/pages/", "_build/")


def test_output_folder_containing_input_folder_makes_an_edge() -> None:
    assert feeds("_build/", "_build/pages/")


def test_output_folder_equal_to_input_folder_makes_an_edge() -> None:
    assert feeds("_build/pages/", "_build/pages/")


def test_output_folder_and_sibling_input_folder_make_no_edge() -> None:
    assert not feeds("_build/pages/", "_build/images/")


def test_output_folder_below_which_a_glob_can_match_makes_an_edge() -> None:
    assert feeds("_build/pages/", "_build/**/*.html")


def test_output_folder_above_a_glob_base_makes_an_edge() -> None:
    assert feeds("_build/", "_build/pages/*.html")


def test_output_folder_below_which_a_glob_cannot_match_makes_no_edge() -> None:
    assert not feeds("_build/pages/", "_build/*.css")


def test_ignored_output_folder_makes_no_glob_edge() -> None:
    assert not feeds("web/node_modules/", "web/**/*.js", ignore=("node_modules/",))


def test_output_folder_in_cache_dir_makes_no_glob_edge() -> None:
    assert not feeds("_build/.cache/scratch/", "_build/**")


def test_ignored_output_folder_still_feeds_an_exact_input_file_inside_it() -> None:
    assert feeds("node_modules/", "node_modules/.bin/tool", ignore=("node_modules/",))


def test_output_folder_named_like_a_glob_match_makes_no_edge() -> None:
    # Nothing below _build/data.json/ has the shape "_build/<name>.json".
    assert not feeds("_build/data.json/", "_build/*.json")


def test_output_feeding_sources_makes_an_edge() -> None:
    writer = stage("writer", outputs=("templates/generated.html",))
    reader = stage("reader", sources=("templates/**",))
    assert ("writer", "reader") in pairs([writer, reader])


def test_output_feeding_own_input_makes_a_self_loop_edge() -> None:
    loop = stage("loop", inputs=("_build/a.json",), outputs=("_build/a.json",))
    assert pairs([loop]) == {("loop", "loop")}


# --- after ---


def test_after_makes_an_order_only_edge() -> None:
    fetch = stage("fetch")
    render = stage("render", after=("fetch",))
    assert stage_edges([fetch, render], ROOT) == [Edge("fetch", "render", "after", order_only=True)]


def test_data_edges_are_not_order_only() -> None:
    writer = stage("writer", outputs=("a.json",))
    reader = stage("reader", inputs=("a.json",))
    assert [edge.order_only for edge in stage_edges([writer, reader], ROOT)] == [False]


def test_after_orders_the_stage_after_the_named_one() -> None:
    render = stage("render", after=("fetch",))
    fetch = stage("fetch")
    assert build_graph([render, fetch], ROOT).order == ("fetch", "render")


# --- order and neighbours ---


def test_independent_stages_keep_file_order() -> None:
    stages = [stage("c"), stage("a"), stage("b")]
    assert build_graph(stages, ROOT).order == ("c", "a", "b")


def test_reader_declared_first_runs_after_its_writer() -> None:
    reader = stage("reader", inputs=("_build/a.json",))
    writer = stage("writer", outputs=("_build/a.json",))
    assert build_graph([reader, writer], ROOT).order == ("writer", "reader")


def test_order_takes_the_earliest_ready_stage_in_file_order() -> None:
    stages = [
        stage("first"),
        stage("reader", inputs=("_build/a.json",)),
        stage("writer", outputs=("_build/a.json",)),
        stage("last"),
    ]
    assert build_graph(stages, ROOT).order == ("first", "writer", "reader", "last")


def chain_graph_stages() -> list[Stage]:
    """fetch -> stats -> render, and an unrelated css."""
    return [
        stage("fetch", outputs=("data/repos.json",)),
        stage("stats", inputs=("data/repos.json",), outputs=("_build/stats.json",)),
        stage("render", inputs=("_build/stats.json",), outputs=("_build/index.html",)),
        stage("css", inputs=("styles/**/*.scss",), outputs=("_build/main.css",)),
    ]


def test_ancestors_are_every_stage_upstream() -> None:
    assert build_graph(chain_graph_stages(), ROOT).ancestors(["render"]) == {"fetch", "stats"}


def test_descendants_are_every_stage_downstream() -> None:
    assert build_graph(chain_graph_stages(), ROOT).descendants(["fetch"]) == {"stats", "render"}


def test_unrelated_stage_has_no_neighbours() -> None:
    graph = build_graph(chain_graph_stages(), ROOT)
    assert graph.ancestors(["css"]) == set()
    assert graph.descendants(["css"]) == set()


def test_ancestors_follow_after_edges() -> None:
    stages = [stage("fetch"), stage("render", after=("fetch",))]
    assert build_graph(stages, ROOT).ancestors(["render"]) == {"fetch"}


# --- cycles ---


def test_find_cycle_returns_the_cycle_closed_on_its_start() -> None:
    edges = [Edge("a", "b", "x"), Edge("b", "a", "y")]
    assert find_cycle(["a", "b"], edges) == ["a", "b", "a"]


def test_find_cycle_returns_none_without_a_cycle() -> None:
    edges = [Edge("a", "b", "x"), Edge("b", "c", "y"), Edge("a", "c", "z")]
    assert find_cycle(["a", "b", "c"], edges) is None


def test_find_cycle_finds_a_self_loop() -> None:
    assert find_cycle(["a"], [Edge("a", "a", "x")]) == ["a", "a"]


def test_build_graph_raises_cycle_error_with_the_edges_on_the_cycle() -> None:
    a = stage("a", inputs=("b.json",), outputs=("a.json",))
    b = stage("b", inputs=("a.json",), outputs=("b.json",))
    with pytest.raises(CycleError) as caught:
        build_graph([a, b], ROOT)
    assert caught.value.cycle == ["a", "b", "a"]
    assert caught.value.edges == [
        Edge("a", "b", '"a.json" -> "a.json"'),
        Edge("b", "a", '"b.json" -> "b.json"'),
    ]


def test_cycle_through_after_is_a_cycle() -> None:
    a = stage("a", outputs=("a.json",), after=("b",))
    b = stage("b", inputs=("a.json",))
    with pytest.raises(CycleError) as caught:
        build_graph([a, b], ROOT)
    assert caught.value.cycle == ["a", "b", "a"]


def test_stage_reading_its_own_output_is_a_cycle() -> None:
    loop = stage("loop", inputs=("_build/",), outputs=("_build/a.json",))
    with pytest.raises(CycleError) as caught:
        build_graph([loop], ROOT)
    assert caught.value.cycle == ["loop", "loop"]
    assert caught.value.edges == [Edge("loop", "loop", '"_build/a.json" -> "_build/"')]


def test_cycle_error_message_prints_the_cycle() -> None:
    a = stage("a", inputs=("b.json",), outputs=("a.json",))
    b = stage("b", inputs=("a.json",), outputs=("b.json",))
    with pytest.raises(CycleError) as caught:
        build_graph([a, b], ROOT)
    assert str(caught.value) == "a -> b -> a"


def _brute_force_edges(stages: list[Stage], root: str, ignore: tuple[str, ...]) -> set[tuple[str, str]]:
    rules = IgnoreRules(root, ignore)
    return {
        (writer.name, reader.name)
        for writer in stages
        for reader in stages
        if any(
            output_feeds(o, r, root, rules) for o in writer.outputs for r in reader.inputs + reader.sources
        )
    }


def test_indexed_edges_agree_with_the_plain_rule_on_generated_pipelines() -> None:
    rng = random.Random(20261124)
    parts = ["a", "b", "a/b", "a/b/c", "_build", "_build/x", "node_modules", "a-b", "a.b"]
    names = ["f.md", "g.html", "x.json", "c"]
    globs = ["**/*.md", "a/*", "a/**", "_build/*.html", "*/b/*", "a/b/*.md", "**/c"]

    def some_path(folder: bool) -> str:
        path = rng.choice(parts) + ("/" if folder else "/" + rng.choice(names))
        return path

    for _ in range(300):
        stages = []
        for number in range(rng.randint(2, 6)):
            reads = [
                rng.choice(globs) if rng.random() < 0.3 else some_path(rng.random() < 0.3) for _ in range(3)
            ]
            outputs = [some_path(rng.random() < 0.4) for _ in range(2)]
            stages.append(
                Stage(name=f"s{number}", command=("true",), inputs=tuple(reads), outputs=tuple(outputs))
            )
        ignore = rng.choice([(), ("node_modules/",), ("_build/**",), ("a/b/",)])
        indexed = {(e.upstream, e.downstream) for e in stage_edges(stages, ROOT, ignore) if not e.order_only}
        assert indexed == _brute_force_edges(stages, ROOT, ignore), (stages, ignore)


def test_the_read_index_answers_as_output_feeds_does_for_any_path() -> None:
    """Globs found by their literal base folder: the same readers as testing every glob."""
    import random

    from stagewatch.graph import ReadIndex
    from stagewatch.paths import IgnoreRules

    rng = random.Random(5)
    root = "/r"
    names = ["a", "b", "c", "x.md", "y.txt"]
    reads_pool = [
        "a/*.md", "a/**/*.md", "**/*.txt", "a/b/*", "*.md", "a/b/**", "c/**/x.md", "a/[xy].md", "**",
        "a/*/c/*", "a/", "a/b/", "c/x.md", "a", "b/y.txt",
    ]  # fmt: skip
    rules = IgnoreRules(root)
    for _ in range(200):
        reads = rng.sample(reads_pool, 4)
        stages = [Stage(name=f"s{i}", command=("true",), inputs=(read,)) for i, read in enumerate(reads)]
        index = ReadIndex(stages, root)
        for _ in range(20):
            rel = "/".join(rng.choice(names) for _ in range(rng.randint(1, 4)))
            is_dir = rng.random() < 0.4
            found = {read.stage for read in index.readers_of(f"{root}/{rel}", is_dir, rules)}
            output = rel + ("/" if is_dir else "")
            expected = {i for i, read in enumerate(reads) if output_feeds(output, read, root, rules)}
            assert found == expected, (reads, output)
