"""_build/.cache/state.json: each stage's last attempt (result, times, error tail), rewritten atomically."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stagewatch.cache import write_atomic
from stagewatch.paths import CACHE_DIR

STATE_NAME = "state.json"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One stage's last attempt, as status shows it."""

    result: str  # "running", "succeeded", "failed", "cancelled"
    started: str
    finished: str | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    error: str | None = None
    tail: tuple[str, ...] = ()


@dataclass
class PipelineState:
    pid: int | None = None
    mode: str | None = None
    stages: dict[str, Attempt] = field(default_factory=dict)


def state_path(output_dir: Path) -> Path:
    return output_dir / CACHE_DIR / STATE_NAME


def read_state(output_dir: Path) -> PipelineState:
    """What was recorded; an unreadable file reads as nothing recorded (it is rewritten soon)."""
    try:
        data: Any = json.loads(state_path(output_dir).read_text(encoding="utf-8"))
        stages = {
            name: Attempt(**{**record, "tail": tuple(record.get("tail", ()))})
            for name, record in data.get("stages", {}).items()
        }
        return PipelineState(data.get("pid"), data.get("mode"), stages)
    except (OSError, ValueError, TypeError, AttributeError):
        return PipelineState()


def write_state(output_dir: Path, state: PipelineState) -> None:
    data = {
        "pid": state.pid,
        "mode": state.mode,
        "stages": {name: asdict(attempt) for name, attempt in sorted(state.stages.items())},
    }
    write_atomic(state_path(output_dir), json.dumps(data, indent=1) + "\n")


def new_state(output_dir: Path, mode: str) -> PipelineState:
    """The state carried over from before, now owned by this process."""
    state = read_state(output_dir)
    state.pid, state.mode = os.getpid(), mode
    for name, attempt in list(state.stages.items()):
        if attempt.result == "running":  # its owner is gone: that run never finished
            state.stages[name] = Attempt("cancelled", attempt.started, error="stagewatch stopped")
    return state
