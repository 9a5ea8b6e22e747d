"""The package's imports: one-shot commands load only what they use (no asyncio, no watchdog,
DESIGN §9), and the imports among stagewatch's own modules flow one way, with no circle."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.paths import PACKAGE, TESTS
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(60)

DAEMON_ONLY = ("asyncio", "ssl", "watchdog", "aiohttp")
# What sits on top: the command line, the entry script, the daemon and the preview.
FACES = (
    "stagewatch.__main__",
    "stagewatch.launch",
    "stagewatch.cli",
    "stagewatch.daemon",
    "stagewatch.serve",
)


def imported(project: Project, *argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the command as a user does, and the modules Python loaded for it."""
    env = {key: value for key, value in os.environ.items() if key != "STAGEWATCH_CONFIG"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stagewatch", *argv],
        cwd=project.root, capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return proc, modules


@pytest.fixture
def built(project: Project) -> Project:
    project.write("pipeline/__init__.py", "")
    project.write("pipeline/page.py", "def run(out):\n    (out / 'page.txt').write_text('hi')\n")
    project.write("content/a.md", "a")
    project.config(
        """
        [[stage]]
        name = "page"
        module = "pipeline.page"
        inputs = ["content/**/*.md"]
        outputs = ["page.txt"]
        """
    )
    return project


def test_a_build_that_runs_and_a_no_op_build_never_load_the_daemons_modules(built: Project) -> None:
    for _ in range(2):  # the first runs the stage and logs through structlog; the second is a no-op
        proc, modules = imported(built, "build")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "stagewatch.build" in modules
        assert sorted(m for m in modules if m.split(".")[0] in DAEMON_ONLY) == []
    assert built.read("page.txt") == "hi"


@pytest.mark.parametrize("argv", [("status",), ("check",), ("explain", "page")])
def test_other_one_shot_commands_never_load_the_daemons_modules(
    built: Project, argv: tuple[str, ...]
) -> None:
    assert built.cli("build").returncode == 0
    proc, modules = imported(built, *argv)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stagewatch.cli" in modules
    assert sorted(m for m in modules if m.split(".")[0] in DAEMON_ONLY) == []


def test_the_stand_in_for_asyncio_becomes_asyncio_at_its_first_use(tmp_path: object) -> None:
    code = (
        "import sys\n"
        "from stagewatch import launch\n"
        "launch._asyncio_on_first_use()\n"
        "import structlog, asyncio\n"
        "assert 'base_events' not in dir(asyncio)\n"
        "async def answer():\n"
        "    await asyncio.sleep(0)\n"
        "    return 42\n"
        "print(asyncio.run(answer()), sys.modules['asyncio'] is not asyncio, asyncio.Future)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("42 True <class '_asyncio.Future'>")


# --- the import graph, read from the sources ---


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_targets(node: ast.AST, package: str, modules: set[str]) -> Iterator[str]:
    """The stagewatch modules one import statement loads: "from stagewatch.daemon import runs"
    is the module stagewatch.daemon.runs, "from ..pipeline import Pipeline" is stagewatch.pipeline."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "stagewatch")
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join([*base, *([node.module] if node.module else [])])
        else:
            target = node.module or ""
        if target.split(".")[0] == "stagewatch":
            for alias in node.names:
                below = f"{target}.{alias.name}"
                yield below if below in modules else target


def import_graph() -> dict[str, set[str]]:
    """Module -> the stagewatch modules it imports anywhere: at its top, inside functions, and
    under TYPE_CHECKING (a circle there is one an annotation's reader walks, and the first
    import moved out of TYPE_CHECKING makes it real). A package imported on the way to its
    module is not an arrow: every __init__ of the package imports nothing at run time."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[name] = {
            target
            for node in ast.walk(tree)
            for target in imported_targets(node, package, set(paths))
            if target != name
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports, as the modules along it (the first again at its end), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(name: str) -> list[str] | None:
        path.append(name)
        on_path.add(name)
        for target in sorted(graph.get(name, ())):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done:
                found = visit(target)
                if found is not None:
                    return found
        path.pop()
        on_path.discard(name)
        done.add(name)
        return None

    for name in sorted(graph):
        if name not in done:
            found = visit(name)
            if found is not None:
                return found
    return None


def is_face(name: str) -> bool:
    return any(name == face or name.startswith(face + ".") for face in FACES)


def test_the_graph_is_read_from_every_kind_of_import() -> None:
    graph = import_graph()
    assert "stagewatch.daemon.coordinator" in graph["stagewatch.daemon.shell"]  # at the top
    assert "stagewatch.cli" in graph["stagewatch.launch"]  # inside a function
    assert "stagewatch.daemon.view" in graph["stagewatch.serve.server"]  # under TYPE_CHECKING


def test_the_cycle_finder_names_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_among_stagewatch_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or ())


def test_the_entry_script_is_imported_by_nothing_but_main() -> None:
    graph = import_graph()
    assert sorted(name for name, targets in graph.items() if "stagewatch.launch" in targets) == [
        "stagewatch.__main__"
    ]


def test_the_core_imports_nothing_of_the_faces_but_the_daemons_states() -> None:
    """The daemon's states are values beside the daemon, which the core's words of `status`
    may name: they import nothing of the faces."""
    values = {"stagewatch.daemon.events"}
    graph = import_graph()
    reaching_up = {
        name: sorted(target for target in targets if is_face(target) and target not in values)
        for name, targets in graph.items()
        if not is_face(name)
    }
    assert {name: up for name, up in reaching_up.items() if up} == {}
    assert not any(is_face(target) for target in graph["stagewatch.daemon.events"])
    assert graph["stagewatch.serve"] == set()  # importing the package loads nothing


# --- the tests' own imports ---


def imported_test_modules(tree: ast.AST) -> set[str]:
    """The test_* modules of tests/ that one file's imports load, wherever in it they stand."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            inside = node.level > 0 or base.split(".")[0] == "tests"
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)] if inside else []
        else:
            continue
        found |= {name.strip(".") for name in names if name.rsplit(".", 1)[-1].startswith("test_")}
    return found


def test_no_test_module_imports_another() -> None:
    """What tests share lives in tests/helpers: a test module is never imported by another."""
    example = "import tests.test_a\nfrom tests.cli.test_b import c\nfrom . import test_d\nfrom tests import e"
    assert imported_test_modules(ast.parse(example)) == {"tests.test_a", "tests.cli.test_b", "test_d"}
    importing = {
        str(path.relative_to(TESTS.parent)): sorted(
            imported_test_modules(ast.parse(path.read_text(), str(path)))
        )
        for path in sorted(TESTS.rglob("*.py"))
    }
    assert {path: names for path, names in importing.items() if names} == {}
