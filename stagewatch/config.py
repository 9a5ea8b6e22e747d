"""TOML pipeline file -> Pipeline of Stage values, every problem reported in one line."""

from __future__ import annotations

import dataclasses
import os
import posixpath
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagewatch.durations import parse_duration
from stagewatch.entry import ENTRY_SUFFIX, ENTRY_TEMP_TAIL, MAX_STAGE_NAME
from stagewatch.errors import ConfigError
from stagewatch.graph import CycleError, Graph, build_graph, output_feeds
from stagewatch.paths import CACHE_DIR, IgnoreRules, PathKind, absolute, classify, is_within, posix
from stagewatch.patterns import (
    Listing,
    driver,
    driver_of,
    driver_overlaps,
    expand,
    list_drivers,
    placeholder_problems,
)
from stagewatch.pipeline import DEFAULT_BIND, DEFAULT_PORT, SERVE_KEYS, Pipeline, ServeSettings
from stagewatch.regular import FileTooLarge, NotRegularFile, read_regular
from stagewatch.stage import MODULE_NAME, STAGE_NAME, OnBusy, Stage, WatcherKind
from stagewatch.suggest import did_you_mean

DEFAULT_CONFIG = "stagewatch.toml"
CONFIG_ENV = "STAGEWATCH_CONFIG"
# A pipeline file is a few kilobytes; far more is a mistake (a log, a dump), not a pipeline.
MAX_CONFIG_BYTES = 10 * 1024 * 1024
TOP_KEYS = ("pipeline", "stage", "serve")
PIPELINE_KEYS = ("output_dir", "python_path", "jobs", "debounce", "ignore", "on_busy", "rescan", "watcher")
STAGE_KEYS = (
    "name", "module", "function", "command", "inputs", "outputs", "ttl", "timeout",
    "after", "sources", "on_busy",
)  # fmt: skip


