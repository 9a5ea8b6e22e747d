"""Whether a stage's module can run: found on its python_path, not named like a standard-library
module, defining the function it calls. One rule and one wording, for `check`, the key and a run."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from stagewatch.codedeps import function_problem, stdlib_shadowed


class ModuleTrouble(enum.Enum):
    SHADOWED = "named like the standard library's"
    NOT_FOUND = "not found"
    UNCALLABLE = "its function cannot be called"  # or its source is no valid Python


@dataclass(frozen=True, slots=True)
class ModuleProblem:
    """What keeps a stage's module from running. `sentence` says it after the module's name;
    `key` is the stage's key to blame ("module" or "function"); `source` is the file read."""

    module: str
    trouble: ModuleTrouble
    sentence: str
    key: str = "module"
    source: str | None = None

    def __str__(self) -> str:
        # A name not found is quoted: it is what was asked for, not a module there is.
        name = repr(self.module) if self.trouble is ModuleTrouble.NOT_FOUND else self.module
        return f"module {name} {self.sentence}"


def shadowing(stdlib: str) -> str:
    """What is wrong with a stage module whose top-level name is a standard-library module's."""
    return (
        f"is named like the standard library's {stdlib}: the run would import Python's own {stdlib};"
        " rename it"
    )


def module_problems(
    module: str, source: str | None, search_path: Sequence[str], function: str | None = None
) -> list[ModuleProblem]:
    """Every reason the module cannot run, the weightiest first. `source` is its file as found
    on `search_path` (None: not found); `function`, when given, is checked by reading the source.

    A name like the standard library's comes first: even once found, the run would import
    Python's own module instead.
    """
    problems: list[ModuleProblem] = []
    shadowed = stdlib_shadowed(module)
    if shadowed is not None:
        problems.append(ModuleProblem(module, ModuleTrouble.SHADOWED, shadowing(shadowed)))
    if source is None:
        where = ", ".join(search_path)
        problems.append(ModuleProblem(module, ModuleTrouble.NOT_FOUND, f"not found on python_path ({where})"))
    elif function is not None and (wrong := function_problem(source, function)) is not None:
        key, sentence = wrong
        problems.append(ModuleProblem(module, ModuleTrouble.UNCALLABLE, sentence, key, source))
    return problems
