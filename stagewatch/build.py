"""The one-shot round: check every stage in graph order, run what is stale, block what a failure feeds."""

from __future__ import annotations

import difflib
import enum
import heapq
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

import structlog

from stagewatch.cache import Workspace
from stagewatch.errors import UsageError
from stagewatch.freshness import Decision, Fingerprint, UpstreamRuns
from stagewatch.graph import Graph
from stagewatch.pipeline import Pipeline
from stagewatch.runner import StageRunner
from stagewatch.stage import RunResult, Stage
from stagewatch.state import StateRecorder

log = structlog.get_logger(__name__)


class Outcome(enum.Enum):
    FRESH = "fresh"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class StageReport:
    name: str
    outcome: Outcome
    decision: Decision | None = None
    result: RunResult | None = None
    blocked_by: str | None = None


@dataclass(frozen=True, slots=True)
class BuildReport:
    stages: tuple[StageReport, ...]
    duration_s: float

    def count(self, outcome: Outcome) -> int:
        return sum(1 for report in self.stages if report.outcome is outcome)

    @property
    def ok(self) -> bool:
        return self.count(Outcome.FAILED) == 0 and self.count(Outcome.BLOCKED) == 0


def data_upstream(graph: Graph, name: str) -> set[str]:
    """Stages whose outputs the stage reads (not those it only runs `after`)."""
    return {edge.upstream for edge in graph.edges if edge.downstream == name and not edge.order_only}


def require_stages(pipeline: Pipeline, names: Iterable[str]) -> None:
    """UsageError naming each unknown stage, with the closest known name."""
    problems = []
    for name in names:
        if not pipeline.has_stage(name):
            close = difflib.get_close_matches(name, pipeline.names, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            problems.append(f'no stage named "{name}"{hint}')
    if problems:
        raise UsageError("; ".join(problems) + f"; stages: {', '.join(pipeline.names)}")


def select_stages(pipeline: Pipeline, graph: Graph, names: Iterable[str]) -> list[str]:
    """The named stages and everything upstream of them, in graph order; all when none are named."""
    wanted = list(names)
    require_stages(pipeline, wanted)
    if not wanted:
        return list(graph.order)
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
        self.workspace = workspace
        self.runner = runner
        self.state = state

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
        running: dict[Future[RunResult], tuple[Stage, Fingerprint, Decision]] = {}
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
                        started_run = self._start(name, chosen, reports, name in forced, pool)
                        if isinstance(started_run, StageReport):
                            finish(started_run)
                        else:
                            running[started_run[0]] = started_run[1]
                    if not running:
                        continue
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        stage, fingerprint, decision = running.pop(future)
                        finish(self._finished(stage, fingerprint, decision, future.result()))
            except BaseException:
                # Ctrl-C or SIGTERM: stop the stages' process groups; no entry is written for them.
                self.runner.cancel_all()
                raise
        report = BuildReport(
            tuple(reports[name] for name in selected if name in reports), time.monotonic() - started
        )
        log.info(
            "build.finished",
            ran=report.count(Outcome.SUCCEEDED) + report.count(Outcome.FAILED),
            fresh=report.count(Outcome.FRESH),
            failed=report.count(Outcome.FAILED),
            blocked=report.count(Outcome.BLOCKED),
            duration_s=round(report.duration_s, 3),
        )
        return report

    def _start(
        self,
        name: str,
        chosen: set[str],
        reports: dict[str, StageReport],
        force: bool,
        pool: ThreadPoolExecutor,
    ) -> StageReport | tuple[Future[RunResult], tuple[Stage, Fingerprint, Decision]]:
        for upstream in sorted(self.graph.upstream[name] & chosen):
            if reports[upstream].outcome in (Outcome.FAILED, Outcome.BLOCKED):
                log.warning("stage.blocked", stage=name, by=reports[upstream].blocked_by or upstream)
                return StageReport(name, Outcome.BLOCKED, blocked_by=reports[upstream].blocked_by or upstream)
        stage = self.pipeline.stage(name)
        # The key is taken before the run starts: it is what the run reads (DESIGN §1).
        fingerprint = self.workspace.fingerprint(stage)
        decision = self.workspace.decide_with(stage, fingerprint, force=force)
        if not decision.run:
            log.debug("stage.skipped", stage=name)
            return StageReport(name, Outcome.FRESH, decision)
        log.info("stage.started", stage=name, reasons=[str(reason) for reason in decision.reasons])
        if self.state is not None:
            self.state.started(name)
        refused = self.workspace.begin_run(stage)
        if refused is not None:
            return self._finished(stage, fingerprint, decision, refused)
        return pool.submit(self.runner.run, stage), (stage, fingerprint, decision)

    def _finished(
        self, stage: Stage, fingerprint: Fingerprint, decision: Decision, result: RunResult
    ) -> StageReport:
        result = self.workspace.record_run(stage, fingerprint, result)
        if self.state is not None:
            self.state.finished(stage.name, result)
        if result.ok:
            log.info("stage.succeeded", stage=stage.name, duration_s=round(result.duration_s, 3))
            return StageReport(stage.name, Outcome.SUCCEEDED, decision, result)
        log_failure(stage.name, result)
        return StageReport(stage.name, Outcome.FAILED, decision, result)


def log_failure(name: str, result: RunResult) -> None:
    log.error(
        "stage.failed",
        stage=name,
        error=result.error,
        exit_code=result.exit_code,
        duration_s=round(result.duration_s, 3),
        tail=list(result.output_tail),
    )
