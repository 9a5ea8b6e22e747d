"""The success rule (docs/design.md#runs): what a run's observed facts make of it, and whether its entry
is written (pure)."""

from __future__ import annotations

import signal
from dataclasses import dataclass, replace

from stagewatch.durations import format_duration
from stagewatch.freshness import Fingerprint
from stagewatch.stage import RunResult


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What one run did, as observed, judged by no one yet."""

    duration_s: float
    exit_code: int | None = None  # the main process's; negative for a signal
    output_tail: tuple[str, ...] = ()
    refused: str | None = None  # why it was never started (and the only line of its log)
    cancelled: bool = False  # stopped by stagewatch (or kept from starting)
    timed_out_after_s: float | None = None  # its timeout, when that stopped it
    leftovers: tuple[str, ...] = ()  # what it left running past the grace period, killed then
    grace_s: float = 0.0  # how long what the main process left running was given
    leftovers_cut_s: float | None = None  # the timeout, when it cut that grace period short
    missing_outputs: tuple[str, ...] = ()  # declared outputs absent once it ended

    @classmethod
    def refusal(cls, problem: str, duration_s: float = 0.0) -> RunFacts:
        return cls(duration_s, refused=problem)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A run's verdict, and the key its entry records (None: no entry is written)."""

    result: RunResult
    record_key: str | None = None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def leftovers_error(code: int, stopped: tuple[str, ...], grace_s: float, timed_out_s: float | None) -> str:
    """Why a run whose main process ended, leaving `stopped` running, is a failure; `timed_out_s`
    when its timeout, not the grace period, was up first."""
    shown = ", ".join(stopped[:3]) + (f" and {len(stopped) - 3} more" if len(stopped) > 3 else "")
    what = "a process it started was" if len(stopped) == 1 else "processes it started were"
    when = "when its time was up" if timed_out_s is not None else f"{format_duration(grace_s)} after it ended"
    error = f"{describe_exit(code)}, but {what} still running {when} and had to be killed: {shown}"
    error += "; a stage must wait for what it starts"
    return error if timed_out_s is None else f"timed out after {format_duration(timed_out_s)}: {error}"


def judge(facts: RunFacts, fingerprint: Fingerprint | None = None, still_ours: bool = True) -> Outcome:
    """The whole success rule: exit 0, nothing left running, every declared output present and
    every declared file of the key there. Only a success writes an entry, with the key taken
    before the run (docs/design.md#the-skip-rule), and only while the run's pending entry is still there
    (`still_ours`): a person who invalidated the stage meanwhile gets another run.
    """
    result = _verdict(facts, fingerprint)
    key = fingerprint.key if fingerprint is not None else None
    return Outcome(result, key if result.ok and still_ours else None)


def _verdict(facts: RunFacts, fingerprint: Fingerprint | None) -> RunResult:
    if facts.refused is not None:
        return RunResult.not_started(facts.refused, facts.duration_s)
    code, duration_s, tail = facts.exit_code, facts.duration_s, facts.output_tail
    if facts.cancelled:
        return RunResult(False, code, duration_s, "stopped by stagewatch", tail, cancelled=True)
    assert code is not None  # a run that started and was not cancelled has ended with a status
    if facts.timed_out_after_s is not None:
        error = f"timed out after {format_duration(facts.timed_out_after_s)}"
        return RunResult(False, code, duration_s, error, tail, timed_out=True)
    if facts.leftovers:
        # Its outputs may be half-written by what was stopped: never a success.
        cut_s = facts.leftovers_cut_s
        error = leftovers_error(code, facts.leftovers, facts.grace_s, cut_s)
        return RunResult(False, code, duration_s, error, tail, timed_out=cut_s is not None)
    if code != 0:
        return RunResult(False, code, duration_s, describe_exit(code), tail)
    if facts.missing_outputs:
        error = "exit 0 but declared output missing: " + ", ".join(facts.missing_outputs)
        return RunResult(False, code, duration_s, error, tail)
    if fingerprint is not None and fingerprint.problems:
        error = "exit 0 but " + "; ".join(str(problem) for problem in fingerprint.problems)
        return RunResult(False, code, duration_s, error, tail)
    return RunResult(True, code, duration_s, None, tail)


def entry_unwritten(result: RunResult, error: OSError) -> RunResult:
    """A success whose entry cannot be written is the stage's failure, never a crash of the round."""
    where = f" {error.filename}" if error.filename else ""
    message = f"ran, but its cache entry{where} could not be written: {error.strerror or error}"
    return replace(result, ok=False, error=message)
