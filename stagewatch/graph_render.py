"""The stage graph as `graph` prints it: text for people, dot for Graphviz, JSON for programs."""

from __future__ import annotations

import json

from stagewatch.graph import Graph


def graph_json(graph: Graph) -> list[str]:
    """The order, each stage's neighbours and every edge, as one indented JSON document."""
    data = {
        "order": list(graph.order),
        "stages": [
            {"name": n, "upstream": sorted(graph.upstream[n]), "downstream": sorted(graph.downstream[n])}
            for n in graph.order
        ],
        "edges": [
            {"from": e.upstream, "to": e.downstream, "via": e.via, "order_only": e.order_only}
            for e in graph.edges
        ],
    }
    return [json.dumps(data, indent=1)]


def graph_dot(graph: Graph) -> list[str]:
    """A Graphviz digraph, left to right; an `after` (order only) edge is dashed."""
    lines = ["digraph stagewatch {\n  rankdir=LR;"]
    lines.extend(f"  {json.dumps(name)};" for name in graph.order)
    for e in graph.edges:
        style = ", style=dashed" if e.order_only else ""
        ends = f"{json.dumps(e.upstream)} -> {json.dumps(e.downstream)}"
        lines.append(f"  {ends} [label={json.dumps(e.via)}{style}];")
    lines.append("}")
    return lines


def graph_text(graph: Graph) -> list[str]:
    """Each stage in order, under it what links it to each stage before it."""
    lines = []
    for name in graph.order:
        lines.append(name)
        for e in graph.edges:
            if e.downstream == name:
                lines.append(f"  <- {e.upstream}  ({'after' if e.order_only else _via(e.via)})")
    return lines


def _via(via: str) -> str:
    """'"x" -> "x"' says the same path twice: once is enough."""
    written, _, read = via.partition(" -> ")
    return written if written == read else via


def render_graph(graph: Graph, fmt: str) -> list[str]:
    """The lines `graph --format FMT` prints; anything but dot or json is text."""
    if fmt == "json":
        return graph_json(graph)
    if fmt == "dot":
        return graph_dot(graph)
    return graph_text(graph)
