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
    """A loaded pipeline file: where it lives, its settings, and its stages in file order.

    `stages` are what runs: the plain stages and each pattern stage's instances in its place
    (patterns.expand). `declared` are the stages as the file declares them, pattern stages
    as their declarations; the same as `stages` when no stage is a pattern.
    """

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
    declared: tuple[Stage, ...] = ()
    _by_name: dict[str, Stage] = field(init=False, repr=False, compare=False)
    _instances: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.declared:
            object.__setattr__(self, "declared", self.stages)
        object.__setattr__(self, "_by_name", {stage.name: stage for stage in self.stages})
        instances: dict[str, list[str]] = {stage.name: [] for stage in self.declared if stage.is_template}
        for stage in self.stages:
            if stage.pattern is not None:
                instances[stage.pattern].append(stage.name)
        object.__setattr__(self, "_instances", {name: tuple(found) for name, found in instances.items()})

    def stage(self, name: str) -> Stage:
        return self._by_name[name]

    def has_stage(self, name: str) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    @property
    def patterns(self) -> tuple[str, ...]:
        """The pattern stages' names, in file order."""
        return tuple(self._instances)

    def template(self, pattern: str) -> Stage:
        """A pattern stage's declaration."""
        return next(stage for stage in self.declared if stage.name == pattern and stage.is_template)

    def instances_of(self, pattern: str) -> tuple[str, ...]:
        return self._instances[pattern]

    def is_pattern(self, name: str) -> bool:
        return name in self._instances

    def knows(self, name: str) -> bool:
        """A stage, an instance or a pattern stage: a name a command may be given."""
        return name in self._by_name or name in self._instances

    def resolve(self, name: str) -> tuple[str, ...]:
        """The stages a name given to a command means: itself, or all of a pattern's instances."""
        if name in self._instances:
            return self._instances[name]
        self.stage(name)  # KeyError for a name that is neither
        return (name,)

    @property
    def declared_names(self) -> tuple[str, ...]:
        """Names as the file declares them: what a mistyped name is compared with."""
        return tuple(stage.name for stage in self.declared)

    def on_busy_for(self, stage: Stage) -> OnBusy:
        return stage.on_busy if stage.on_busy is not None else self.on_busy
