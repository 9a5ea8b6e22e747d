"""argv -> a command; the one place that turns stagewatch's errors into exit codes."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import posixpath
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog

from stagewatch.build import BuildRound, plan, resolve_stages, select_stages
from stagewatch.build_signals import OutputGone, Stopped, stopped_by_signals_and_lost_output
from stagewatch.cache import Workspace, check_cache_dir
from stagewatch.codedeps import nearby_module, resolve_module_source
from stagewatch.commandline import parser
from stagewatch.config import load_pipeline, locate_config
from stagewatch.daemon.listener import DaemonListener
from stagewatch.durations import format_duration
from stagewatch.errors import ConfigError, LockHeldError, StagewatchError, UsageError
from stagewatch.freshness import Decision
from stagewatch.graph import Graph
from stagewatch.graph_render import fold_patterns, render_graph
from stagewatch.layout import CacheLayout
from stagewatch.lock import DAEMON_ROLES, PipelineLock, lock_owner
from stagewatch.log import (
    Resolved,
    configure_logging,
    line_sink,
    output_gone,
    resolve_format,
    say_failure,
    say_on_stderr,
)
from stagewatch.paths import PathKind, absolute, classify, glob_base, label, posix
from stagewatch.patterns import driver_of
from stagewatch.pipeline import Pipeline
from stagewatch.regular import kind_of
from stagewatch.retire import gone_instances, retire
from stagewatch.runnable import ModuleTrouble, module_problems
from stagewatch.runner import StageRunner
from stagewatch.signals import restore_defaults, say_stopped, stop_status, take_stop
from stagewatch.stage import Stage
from stagewatch.state import StateRecorder, read_state, running_stages
from stagewatch.status_report import (
    NAMED_PER_STATE,
    explain_lines,
    folded_rows,
    pattern_summaries,
    status_document,
    status_lines,
    status_row,
)
from stagewatch.terminal import has_controlling_terminal

log = structlog.get_logger(__name__)

Command = Callable[[argparse.Namespace, Pipeline, Graph, Resolved, TextIO], int]

# Commands whose output *is* the log go to stdout; the others keep stdout for their data.
_LOGS_ON_STDOUT = {"build", "watch", "serve"}


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            # A file name that is not UTF-8 is shown escaped, never a UnicodeEncodeError.
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    args = parser().parse_args(argv)
    log_stream: TextIO = sys.stdout if args.command in _LOGS_ON_STDOUT else sys.stderr
    fmt = resolve_format(getattr(args, "log_format", "auto"), log_stream)
    output = configure_logging(fmt, _verbosity(args), log_stream)
    if args.command in _LOGS_ON_STDOUT:
        # Said once, as it happens; watch and build then stop by themselves, with exit status 1.
        output.on_broken(
            lambda reason: say_on_stderr(f"stagewatch: its output (stdout) is gone ({reason}); stopping")
        )
    try:
        if getattr(args, "config", None) == "":
            raise UsageError("--config: the path is empty")
        pipeline = load_pipeline(locate_config(getattr(args, "config", None)))
        graph = pipeline.graph
        handler: Command = _COMMANDS[args.command]
        stopped = _stopped_before_start(args.command)
        if stopped is not None:
            return stopped
        if args.command not in ("watch", "serve", "build"):
            restore_defaults()  # short commands: Ctrl-C and SIGTERM act at once, as anywhere
        return handler(args, pipeline, graph, fmt, log_stream)
    except StagewatchError as exc:
        _say_error(args.command, exc)
        return exc.exit_code
    except OutputGone:
        return 1  # already said, when it happened
    except KeyboardInterrupt:
        say_on_stderr("stagewatch: interrupted")
        return 1
    except Stopped as exc:
        say_on_stderr(f"stagewatch: stopped by {exc.args[0] if exc.args else 'SIGTERM'}")
        return 1
    except BrokenPipeError:
        # The reader went away (`stagewatch graph | head -1`): stop quietly, as pip does.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        error = f"error{where}: {exc.strerror or exc}"
        say_failure("command.failed", f"stagewatch: {error}", command=args.command, error=error, exit_code=1)
        return 1


def _say_error(command: str, exc: StagewatchError) -> None:
    """One line for a person; under journald (or a JSON log that stderr joins) the event
    itself, at level error: config.invalid with each problem, as a reload that fails says it."""
    line = f"stagewatch: {exc}" if exc.exit_code != 2 or not _has_file_prefix(exc) else str(exc)
    if isinstance(exc, ConfigError):
        say_failure(
            "config.invalid", line, command=command, problems=exc.problems, action="not started",
            exit_code=exc.exit_code,
        )  # fmt: skip
    else:
        pid = {"pid": exc.pid} if isinstance(exc, LockHeldError) else {}
        say_failure("command.failed", line, command=command, error=str(exc), exit_code=exc.exit_code, **pid)


def _stopped_before_start(command: str) -> int | None:
    """The exit status when a signal asked for a stop before the command could act on it."""
    signame = take_stop()
    if signame is None:
        return None
    say_stopped(signame)
    return stop_status([command])


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _verbosity(args: argparse.Namespace) -> int:
    return int(getattr(args, "verbosity", 0))


def _has_file_prefix(exc: StagewatchError) -> bool:
    return bool(getattr(exc, "problems", None))


def _stage_names(pipeline: Pipeline, names: Sequence[str]) -> list[str]:
    return resolve_stages(pipeline, names)


def cmd_watch(
    args: argparse.Namespace, pipeline: Pipeline, graph: Graph, fmt: Resolved, stream: TextIO
) -> int:
    if not args.serve and (args.bind is not None or args.port is not None or args.open):
        raise UsageError("watch: --bind, --port and --open go with --serve (or use `stagewatch serve`)")
    return _watch(args, pipeline, fmt, stream, serve=args.serve)


def cmd_serve(
    args: argparse.Namespace, pipeline: Pipeline, graph: Graph, fmt: Resolved, stream: TextIO
) -> int:
    return _watch(args, pipeline, fmt, stream, serve=True)


def _watch(args: argparse.Namespace, pipeline: Pipeline, fmt: Resolved, stream: TextIO, serve: bool) -> int:
    from stagewatch.daemon.shell import Daemon  # watchdog and asyncio load only for the daemon
    from stagewatch.daemon.systemd import Notifier

    attached = has_controlling_terminal()
    check_cache_dir(CacheLayout(pipeline.output_dir))  # said in one line before the lock writes there
    with PipelineLock(pipeline.output_dir) as lock:
        lock.acquire("serve" if serve else "watch")
        listener = _preview(args, pipeline) if serve else None
        daemon = Daemon(
            pipeline,
            fmt,
            stream,
            jobs=args.jobs,
            notifier=Notifier(),
            quiet=_verbosity(args) < 0,
            lock=lock,
            listener=listener,
        )
        code = daemon.run()
    # Output lost with the terminal is the terminal's hangup, a clean stop; lost by itself
    # (a closed pipe, a full disk) the daemon stopped for want of it: a failure.
    hung_up = attached and not has_controlling_terminal()
    return 1 if output_gone() is not None and not hung_up else code


def cmd_build(
    args: argparse.Namespace, pipeline: Pipeline, graph: Graph, fmt: Resolved, stream: TextIO
) -> int:
    selected = select_stages(pipeline, graph, args.stages)
    workspace = Workspace(pipeline.output_dir, persistent_digests=True)
    try:
        # --force forces the named stages (all, when none are named); upstream is brought up to date.
        forced = frozenset((resolve_stages(pipeline, args.stages) or selected) if args.force else ())
        gone = gone_instances(pipeline)
        if args.dry_run:
            for name in gone:
                print(f"remove {name}  its file is gone: its outputs and entry would be removed")
            _print_plan(plan(pipeline, graph, workspace, selected, forced))
            return 0
        with PipelineLock(pipeline.output_dir) as lock:
            lock.acquire("build")
            with stopped_by_signals_and_lost_output():
                state = StateRecorder(pipeline.output_dir, "build")
                try:
                    if gone:  # before the round: what reads the site folder sees the page gone
                        retire(pipeline, gone)
                        state.forget(gone)
                    sink = line_sink(fmt, stream, quiet=_verbosity(args) < 0)
                    runner = StageRunner(pipeline.output_dir, on_line=sink)
                    report = BuildRound(pipeline, graph, workspace, runner, state).run(
                        selected, forced=forced, jobs=args.jobs
                    )
                finally:
                    state.close()
        return 0 if report.ok else 1
    finally:
        workspace.close()


def _preview(args: argparse.Namespace, pipeline: Pipeline) -> DaemonListener:
    """The live preview, listening already: a taken port is said before anything runs."""
    from stagewatch.serve.listening import listen, url_of
    from stagewatch.serve.server import Preview  # aiohttp loads only for serve
    from stagewatch.serve.site import find_site_root

    bind = args.bind if args.bind is not None else pipeline.serve.bind
    port = args.port if args.port is not None else pipeline.serve.port
    sock = listen(bind, port, f"--port N or [serve] port in {pipeline.config_path.name}")
    return Preview(sock, url_of(sock, bind), find_site_root(pipeline), bind, args.open)


def _print_plan(decisions: list[tuple[str, Decision]]) -> None:
    width = max((len(name) for name, _ in decisions), default=0)
    for name, decision in decisions:
        if decision.run:
            print(f"run    {name:<{width}}  {'; '.join(str(r) for r in decision.reasons)}")
        else:
            print(f"fresh  {name}")
    count = sum(1 for _, d in decisions if d.run)
    print(f"{count} of {len(decisions)} stages would run")


def cmd_status(
    args: argparse.Namespace, pipeline: Pipeline, graph: Graph, fmt: Resolved, stream: TextIO
) -> int:
    named = resolve_stages(pipeline, args.stages) if args.stages else None
    owner = lock_owner(pipeline.output_dir)
    state = read_state(pipeline.output_dir)
    now = datetime.now(UTC)
    workspace = Workspace(pipeline.output_dir, persistent_digests=True)
    chosen = set(named) if named is not None else None
    rows: list[dict[str, Any]] = []
    try:
        for name in graph.order:
            if chosen is not None and name not in chosen:
                continue
            stage = pipeline.stage(name)
            entry = workspace.read_entry(name)
            decision = workspace.decide_with(stage, workspace.fingerprint(stage), entry=entry)
            attempt, failure = state.stages.get(name), state.failures.get(name)
            rows.append(status_row(name, decision, entry, attempt, failure, owner is not None))
    finally:
        workspace.close()
    # Summed over all of a pattern's instances: every pattern, or the patterns named in full.
    summed = [p for p in pipeline.patterns if named is None or p in args.stages]
    drivers = {pattern: driver_of(pipeline.template(pattern)) for pattern in summed}
    summaries = pattern_summaries(rows, _pattern_of(pipeline), drivers)
    if args.json:
        print(
            json.dumps(status_document(pipeline.config_path, owner, rows, list(summaries.values())), indent=1)
        )
    else:
        # Named stages are listed instance by instance; the whole pipeline, a pattern in one row.
        table = rows if named is not None else folded_rows(rows, _pattern_of(pipeline), summaries)
        print("\n".join(status_lines(table, owner, now)))
    return 0


def _pattern_of(pipeline: Pipeline) -> Callable[[str], str | None]:
    """The pattern stage a stage's name is an instance of; None for a plain stage."""
    return lambda name: pipeline.stage(name).pattern


