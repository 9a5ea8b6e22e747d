"""Path rules, without I/O: input kinds, glob matching with "**", and what is ignored."""

from __future__ import annotations

import enum
import fnmatch
import os
import posixpath
import re
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from functools import lru_cache

CACHE_DIR = "_build/.cache"

# Editors' temporary and backup names (docs/design.md#editors-save-by-rename).
EDITOR_TEMP_PATTERNS = (
    "*.swp",
    "*.swx",
    "*.swo",
    "*~",
    ".#*",
    "#*#",
    "4913",
    "*___jb_tmp___",
    "*___jb_old___",
    "*___jb_bak___",
    ".goutputstream-*",
    ".sb-*",
    "*.kate-swp",
)
# Version-control metadata and Python's bytecode: a stage importing its own module writes
# __pycache__, which must never change a key or wake the daemon.
IGNORED_DIR_NAMES = frozenset({".git", ".hg", ".svn", "__pycache__"})
_MAGIC = frozenset("*?[")


class PathKind(enum.Enum):
    """How an entry of inputs/outputs/sources is read."""

    FILE = "file"
    FOLDER = "folder"
    GLOB = "glob"


def classify(pattern: str) -> PathKind:
    if pattern.endswith("/"):
        return PathKind.FOLDER
    if any(char in _MAGIC for char in pattern):
        return PathKind.GLOB
    return PathKind.FILE


def absolute(pattern: str, output_dir: str) -> str:
    """The pattern as a normalized absolute posix path (no trailing slash); relative ones join output_dir."""
    return posixpath.normpath(posixpath.join(output_dir, pattern.rstrip("/") or "/"))


def label(path: str, output_dir: str) -> str:
    """The path as the key and people see it: relative to output_dir when inside it, else absolute."""
    # Both are absolute and normalized: slicing is relpath without its cost (5,000 calls a check).
    if path.startswith(output_dir) and path[len(output_dir) : len(output_dir) + 1] == "/":
        return path[len(output_dir) + 1 :]
    if path == output_dir:
        return "."
    return path


def is_within(path: str, folder: str) -> bool:
    """Whether path is folder itself or lies below it (both absolute and normalized)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _any_of(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One compiled regex for a list of fnmatch patterns: one match per name instead of one per pattern."""
    patterns = list(patterns)
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)) if patterns else None


_EDITOR_TEMP = _any_of(EDITOR_TEMP_PATTERNS)


def is_editor_temp(name: str) -> bool:
    return _EDITOR_TEMP is not None and _EDITOR_TEMP.match(name) is not None


def split(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.split("/") if part)


def glob_base(pattern: str) -> str:
    """The longest leading folder of an absolute glob that holds no wildcard."""
    literal: list[str] = []
    for part in split(pattern):
        if any(char in _MAGIC for char in part):
            break
        literal.append(part)
    return "/" + "/".join(literal)


def glob_depth(pattern: str, base: str) -> int | None:
    """How many levels below its base a glob's files lie; None when "**" lets them lie at any."""
    rest = split(pattern)[len(split(base)) :]
    return None if "**" in rest else len(rest)


@lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], path: tuple[str, ...], prefix_only: bool) -> bool:
    if not pattern:
        # Both used up: the path itself matches; in prefix mode nothing below it can.
        return not path and not prefix_only
    if not path:
        # A folder prefix that a longer pattern can still go on below.
        return prefix_only or all(part == "**" for part in pattern)
    head = pattern[0]
    if head == "**":
        return _match(pattern[1:], path, prefix_only) or _match(pattern, path[1:], prefix_only)
    return fnmatchcase(path[0], head) and _match(pattern[1:], path[1:], prefix_only)


def glob_matches(pattern: str, path: str) -> bool:
    """Whether an absolute path matches an absolute glob; "**" spans any number of folders."""
    return compile_glob(pattern)(path)


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> Callable[[str], bool]:
    """A matcher of normalized absolute paths for one absolute glob, built for a walk's many paths.

    The literal folders up front are one prefix test; each wildcard part is a regex compiled
    once per distinct part ("*.md" for a thousand stages is one), since compiling a regex per
    glob costs more than the walk it serves.
    """
    names = split(pattern)
    literal = 0
    while literal < len(names) and not any(char in _MAGIC for char in names[literal]):
        literal += 1
    prefix = "/" + "/".join(names[:literal])
    rest = names[literal:]
    if rest.count("**") > 1:
        return lambda path: _match(names, split(path), False)
    parts = [_part_matcher(part) for part in rest]
    star = rest.index("**") if "**" in rest else -1
    head, tail = (parts, []) if star < 0 else (parts[:star], parts[star + 1 :])
    below = prefix if prefix == "/" else prefix + "/"
    start = len(below)
    # The shapes pipelines write, answered without splitting the path.
    if len(rest) == 1 and star < 0:  # "content/*.md"
        name_matches = parts[0]
        return lambda path: (
            path.startswith(below)
            and "/" not in path[start:]
            and len(path) > start
            and name_matches(path[start:])
        )
    if len(rest) == 2 and star == 0:  # "content/**/*.md"
        name_matches = parts[1]
        return lambda path: (
            path.startswith(below) and len(path) > start and name_matches(path[path.rfind("/") + 1 :])
        )

    def matches(path: str) -> bool:
        if path == prefix:
            found: list[str] = []
        elif path.startswith(below):
            found = path[len(below) :].split("/")
        else:
            return False
        if star < 0 and len(found) != len(head):
            return False
        if len(found) < len(head) + len(tail):
            return False
        return all(match(name) for match, name in zip(head, found, strict=False)) and all(
            match(name) for match, name in zip(tail, found[len(found) - len(tail) :], strict=True)
        )

    return matches


