"""Stages -> ordered graph: which stage feeds which, cycles, topological order, up/downstream."""

from __future__ import annotations

import bisect
import heapq
import itertools
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from stagewatch.paths import (
    IgnoreRules,
    PathKind,
    absolute,
    classify,
    glob_base,
    glob_matches,
    glob_may_match_below,
)
from stagewatch.paths import is_within as within
from stagewatch.stage import Stage


@dataclass(frozen=True, slots=True)
class Edge:
    """upstream comes before downstream; `via` says why, for people."""

    upstream: str
    downstream: str
    via: str
    order_only: bool = False


def output_feeds(output: str, read: str, root: str, rules: IgnoreRules) -> bool:
    """Whether something written as `output` can be read through the input pattern `read`
    (docs/design.md#the-graph)."""
    out = absolute(output, root)
    target = absolute(read, root)
    kind = classify(read)
    if not output.endswith("/"):
        if out == target and kind is not PathKind.GLOB:
            return True  # named exactly: never left out
        if rules.ignores(out):
            return False
        if kind is PathKind.GLOB:
            return glob_matches(target, out)
        # A file input may be a folder written without its "/": reading below it counts.
        return within(out, target)
    if kind is PathKind.FILE and within(target, out):
        return True  # a file named exactly is read even inside an ignored folder
    if rules.ignores(out, is_dir=True):
        return False
    if kind is PathKind.GLOB:
        return glob_may_match_below(target, out)
    return within(target, out) or within(out, target)


def _reads(stage: Stage) -> tuple[str, ...]:
    return stage.inputs + stage.sources


@dataclass(frozen=True, slots=True)
class Read:
    """One input or source pattern of one stage (by index), resolved once."""

    stage: int
    order: int
    kind: PathKind
    path: str
    text: str


def _keys_at_or_below(keys: list[str], folder: str) -> list[str]:
    """The sorted keys that are `folder` or lie below it."""
    # Paths below `folder` sort between folder + "/" and folder + "0" ("0" follows "/").
    start, end = bisect.bisect_left(keys, folder), bisect.bisect_left(keys, folder + "0")
    return [key for key in keys[start:end] if within(key, folder)]


def _ancestors(path: str) -> list[str]:
    found = []
    while path != "/":
        path = posixpath.dirname(path)
        found.append(path)
    return found


class ReadIndex:
    """Every stage's reads, indexed so that a path finds its readers without a scan of them all.

    The graph asks it which stages read an output; the daemon, which stages read a changed
    path. It gives the same answers as output_feeds, pattern by pattern.
    """

    def __init__(self, stages: Sequence[Stage], root: str) -> None:
        self.plain: dict[str, list[Read]] = {}
        # A glob can only match below its literal base folder: globs are found by their base.
        self.globs: dict[str, list[Read]] = {}
        for index, stage in enumerate(stages):
            for order, text in enumerate(_reads(stage)):
                read = Read(index, order, classify(text), absolute(text, root), text)
                if read.kind is PathKind.GLOB:
                    self.globs.setdefault(glob_base(read.path), []).append(read)
                else:
                    self.plain.setdefault(read.path, []).append(read)
        self.keys = sorted(self.plain)
        self.glob_bases = sorted(self.globs)

    def _at_or_below(self, folder: str) -> list[Read]:
        return [r for key in _keys_at_or_below(self.keys, folder) for r in self.plain[key]]

    def _above(self, path: str) -> list[Read]:
        return [r for folder in _ancestors(path) for r in self.plain.get(folder, ())]

    def _globs_from(self, path: str, below: bool) -> list[Read]:
        """Globs based at `path` or above it, and with `below`, those based inside it."""
        bases = [path, *_ancestors(path)]
        if below:
            bases += [base for base in _keys_at_or_below(self.glob_bases, path) if base != path]
        return [g for base in bases for g in self.globs.get(base, ())]

    def readers_of(self, out: str, is_dir: bool, rules: IgnoreRules) -> list[Read]:
        """The reads that can see the file `out` (absolute), or something in the folder `out`."""
        if not is_dir:
            hits = list(self.plain.get(out, ()))  # named exactly: never left out
            if rules.ignores(out):
                return hits
            return (
                hits
                + self._above(out)
                + [g for g in self._globs_from(out, False) if glob_matches(g.path, out)]
            )
        below = self._at_or_below(out)
        hits = [r for r in below if r.kind is PathKind.FILE]  # read even inside an ignored folder
        if rules.ignores(out, is_dir=True):
            return hits
        hits += [r for r in below if r.kind is not PathKind.FILE]
        globs = [g for g in self._globs_from(out, True) if glob_may_match_below(g.path, out)]
        return hits + self._above(out) + globs