def cmd_explain(
    args: argparse.Namespace, pipeline: Pipeline, graph: Graph, fmt: Resolved, stream: TextIO
) -> int:
    names = _stage_names(pipeline, [args.stage])
    workspace = Workspace(pipeline.output_dir, persistent_digests=True)
    fresh = 0
    try:
        for name in names:
            stage = pipeline.stage(name)
            fingerprint = workspace.fingerprint(stage)
            decision = workspace.decide_with(stage, fingerprint)
            if len(names) > 1 and not decision.run:
                fresh += 1  # a pattern stage's fresh instances are counted, not each explained
                continue
            entry = workspace.read_entry(name)
            upstream = sorted(graph.upstream[name])
            print("\n".join(explain_lines(stage, decision, entry, fingerprint, upstream)))
    finally:
        workspace.close()
    if len(names) != 1:
        print(f"{args.stage}: {fresh} of {_count(len(names), 'instance')} fresh")
    return 0


def _running_now(pipeline: Pipeline) -> tuple[tuple[int, str] | None, set[str]]:
    """Who holds the pipeline, and the stages it is running now (none when nobody holds it:
    a state.json that says "running" then speaks of a stagewatch that is gone)."""
    owner = lock_owner(pipeline.output_dir)
    return owner, (running_stages(pipeline.output_dir) if owner is not None else set())


