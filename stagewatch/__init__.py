"""stagewatch: keep a pipeline of stages up to date by content hash, once or as a daemon."""

from __future__ import annotations

from stagewatch.cache import compute_key, invalidate, mark_done, should_skip
from stagewatch.pipeline import Pipeline
from stagewatch.stage import OnBusy, Stage

__all__ = ["OnBusy", "Pipeline", "Stage", "compute_key", "invalidate", "mark_done", "should_skip"]
__version__ = "0.1.0"
