"""Find a stage module's source and its project-local imports, by reading (never importing) them."""

from __future__ import annotations

import ast
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import PathFinder

from stagewatch.regular import open_regular


@dataclass(frozen=True, slots=True)
class ModuleFile:
    """A module found on the search path: its dotted name, its file (None for a namespace package)."""

    name: str
    path: str | None
    is_package: bool
    locations: tuple[str, ...]


class ModuleResolver:
    """Resolves dotted names on one search path with PathFinder, which executes nothing.

    Only the search path is consulted, so the standard library and installed packages are
    never followed: they are not the project's code.
    """

    def __init__(self, search_path: Sequence[str]) -> None:
        self.search_path = list(search_path)
        self._found: dict[str, ModuleFile | None] = {}

    def find(self, name: str) -> ModuleFile | None:
        if name in self._found:
            return self._found[name]
        parent_name, _, leaf = name.rpartition(".")
        if parent_name:
            parent = self.find(parent_name)
            path = list(parent.locations) if parent is not None and parent.is_package else None
        else:
            path = self.search_path
        found = None
        if path:
            spec = PathFinder.find_spec(leaf, path)
            if spec is not None:
                origin = spec.origin if spec.has_location and spec.origin else None
                locations = tuple(spec.submodule_search_locations or ())
                found = ModuleFile(name, origin, spec.submodule_search_locations is not None, locations)
        self._found[name] = found
        return found

    def chain(self, name: str) -> list[ModuleFile]:
        """The module and every package above it that importing it executes, outermost first."""
        parts = name.split(".")
        found = [self.find(".".join(parts[: i + 1])) for i in range(len(parts))]
        return [module for module in found if module is not None]


def stdlib_shadowed(module: str) -> str | None:
    """The standard-library module a stage module's top-level name collides with, if any.

    The stage's interpreter has that one already loaded, or finds it before the project's
    own for every library that imports it: the run would not be the code the key hashed.
    """
    top = module.partition(".")[0]
    return top if top in sys.stdlib_module_names else None


def resolve_module_source(module: str, search_path: Sequence[str]) -> str | None:
    """The source file of a dotted module name on search_path, or None when it is not there."""
    found = ModuleResolver(search_path).find(module)
    return found.path if found is not None else None


def _imported_names(tree: ast.AST, module: ModuleFile) -> list[str]:
    """Dotted names an import statement may load, candidates included ("from pkg import x": pkg.x)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.name if module.is_package else module.name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                if not package:
                    continue  # beyond the top-level package: the import fails at run time
                base = f"{package}.{node.module}" if node.module else package
            elif node.module:
                base = node.module
            else:  # pragma: no cover - "from import x" is not valid Python
                continue
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _parse(path: str) -> ast.AST | None:
    try:
        with open_regular(path) as handle, warnings.catch_warnings():
            # A SyntaxWarning about the user's code ("\d" in a string) is not ours to print,
            # and under -W error it must not hide the module's imports.
            warnings.simplefilter("ignore")
            return ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        # An unreadable or broken module adds no dependencies; its run will say what is wrong.
        return None


def find_code_dependencies(module: str, search_path: Sequence[str]) -> list[str]:
    """Files of the project-local modules that `module` imports, transitively, without itself.

    Packages above each imported module count too (their __init__ runs on import).
    """
    resolver = ModuleResolver(search_path)
    root = resolver.find(module)
    if root is None:
        return []
    files: set[str] = set()
    seen: set[str] = set()
    pending = [root, *resolver.chain(module)]
    while pending:
        current = pending.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        if current.path is None or not os.path.isfile(current.path):
            continue
        files.add(current.path)
        if not current.path.endswith(".py"):
            continue  # extension modules are hashed, not read
        tree = _parse(current.path)
        if tree is None:
            continue
        for name in _imported_names(tree, current):
            pending.extend(m for m in resolver.chain(name) if m.name not in seen)
    files.discard(root.path or "")
    return sorted(files)
