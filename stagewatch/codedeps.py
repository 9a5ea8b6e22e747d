"""Find a stage module's source, its project-local imports and the names it defines, by reading
(never importing) them."""

from __future__ import annotations

import ast
import contextlib
import importlib
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.machinery import PathFinder

from stagewatch.file_identity import FileIdentity, identity_at, settled
from stagewatch.regular import open_regular
from stagewatch.suggest import closest


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
    never followed: they are not the project's code. What it found stays true while the
    folders it looked in, and the package folders it could have found, are the same folders
    with the same mtime and ctime (a file added, removed or renamed there changes both; a
    folder swapped in, or restored with its old mtime, changes its identity or its ctime), so
    one resolver serves many stages and many checks (`still_current`).
    """

    def __init__(self, search_path: Sequence[str]) -> None:
        self.search_path = list(search_path)
        self._found: dict[str, ModuleFile | None] = {}
        self._folders: dict[str, FolderState] = {}  # folder -> as it was when first looked in

    def still_current(self, now_ns: int) -> bool:
        """Whether every folder looked in is as it was, and was not changed so close to then
        that a later change within its timestamp tick could hide (as for digests)."""
        for folder, state in self._folders.items():
            if state != identity_at(folder) or (state is not None and not settled(state.mtime_ns, now_ns)):
                return False
        return True

    def _look_in(self, folders: Sequence[str]) -> None:
        for folder in folders:
            if folder not in self._folders:
                self._folders[folder] = identity_at(folder)

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
            # And a folder of that name: its __init__.py, made beside a module of the same
            # name, wins from then on, yet changes only that folder's mtime. (A folder made
            # later changes its parent's; kept are only those there, or every check would
            # stat a path per name ever looked up.)
            below = (os.path.join(folder, leaf) for folder in path)
            self._look_in([*path, *(folder for folder in below if os.path.isdir(folder))])
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


# A folder as it was; None while it is not there (or not searchable): as long as that stays
# so, nothing is found in it.
FolderState = FileIdentity | None


class Resolvers:
    """One ModuleResolver per search path, kept while it is still current."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, ...], ModuleResolver] = {}

    def for_path(self, search_path: Sequence[str]) -> ModuleResolver:
        key = tuple(search_path)
        kept = self._kept.get(key)
        if kept is None or not kept.still_current(time.time_ns()):
            if kept is not None:
                # PathFinder keeps folder listings by mtime too: a change it cannot see by
                # mtime (a folder restored with its old one) would still be missed.
                importlib.invalidate_caches()
            kept = self._kept[key] = ModuleResolver(search_path)
        return kept


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


def nearby_module(module: str, search_path: Sequence[str]) -> str | None:
    """The module a dotted name that cannot be found most likely meant: a near name beside
    where it was looked for ("pipeline.rendr": "pipeline.render"), or the same name one folder
    down ("render": "pipeline.render", when python_path misses that folder)."""
    parent, _, last = module.rpartition(".")
    near: set[str] = set()
    for entry in search_path:
        folder = os.path.join(entry, *parent.split(".")) if parent else entry
        near.update(name for name, _ in _module_names(folder))
    found = closest(last, near)
    if found is not None:
        return f"{parent}.{found}" if parent else found
    for entry in search_path:
        for name, is_package in _module_names(entry):
            below = os.path.join(entry, name, *module.split("."))
            if is_package and (os.path.isfile(below + ".py") or os.path.isdir(below)):
                return f"{name}.{module}"
    return None


