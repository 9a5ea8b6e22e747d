"""_build/.cache/state.json: each stage's last attempt and last failure, rewritten atomically."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from stagewatch.layout import CacheLayout, write_atomic
from stagewatch.regular import read_regular
from stagewatch.runrecord import runs_under_way
from stagewatch.stage import ATTEMPT_RESULTS, RunResult, StageState, attempt_result

log = structlog.get_logger(__name__)

# A stage's record is a few lines of output tail: 64 MiB is far beyond any real pipeline.
MAX_STATE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a stage, as status shows it."""

    result: StageState
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
    failures: dict[str, Attempt] = field(default_factory=dict)
    damaged: bool = False  # read with records left out: the file is to be written whole again


def state_path(output_dir: Path) -> Path:
    return CacheLayout(output_dir).state


def _attempt(record: object) -> Attempt:
    """One recorded attempt, checked field by field; ValueError says what is wrong with it."""
    if not isinstance(record, dict):
        raise ValueError(f"not a table but {type(record).__name__}")
    results = [result.value for result in ATTEMPT_RESULTS]
    if record.get("result") not in results:
        raise ValueError(f'"result" is {record.get("result")!r}, not one of {", ".join(results)}')
    for key, kinds in _FIELD_TYPES.items():
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise ValueError(f'"{key}" is {value!r}')
    if not isinstance(record.get("started"), str):
        raise ValueError('"started" is missing')
    tail = record.get("tail", [])
    if not isinstance(tail, list) or not all(isinstance(line, str) for line in tail):
        raise ValueError('"tail" is not a list of lines')
    # Keys this version does not know are left out: a newer stagewatch may have written them.
    known = {key: record[key] for key in _FIELD_TYPES if record.get(key) is not None}
    return Attempt(**{**known, "result": StageState(record["result"]), "tail": tuple(tail)})


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "started": str,
    "finished": str,
    "duration_s": (int, float),
    "exit_code": int,
    "error": str,
}


def _attempts(table: str, records: object, problems: list[str]) -> dict[str, Attempt]:
    """The good records of one table; each bad one is left out and said in `problems`."""
    if records is None:
        return {}
    if not isinstance(records, dict):
        problems.append(f'"{table}" is not a table')
        return {}
    attempts = {}
    for name, record in records.items():
        try:
            attempts[name] = _attempt(record)
        except ValueError as exc:
            problems.append(f'{table} "{name}": {exc}')
    return attempts


def _record(attempt: Attempt) -> dict[str, Any]:
    return {**asdict(attempt), "result": attempt.result.value}


