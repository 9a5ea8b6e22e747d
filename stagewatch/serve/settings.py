"""The [serve] table of the pipeline file, as a value: what to serve, where to listen.

The core (config.py, pipeline.py) imports it as part of the pipeline's value, so it imports
nothing of stagewatch and the serve package's __init__ imports nothing at all: the core loads
no more of the preview than this file (tests/test_imports.py holds both).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 8000
DEFAULT_BIND = "127.0.0.1"
SERVE_KEYS = ("root", "port", "bind")


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """Where the preview listens and which folder it serves (None: found from the stages' outputs)."""

    root: str | None = None  # absolute, posix
    port: int = DEFAULT_PORT
    bind: str = DEFAULT_BIND
