"""One attempt at a stage, the same for `build` and the daemon: prepare, run, settle.

Prepare takes the fingerprint and decides (the key recorded is the one taken *before* the
run: docs/design.md#pending-entries). Run turns the entry into a pending one, records the
start in state.json and runs the process, which reports what it did. Settle has the success
rule (outcome.judge) turn that into the verdict, writes the entry it allows, records the end
and says `stage.succeeded`, `stage.failed` or `stage.cancelled`.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from stagewatch.cache import Workspace
from stagewatch.entry import entry_text
from stagewatch.freshness import Decision, Fingerprint
from stagewatch.outcome import RunFacts, entry_unwritten, judge
from stagewatch.runner import RunTicket, StageRunner
from stagewatch.stage import RunResult, Stage
from stagewatch.state import StateRecorder

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A stage, what its key is made of now, and whether (and why) it must run."""

    stage: Stage
    fingerprint: Fingerprint
    decision: Decision


class Attempts:
    """Prepares, runs and settles stages against one workspace, runner and state file."""

    def __init__(self, workspace: Workspace, runner: StageRunner, recorder: StateRecorder | None) -> None:
        self.workspace = workspace
        self.runner = runner
        self.recorder = recorder

    def prepare(self, stage: Stage, *, force: bool = False, always_run_unskippable: bool = True) -> Prepared:
        fingerprint = self.workspace.fingerprint(stage)
        decision = self.workspace.decide_with(
            stage, fingerprint, force=force, always_run_unskippable=always_run_unskippable
        )
        return Prepared(stage, fingerprint, decision)

    def run(self, prepared: Prepared, ticket: RunTicket | None = None) -> RunResult:
        """Run a prepared stage to its settled result; a problem of stagewatch's own becomes the
        stage's failure, never an exception that would leave it marked running."""
        stage = prepared.stage
        log.info("stage.started", stage=stage.name, reasons=[str(r) for r in prepared.decision.reasons])
        if self.recorder is not None:
            self.recorder.started(stage.name)
        marker: str | None = None
        try:
            marker = self.workspace.begin_run(stage)
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            facts = RunFacts.refusal(
                f"its cache entry{where} could not be replaced before the run: {exc.strerror or exc}"
            )
        else:
            try:
                facts = self.runner.observe(stage, ticket)
            except Exception as exc:  # an error boundary: the run must end, and say so
                log.exception("stage.internal_error", stage=stage.name)
                facts = RunFacts.refusal(f"stagewatch could not run it: {exc!r}")
        return self.settle(prepared, facts, marker)

    def settle(self, prepared: Prepared, facts: RunFacts, marker: str | None = None) -> RunResult:
        """Judge the run, write the entry the verdict allows, and say how it ended. `marker` is
        the pending entry that began the run: gone or replaced, a person invalidated the stage
        while it ran."""
        stage = prepared.stage
        still_ours = marker is None or entry_text(self.workspace.entry_path(stage.name)) == marker
        outcome = judge(facts, prepared.fingerprint, still_ours)
        result = outcome.result
        if outcome.record_key is not None:
            try:
                self.workspace.record_success(
                    stage, outcome.record_key, prepared.fingerprint, result.duration_s
                )
            except OSError as exc:
                result = entry_unwritten(result, exc)
        if self.recorder is not None:
            self.recorder.finished(stage.name, result)
        duration_s = round(result.duration_s, 3)
        if result.ok:
            log.info("stage.succeeded", stage=stage.name, duration_s=duration_s)
            if outcome.record_key is None:
                log.info("stage.invalidated_while_running", stage=stage.name)
        elif result.cancelled:
            log.info("stage.cancelled", stage=stage.name, duration_s=duration_s)
        else:
            log_failure(stage.name, result)
        return result


def log_failure(name: str, result: RunResult) -> None:
    log.error(
        "stage.failed",
        stage=name,
        error=result.error,
        exit_code=result.exit_code,
        duration_s=round(result.duration_s, 3),
        tail=list(result.output_tail),
    )
