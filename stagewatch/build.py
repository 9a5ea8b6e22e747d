"""The one-shot round: check every stage in graph order, run what is stale, block what a failure feeds."""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

import structlog

from stagewatch.attempt import Attempts, Prepared
from stagewatch.cache import Workspace
from stagewatch.errors import UsageError
from stagewatch.freshness import Decision, UpstreamRuns
from stagewatch.graph import Graph
from stagewatch.pipeline import Pipeline
from stagewatch.runner import StageRunner
from stagewatch.stage import RunResult, StageState
from stagewatch.state import StateRecorder
from stagewatch.suggest import did_you_mean

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class StageReport:
    name: str
    outcome: StageState
    decision: Decision | None = None
    result: RunResult | None = None
    blocked_by: str | None = None


@dataclass(frozen=True, slots=True)
class BuildReport:
    stages: tuple[StageReport, ...]
    duration_s: float

    def count(self, outcome: StageState) -> int:
        return sum(1 for report in self.stages if report.outcome is outcome)

    @property
    def ok(self) -> bool:
        return self.count(StageState.FAILED) == 0 and self.count(StageState.BLOCKED) == 0


def data_upstream(graph: Graph, name: str) -> set[str]:
    """Stages whose outputs the stage reads (not those it only runs `after`)."""
    return {edge.upstream for edge in graph.edges if edge.downstream == name and not edge.order_only}


def require_stages(pipeline: Pipeline, names: Iterable[str]) -> None:
    """UsageError naming each unknown stage, with the closest known name (an instance's
    fellows when the pattern stage is right)."""
    problems = []
    for name in names:
        if pipeline.knows(name):
            continue
        pattern, separator, _ = name.partition(":")
        if separator and pipeline.is_pattern(pattern):
            hint = did_you_mean(name, pipeline.instances_of(pattern))
            problems.append(f'no instance named "{name}" of pattern stage "{pattern}"{hint}')
        else:
            problems.append(f'no stage named "{name}"{did_you_mean(name, pipeline.declared_names)}')
    if problems:
        raise UsageError("; ".join(problems) + f"; stages: {', '.join(pipeline.declared_names)}")


def resolve_stages(pipeline: Pipeline, names: Iterable[str]) -> list[str]:
    """The stages the names given to a command mean, each once: a pattern stage's name is all
    of its instances (docs/design.md#pattern-stages)."""
    wanted = list(names)
    require_stages(pipeline, wanted)
    return list(dict.fromkeys(stage for name in wanted for stage in pipeline.resolve(name)))


def select_stages(pipeline: Pipeline, graph: Graph, names: Iterable[str]) -> list[str]:
    """The named stages and everything upstream of them, in graph order; all when none are named."""
    given = list(names)
    if not given:
        return list(graph.order)
    wanted = resolve_stages(pipeline, given)
    keep = set(wanted) | graph.ancestors(wanted)
    return [name for name in graph.order if name in keep]


def plan(
    pipeline: Pipeline, graph: Graph, workspace: Workspace, selected: list[str], forced: frozenset[str]
) -> list[tuple[str, Decision]]:
    """What a round would do, without running anything (for --dry-run): every stage's decision,
    with stages downstream of a run marked as such."""
    decisions: list[tuple[str, Decision]] = []
    would_run: set[str] = set()
    for name in selected:
        decision = workspace.decide(pipeline.stage(name), force=name in forced)
        if not decision.run:
            upstream = sorted(data_upstream(graph, name) & would_run)
            if upstream:
                decision = replace(decision, run=True, reasons=tuple(UpstreamRuns(u) for u in upstream))
        if decision.run:
            would_run.add(name)
        decisions.append((name, decision))
    return decisions


class BuildRound:
    """Runs selected stages in graph order, up to `jobs` at once; a stage is checked only when
    everything upstream of it has finished, so an upstream whose outputs come out identical
    lets it be skipped (early cutoff)."""

    def __init__(
        self,
        pipeline: Pipeline,
        graph: Graph,
        workspace: Workspace,
        runner: StageRunner,
        state: StateRecorder | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.graph = graph
        self.runner = runner
        self.attempts = Attempts(workspace, runner, state)

    def run(
        self, selected: list[str], forced: frozenset[str] = frozenset(), jobs: int | None = None
    ) -> BuildReport:
        started = time.monotonic()
        jobs = jobs or self.pipeline.jobs
        chosen = set(selected)
        position = {name: index for index, name in enumerate(self.graph.order)}
        waiting = {name: len(self.graph.upstream[name] & chosen) for name in selected}
        ready = [(position[name], name) for name in selected if waiting[name] == 0]
        heapq.heapify(ready)
        reports: dict[str, StageReport] = {}
        running: dict[Future[RunResult], Prepared] = {}
        log.info("build.started", stages=len(selected), jobs=jobs)

        def finish(report: StageReport) -> None:
            reports[report.name] = report
            for nxt in self.graph.downstream[report.name] & chosen:
                waiting[nxt] -= 1
                if waiting[nxt] == 0:
                    heapq.heappush(ready, (position[nxt], nxt))

        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="stage") as pool:
            try:
                while ready or running:
                    while ready and len(running) < jobs:
                        _, name = heapq.heappop(ready)
                        outcome = self._check(name, chosen, reports, name in forced)
                        if isinstance(outcome, StageReport):
                            finish(outcome)
                        else:
                            running[pool.submit(self.attempts.run, outcome)] = outcome
                    if not running:
                        continue
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        prepared = running.pop(future)
                        result = future.result()
                        verdict = StageState.SUCCEEDED if result.ok else StageState.FAILED
                        finish(StageReport(prepared.stage.name, verdict, prepared.decision, result))
            except BaseException:
                # Ctrl-C or SIGTERM: stop the stages' process groups; no entry is written for them.
                self.runner.cancel_all()
                raise
        report = BuildReport(
            tuple(reports[name] for name in selected if name in reports), time.monotonic() - started
        )
        log.info(
            "build.finished",
            ran=report.count(StageState.SUCCEEDED) + report.count(StageState.FAILED),
            fresh=report.count(StageState.FRESH),
            failed=report.count(StageState.FAILED),
            blocked=report.count(StageState.BLOCKED),
            duration_s=round(report.duration_s, 3),
        )
        return report

    def _check(
        self, name: str, chosen: set[str], reports: dict[str, StageReport], force: bool
    ) -> StageReport | Prepared:
        """A report for a stage that is blocked or fresh; what to run for one that is stale."""
        for upstream in sorted(self.graph.upstream[name] & chosen):
            if reports[upstream].outcome in (StageState.FAILED, StageState.BLOCKED):
                blocker = reports[upstream].blocked_by or upstream
                log.warning("stage.blocked", stage=name, by=blocker)
                return StageReport(name, StageState.BLOCKED, blocked_by=blocker)
        prepared = self.attempts.prepare(self.pipeline.stage(name), force=force)
        if not prepared.decision.run:
            log.debug("stage.skipped", stage=name)
            return StageReport(name, StageState.FRESH, prepared.decision)
        return prepared
