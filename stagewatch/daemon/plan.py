"""A pipeline as the coordinator sees it: its stages' names, neighbours, ttls and busy rule."""

from __future__ import annotations

from stagewatch.daemon.events import Plan, StagePlan
from stagewatch.pipeline import Pipeline
from stagewatch.stage import OnBusy


def plan_for(pipeline: Pipeline, jobs: int) -> Plan:
    """The coordinator's view of a pipeline."""
    graph = pipeline.graph
    return Plan(
        tuple(
            StagePlan(
                name,
                graph.upstream[name],
                graph.downstream[name],
                pipeline.stage(name).ttl_s,
                pipeline.on_busy_for(pipeline.stage(name)) is OnBusy.RESTART,
            )
            for name in graph.order
        ),
        jobs,
    )
