"""The stage graph as `graph` prints it: text for people, dot for Graphviz, JSON for programs;
a pattern stage as one node that counts its instances."""

from __future__ import annotations

import json
from collections.abc import Mapping

from stagewatch.graph import Edge, Graph
from stagewatch.pipeline import Pipeline

Instances = Mapping[str, int]
"""A pattern stage's node -> how many instances it stands for."""


def fold_patterns(graph: Graph, pipeline: Pipeline) -> tuple[Graph, dict[str, int]]:
    """The graph with each pattern stage's instances drawn as one node (where its first
    instance stands; one with no instance at the end), their edges folded into the node's,
    each once, and said in the declaration's words ("_build/site/{page}.html"); and the
    instances each pattern node stands for. A pipeline without patterns is returned as it is."""
    if not pipeline.patterns:
        return graph, {}
    node_of = {stage.name: stage.pattern for stage in pipeline.stages if stage.pattern is not None}
    order = list(dict.fromkeys(node_of.get(name, name) for name in graph.order))
    drawn = set(order)
    order += [pattern for pattern in pipeline.patterns if pattern not in drawn]
    declared = _DeclaredWords(pipeline)
    edges = list(
        dict.fromkeys(
            Edge(
                node_of.get(edge.upstream, edge.upstream),
                node_of.get(edge.downstream, edge.downstream),
                edge.via if edge.order_only else declared.via(edge),
                edge.order_only,
            )
            for edge in graph.edges
        )
    )
    upstream: dict[str, set[str]] = {name: set() for name in order}
    downstream: dict[str, set[str]] = {name: set() for name in order}
    for edge in edges:
        upstream[edge.downstream].add(edge.upstream)
        downstream[edge.upstream].add(edge.downstream)
    folded = Graph(
        order=tuple(order),
        edges=tuple(edges),
        upstream={name: frozenset(found) for name, found in upstream.items()},
        downstream={name: frozenset(found) for name, found in downstream.items()},
    )
    return folded, {pattern: len(pipeline.instances_of(pattern)) for pattern in pipeline.patterns}


class _DeclaredWords:
    """An instance's paths as its pattern stage declares them, by their place in the stage."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.templates = {pattern: pipeline.template(pattern) for pattern in pipeline.patterns}

    def via(self, edge: Edge) -> str:
        """'"<output>" -> "<read>"' (stage_edges' words) with each end's declared text."""
        written, separator, read = edge.via[1:-1].partition('" -> "')
        if not separator:
            return edge.via
        writer, reader = self.pipeline.stage(edge.upstream), self.pipeline.stage(edge.downstream)
        if writer.pattern is not None and written in writer.outputs:
            written = self.templates[writer.pattern].outputs[writer.outputs.index(written)]
        reads = reader.inputs + reader.sources
        if reader.pattern is not None and read in reads:
            template = self.templates[reader.pattern]
            read = (template.inputs + template.sources)[reads.index(read)]
        return f'"{written}" -> "{read}"'


def node_label(name: str, instances: Instances) -> str:
    """A stage's name; a pattern stage's with the count of its instances."""
    if name not in instances:
        return name
    count = instances[name]
    return f"{name} [{count} instance{'' if count == 1 else 's'}]"


def graph_json(graph: Graph, instances: Instances | None = None) -> list[str]:
    """The order, each stage's neighbours (a pattern's with its count of instances) and every
    edge, as one indented JSON document."""
    counts = instances or {}
    data = {
        "order": list(graph.order),
        "stages": [
            {
                "name": n,
                **({"instances": counts[n]} if n in counts else {}),
                "upstream": sorted(graph.upstream[n]),
                "downstream": sorted(graph.downstream[n]),
            }
            for n in graph.order
        ],
        "edges": [
            {"from": e.upstream, "to": e.downstream, "via": e.via, "order_only": e.order_only}
            for e in graph.edges
        ],
    }
    return [json.dumps(data, indent=1)]


def graph_dot(graph: Graph, instances: Instances | None = None) -> list[str]:
    """A Graphviz digraph, left to right; an `after` (order only) edge is dashed, a pattern
    stage's node labelled with its count of instances."""
    counts = instances or {}
    lines = ["digraph stagewatch {\n  rankdir=LR;"]
    for name in graph.order:
        label = f" [label={json.dumps(node_label(name, counts))}]" if name in counts else ""
        lines.append(f"  {json.dumps(name)}{label};")
    for e in graph.edges:
        style = ", style=dashed" if e.order_only else ""
        ends = f"{json.dumps(e.upstream)} -> {json.dumps(e.downstream)}"
        lines.append(f"  {ends} [label={json.dumps(e.via)}{style}];")
    lines.append("}")
    return lines


def graph_text(graph: Graph, instances: Instances | None = None) -> list[str]:
    """Each stage in order, under it what links it to each stage before it."""
    counts = instances or {}
    into: dict[str, list[Edge]] = {name: [] for name in graph.order}
    for e in graph.edges:
        into[e.downstream].append(e)
    lines = []
    for name in graph.order:
        lines.append(node_label(name, counts))
        for e in into[name]:
            lines.append(f"  <- {e.upstream}  ({'after' if e.order_only else _via(e.via)})")
    return lines


def _via(via: str) -> str:
    """'"x" -> "x"' says the same path twice: once is enough."""
    written, _, read = via.partition(" -> ")
    return written if written == read else via


def render_graph(graph: Graph, fmt: str, instances: Instances | None = None) -> list[str]:
    """The lines `graph --format FMT` prints; anything but dot or json is text."""
    if fmt == "json":
        return graph_json(graph, instances)
    if fmt == "dot":
        return graph_dot(graph, instances)
    return graph_text(graph, instances)