def cmd_invalidate(
    args: argparse.Namespace, pipeline: Pipeline, graph: Graph, fmt: str, stream: TextIO
) -> int:
    if args.all == bool(args.stages):
        raise UsageError("invalidate: name the stages, or give --all")
    names = list(pipeline.names) if args.all else _stage_names(pipeline, args.stages)
    owner, running = _running_now(pipeline)
    workspace = Workspace(pipeline.output_dir)
    daemon = owner is not None and owner[1] in DAEMON_ROLES
    for name in names:
        removed = workspace.remove_entry(name)
        if not removed and daemon:
            # No entry to remove (it never succeeded, or failed since): a daemon holds a
            # failed stage until its inputs change, so the deletion must still reach it.
            workspace.announce_invalidation(name)
        if owner is None or (name not in running and (removed or not daemon)):
            print(f"{name}: {'invalidated' if removed else 'no entry (already runs next round)'}")
        elif name not in running:
            print(
                f"{name}: invalidated (it had no entry); the daemon (pid {owner[0]}) runs it next,"
                " once nothing it depends on is failing"
            )
        elif daemon:
            print(f"{name}: invalidated; it is running now, and runs again once this run ends")
        elif removed:
            print(f"{name}: invalidated; it is running now in a build (pid {owner[0]}): this run is not kept")
        else:
            print(
                f"{name}: it is running now in a build (pid {owner[0]}) that will record it;"
                " invalidate it again once the build ends"
            )
    return 0