@lru_cache(maxsize=1024)
def _part_matcher(part: str) -> Callable[[str], bool]:
    """Whether one name matches one part of a glob; "**" is the caller's to handle."""
    if not any(char in _MAGIC for char in part):
        return part.__eq__
    regex = re.compile(_part_regex(part), re.DOTALL)
    return lambda name: regex.fullmatch(name) is not None


def _part_regex(part: str) -> str:
    """One path part's fnmatch pattern as a regex that never crosses a "/"."""
    out: list[str] = []
    i, n = 0, len(part)
    while i < n:
        char = part[i]
        i += 1
        if char == "*":
            if not out or out[-1] != "[^/]*":
                out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            # The bracket expression's end is found as fnmatch finds it; its meaning
            # (ranges, "!", escapes) is fnmatch's own translation.
            j = i
            if j < n and part[j] == "!":
                j += 1
            if j < n and part[j] == "]":
                j += 1
            while j < n and part[j] != "]":
                j += 1
            if j >= n:
                out.append("\\[")
                continue
            translated = fnmatch.translate(part[i - 1 : j + 1])
            out.append("(?=[^/])" + translated[len("(?s:") : -len(")\\Z")])
            i = j + 1
        else:
            out.append(re.escape(char))
    return "".join(out)


def glob_may_match_below(pattern: str, folder: str) -> bool:
    """Whether some path below folder could match the glob (for the graph's folder edges)."""
    return _match(split(pattern), split(folder), True)


_FOLDERS_KEPT = 65536


class IgnoreRules:
    """What globs, folder inputs and the watcher leave out, for one output_dir and its `ignore` list."""

    def __init__(self, output_dir: str, patterns: tuple[str, ...] = ()) -> None:
        self.output_dir = output_dir
        self.cache_dir = posixpath.join(output_dir, CACHE_DIR)
        self._anchored: list[tuple[str, bool]] = []
        self._names: list[tuple[str, bool]] = []
        for raw in patterns:
            dir_only = raw.endswith("/")
            text = raw.rstrip("/")
            if "/" in text:
                self._anchored.append((absolute(text, output_dir), dir_only))
            else:
                self._names.append((text, dir_only))
        self._any_name = _any_of(pattern for pattern, _ in self._names)
        self._folders: dict[str, bool] = {}
        self._file_names = _any_of(pattern for pattern, dir_only in self._names if not dir_only)
        # A walk asks of every file: the editor's names and the user's in one regex.
        self._walked_file_names = _any_of(
            [*EDITOR_TEMP_PATTERNS, *(pattern for pattern, dir_only in self._names if not dir_only)]
        )

    def ignores_name(self, name: str, is_dir: bool) -> bool:
        """The rules that look at one name, for a walk that prunes as it goes."""
        if is_dir:
            if name in IGNORED_DIR_NAMES:
                return True
        elif is_editor_temp(name):
            return True
        names = self._any_name if is_dir else self._file_names
        return names is not None and names.match(name) is not None

    def ignores_entry(self, path: str, is_dir: bool, name: str | None = None) -> bool:
        """Whether this one entry is left out, its folders being already known to be kept."""
        if self.ignores_name(posixpath.basename(path) if name is None else name, is_dir):
            return True
        if is_within(path, self.cache_dir):
            return True
        return any(
            glob_matches(pattern, path) and (is_dir or not dir_only) for pattern, dir_only in self._anchored
        )

    def ignores_walked_file(self, path: str, name: str) -> bool:
        """ignores_entry for a file a walk found below a folder it kept: such a folder is never
        inside the cache folder, so only the names and the anchored patterns are left to ask."""
        assert self._walked_file_names is not None
        if self._walked_file_names.match(name) is not None:
            return True
        return any(glob_matches(pattern, path) and not dir_only for pattern, dir_only in self._anchored)

    def ignores(self, path: str, is_dir: bool = False) -> bool:
        """Whether an absolute path is left out, by its own name or by a folder above it.

        Folders are looked at up to output_dir, not above: the rules speak of the project.
        """
        if self.ignores_entry(path, is_dir):
            return True
        if not is_within(path, self.output_dir):
            return False
        return self._inside_ignored(posixpath.dirname(path))

    def _inside_ignored(self, folder: str) -> bool:
        """Whether folder, or one above it below output_dir, is left out. The rules are fixed
        and the answer is the path's alone: kept, since a pipeline's paths share few folders."""
        known = self._folders.get(folder)
        if known is not None:
            return known
        if folder == self.output_dir or not is_within(folder, self.output_dir):
            answer = False
        else:
            answer = self.ignores_entry(folder, True) or self._inside_ignored(posixpath.dirname(folder))
        if len(self._folders) >= _FOLDERS_KEPT:
            self._folders.clear()  # a daemon sees new folders for months: bounded, not a leak
        self._folders[folder] = answer
        return answer


def posix(path: os.PathLike[str] | str) -> str:
    return os.fspath(path).replace(os.sep, "/")
