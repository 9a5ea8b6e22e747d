"""The content-hash cache: stage keys, a workspace's fingerprints and entries, and the library API
(compute_key & co.)."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path
from typing import Literal

import structlog

from stagewatch.codedeps import (
    ImportStatement,
    Resolvers,
    find_code_dependencies,
    read_imports,
)
from stagewatch.entry import (
    ARGV_LABEL,
    CorruptEntry,
    Digests,
    Entry,
    EntryFiles,
    read_entry,
)
from stagewatch.errors import StagewatchError
from stagewatch.freshness import (
    Decision,
    FileProblem,
    Fingerprint,
    Trouble,
    decide,
)
from stagewatch.hashing import DigestCache, sha256_bytes
from stagewatch.inputs import expand, missing_outputs
from stagewatch.layout import CacheLayout
from stagewatch.paths import IgnoreRules, label, posix
from stagewatch.regular import NotRegularFile, kind_of
from stagewatch.runnable import ModuleProblem, ModuleTrouble, module_problems
from stagewatch.stage import DEFAULT_FUNCTION, Stage

log = structlog.get_logger(__name__)


def stage_key(name: str, code_hex: str, deps: Digests, inputs: Digests, function: str | None = None) -> str:
    """The key, byte for byte as docs/design.md#the-key-byte-for-byte lays it out.

    A module stage that calls another function than `run` has it in its key after its code
    (`function:NAME`): the same source calling another function is other code. The default
    adds nothing, so the entries of every stage that calls `run` stay valid.
    """
    h = hashlib.sha256()
    h.update(name.encode())
    h.update(b"code:" + code_hex.encode())
    if function is not None and function != DEFAULT_FUNCTION:
        h.update(b"function:" + function.encode())
    for rel, digest in sorted(deps):
        h.update(b"dep:" + _utf8(rel) + b"=" + digest.encode())
    for rel, digest in sorted(set(inputs)):
        h.update(b"in:" + _utf8(rel) + b"=" + digest.encode())
    return h.hexdigest()


def _utf8(path: str) -> bytes:
    # A file name that is not UTF-8 keeps its own bytes (os.fsdecode's surrogateescape).
    return path.encode("utf-8", "surrogateescape")


def command_code_hex(argv: tuple[str, ...]) -> str:
    return sha256_bytes("\0".join(argv).encode())


def check_cache_dir(layout: CacheLayout) -> None:
    """StagewatchError in one line when _build/.cache, or _build, is a file (someone ran `touch`):
    nothing under it can be read or written, and the error would otherwise name an entry."""
    path = layout.output_dir
    for part in layout.dir.relative_to(layout.output_dir).parts:
        path = path / part
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            return  # made when first needed
        except OSError:
            return  # said by whatever then fails to use it, with its own words
        if not stat.S_ISDIR(mode):
            kind = "a file" if stat.S_ISREG(mode) else kind_of(mode)
            raise StagewatchError(f"{path} is {kind}, not a folder; remove it")


def _unhashable(path: str, error: OSError) -> FileProblem:
    """A file found a moment ago that could not be hashed: gone since, swapped for a FIFO, unreadable."""
    if isinstance(error, FileNotFoundError):
        return FileProblem(path, Trouble.MISSING)
    if isinstance(error, NotRegularFile):
        return FileProblem(path, Trouble.NOT_REGULAR, error.kind)
    return FileProblem(path, Trouble.UNREADABLE, error.strerror or str(error))


def _module_file_problem(problem: ModuleProblem) -> FileProblem:
    """A reason the module cannot run, as one of the reasons its key cannot be made."""
    if problem.trouble is ModuleTrouble.SHADOWED:
        return FileProblem(problem.module, Trouble.MODULE_SHADOWED, problem.sentence)
    return FileProblem(problem.module, Trouble.MODULE_NOT_FOUND)


class Workspace:
    """One output_dir's cache: fingerprints of stages, and the entry files in _build/.cache."""

    def __init__(self, output_dir: Path | str, *, persistent_digests: bool = False) -> None:
        self.output_dir = Path(os.path.abspath(output_dir))
        self.root = posix(self.output_dir)
        self.layout = CacheLayout(self.output_dir)
        self.cache_dir = self.layout.dir
        self.entries = EntryFiles(self.cache_dir, self.output_dir)
        db = self.layout.digests if persistent_digests else None
        if db is not None:
            check_cache_dir(self.layout)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.digests = DigestCache(db)
        self._rules: dict[tuple[str, ...], IgnoreRules] = {}
        self._resolvers = Resolvers()

    def close(self) -> None:
        self.digests.close()

    def rules(self, stage: Stage) -> IgnoreRules:
        rules = self._rules.get(stage.ignore)
        if rules is None:
            rules = self._rules[stage.ignore] = IgnoreRules(self.root, stage.ignore)
        return rules

    def search_path(self, stage: Stage) -> list[str]:
        return stage.search_path(self.root)

    def module_source(self, stage: Stage) -> str | None:
        assert stage.module is not None
        found = self._resolvers.for_path(self.search_path(stage)).find(stage.module)
        return found.path if found is not None else None

    def fingerprint(self, stage: Stage) -> Fingerprint:
        """Hash the stage's code, code dependencies and inputs as they are now."""
        rules = self.rules(stage)
        problems: list[FileProblem] = []
        code_path: str | None = None
        dep_paths: list[str] = []
        if stage.module is not None:
            code_path = self.module_source(stage)
            problems += [_module_file_problem(problem) for problem in self._module_problems(stage, code_path)]
            if code_path is not None:
                resolver = self._resolvers.for_path(self.search_path(stage))
                dep_paths = find_code_dependencies(stage.module, resolver, self._python_imports)
        sources = expand(stage.sources, self.root, rules)
        inputs = expand(stage.inputs, self.root, rules)
        problems += sources.problems
        problems += inputs.problems
        dep_files = sorted(set(dep_paths) | set(sources.files))
        wanted = [*dep_files, *inputs.files] + ([code_path] if code_path else [])
        hashed = self.digests.hash_files(wanted)
        digests = {path: got for path, got in hashed.items() if isinstance(got, str)}
        problems += [
            _unhashable(label(path, self.root), got)
            for path, got in hashed.items()
            if isinstance(got, OSError)
        ]

        def pairs(paths: list[str] | tuple[str, ...]) -> Digests:
            return tuple(sorted((label(p, self.root), digests[p]) for p in paths if p in digests))

        if stage.command is not None:
            code: tuple[str, str] | None = (ARGV_LABEL, command_code_hex(stage.command))
        elif code_path is not None and code_path in digests:
            code = (label(code_path, self.root), digests[code_path])
        else:
            code = None
        deps, input_digests = pairs(dep_files), pairs(inputs.files)
        key = None
        if not problems and code is not None:
            key = stage_key(stage.name, code[1], deps, input_digests, stage.called)
        unique = tuple(dict.fromkeys(problems))
        return Fingerprint(key, code, deps, input_digests, unique, stage.called)

    def _module_problems(self, stage: Stage, code_path: str | None) -> list[ModuleProblem]:
        assert stage.module is not None
        return module_problems(stage.module, code_path, self.search_path(stage))

    def _python_imports(self, path: str) -> tuple[ImportStatement, ...]:
        return self.digests.python_imports(path, read_imports)

    def missing_outputs(self, stage: Stage) -> tuple[str, ...]:
        return missing_outputs(stage.outputs, self.root)

    def entry_path(self, name: str) -> Path:
        return self.entries.path(name)

    def read_entry(self, name: str) -> Entry | CorruptEntry | None:
        entry = read_entry(self.entry_path(name))
        if isinstance(entry, CorruptEntry):
            log.warning("cache.entry_corrupt", stage=name, path=entry.path, problem=entry.problem)
        return entry

    def decide(self, stage: Stage, now: float | None = None, force: bool = False) -> Decision:
        fingerprint = self.fingerprint(stage)
        return self.decide_with(stage, fingerprint, now, force)

    def decide_with(
        self,
        stage: Stage,
        fingerprint: Fingerprint,
        now: float | None = None,
        force: bool = False,
        always_run_unskippable: bool = True,
        entry: Entry | CorruptEntry | Literal["read"] | None = "read",
    ) -> Decision:
        """Decide from a fingerprint; the entry is read unless the caller read it already."""
        return decide(
            stage,
            self.read_entry(stage.name) if entry == "read" else entry,
            fingerprint,
            self.missing_outputs(stage),
            time.time() if now is None else now,
            force,
            always_run_unskippable,
        )

    def record_success(
        self, stage: Stage, key: str, fingerprint: Fingerprint | None, duration_s: float | None
    ) -> None:
        """Write the entry of a successful run: the key it started from, details if they match."""
        self.entries.record(stage.name, key, fingerprint, duration_s)

    def begin_run(self, stage: Stage) -> str | None:
        """Before a run touches the outputs, make the stage's entry a pending one (no key).

        A run that fails or is killed may leave outputs half-written: the last success must
        not vouch for them if the inputs later return to what they were. The entry is
        replaced, never deleted: a deleted entry always means a person's `invalidate`, and
        the pending entry's disappearance during the run says exactly that. Returns the
        pending entry's text (None when there was no entry: a failure writes none);
        OSError, naming the entry, when it cannot be written: then the run must not start.
        """
        return self.entries.begin_run(stage.name, self.read_entry(stage.name))

    def announce_invalidation(self, name: str) -> None:
        self.entries.announce_invalidation(name)

    def remove_entry(self, name: str) -> bool:
        try:
            return self.entries.remove(name)
        except NotADirectoryError:
            check_cache_dir(self.layout)
            raise


