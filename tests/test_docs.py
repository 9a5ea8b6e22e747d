"""The design account the code cites: every `docs/design.md#anchor` a comment or the README
names is a heading there, and nothing cites a document outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

pytestmark = pytest.mark.timeout(10)

ROOT = REPO
CITED = re.compile(r"docs/design\.md#([a-z0-9-]+)")


def anchors(markdown: str) -> set[str]:
    """Headings as GitHub names their anchors: lowercase, punctuation gone, spaces as hyphens."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^a-z0-9 -]", "", title).replace(" ", "-"))
    return found


def citing_files() -> list[Path]:
    return [*sorted((ROOT / "stagewatch").rglob("*.py")), ROOT / "README.md"]


def test_every_cited_section_of_the_design_account_exists() -> None:
    known = anchors((ROOT / "docs" / "design.md").read_text())
    cited = {
        f"{path.relative_to(ROOT)}: {anchor}"
        for path in citing_files()
        for anchor in CITED.findall(path.read_text())
    }
    assert len(cited) > 20
    assert [site for site in sorted(cited) if site.split(": ")[1] not in known] == []


def test_nothing_cites_a_document_outside_the_repository() -> None:
    stray = re.compile(r"DESIGN §|REFERENCES\.md|shared/")
    assert [str(path.relative_to(ROOT)) for path in citing_files() if stray.search(path.read_text())] == []
