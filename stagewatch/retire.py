"""A pattern stage's instance that is gone (its driver file deleted or renamed away): finding
what such instances left in the cache, and removing it with the outputs they declared
(docs/design.md#pattern-stages). Nothing else is ever deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import structlog

from stagewatch.entry import ENTRY_SUFFIX, EntryFiles
from stagewatch.layout import LOG_SUFFIX, CacheLayout, remove_emptied_folders
from stagewatch.paths import absolute, is_within, posix
from stagewatch.patterns import instantiate
from stagewatch.pipeline import Pipeline

log = structlog.get_logger(__name__)

_KEPT_SUFFIXES = (ENTRY_SUFFIX, LOG_SUFFIX)


def _recorded_names(cache_dir: Path, pattern: str) -> Iterator[str]:
    """Instance names of `pattern` that have an entry or a log in the cache."""
    prefix = f"{pattern}:"
    try:
        top = list(os.scandir(cache_dir))
    except OSError:
        return
    for item in top:
        if not item.name.startswith(prefix):
            continue
        if item.is_dir(follow_symlinks=False):
            for folder, _dirs, files in os.walk(item.path):
                relative = posix(os.path.relpath(folder, cache_dir))
                for file in files:
                    yield from _name_of(f"{relative}/{file}")
        else:
            yield from _name_of(item.name)


def _name_of(relative: str) -> Iterator[str]:
    for suffix in _KEPT_SUFFIXES:
        if relative.endswith(suffix) and not os.path.basename(relative).startswith("."):
            yield relative[: -len(suffix)]


def gone_instances(pipeline: Pipeline) -> list[str]:
    """Instances whose entry or log is in the cache but whose driver file is gone."""
    layout = CacheLayout(pipeline.output_dir)
    gone: set[str] = set()
    for pattern in pipeline.patterns:
        for name in _recorded_names(layout.dir, pattern):
            if not pipeline.has_stage(name) and name != pattern:
                gone.add(name)
    return sorted(gone)


def retire(pipeline: Pipeline, names: Iterable[str]) -> list[str]:
    """Remove each gone instance's declared outputs, its entry and its log; the outputs removed.

    The outputs are the pattern stage's as declared now, with the instance's value: a page
    deleted leaves the site. A path that a stage of the pipeline declares as its output now
    is kept (another instance, or another stage, writes it).
    """
    root = posix(pipeline.output_dir)
    layout = CacheLayout(pipeline.output_dir)
    entries = EntryFiles(layout.dir, pipeline.output_dir)
    declared_now = {absolute(out, root) for stage in pipeline.stages for out in stage.outputs}
    removed: list[str] = []
    for name in names:
        pattern, _, value = name.partition(":")
        if not pipeline.is_pattern(pattern) or pipeline.has_stage(name):
            continue
        template = pipeline.template(pattern)
        instance = instantiate(template, value)
        for declared, output in zip(template.outputs, instance.outputs, strict=True):
            path = absolute(output, root)
            if path in declared_now or not is_within(path, root) or path == root:
                continue
            if _remove(path, folder=output.endswith("/")):
                removed.append(output)
                # Folders the value made ("guide/" of "guide/intro") go when left empty; the
                # folder the pattern writes into stays, whatever reads it.
                stop = _literal_folder(declared, "{" + (template.placeholder or "") + "}", root)
                remove_emptied_folders(Path(path), Path(stop))
        with contextlib.suppress(OSError):
            layout.log(name).unlink()
        with contextlib.suppress(OSError):
            entries.remove(name)  # its folders in the cache go with it, once empty
        log.info("stage.instance_removed", stage=name, outputs=removed)
    return removed


def _remove(path: str, folder: bool) -> bool:
    try:
        if folder and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("stage.output_not_removed", path=path, problem=exc.strerror or str(exc))
        return False
    return True


def _literal_folder(declared: str, token: str, root: str) -> str:
    """The folder of a declared output before its placeholder: "_build/site" of "_build/site/{page}.html"."""
    literal = absolute(declared, root)
    literal = literal[: literal.index(token)] if token in literal else literal
    return literal.rstrip("/") if literal.endswith("/") else os.path.dirname(literal)