# --- The library API, with the seed's names. ---


def compute_key(stage: Stage, output_dir: Path | str) -> str | None:
    """The stage's key now, or None when an explicit input (or its module) is missing."""
    workspace = Workspace(output_dir)
    try:
        return workspace.fingerprint(stage).key
    finally:
        workspace.close()


def should_skip(stage: Stage, output_dir: Path | str) -> bool:
    """Whether the skip rule (docs/design.md#the-skip-rule) lets the stage be skipped now."""
    workspace = Workspace(output_dir)
    try:
        return not workspace.decide(stage).run
    finally:
        workspace.close()


def mark_done(stage: Stage, output_dir: Path | str, key: str | None = None) -> None:
    """Record a successful run; pass the key computed before the run began (docs/design.md#the-skip-rule)."""
    workspace = Workspace(output_dir)
    try:
        fingerprint = workspace.fingerprint(stage)
        if key is None:
            if fingerprint.key is None:
                problems = "; ".join(str(problem) for problem in fingerprint.problems)
                raise ValueError(f"stage {stage.name!r}: no key: {problems}")
            key = fingerprint.key
        workspace.record_success(stage, key, fingerprint, None)
    finally:
        workspace.close()


def invalidate(stage: Stage, output_dir: Path | str) -> bool:
    """Remove the stage's entry so it runs next time; True when there was one."""
    return Workspace(output_dir).remove_entry(stage.name)
