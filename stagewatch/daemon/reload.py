"""The pipeline file read again while watching: what changed in it, and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stagewatch.config import load_pipeline
from stagewatch.errors import ConfigError
from stagewatch.hashing import sha256_file
from stagewatch.pipeline import Pipeline


@dataclass(frozen=True, slots=True)
class Reread:
    """The pipeline file read again: a new pipeline, nothing new (same bytes), or its problems."""

    pipeline: Pipeline | None
    digest: str | None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StageChanges:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]


def config_digest(path: Path) -> str | None:
    """The pipeline file's digest: a save with the same bytes is not a reload."""
    try:
        return sha256_file(str(path))
    except OSError:
        return None


def reread(path: Path, known_digest: str | None, always: bool) -> Reread:
    """Read the file again unless its bytes are the ones running (`always`: a SIGHUP asks anyway)."""
    digest = config_digest(path)
    if not always and digest == known_digest:
        return Reread(None, digest)
    try:
        return Reread(load_pipeline(path), digest)
    except ConfigError as exc:
        return Reread(None, digest, tuple(exc.problems))


def stage_changes(old: Pipeline, new: Pipeline) -> StageChanges:
    return StageChanges(
        added=tuple(s.name for s in new.stages if not old.has_stage(s.name)),
        changed=tuple(s.name for s in new.stages if old.has_stage(s.name) and old.stage(s.name) != s),
        removed=tuple(name for name in old.names if not new.has_stage(name)),
    )


# --- what a reread means for the running pipeline ---


@dataclass(frozen=True, slots=True)
class Refused:
    """The running pipeline stays, and these problems are said."""

    problems: tuple[str, ...]
    file_invalid: bool  # the file itself is wrong (not a valid change that needs a restart)


@dataclass(frozen=True, slots=True)
class SameBytes:
    """The file was touched, or written again with the bytes running: nothing changes."""

    restored: bool  # put back as it was after it was invalid: the alarm is over


@dataclass(frozen=True, slots=True)
class Unchanged:
    """New bytes, a valid file, the same pipeline (a comment, a reordered table)."""

    digest: str | None


@dataclass(frozen=True, slots=True)
class Replace:
    """New bytes and a new pipeline: it runs from now on."""

    pipeline: Pipeline
    digest: str | None
    changes: StageChanges
    watcher_changed: bool  # the watcher kind is chosen at start: not applied

    @property
    def forgotten(self) -> tuple[str, ...]:
        """Stages whose code files and entry times are stale: removed, or changed."""
        return (*self.changes.removed, *self.changes.changed)


ReloadDecision = Refused | SameBytes | Unchanged | Replace


def judge_reload(outcome: Reread, running: Pipeline, invalid: bool) -> ReloadDecision:
    """What to do with the pipeline file read again, given the pipeline running and whether
    the file was found invalid last time."""
    new = outcome.pipeline
    if outcome.problems:
        return Refused(outcome.problems, file_invalid=True)
    if new is None:
        return SameBytes(restored=invalid)
    if new.output_dir != running.output_dir:
        problem = f"{new.config_path}: output_dir cannot change while watching; restart stagewatch"
        return Refused((problem,), file_invalid=False)
    if new == running:
        return Unchanged(outcome.digest)
    changes = stage_changes(running, new)
    return Replace(new, outcome.digest, changes, watcher_changed=new.watcher is not running.watcher)
