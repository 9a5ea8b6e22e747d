"""Where the checkout's parts are, for tests that read them (wherever in tests/ they stand)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
PACKAGE = REPO / "stagewatch"