def stage_edges(stages: Sequence[Stage], root: str, ignore: tuple[str, ...] = ()) -> list[Edge]:
    """Every data edge (an output that an input can read) and every `after` edge, self-loops included."""
    rules = IgnoreRules(root, ignore)
    index = ReadIndex(stages, root)
    edges: list[Edge] = []
    for writer in stages:
        first: dict[int, tuple[str, Read]] = {}  # reader -> (output, read), first output wins
        for output in writer.outputs:
            for read in index.readers_of(absolute(output, root), output.endswith("/"), rules):
                known = first.get(read.stage)
                if known is None or (known[0] == output and read.order < known[1].order):
                    first[read.stage] = (output, read)
        for reader in sorted(first):
            output, read = first[reader]
            edges.append(Edge(writer.name, stages[reader].name, f'"{output}" -> "{read.text}"'))
    names = {stage.name for stage in stages}
    edges += [
        Edge(before, stage.name, "after", order_only=True)
        for stage in stages
        for before in stage.after
        if before in names
    ]
    return edges


def find_cycle(names: Sequence[str], edges: Iterable[Edge]) -> list[str] | None:
    """A cycle as [a, b, ..., a], or None; self-loops are cycles of one. Iterative: any depth."""
    successors: dict[str, list[str]] = {name: [] for name in names}
    for edge in edges:
        successors[edge.upstream].append(edge.downstream)
    done: set[str] = set()
    for start in names:
        if start in done:
            continue
        path = [start]
        on_path = {start}
        pending = [iter(successors[start])]
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                pending.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                pending.append(iter(successors[nxt]))
    return None


@dataclass(frozen=True)
class Graph:
    """An acyclic stage graph: topological order (file order among equals) and neighbours."""

    order: tuple[str, ...]
    edges: tuple[Edge, ...]
    upstream: dict[str, frozenset[str]] = field(repr=False)
    downstream: dict[str, frozenset[str]] = field(repr=False)

    def ancestors(self, names: Iterable[str]) -> set[str]:
        return _closure(names, self.upstream)

    def descendants(self, names: Iterable[str]) -> set[str]:
        return _closure(names, self.downstream)


def _closure(start: Iterable[str], neighbours: dict[str, frozenset[str]]) -> set[str]:
    seen: set[str] = set()
    pending = list(start)
    while pending:
        for nxt in neighbours[pending.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                pending.append(nxt)
    return seen


class CycleError(ValueError):
    def __init__(self, cycle: list[str], edges: list[Edge]) -> None:
        self.cycle = cycle
        self.edges = edges
        super().__init__(" -> ".join(cycle))


def build_graph(stages: Sequence[Stage], root: str, ignore: tuple[str, ...] = ()) -> Graph:
    """The ordered graph; CycleError (with the edges on the cycle) when there is none."""
    names = [stage.name for stage in stages]
    edges = stage_edges(stages, root, ignore)
    cycle = find_cycle(names, edges)
    if cycle is not None:
        on_cycle = [
            next(e for e in edges if e.upstream == a and e.downstream == b)
            for a, b in itertools.pairwise(cycle)
        ]
        raise CycleError(cycle, on_cycle)
    upstream: dict[str, set[str]] = {name: set() for name in names}
    downstream: dict[str, set[str]] = {name: set() for name in names}
    for edge in edges:
        upstream[edge.downstream].add(edge.upstream)
        downstream[edge.upstream].add(edge.downstream)
    position = {name: index for index, name in enumerate(names)}
    waiting = {name: len(upstream[name]) for name in names}
    ready = [(position[name], name) for name in names if waiting[name] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for nxt in downstream[name]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(ready, (position[nxt], nxt))
    return Graph(
        order=tuple(order),
        edges=tuple(edges),
        upstream={k: frozenset(v) for k, v in upstream.items()},
        downstream={k: frozenset(v) for k, v in downstream.items()},
    )