def cmd_accept(
    args: argparse.Namespace, pipeline: Pipeline, graph: Graph, fmt: Resolved, stream: TextIO
) -> int:
    names = _stage_names(pipeline, args.stages)
    owner, running = _running_now(pipeline)
    workspace = Workspace(pipeline.output_dir, persistent_digests=True)
    refused = 0
    try:
        for name in names:
            stage = pipeline.stage(name)
            if name in running and owner is not None:
                # Its outputs are being written: what is there now is not what the inputs give.
                print(
                    f"{name}: not accepted: it is running now (stagewatch {owner[1] or '?'}, pid {owner[0]});"
                    " accept it once the run has ended",
                    file=sys.stderr,
                )
                refused += 1
                continue
            fingerprint = workspace.fingerprint(stage)
            missing_outputs = workspace.missing_outputs(stage)
            if fingerprint.key is None:
                problems = "; ".join(str(problem) for problem in fingerprint.problems)
                print(f"{name}: not accepted: {problems}", file=sys.stderr)
                refused += 1
            elif missing_outputs:
                print(f"{name}: not accepted: output missing: {', '.join(missing_outputs)}", file=sys.stderr)
                refused += 1
            else:
                try:
                    workspace.record_success(stage, fingerprint.key, fingerprint, None)
                except OSError as exc:  # names the entry itself, never its temporary file
                    what = f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc)
                    print(f"{name}: not accepted: could not write {what}", file=sys.stderr)
                    refused += 1
                    continue
                note = "" if stage.skippable else "; it has no inputs and no ttl, so build runs it anyway"
                print(f"{name}: accepted (current inputs recorded as built{note})")
    finally:
        workspace.close()
    return 1 if refused else 0


