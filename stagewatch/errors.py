"""The one family of errors stagewatch raises for its own reasons; cli.py maps them to exit codes."""

from __future__ import annotations


class StagewatchError(Exception):
    """A problem stagewatch can describe in one line; exit status 1 unless a subclass says otherwise."""

    exit_code = 1


class ConfigError(StagewatchError):
    """The pipeline file is unreadable or invalid; every problem found is one line of the message."""

    exit_code = 2

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class UsageError(StagewatchError):
    """The command line names something that does not exist (an unknown stage, say)."""

    exit_code = 2


class LockHeldError(StagewatchError):
    """Another stagewatch holds the pipeline's lock."""

    def __init__(self, message: str, pid: int | None) -> None:
        self.pid = pid
        super().__init__(message)