def locate_config(explicit: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """--config, else $STAGEWATCH_CONFIG, else ./stagewatch.toml (docs/design.md#the-pipeline-file)."""
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return Path(DEFAULT_CONFIG)


def load_pipeline(path: Path) -> Pipeline:
    """Read and validate a pipeline file; ConfigError lists every problem, one per line."""
    try:
        raw = read_regular(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (pass --config PATH, set {CONFIG_ENV}, or create ./{DEFAULT_CONFIG})"
        ) from None
    except NotRegularFile as exc:
        if exc.kind == "a folder":
            raise ConfigError(f"{path}: is a folder (did you mean {path / DEFAULT_CONFIG}?)") from None
        # A FIFO or a device would be read forever (or never): refused by its kind, unopened.
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except FileTooLarge as exc:
        raise ConfigError(
            f"{path}: {exc.size / 2**20:.1f} MiB is too large for a pipeline file"
            f" (at most {MAX_CONFIG_BYTES // 2**20} MiB)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_pipeline(data, path)


def _show(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: object) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)  # fmt: skip


class _Reader:
    """Reads one table's keys, recording each problem as "<file>: <where>: <message>"."""

    def __init__(self, problems: list[str], file: str, where: str, table: Mapping[str, Any]) -> None:
        self.problems = problems
        self.prefix = f"{file}: {where}: "
        self.table = table

    def problem(self, message: str) -> None:
        self.problems.append(self.prefix + message)

    def unknown_keys(self, known: tuple[str, ...]) -> None:
        for key in self.table:
            if key not in known:
                self.problem(f'unknown key "{key}"{did_you_mean(key, known)}')

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.table.get(key, default)
        if value is None or isinstance(value, str):
            return value
        self.problem(f'"{key}" must be a string, got {_type_name(value)} {_show(value)}')
        return default

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.table.get(key, [])
        if isinstance(value, list) and all(isinstance(item, str) and item for item in value):
            return tuple(value)
        if isinstance(value, list):
            self.problem(f'"{key}" must be a list of non-empty strings, got {_show(value)}')
        else:
            self.problem(f'"{key}" must be a list of strings, got {_type_name(value)} {_show(value)}')
        return ()

    def duration(self, key: str, default: float | None, positive: bool) -> float | None:
        if key not in self.table:
            return default
        value = self.table[key]
        if positive and isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
            # Not "a finite number of seconds >= 0", which would send a 0 back with another error.
            self.problem(f'"{key}" must be longer than 0, got {_show(value)}')
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.problem(f'"{key}": {exc}')
            return default
        if positive and seconds <= 0:
            self.problem(f'"{key}" must be longer than 0, got {_show(self.table[key])}')
            return default
        return seconds

    def choice(self, key: str, enum: type[OnBusy] | type[WatcherKind]) -> Any:
        value = self.table.get(key)
        if value is None:
            return None
        options = [member.value for member in enum]
        if value not in options:
            shown = " or ".join(f'"{option}"' for option in options)
            self.problem(f'"{key}" must be {shown}, got {_show(value)}')
            return None
        return enum(value)


def _table(problems: list[str], file: str, where: str, value: object) -> Mapping[str, Any]:
    if isinstance(value, dict):
        return value
    problems.append(f"{file}: {where}: must be a table, got {_type_name(value)}")
    return {}


@dataclass(frozen=True, slots=True)
class _Settings:
    """The [pipeline] table, read: each value valid, or its default beside a recorded problem."""

    output_dir: Path
    root: str  # output_dir as a POSIX string: what stages' relative paths resolve against
    python_path: tuple[str, ...]
    ignore: tuple[str, ...]
    jobs: int
    debounce_s: float
    rescan_s: float
    on_busy: OnBusy
    watcher: WatcherKind


def parse_pipeline(data: Mapping[str, Any], path: Path) -> Pipeline:
    """Validate parsed TOML into a Pipeline; relative paths resolve against output_dir."""
    file = str(path)
    problems = _top_level_problems(data, file)
    settings = _parse_settings(problems, file, data.get("pipeline", {}), path)
    serve = _parse_serve(problems, file, data.get("serve", {}), settings.root)
    raw_stages = _stage_tables(problems, file, data.get("stage", []))
    stages = _parse_stages(problems, file, raw_stages, settings)
    declared = [
        raw["name"] for raw in raw_stages if isinstance(raw, dict) and isinstance(raw.get("name"), str)
    ]
    _check_references(problems, file, stages, declared, settings.root)
    _check_drivers(problems, file, stages, settings.root)
    if problems:
        raise ConfigError(problems)
    listing = list_drivers(stages, settings.root, IgnoreRules(settings.root, settings.ignore))
    instances = expand(stages, listing)
    return Pipeline(
        config_path=Path(os.path.abspath(path)),
        output_dir=settings.output_dir,
        stages=instances,
        declared=tuple(stages),
        graph=_graph(file, instances, settings.root, settings.ignore),
        jobs=settings.jobs,
        debounce_s=settings.debounce_s,
        ignore=settings.ignore,
        on_busy=settings.on_busy,
        rescan_s=settings.rescan_s,
        watcher=settings.watcher,
        python_path=settings.python_path,
        serve=serve,
    )


def _graph(file: str, stages: tuple[Stage, ...], root: str, ignore: tuple[str, ...]) -> Graph:
    """The stages' graph; a cycle is the pipeline file's problem, said with the edges on it."""
    try:
        return build_graph(stages, root, ignore)
    except CycleError as exc:
        via = "; ".join(f"{e.upstream} -> {e.downstream}: {e.via}" for e in exc.edges)
        raise ConfigError(f'{file}: stage "{exc.cycle[0]}": cycle {" -> ".join(exc.cycle)} ({via})') from None


def with_listing(pipeline: Pipeline, listing: Listing) -> Pipeline:
    """The pipeline with its pattern stages' instances made from another listing (files came
    or went); ConfigError when the new instances close a cycle."""
    stages = expand(pipeline.declared, listing)
    graph = _graph(str(pipeline.config_path), stages, pipeline.output_dir.as_posix(), pipeline.ignore)
    return dataclasses.replace(pipeline, stages=stages, graph=graph)


def _top_level_problems(data: Mapping[str, Any], file: str) -> list[str]:
    """Keys and tables outside [pipeline], [[stage]] and [serve], each with the likely fix."""
    problems: list[str] = []
    for key, value in data.items():
        if key in TOP_KEYS:
            continue
        if not isinstance(value, dict | list):
            hint = " (settings go in [pipeline])" if key in PIPELINE_KEYS else ""
            problems.append(f'{file}: unknown key "{key}" outside any table{hint}')
            continue
        hint = did_you_mean(key, TOP_KEYS)
        if key == "stages":
            hint = ' (did you mean "[[stage]]"?)'
        problems.append(f'{file}: unknown table "{key}"{hint}')
    return problems


def _parse_settings(problems: list[str], file: str, raw: object, path: Path) -> _Settings:
    """The [pipeline] table; output_dir is relative to the pipeline file's folder."""
    settings = _Reader(problems, file, "[pipeline]", _table(problems, file, "[pipeline]", raw))
    settings.unknown_keys(PIPELINE_KEYS)
    config_dir = Path(os.path.abspath(path)).parent
    output_dir = Path(os.path.normpath(config_dir / (settings.string("output_dir") or ".")))
    if output_dir.exists() and not output_dir.is_dir():
        settings.problem(f'"output_dir" is not a folder: {output_dir}')
    python_path = settings.strings("python_path") if "python_path" in settings.table else (".",)
    ignore = settings.strings("ignore")
    jobs = _jobs(settings)
    debounce_s = settings.duration("debounce", 0.1, positive=False)
    rescan_s = settings.duration("rescan", 600.0, positive=False)
    return _Settings(
        output_dir=output_dir,
        root=posix(output_dir),
        python_path=python_path,
        ignore=ignore,
        jobs=jobs,
        debounce_s=debounce_s or 0.0,
        rescan_s=rescan_s or 0.0,
        on_busy=settings.choice("on_busy", OnBusy) or OnBusy.QUEUE,
        watcher=settings.choice("watcher", WatcherKind) or WatcherKind.NATIVE,
    )


def _jobs(settings: _Reader) -> int:
    jobs = settings.table.get("jobs", 2)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        settings.problem(f'"jobs" must be a whole number >= 1, got {_show(jobs)}')
        return 2
    return jobs


def _stage_tables(problems: list[str], file: str, raw: object) -> list[Any]:
    """The [[stage]] array as written; an empty one is a problem only of a file with no other."""
    if not isinstance(raw, list):
        problems.append(f'{file}: "stage" must be an array of tables: write each stage as [[stage]]')
        raw = []
    if not raw and not problems:
        problems.append(f"{file}: no stages: add at least one [[stage]] table")
    return raw


def _parse_stages(problems: list[str], file: str, raw_stages: list[Any], settings: _Settings) -> list[Stage]:
    context = _StageContext(
        file=file,
        root=settings.root,
        python_path=settings.python_path,
        ignore=settings.ignore,
        rules=IgnoreRules(settings.root, settings.ignore),
    )
    seen: dict[str, int] = {}
    stages: list[Stage] = []
    for index, raw in enumerate(raw_stages, start=1):
        stage = _parse_stage(problems, context, index, raw, seen)
        if stage is not None:
            stages.append(stage)
    return stages


def _parse_serve(problems: list[str], file: str, raw: object, root: str) -> ServeSettings:
    """The [serve] table: read by every command, so `check` finds its mistakes before `serve`."""
    reader = _Reader(problems, file, "[serve]", _table(problems, file, "[serve]", raw))
    reader.unknown_keys(SERVE_KEYS)
    folder = reader.string("root")
    if folder is not None and not folder.strip():
        reader.problem('"root" is empty; name the folder to serve, relative to output_dir')
        folder = None
    port = reader.table.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        reader.problem(f'"port" must be a whole number from 0 to 65535 (0: any free port), got {_show(port)}')
        port = DEFAULT_PORT
    bind = reader.string("bind", DEFAULT_BIND) or DEFAULT_BIND
    if not bind.strip() or any(char.isspace() for char in bind):
        reader.problem(f'"bind" must be a host name or address such as "127.0.0.1", got {_show(bind)}')
        bind = DEFAULT_BIND
    return ServeSettings(
        root=None if folder is None else absolute(folder, root),
        port=port,
        bind=bind,
    )


@dataclass(frozen=True, slots=True)
class _StageContext:
    """What every stage's table is read against: the file, output_dir, the shared settings."""

    file: str
    root: str
    python_path: tuple[str, ...]
    ignore: tuple[str, ...]
    rules: IgnoreRules


def _parse_stage(
    problems: list[str], context: _StageContext, index: int, raw: object, seen: dict[str, int]
) -> Stage | None:
    """One [[stage]] table, or None when it has a problem (each recorded); `seen` gathers names."""
    table = _table(problems, context.file, f"stage #{index}", raw)
    name = table.get("name")
    reader = _Reader(problems, context.file, _stage_where(index, name), table)
    before = len(problems)
    reader.unknown_keys(STAGE_KEYS)
    _check_name(reader, index, seen)
    module = reader.string("module")
    function = reader.string("function")
    command = _command(reader)
    _check_runs_what(reader, module, function)
    inputs = reader.strings("inputs")
    outputs = reader.strings("outputs")
    after = reader.strings("after")
    sources = reader.strings("sources")
    ttl_s = reader.duration("ttl", None, positive=True)
    timeout_s = reader.duration("timeout", None, positive=True)
    on_busy = reader.choice("on_busy", OnBusy)
    _check_outputs(reader, outputs, context.root)
    placeholder, misuse = placeholder_problems(inputs, outputs, sources, command)
    for problem in misuse:
        reader.problem(problem)
    if len(problems) > before or not isinstance(name, str):
        return None
    # Only of outputs that are themselves sound: their problems above say more.
    _check_own_outputs_unread(reader, outputs, inputs, sources, context)
    if len(problems) > before:
        return None
    return Stage(
        name=name,
        module=module,
        function=function or "run",
        command=command,
        inputs=inputs,
        outputs=outputs,
        ttl_s=ttl_s,
        timeout_s=timeout_s,
        after=after,
        sources=sources,
        python_path=context.python_path,
        ignore=context.ignore,
        on_busy=on_busy,
        placeholder=placeholder,
    )


def _stage_where(index: int, name: object) -> str:
    """How a stage's problems name it: by its name when it has a usable one, else by position."""
    if not isinstance(name, str) or not name:
        return f"stage #{index}"
    if len(name.encode()) > MAX_STAGE_NAME:
        return f'stage #{index} ("{name[:20]}...")'  # the whole name would bury the message
    return f'stage "{name}"'


def _check_name(reader: _Reader, index: int, seen: dict[str, int]) -> None:
    """A name is present, well formed, short enough for the files named after it, and unique."""
    table = reader.table
    name = table.get("name")
    if "name" not in table:
        reader.problem('missing "name"')
    elif not isinstance(name, str) or not STAGE_NAME.fullmatch(name):
        reader.problem(f'"name" {_show(name)} is invalid: use letters, digits, "_", "-" and "."')
    elif len(name.encode()) > MAX_STAGE_NAME:
        longest = f".{name[:20]}...{ENTRY_SUFFIX}{ENTRY_TEMP_TAIL}"
        reader.problem(
            f'"name" is {len(name)} characters long; at most {MAX_STAGE_NAME} fit in the file names'
            f' stagewatch keeps for it (the longest is "{longest}")'
        )
    elif name in seen:
        reader.problem(f'duplicate name (stage #{seen[name]} is also "{name}")')
    else:
        seen[name] = index


def _command(reader: _Reader) -> tuple[str, ...] | None:
    """ "command" as an argv list; a string is refused with the shell form it likely meant."""
    if "command" not in reader.table:
        return None
    value = reader.table["command"]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return tuple(value)
    if isinstance(value, str):
        reader.problem(
            f'"command" must be a list of strings (argv, no shell), got a string; for a shell'
            f' write ["sh", "-c", {_show(value)}]'
        )
    else:
        reader.problem(f'"command" must be a non-empty list of strings, got {_show(value)}')
    return None


def _check_runs_what(reader: _Reader, module: str | None, function: str | None) -> None:
    """Exactly one of "module" and "command"; "function" only beside "module"."""
    table = reader.table
    if "module" in table and "command" in table:
        reader.problem('give either "module" or "command", not both')
    elif "module" not in table and "command" not in table:
        misspelled = any(did_you_mean(key, ("module", "command")) for key in table if key not in STAGE_KEYS)
        if not misspelled:  # "comand" was already pointed out
            reader.problem('missing "module" or "command": say what the stage runs')
    if module is not None and not MODULE_NAME.fullmatch(module):
        reader.problem(f'"module" {_show(module)} is not a dotted Python module name')
    if function is not None:
        if "command" in table:
            reader.problem('"function" only goes with "module", not with "command"')
        elif not function.isidentifier():
            reader.problem(f'"function" {_show(function)} is not a Python identifier')


def _check_outputs(reader: _Reader, outputs: tuple[str, ...], root: str) -> None:
    """Each output a file or folder inside output_dir, clear of stagewatch's own cache."""
    cache = posix(absolute(CACHE_DIR, root))
    for output in outputs:
        target = absolute(output, root)
        if classify(output) is PathKind.GLOB:
            reader.problem(f'"outputs": "{output}" is a glob; outputs must be files or folders ending in "/"')
        elif target == root:
            reader.problem(f'"outputs": "{output}" is output_dir itself; name a file or folder inside it')
        elif not is_within(target, root):
            reader.problem(f'"outputs": "{output}" is outside output_dir ({root})')
        elif is_within(target, cache) or is_within(cache, target):
            reader.problem(f'"outputs": "{output}" overlaps stagewatch\'s own cache ({CACHE_DIR}/)')


def _check_own_outputs_unread(
    reader: _Reader,
    outputs: tuple[str, ...],
    inputs: tuple[str, ...],
    sources: tuple[str, ...],
    context: _StageContext,
) -> None:
    """No stage reads what it writes: each of its runs would make the next one due."""
    for output in outputs:
        for read in inputs + sources:
            if output_feeds(output, read, context.root, context.rules):
                key = "inputs" if read in inputs else "sources"
                reader.problem(
                    f'"{key}": "{read}" reads the stage\'s own output "{output}"'
                    + (
                        " (add the output folder to [pipeline] ignore if it never holds inputs)"
                        if classify(read) is PathKind.GLOB
                        else ""
                    )
                )
                break


def _check_drivers(problems: list[str], file: str, stages: list[Stage], root: str) -> None:
    """A pattern stage's driver matches no stage's outputs: instances would come and go with
    another stage's runs."""
    for stage in stages:
        if not stage.is_template:
            continue
        found = driver(stage, root)
        for other in stages:
            clash = next((out for out in other.outputs if driver_overlaps(found, out, root)), None)
            if clash is not None:
                problems.append(
                    f'{file}: stage "{stage.name}": "inputs": the driver "{driver_of(stage)}" of'
                    f' {{{stage.placeholder}}} matches "{clash}", an output of stage "{other.name}";'
                    " a driver must match only files people write"
                )
                break


def _check_references(
    problems: list[str], file: str, stages: list[Stage], declared: list[str], root: str
) -> None:
    """`after` names a declared stage; no two stages write the same file (or into each other's folder)."""
    names = declared
    writers: dict[str, str] = {}
    folders: dict[str, list[tuple[str, str]]] = {}  # absolute folder -> (as written, stage)
    for stage in stages:
        for before in stage.after:
            if before == stage.name:
                problems.append(f'{file}: stage "{stage.name}": "after" names the stage itself')
            elif before not in names:
                hint = did_you_mean(before, tuple(names))
                problems.append(f'{file}: stage "{stage.name}": "after": no stage named "{before}"{hint}')
        for output in stage.outputs:
            target = absolute(output, root)
            other = writers.get(target)
            if other is not None and other != stage.name:
                problems.append(
                    f'{file}: stage "{stage.name}": "outputs": "{output}"'
                    f' is also an output of stage "{other}"'
                )
            writers[target] = stage.name
            if output.endswith("/"):
                folders.setdefault(target, []).append((output, stage.name))
    for stage in stages:
        for output in stage.outputs:
            # The folders above an output, not every folder output: linear in the stages.
            folder = absolute(output, root)
            while folder != "/":
                folder = posixpath.dirname(folder)
                for written, owner in folders.get(folder, ()):
                    if owner != stage.name:
                        problems.append(
                            f'{file}: stage "{stage.name}": "outputs": "{output}" lies inside the output'
                            f' folder "{written}" of stage "{owner}"'
                        )