def cmd_graph(
    args: argparse.Namespace, pipeline: Pipeline, graph: Graph, fmt: Resolved, stream: TextIO
) -> int:
    folded, instances = fold_patterns(graph, pipeline)
    for line in render_graph(folded, args.format, instances):
        print(line)
    return 0


def cmd_check(
    args: argparse.Namespace, pipeline: Pipeline, graph: Graph, fmt: Resolved, stream: TextIO
) -> int:
    problems, warnings = _runnable_problems(pipeline)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    stages = _count(len(pipeline.declared), "stage")
    if pipeline.patterns:
        instances = sum(len(pipeline.instances_of(pattern)) for pattern in pipeline.patterns)
        stages += f", {_count(instances, 'instance')} of {_count(len(pipeline.patterns), 'pattern stage')}"
    print(f"{pipeline.config_path}: valid, {stages}, output_dir {pipeline.output_dir}")
    folded, counts = fold_patterns(graph, pipeline)
    for index, name in enumerate(folded.order, start=1):
        stage = pipeline.template(name) if name in counts else pipeline.stage(name)
        extra = f", ttl {format_duration(stage.ttl_s)}" if stage.ttl_s is not None else ""
        files = f"{_count(len(stage.inputs), 'input')}, {_count(len(stage.outputs), 'output')}{extra}"
        if name in counts:
            files = f"{_count(counts[name], 'instance')} of {driver_of(stage)}; {files}"
        print(f"{index:>3}. {name}: {stage.code_label} ({files})")
    return 0


def _runnable_problems(pipeline: Pipeline) -> tuple[list[str], list[str]]:
    """What the file cannot say by itself: modules that cannot be found or that the standard
    library shadows (problems), and declared input files that exist nowhere and that no stage
    makes, or that are no regular file (warnings). A pattern stage's module is looked at once,
    as declared; an input that holds its placeholder, for each instance."""
    root = posix(pipeline.output_dir)
    problems: list[str] = []
    warnings: list[str] = []
    made = _MadeIndex(absolute(output, root) for stage in pipeline.stages for output in stage.outputs)
    for declared in pipeline.declared:
        where = f'{pipeline.config_path}: stage "{declared.name}"'
        if declared.module is not None:
            problem = _module_problem(declared, root)
            if problem is not None:
                problems.append(f"{where}: {problem}")
        if not declared.is_template:
            warnings.extend(f"{where}: {said}" for said in _input_warnings(declared, root, made))
            continue
        instances = [pipeline.stage(name) for name in pipeline.instances_of(declared.name)]
        if not instances:
            warnings.append(
                f'{where}: input "{driver_of(declared)}" matches no file: it has no instances (yet)'
            )
        warnings.extend(_instance_warnings(pipeline, declared, instances, root, made))
    return problems, warnings


def _module_problem(stage: Stage, root: str) -> str | None:
    """The weightiest problem of a module stage's module, said for people; the others follow
    from it, or wait for its fix."""
    assert stage.module is not None
    search = stage.search_path(root)
    source = resolve_module_source(stage.module, search)
    found = module_problems(stage.module, source, search, stage.function)
    if not found:
        return None
    problem = found[0]
    said = f'"{problem.key}": {stage.module} {problem.sentence}'
    if problem.trouble is ModuleTrouble.NOT_FOUND:
        near = nearby_module(stage.module, search)
        said += f' (did you mean "{near}"?)' if near is not None else ""
    elif problem.source is not None:
        said += f" ({label(problem.source, root)})"
    return said


