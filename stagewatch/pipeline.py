"""The Pipeline value: a loaded pipeline file, its settings, its stages and their graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stagewatch.graph import Graph
from stagewatch.stage import OnBusy, Stage, WatcherKind

DEFAULT_PORT = 8000
DEFAULT_BIND = "127.0.0.1"
SERVE_KEYS = ("root", "port", "bind")


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """The [serve] table: where the preview listens and which folder it serves (None: found
    from the stages' outputs). Part of the pipeline's value, so the core never imports the
    preview to read a pipeline file."""

    root: str | None = None  # absolute, posix
    port: int = DEFAULT_PORT
    bind: str = DEFAULT_BIND


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A loaded pipeline file: where it lives, its settings, and its stages in file order."""

    config_path: Path
    output_dir: Path
    stages: tuple[Stage, ...]
    graph: Graph = field(repr=False, compare=False)  # derived from the stages: config builds it
    jobs: int = 2
    debounce_s: float = 0.1
    ignore: tuple[str, ...] = ()
    on_busy: OnBusy = OnBusy.QUEUE
    rescan_s: float = 600.0
    watcher: WatcherKind = WatcherKind.NATIVE
    python_path: tuple[str, ...] = (".",)
    serve: ServeSettings = field(default_factory=ServeSettings)
    _by_name: dict[str, Stage] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {stage.name: stage for stage in self.stages})

    def stage(self, name: str) -> Stage:
        return self._by_name[name]

    def has_stage(self, name: str) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    def on_busy_for(self, stage: Stage) -> OnBusy:
        return stage.on_busy if stage.on_busy is not None else self.on_busy
