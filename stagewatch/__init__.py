"""stagewatch: keep a pipeline of stages up to date by content hash, once or as a daemon."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stagewatch.cache import compute_key, invalidate, mark_done, should_skip
    from stagewatch.pipeline import Pipeline
    from stagewatch.stage import OnBusy, Stage

__all__ = ["OnBusy", "Pipeline", "Stage", "compute_key", "invalidate", "mark_done", "should_skip"]
__version__ = "0.1.0"

# Loaded when first asked for: `python -m stagewatch` imports this package before its
# __main__ can take the current folder off sys.path, so importing nothing here keeps a
# project's own copy.py or json.py from standing in for the standard library.
_HOMES = {
    "compute_key": "stagewatch.cache",
    "invalidate": "stagewatch.cache",
    "mark_done": "stagewatch.cache",
    "should_skip": "stagewatch.cache",
    "Pipeline": "stagewatch.pipeline",
    "OnBusy": "stagewatch.stage",
    "Stage": "stagewatch.stage",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stagewatch' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
