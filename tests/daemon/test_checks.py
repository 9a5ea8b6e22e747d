"""Checks on the daemon's I/O thread: in batches, reported back as they go, digests saved on the way."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from stagewatch.attempt import Attempts
from stagewatch.cache import Workspace
from stagewatch.config import load_pipeline
from stagewatch.daemon import runs
from stagewatch.daemon.events import Check
from stagewatch.daemon.runs import CheckResult, StageWork
from stagewatch.daemon.workers import Workers
from stagewatch.runner import StageRunner
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(60)


def pipeline_of(project: Project, stages: int, files: int) -> Path:
    text = ""
    for n in range(stages):
        for f in range(files):
            project.write(f"d/s{n}/f{f}.txt", f"{n} {f}")
        text += (
            f'[[stage]]\nname = "s{n}"\ncommand = ["true"]\n'
            f'inputs = ["d/s{n}/*.txt"]\noutputs = ["out/s{n}.txt"]\n'
        )
    return project.config(text)


def check_all(config: Path) -> tuple[list[list[CheckResult]], int]:
    """Check every stage as one batch on a real loop and I/O thread; the batches reported,
    and the digests found saved in digests.sqlite before anything closed the cache."""
    pipeline = load_pipeline(config)
    workspace = Workspace(pipeline.output_dir, persistent_digests=True)

    async def main() -> tuple[list[list[CheckResult]], int]:
        workers = Workers(asyncio.get_running_loop(), on_error=lambda: None)
        runner = StageRunner(pipeline.output_dir)
        work = StageWork(Attempts(workspace, runner, None), runner, workers)
        batches: list[list[CheckResult]] = []
        done = asyncio.Event()

        def checked(results: list[CheckResult]) -> None:
            batches.append(results)
            if sum(len(batch) for batch in batches) == len(pipeline.stages):
                done.set()

        actions = [Check(stage.name, job, False, True) for job, stage in enumerate(pipeline.stages)]
        work.check(pipeline, actions, checked)
        await asyncio.wait_for(done.wait(), 30)
        saved = 0
        if workspace.layout.digests.exists():
            with sqlite3.connect(workspace.layout.digests) as conn:
                saved = conn.execute("SELECT count(*) FROM digests").fetchone()[0]
            conn.close()
        workers.shutdown()
        return batches, saved

    try:
        return asyncio.run(main())
    finally:
        workspace.close()


def test_a_long_catch_up_saves_its_digests_as_it_goes(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every few seconds in earnest; here after every stage, so that the test takes no seconds.
    monkeypatch.setattr(runs, "SAVE_DIGESTS_EVERY_S", 0.0)
    batches, saved = check_all(pipeline_of(project, stages=6, files=5))
    assert sorted(name for batch in batches for name, *_ in batch) == [f"s{n}" for n in range(6)]
    assert saved == 30  # all of them, and nothing closed the cache yet


def test_a_batch_reports_what_it_has_while_it_goes_on(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "REPORT_EVERY_S", 0.0)
    batches, saved = check_all(pipeline_of(project, stages=4, files=2))
    assert [[name for name, *_ in batch] for batch in batches if batch] == [["s0"], ["s1"], ["s2"], ["s3"]]
    assert saved == 0  # a short check saves its digests when the daemon is next idle
    verdicts = [verdict for batch in batches for _, _, verdict, _ in batch]
    assert all(verdict.run and verdict.key for verdict in verdicts)  # never run: every one is stale