def _instance_warnings(
    pipeline: Pipeline, template: Stage, instances: Sequence[Stage], root: str, made: _MadeIndex
) -> list[str]:
    """A pattern stage's input warnings: an input without the placeholder once, as declared;
    one with it for a few instances by name, the others counted. The driver's files exist."""
    token = "{" + str(template.placeholder) + "}"
    driver = driver_of(template)
    shared = tuple(text for text in template.inputs if token not in text)
    where = f'{pipeline.config_path}: stage "{template.name}"'
    said = [f"{where}: {line}" for line in _input_warnings(template, root, made, shared)]
    for position, text in enumerate(template.inputs):
        if token not in text or text == driver:
            continue
        found = [
            (instance.name, line)
            for instance in instances
            for line in _input_warnings(instance, root, made, (instance.inputs[position],))
        ]
        shown = found[:NAMED_PER_STATE]
        said.extend(f'{pipeline.config_path}: stage "{name}": {line}' for name, line in shown)
        if len(found) > len(shown):
            said.append(f'{where}: input "{text}": the same for {len(found) - len(shown)} more instances')
    return said


class _MadeIndex:
    """The paths the stages write, so that whether one lies at, above or below a path is a few
    set lookups, not a scan of ten thousand outputs."""

    def __init__(self, outputs: Iterable[str]) -> None:
        self.paths = set(outputs)
        self.folders: set[str] = set()
        for path in self.paths:
            folder = posixpath.dirname(path)
            while folder not in self.folders:  # its own folders are known once it is
                self.folders.add(folder)
                if folder == "/":
                    break
                folder = posixpath.dirname(folder)

    def covers(self, path: str) -> bool:
        """Some stage writes `path`, or a folder it lies in."""
        return path in self.paths or any(folder in self.paths for folder in _folders_above(path))

    def meets(self, folder: str) -> bool:
        """Some stage writes in `folder`, or writes a folder it lies in."""
        return folder in self.folders or self.covers(folder)


def _folders_above(path: str) -> list[str]:
    found = []
    while path != "/":
        path = posixpath.dirname(path)
        found.append(path)
    return found


def _input_warnings(
    stage: Stage, root: str, made: _MadeIndex, inputs: Sequence[str] | None = None
) -> list[str]:
    """What is wrong with the stage's declared inputs (or `inputs` of them) on disk now."""
    warnings = []
    for pattern in stage.inputs if inputs is None else inputs:
        path = absolute(pattern, root)
        if classify(pattern) is PathKind.GLOB:
            base = glob_base(path)
            if not os.path.isdir(base) and not made.meets(base):
                warnings.append(
                    f'input "{pattern}" matches nothing: {label(base, root)} is no folder'
                    f" (yet), and no stage makes it (paths are relative to {root})"
                )
            continue
        try:
            mode = os.stat(path).st_mode
        except OSError:
            pass
        else:
            if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
                warnings.append(
                    f'input "{pattern}" is not a regular file ({kind_of(mode)}):'
                    " stagewatch never reads it, so the stage fails until it is one"
                )
            continue
        if not made.meets(path):  # a file input may be a folder that stages write in, as in the graph
            warnings.append(f'input "{pattern}" does not exist (yet), and no stage makes it')
    return warnings


_COMMANDS: dict[str, Command] = {
    "watch": cmd_watch,
    "serve": cmd_serve,
    "build": cmd_build,
    "status": cmd_status,
    "explain": cmd_explain,
    "invalidate": cmd_invalidate,
    "accept": cmd_accept,
    "graph": cmd_graph,
    "check": cmd_check,
}
