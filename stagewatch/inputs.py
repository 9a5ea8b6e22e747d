"""Look at a stage's declared files: expand inputs (folders, globs) to files, and check outputs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from stagewatch.freshness import FileProblem, Trouble
from stagewatch.paths import (
    IgnoreRules,
    PathKind,
    absolute,
    classify,
    compile_glob,
    glob_base,
    glob_depth,
    glob_may_match_below,
    is_within,
    label,
)
from stagewatch.regular import kind_of


@dataclass(frozen=True, slots=True)
class Expansion:
    """The files a list of patterns names (absolute, unique), and the explicit names that are a problem."""

    files: tuple[str, ...]
    problems: tuple[FileProblem, ...]


def walk_files(
    folder: str,
    rules: IgnoreRules,
    depth: int | None = None,
    unreadable: Callable[[str, OSError], None] | None = None,
) -> Iterator[str]:
    """Every file below folder, pruning ignored folders as it goes; with `depth`, only files
    that many levels down or fewer (1: the folder's own files).

    Symlinked folders are followed (a site often links a shared folder in), each real
    folder once, so a link loop ends. A folder that vanished is not there; one that is there
    but cannot be listed is told to `unreadable` (its files are unknown, not absent) and
    skipped.
    """
    if is_within(folder, rules.cache_dir):
        return  # what the files below ask of the rules takes this as known
    seen: set[tuple[int, int]] = set()
    stack = [(folder, 1)]
    while stack:
        current, level = stack.pop()
        try:
            st = os.stat(current)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(current))
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone since it was listed, or replaced by a file: there is nothing below
        except OSError as exc:
            if unreadable is not None:
                unreadable(current, exc)
            continue
        prefix = current.rstrip("/") + "/"
        for entry in entries:
            name = entry.name
            path = prefix + name
            try:
                if entry.is_dir():
                    if (depth is None or level < depth) and not rules.ignores_entry(path, True, name):
                        stack.append((path, level + 1))
                elif entry.is_file() and not rules.ignores_walked_file(path, name):
                    yield path
            except OSError:
                # A file that vanished mid-walk (an editor's temp, say) is simply not there.
                continue


def expand(patterns: Iterable[str], output_dir: str, rules: IgnoreRules) -> Expansion:
    """Files first named explicitly, then found by folders and globs; an explicit name that is
    missing, or is not what it is declared as, is a problem (a FIFO is never a file to read)."""
    found: set[str] = set()
    problems: list[FileProblem] = []
    # Several globs below one folder walk it once; with what could not be listed there.
    walked: dict[tuple[str, int | None], tuple[list[str], list[tuple[str, OSError]]]] = {}

    def files_below(folder: str, depth: int | None = None, glob: str | None = None) -> list[str]:
        if (folder, depth) not in walked:
            unlisted: list[tuple[str, OSError]] = []
            files = list(walk_files(folder, rules, depth, lambda path, exc: unlisted.append((path, exc))))
            walked[folder, depth] = files, unlisted
        files, unlisted = walked[folder, depth]
        for path, exc in unlisted:
            # Unreadable is not absent: the files the pattern would find there are unknown.
            if glob is None or path == folder or glob_may_match_below(glob, path):
                problem = FileProblem(
                    label(path, output_dir), Trouble.FOLDER_UNREADABLE, exc.strerror or str(exc)
                )
                if problem not in problems:
                    problems.append(problem)
        return files

    for pattern in patterns:
        kind = classify(pattern)
        path = absolute(pattern, output_dir)
        if kind is PathKind.GLOB:
            if os.path.isfile(path):
                found.add(path)  # a file whose name only looks like a glob ("data[1].csv")
                continue
            base = glob_base(path)
            if not rules.ignores(base, is_dir=True):
                matches = compile_glob(path)
                found.update(p for p in files_below(base, glob_depth(path, base), path) if matches(p))
        elif os.path.isdir(path):
            # A folder named without its trailing "/" is still read as the folder it is;
            # inside an ignored folder it reads as empty, as the graph and the watcher see it.
            if not rules.ignores(path, is_dir=True):
                found.update(files_below(path))
        elif kind is PathKind.FILE and os.path.isfile(path):
            found.add(path)
        else:
            problems.append(_problem(pattern, path, kind))
    return Expansion(files=tuple(sorted(found)), problems=tuple(problems))


def _problem(pattern: str, path: str, kind: PathKind) -> FileProblem:
    """Why an explicit name is not a file (or folder) to read: missing, a broken link, another kind."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        broken = os.path.islink(path)
        return FileProblem(pattern, Trouble.BROKEN_LINK if broken else Trouble.MISSING)
    except OSError as exc:  # a folder on the way that cannot be searched, a symlink loop
        return FileProblem(pattern, Trouble.UNREADABLE, exc.strerror or str(exc))
    if kind is PathKind.FOLDER:
        return FileProblem(pattern, Trouble.NOT_A_FOLDER, kind_of(st.st_mode))
    return FileProblem(pattern, Trouble.NOT_REGULAR, kind_of(st.st_mode))


def missing_outputs(outputs: Iterable[str], output_dir: str) -> tuple[str, ...]:
    """The declared outputs that are not there; one ending in "/" must be a folder."""
    missing = []
    for output in outputs:
        path = absolute(output, output_dir)
        present = os.path.isdir(path) if output.endswith("/") else os.path.exists(path)
        if not present:
            missing.append(output)
    return tuple(missing)
