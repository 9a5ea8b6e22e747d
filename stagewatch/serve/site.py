"""The site folder: which folder it is, and which file (if any) a URL path means, never one outside it."""

from __future__ import annotations

import enum
import os
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stagewatch.paths import absolute, is_within, posix
from stagewatch.pipeline import Pipeline

INDEX = "index.html"
NOT_FOUND_PAGE = "404.html"


@dataclass(frozen=True, slots=True)
class SiteRoot:
    """The folder served, and why that one (said when the preview starts)."""

    path: str
    why: str
    has_index: bool = True  # False: a guess that holds no index.html, said as a warning


def find_site_root(pipeline: Pipeline, isfile: Callable[[str], bool] = os.path.isfile) -> SiteRoot:
    """[serve] root; else the first output folder that holds an index.html (a stage's output file
    named index.html counts before it is built); else the first output folder, said as such."""
    if pipeline.serve.root is not None:
        return SiteRoot(pipeline.serve.root, "[serve] root")  # chosen: its index may come later
    root = posix(pipeline.output_dir)
    folders: list[tuple[str, str]] = []
    for stage in pipeline.stages:
        for output in stage.outputs:
            target = absolute(output, root)
            if output.endswith("/"):
                folders.append((target, stage.name))
                if isfile(posixpath.join(target, INDEX)):
                    return SiteRoot(target, f'the first output folder holding {INDEX} (stage "{stage.name}")')
            elif posixpath.basename(target) == INDEX:
                return SiteRoot(posixpath.dirname(target), f'stage "{stage.name}" writes its {INDEX}')
    if folders:
        target, name = folders[0]
        return SiteRoot(
            target, f'no output folder holds an {INDEX} yet: the first one (stage "{name}")', False
        )
    parents = [posixpath.dirname(absolute(o, root)) for stage in pipeline.stages for o in stage.outputs]
    common = posixpath.commonpath(parents) if parents else root
    return SiteRoot(common, f"no output folder holds an {INDEX}: the folder of every output", False)


class Kind(enum.Enum):
    """What a URL path comes to."""

    FILE = "file"
    LISTING = "listing"  # a folder without index.html
    REDIRECT = "redirect"  # a folder asked for without its trailing slash
    MISSING = "missing"
    REFUSED = "refused"  # outside the site folder, by '..', encoding or symlink


@dataclass(frozen=True, slots=True)
class Found:
    kind: Kind
    path: str | None = None  # the file (FILE), the folder (LISTING)
    location: str | None = None  # REDIRECT


def url_segments(url_path: str) -> list[str] | None:
    """The decoded URL path's segments; None when it tries to climb out or smuggle a separator."""
    if "\x00" in url_path or "\\" in url_path or not url_path.startswith("/"):
        return None
    segments = [segment for segment in url_path.split("/") if segment not in ("", ".")]
    if any(segment == ".." for segment in segments):
        return None
    return segments


def candidates(root: str, url_path: str) -> list[str]:
    """Every file a URL path may come to (before looking): what stages may still be writing."""
    segments = url_segments(url_path)
    if segments is None:
        return []
    target = posixpath.join(root, *segments)
    return [target, target + ".html", posixpath.join(target, INDEX)]


def resolve(root: str, url_path: str, hidden: Iterable[str] = ()) -> Found:
    """A decoded URL path -> what to serve from `root`. Symlinks are followed only while their
    target stays inside the site folder; `hidden` folders (stagewatch's cache) are never served."""
    segments = url_segments(url_path)
    if segments is None:
        return Found(Kind.REFUSED)
    real_root = os.path.realpath(root)
    target = posixpath.join(root, *segments)

    def inside(path: str) -> bool:
        real = os.path.realpath(path)
        return is_within(real, real_root) and not any(is_within(real, folder) for folder in hidden)

    if os.path.isdir(target):
        if not inside(target):
            return Found(Kind.REFUSED)
        if not url_path.endswith("/"):
            return Found(Kind.REDIRECT, location=url_path + "/")
        index = posixpath.join(target, INDEX)
        if os.path.isfile(index):
            return Found(Kind.FILE, index) if inside(index) else Found(Kind.REFUSED)
        return Found(Kind.LISTING, target)
    if os.path.isfile(target):
        return Found(Kind.FILE, target) if inside(target) else Found(Kind.REFUSED)
    if os.path.lexists(target) and not inside(target):
        return Found(Kind.REFUSED)  # a dangling or special link pointing out: say nothing of it
    if segments and "." not in segments[-1] and not url_path.endswith("/"):
        pretty = target + ".html"  # /about -> about.html
        if os.path.isfile(pretty):
            return Found(Kind.FILE, pretty) if inside(pretty) else Found(Kind.REFUSED)
    return Found(Kind.MISSING)


def not_found_page(root: str) -> str | None:
    """The site's own 404.html, if it has one inside the site folder."""
    page = posixpath.join(root, NOT_FOUND_PAGE)
    real = os.path.realpath(page)
    return page if os.path.isfile(page) and is_within(real, os.path.realpath(root)) else None


def listing(folder: str) -> list[tuple[str, bool]]:
    """A folder's entries for its index page: (name, is a folder), folders first; hidden names left out."""
    entries = []
    with os.scandir(folder) as found:
        for entry in found:
            if not entry.name.startswith("."):
                entries.append((entry.name, entry.is_dir()))
    return sorted(entries, key=lambda item: (not item[1], item[0]))


def writers_of(pipeline: Pipeline, files: Iterable[str]) -> set[str]:
    """The stages that declare one of these files as an output, or a folder holding it."""
    root = posix(pipeline.output_dir)
    wanted = list(files)
    found = set()
    for stage in pipeline.stages:
        for output in stage.outputs:
            target = absolute(output, root)
            if any(path == target or (output.endswith("/") and is_within(path, target)) for path in wanted):
                found.add(stage.name)
                break
    return found