def read_state(output_dir: Path) -> PipelineState:
    """What was recorded. A damaged file costs one warning and only its bad records (the
    whole file when it is not a JSON table); the next save writes it whole again."""
    path = state_path(output_dir)
    problems: list[str] = []
    state = PipelineState()
    try:
        data: object = json.loads(read_regular(path, MAX_STATE_BYTES).decode("utf-8"))
    except FileNotFoundError:
        return state
    except OSError as exc:
        problems.append(exc.strerror or str(exc))
    except UnicodeDecodeError as exc:
        problems.append(f"not UTF-8 ({exc.reason} at byte {exc.start})")
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[...": JSON nested too deep
        problems.append(f"not JSON: {str(exc)[:100]}")
    else:
        if isinstance(data, dict):
            pid, mode = data.get("pid"), data.get("mode")
            state.pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
            state.mode = mode if isinstance(mode, str) else None
            state.stages = _attempts("stages", data.get("stages"), problems)
            state.failures = _attempts("failures", data.get("failures"), problems)
        else:
            problems.append(f"not a JSON object but {type(data).__name__}")
    if problems:
        state.damaged = True
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        log.warning("state.unreadable", path=str(path), problem=shown, action="left out")
    return state


def running_stages(output_dir: Path) -> set[str]:
    """Stages running now (meaningful while the lock is held): those whose last attempt is
    recorded as running, and those with a live run record. state.json is written a moment
    behind a burst of starts; a run's record is on disk before its process starts."""
    recorded = {
        name
        for name, attempt in read_state(output_dir).stages.items()
        if attempt.result is StageState.RUNNING
    }
    return recorded | runs_under_way(output_dir)


def write_state(output_dir: Path, state: PipelineState) -> None:
    _write_text(output_dir, state_text(state))


def state_text(state: PipelineState) -> str:
    data = {
        "pid": state.pid,
        "mode": state.mode,
        "stages": {name: _record(attempt) for name, attempt in sorted(state.stages.items())},
        "failures": {name: _record(attempt) for name, attempt in sorted(state.failures.items())},
    }
    return json.dumps(data, indent=1) + "\n"


def _write_text(output_dir: Path, text: str) -> None:
    # Not fsynced: status after a power cut may lose its last lines, never a stage's result.
    write_atomic(state_path(output_dir), text, within=output_dir, durable=False)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# state.json is written at most this often: a burst of runs rewrites it a few times a
# second, not twice a run (each write is the whole file, so that would be quadratic).
SAVE_EVERY_S = 0.1


class StateRecorder:
    """Owns state.json for one build or daemon: records each start and each end, on disk
    within SAVE_EVERY_S, and at once at close.

    Runs end on their own threads. Every change happens under one lock, which is held only
    while the tables change and are turned into text: a reader (the preview, on the loop)
    never waits for the disk. The writes take a lock of their own, and a text older than
    the one already written is dropped.
    """

    def __init__(self, output_dir: Path, mode: str) -> None:
        self.output_dir = output_dir
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._saves = 0  # texts made so far; the one written last is _written
        self._written = 0
        self._saved_at = -SAVE_EVERY_S
        self._pending: threading.Timer | None = None
        self.state = read_state(output_dir)
        # What is on disk already says what close would write: a no-op build writes nothing.
        self._as_on_disk = (
            self.state.pid is None and not self.state.damaged and state_path(output_dir).is_file()
        )
        self.state.pid, self.state.mode = os.getpid(), mode
        for name, attempt in list(self.state.stages.items()):
            if attempt.result is StageState.RUNNING:  # its owner is gone: that run never finished
                self._as_on_disk = False
                self.state.stages[name] = Attempt(
                    StageState.CANCELLED, attempt.started, error="stagewatch stopped"
                )

    def _save_soon(self) -> tuple[int, str] | None:
        """Under the lock: the text to write now, or None if it waits until SAVE_EVERY_S has
        passed since the last write."""
        self._as_on_disk = False
        wait_s = self._saved_at + SAVE_EVERY_S - time.monotonic()
        if wait_s <= 0:
            return self._save()
        if self._pending is None:
            self._pending = threading.Timer(wait_s, self._save_pending)
            self._pending.daemon = True
            self._pending.start()
        return None

    def _save_pending(self) -> None:
        with self._lock:
            save = self._save() if self._pending is not None else None
        self._write(save)

    def _save(self) -> tuple[int, str]:
        """Under the lock: the text to write, numbered."""
        self._as_on_disk = False  # it now names this stagewatch, until close
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._saved_at = time.monotonic()
        self._saves += 1
        return self._saves, state_text(self.state)

    def _write(self, save: tuple[int, str] | None) -> None:
        """Outside the tables' lock: write a text, unless a newer one is on disk already."""
        if save is None:
            return
        number, text = save
        with self._write_lock:
            if number <= self._written:
                return
            self._written = number
            try:
                _write_text(self.output_dir, text)
            except OSError as exc:  # status loses a line; the build itself goes on
                log.warning(
                    "state.unwritable", path=str(state_path(self.output_dir)), error=exc.strerror or str(exc)
                )

    def started(self, name: str) -> None:
        with self._lock:
            self.state.stages[name] = Attempt(StageState.RUNNING, _now_iso())
            save = self._save_soon()
        self._write(save)

    def finished(self, name: str, result: RunResult) -> None:
        with self._lock:
            previous = self.state.stages.get(name)
            attempt = Attempt(
                attempt_result(result),
                previous.started if previous else _now_iso(),
                _now_iso(),
                round(result.duration_s, 3),
                result.exit_code,
                result.error,
                () if result.ok else result.output_tail,
            )
            self.state.stages[name] = attempt
            if attempt.result is StageState.FAILED:
                self.state.failures[name] = attempt
            save = self._save_soon()
        self._write(save)

    def snapshot(self) -> PipelineState:
        """A copy of what is recorded, taken under the lock: runs end on their own threads, and
        a reader elsewhere (the preview, on the loop) must never see a table mid-change.
        Attempts are frozen, so copies of the tables are enough."""
        with self._lock:
            return replace(self.state, stages=dict(self.state.stages), failures=dict(self.state.failures))

    def keep_only(self, names: set[str]) -> None:
        """Forget stages that are no longer in the pipeline (after a reload)."""
        with self._lock:
            for table in (self.state.stages, self.state.failures):
                for name in set(table) - names:
                    del table[name]
            save = self._save()
        self._write(save)

    def forget(self, names: Iterable[str]) -> None:
        """Forget stages that are gone (a pattern stage's instances whose file was deleted)."""
        with self._lock:
            for table in (self.state.stages, self.state.failures):
                for name in names:
                    table.pop(name, None)
            save = self._save()
        self._write(save)

    def close(self) -> None:
        """Mark that no stagewatch owns the state any more; a run still marked running never ended."""
        with self._lock:
            self.state.pid = None
            for name, attempt in list(self.state.stages.items()):
                if attempt.result is StageState.RUNNING:
                    self.state.stages[name] = Attempt(
                        StageState.CANCELLED, attempt.started, error="stagewatch stopped"
                    )
            save = None if self._as_on_disk else self._save()
        self._write(save)
