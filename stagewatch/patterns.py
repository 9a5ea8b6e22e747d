"""Pattern stages (docs/design.md#pattern-stages): the placeholder of a declaration, what its
driver matches, and the instances made from a listing of it.

`expand` is the one pure function that turns declared stages and a listing into the stages
everything else runs (build, the daemon's start, its reloads and its file events all call
it); `list_drivers` is the I/O that makes the listing, and `placeholder_problems` what the
pipeline file is told about a declaration.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from stagewatch.paths import IgnoreRules, PathKind, absolute, classify, is_within
from stagewatch.stage import Stage

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
INSTANCE_SEPARATOR = ":"

Listing = Mapping[str, Sequence[str]]
"""Pattern stage name -> the values its driver matches now, sorted."""


def placeholders_in(texts: Iterable[str]) -> list[str]:
    """The placeholder names the texts hold, in order of first appearance."""
    return list(dict.fromkeys(name for text in texts for name in PLACEHOLDER.findall(text)))


def substitute(text: str, placeholder: str, value: str) -> str:
    return text.replace("{" + placeholder + "}", value)


def driver_of(stage: Stage) -> str:
    """The first input that holds the placeholder: each file it matches is an instance."""
    assert stage.placeholder is not None
    token = "{" + stage.placeholder + "}"
    return next(text for text in stage.inputs if token in text)


@dataclass(frozen=True, slots=True)
class Driver:
    """A pattern stage's driver resolved against output_dir: the folder its files lie below,
    and a matcher that gives an absolute path's value."""

    stage: str
    base: str  # absolute: the literal folder before the first placeholder
    regex: re.Pattern[str]

    def value_of(self, path: str) -> str | None:
        """The instance value `path` makes, or None when the driver does not match it."""
        found = self.regex.fullmatch(path)
        return found.group(1) if found is not None else None


@lru_cache(maxsize=1024)
def compile_driver(stage_name: str, text: str, placeholder: str, root: str) -> Driver:
    path = absolute(text, root)
    token = "{" + placeholder + "}"
    first = path.index(token)
    literal = path[:first]
    base = literal.rstrip("/") if literal.endswith("/") else posixpath.dirname(literal)
    pieces = path.split(token)
    # One or more characters, "/" included; a second occurrence is the same value again.
    regex = re.escape(pieces[0]) + "(.+)" + re.escape(pieces[1])
    regex += "".join(r"\1" + re.escape(piece) for piece in pieces[2:])
    return Driver(stage_name, base or "/", re.compile(regex, re.DOTALL))


def driver(stage: Stage, root: str) -> Driver:
    assert stage.placeholder is not None
    return compile_driver(stage.name, driver_of(stage), stage.placeholder, root)


def instance_name(pattern: str, value: str) -> str:
    return f"{pattern}{INSTANCE_SEPARATOR}{value}"


def instantiate(template: Stage, value: str) -> Stage:
    """The instance of a pattern stage for one value: its placeholder replaced everywhere."""
    placeholder = template.placeholder
    assert placeholder is not None

    def each(texts: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(substitute(text, placeholder, value) for text in texts)

    return dataclasses.replace(
        template,
        name=instance_name(template.name, value),
        inputs=each(template.inputs),
        outputs=each(template.outputs),
        sources=each(template.sources),
        command=None if template.command is None else each(template.command),
        value=value,
    )


def expand(declared: Sequence[Stage], listing: Listing) -> tuple[Stage, ...]:
    """The stages to run: every plain stage, and each pattern stage's instances in its place
    (values in listing order). `after` naming a pattern stage means after all its instances."""
    instances = {
        stage.name: tuple(instance_name(stage.name, value) for value in listing.get(stage.name, ()))
        for stage in declared
        if stage.is_template
    }
    stages: list[Stage] = []
    for stage in declared:
        if any(name in instances for name in stage.after):
            after = tuple(n for name in stage.after for n in instances.get(name, (name,)))
            stage = dataclasses.replace(stage, after=after)
        if stage.is_template:
            stages.extend(instantiate(stage, value) for value in listing.get(stage.name, ()))
        else:
            stages.append(stage)
    return tuple(stages)


def list_drivers(declared: Sequence[Stage], root: str, rules: IgnoreRules) -> dict[str, tuple[str, ...]]:
    """What each pattern stage's driver matches on disk now: its listing, values sorted."""
    from stagewatch.inputs import walk_files  # the walk is I/O: only this function needs it

    listing: dict[str, tuple[str, ...]] = {}
    walked: dict[str, list[str]] = {}
    for stage in declared:
        if not stage.is_template:
            continue
        found = driver(stage, root)
        if found.base not in walked:
            ignored = rules.ignores(found.base, is_dir=True)
            walked[found.base] = [] if ignored else list(walk_files(found.base, rules))
        values = (found.value_of(path) for path in walked[found.base])
        listing[stage.name] = tuple(sorted(value for value in values if value is not None))
    return listing


# --- What a declaration is told about its placeholder ---


def placeholder_problems(
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    sources: tuple[str, ...],
    command: tuple[str, ...] | None,
) -> tuple[str | None, list[str]]:
    """The stage's placeholder (None: a plain stage) and what is wrong with its use, each problem
    as '"key": message'."""
    names = placeholders_in((*inputs, *outputs, *sources, *(command or ())))
    if not names:
        return None, []
    if len(names) > 1:
        shown = " and ".join("{" + name + "}" for name in names)
        return None, [f'"inputs": a pattern stage has one placeholder name; found {shown}']
    name = names[0]
    token = "{" + name + "}"
    problems: list[str] = []
    holders = [text for text in inputs if token in text]
    if not holders:
        fields = (("outputs", outputs), ("sources", sources), ("command", command or ()))
        where = next(key for key, texts in fields if any(token in text for text in texts))
        problems.append(
            f'"{where}": the placeholder {token} is in no input; the first input that holds it'
            " is the driver, whose files make the instances"
        )
        return name, problems
    leading = holders[0]
    if classify(PLACEHOLDER.sub("x", leading)) is not PathKind.FILE:
        problems.append(
            f'"inputs": the driver "{leading}" of {token} holds glob characters or ends in "/";'
            f" {token} itself matches any file name below its folder"
        )
    for output in outputs:
        if token not in output:
            problems.append(f'"outputs": "{output}" has no {token}: every instance would write the same file')
    return name, problems


def driver_overlaps(found: Driver, output: str, root: str) -> bool:
    """Whether the driver can match something written as `output` (a file, or a folder ending
    in "/"; another pattern stage's output with its placeholder)."""
    other = PLACEHOLDER.findall(output)
    if other:
        token = "{" + other[0] + "}"
        samples = [substitute(output, other[0], sample) for sample in ("x", "x/x")]
        prefix = absolute(output.split(token)[0] or ".", root)
        return any(found.value_of(absolute(s, root)) is not None for s in samples) or (
            output.endswith("/") and (is_within(prefix, found.base) or is_within(found.base, prefix))
        )
    target = absolute(output, root)
    if output.endswith("/"):
        return is_within(target, found.base) or is_within(found.base, target)
    return found.value_of(target) is not None
