"""The command line's grammar and words: the options, the commands, each one's help and examples."""

from __future__ import annotations

import argparse
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from stagewatch import __version__
from stagewatch.suggest import did_you_mean


@dataclass(frozen=True, slots=True)
class CommandHelp:
    """What `stagewatch COMMAND --help` says: a line for the list, a paragraph, examples."""

    summary: str
    description: str
    examples: tuple[str, ...]


COMMAND_HELP: dict[str, CommandHelp] = {
    "watch": CommandHelp(
        "keep the pipeline fresh as files change",
        "Build what is stale, then watch every stage's inputs and code and rerun what a change"
        " affects, and TTL stages when they expire. Ctrl-C or SIGTERM stops it; under systemd"
        " (no terminal), SIGHUP reloads the pipeline file.",
        ("stagewatch watch", "stagewatch --config site/stagewatch.toml watch --jobs 4"),
    ),
    "serve": CommandHelp(
        "watch, and serve the site live to a browser",
        "Watch (as `watch`) and serve the site folder on http://127.0.0.1:8000/: open tabs"
        " reload when what they show changes, and show a stage's failure.",
        ("stagewatch serve --open", "stagewatch serve --port 0    # any free port, said at start"),
    ),
    "build": CommandHelp(
        "bring stages up to date once",
        "Run every stale stage (or the named ones and what they depend on) in dependency order,"
        " then exit: 0 when all succeeded, 1 when a stage failed.",
        ("stagewatch build", "stagewatch build render --force", "stagewatch build --dry-run"),
    ),
    "status": CommandHelp(
        "one row per stage: fresh, stale, ...",
        "Each stage's state (fresh, stale, never run, failed, running), why, its last run and"
        " TTL left, and whether a daemon is watching. A pattern stage is one row that counts its"
        " instances by state and names those failing or running; named stages (or --json) list"
        " each instance on its own row.",
        ("stagewatch status", "stagewatch status page", "stagewatch status --json"),
    ),
    "explain": CommandHelp(
        "why a stage would run",
        "Which inputs, code or outputs of a stage differ from its last successful run, and its TTL age.",
        ("stagewatch explain render",),
    ),
    "invalidate": CommandHelp(
        "make stages run next round",
        "Forget stages' last successes, so that they run again: at the next build, or at once"
        " under a running daemon (after the current run, if one is under way).",
        ("stagewatch invalidate render", "stagewatch invalidate --all"),
    ),
    "accept": CommandHelp(
        "record current inputs as built",
        "Record a stage's current inputs and code as built without running it (after a"
        " cosmetic edit). Refused while the stage runs, or when an output is missing.",
        ("stagewatch accept render",),
    ),
    "graph": CommandHelp(
        "print the stage graph",
        "The stages in order, with what links each to the ones before it.",
        ("stagewatch graph", "stagewatch graph --format dot | dot -Tsvg > graph.svg"),
    ),
    "check": CommandHelp(
        "validate the pipeline file",
        "Read the pipeline file and say what is wrong with it (exit 2), or list its stages in"
        " order. Nothing runs, no stage code is imported.",
        ("stagewatch check", "stagewatch --config ci/stagewatch.toml check"),
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse, with the command a mistyped one most likely meant."""

    def error(self, message: str) -> NoReturn:
        typed = re.search(r"invalid choice: '([^']*)'", message)
        if typed is not None and self._subparsers is not None:
            names = [name for action in self._subparsers._group_actions for name in action.choices or ()]
            message += did_you_mean(typed.group(1), names)
        super().error(message)


def parser() -> argparse.ArgumentParser:
    """The whole command line: the common options, and each command with its own."""
    common = _common_options()
    parser = _Parser(
        prog="stagewatch", parents=[common],
        description="Keep a pipeline of stages up to date by content hash.",
        epilog="`stagewatch COMMAND --help` says what a command does, its options and examples.",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"stagewatch {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=argparse.ArgumentParser
    )
    for name, add_options in _COMMAND_OPTIONS.items():
        words = COMMAND_HELP[name]
        command = commands.add_parser(
            name, parents=[common], help=words.summary, description=textwrap.fill(words.description, 78),
            epilog="examples:\n" + "\n".join(f"  {line}" for line in words.examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        add_options(command)
    return parser


def _common_options() -> argparse.ArgumentParser:
    """The options every command takes, before or after its name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="pipeline file (default: $STAGEWATCH_CONFIG, else ./stagewatch.toml)",
    )
    common.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default=argparse.SUPPRESS,
        help="auto: console on a terminal, JSON lines otherwise",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_const",
        const=1,
        dest="verbosity",
        default=argparse.SUPPRESS,
        help="also log fresh stages and details",
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_const",
        const=-1,
        dest="verbosity",
        default=argparse.SUPPRESS,
        help="only warnings and errors",
    )
    return common


def _jobs_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--jobs", "-j", type=_positive_int, metavar="N", help="stages at once")


def _watch_options(watch: argparse.ArgumentParser) -> None:
    _jobs_option(watch)
    watch.add_argument("--serve", action="store_true", help="and serve the site, live (as `serve`)")
    _preview_options(watch)


def _serve_options(serve: argparse.ArgumentParser) -> None:
    _jobs_option(serve)
    _preview_options(serve)


def _build_options(build: argparse.ArgumentParser) -> None:
    build.add_argument("stages", nargs="*", metavar="STAGE", help="these stages and what they depend on")
    build.add_argument("--force", action="store_true", help="run the selected stages even if fresh")
    build.add_argument("--dry-run", action="store_true", help="print what would run and why")
    _jobs_option(build)


def _status_options(status: argparse.ArgumentParser) -> None:
    status.add_argument(
        "stages",
        nargs="*",
        metavar="STAGE",
        help="only these stages (a pattern stage's name: each of its instances)",
    )
    status.add_argument("--json", action="store_true", help="machine-readable")


def _explain_options(explain: argparse.ArgumentParser) -> None:
    explain.add_argument("stage", metavar="STAGE")


def _invalidate_options(invalidate: argparse.ArgumentParser) -> None:
    invalidate.add_argument("stages", nargs="*", metavar="STAGE")
    invalidate.add_argument("--all", action="store_true", help="every stage")


def _accept_options(accept: argparse.ArgumentParser) -> None:
    accept.add_argument("stages", nargs="+", metavar="STAGE")


def _graph_options(graph: argparse.ArgumentParser) -> None:
    graph.add_argument("--format", choices=("text", "dot", "json"), default="text")


def _no_options(command: argparse.ArgumentParser) -> None:
    """A command that takes only the common options."""


_COMMAND_OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "watch": _watch_options,
    "serve": _serve_options,
    "build": _build_options,
    "status": _status_options,
    "explain": _explain_options,
    "invalidate": _invalidate_options,
    "accept": _accept_options,
    "graph": _graph_options,
    "check": _no_options,
}
"""Each command's own options, in the order `stagewatch --help` lists the commands."""


def _preview_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bind", metavar="ADDR", help="address to listen on (default 127.0.0.1, or [serve] bind)"
    )
    parser.add_argument(
        "--port", type=_port, metavar="N", help="port (default 8000, or [serve] port; 0: any free one)"
    )
    parser.add_argument("--open", action="store_true", help="open the site in a browser")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535 (0: any free port), got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
