"""Reading the pipeline file again while watching, and what changed in it."""

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
