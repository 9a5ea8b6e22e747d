"""`python -m stagewatch` works like `stagewatch`."""

from stagewatch.cli import run

run()
