"""The graph as `graph` prints it: what the CLI's own tests leave out (`after` edges, a read
that names another path than the write)."""

from __future__ import annotations

import json

from stagewatch.graph import Graph, build_graph
from stagewatch.graph_render import graph_dot, graph_json, graph_text, render_graph
from stagewatch.stage import Stage

ROOT = "/proj"


def graph() -> Graph:
    fetch = Stage("fetch", command=("fetch",), outputs=("data/",))
    render = Stage("render", command=("render",), inputs=("data/*.json",), after=("fetch",))
    publish = Stage("publish", command=("publish",), after=("render",))
    return build_graph([fetch, render, publish], ROOT)


def test_text_names_a_data_edge_by_its_paths_and_an_after_edge_as_after() -> None:
    edges = graph_text(graph())
    assert edges == [
        "fetch",
        "render",
        '  <- fetch  ("data/" -> "data/*.json")',
        "  <- fetch  (after)",
        "publish",
        "  <- render  (after)",
    ]


def test_dot_dashes_an_after_edge() -> None:
    lines = graph_dot(graph())
    assert lines[0] == "digraph stagewatch {\n  rankdir=LR;" and lines[-1] == "}"
    assert '  "render" -> "publish" [label="after", style=dashed];' in lines
    assert '  "fetch" -> "render" [label="\\"data/\\" -> \\"data/*.json\\""];' in lines


def test_json_says_each_edge_and_whether_it_only_orders() -> None:
    (text,) = graph_json(graph())
    data = json.loads(text)
    assert data["order"] == ["fetch", "render", "publish"]
    assert {"from": "render", "to": "publish", "via": "after", "order_only": True} in data["edges"]
    assert data["stages"][1] == {"name": "render", "upstream": ["fetch"], "downstream": ["publish"]}


def test_render_graph_picks_the_format() -> None:
    shown = graph()
    assert render_graph(shown, "text") == graph_text(shown)
    assert render_graph(shown, "dot") == graph_dot(shown)
    assert render_graph(shown, "json") == graph_json(shown)