def _module_names(folder: str) -> list[tuple[str, bool]]:
    """The modules a folder holds, (name, is a folder), by their files' names alone."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    names = []
    for entry in entries:
        stem, dot, suffix = entry.name.partition(".")
        with contextlib.suppress(OSError):
            if entry.is_dir() and not dot and entry.name.isidentifier():
                names.append((entry.name, True))
            elif suffix == "py" and stem.isidentifier() and entry.is_file():
                names.append((stem, False))
    return names


# One import statement as (level, module, names): "from ..a import b, c" is (2, "a", ("b", "c")),
# "import a.b" is (0, "a.b", ()). A file's statements depend on its bytes alone, so they
# can be kept by its digest and read again only when it changes.
ImportStatement = tuple[int, str, tuple[str, ...]]


def read_imports(path: str) -> tuple[ImportStatement, ...]:
    """The import statements of a Python source file, found anywhere in it (functions too)."""
    tree = _parse(path)
    if tree is None:
        return ()
    statements: list[ImportStatement] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            statements.extend((0, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            statements.append((node.level, node.module or "", names))
    return tuple(statements)


def imported_names(statements: Iterable[ImportStatement], module: ModuleFile) -> list[str]:
    """Dotted names the statements may load, candidates included ("from pkg import x": pkg.x)."""
    names: list[str] = []
    for level, name, imported in statements:
        if level:
            package = module.name if module.is_package else module.name.rpartition(".")[0]
            for _ in range(level - 1):
                package = package.rpartition(".")[0]
            if not package:
                continue  # beyond the top-level package: the import fails at run time
            base = f"{package}.{name}" if name else package
        elif name:
            base = name
        else:  # pragma: no cover - "from import x" is not valid Python
            continue
        names.append(base)
        names.extend(f"{base}.{alias}" for alias in imported if alias != "*")
    return names


def function_problem(path: str, name: str) -> tuple[str, str] | None:
    """What reading the module in `path` says is wrong with calling `name(output_dir)` in it,
    as (the stage's key to blame, "module" or "function"; the sentence), or None when nothing
    is (or reading cannot tell: a file that is not Python source, or that cannot be read, is
    for its run to say).

    The name must be bound at the module's top level (or inside an `if`, `try`, `with` or loop
    there), unless something could bind it unseen: a star import, a module `__getattr__`,
    `globals()`, a `global` statement. A plain `def` of it must take an argument.
    """
    if not path.endswith(".py"):
        return None
    try:
        tree = _parse_strictly(path)
    except SyntaxError as exc:
        return "module", f"is not valid Python: {exc.msg} (line {exc.lineno})"
    except (OSError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Global) or _binds_unseen(node):
            return None
    bound = _top_level_names(tree.body)
    if name not in bound and "*" not in bound and "__getattr__" not in bound:
        return "function", f'defines no function "{name}"'
    defs = [node for node in tree.body if getattr(node, "name", None) == name]
    if len(defs) == 1 and isinstance(defs[0], ast.FunctionDef) and _takes_no_argument(defs[0].args):
        return "function", f'"{name}" takes no argument, and is called as {name}(output_dir)'
    return None


# What can bind a module's globals where reading cannot see: globals()["run"] = ...,
# exec("def run..."), setattr(sys.modules[__name__], "run", ...), vars()["run"] = ...
_UNSEEN_BINDERS = frozenset({"globals", "vars", "exec", "eval", "setattr"})


def _binds_unseen(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _UNSEEN_BINDERS
    return isinstance(node, ast.Attribute) and node.attr in ("modules", "__dict__")


def _takes_no_argument(args: ast.arguments) -> bool:
    return not (args.posonlyargs or args.args or args.vararg)


def _top_level_names(body: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    pending: list[ast.AST] = list(body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            continue  # what its body binds is its own
        if isinstance(node, ast.Import):
            names.update((alias.asname or alias.name).partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
                pending.append(child)
            elif isinstance(child, ast.expr | ast.withitem):
                names.update(_targets(child))
        if isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def _targets(node: ast.AST) -> set[str]:
    """Names an expression at the top level stores to: assignment targets, loop and `with`
    targets, walrus."""
    return {
        child.id
        for child in ast.walk(node)
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store)
    } | {child.target.id for child in ast.walk(node) if isinstance(child, ast.NamedExpr)}


def _parse(path: str) -> ast.AST | None:
    try:
        return _parse_strictly(path)
    except (OSError, SyntaxError, ValueError):
        # An unreadable or broken module adds no dependencies; its run will say what is wrong.
        return None


def _parse_strictly(path: str) -> ast.Module:
    with open_regular(path) as handle, warnings.catch_warnings():
        # A SyntaxWarning about the user's code ("\d" in a string) is not ours to print,
        # and under -W error it must not hide the module's imports.
        warnings.simplefilter("ignore")
        return ast.parse(handle.read(), filename=path)


def find_code_dependencies(
    module: str,
    resolver: ModuleResolver,
    imports_of: Callable[[str], Iterable[ImportStatement]] = read_imports,
) -> list[str]:
    """Files of the project-local modules that `module` imports, transitively, without itself.

    Packages above each imported module count too (their __init__ runs on import).
    `imports_of` gives a source file's import statements (a cache may answer for it).
    """
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
        for name in imported_names(imports_of(current.path), current):
            pending.extend(m for m in resolver.chain(name) if m.name not in seen)
    files.discard(root.path or "")
    return sorted(files)
