"""Summarise data/repos.toml into _build/stats.json (a local file standing in for a live API)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path


def run(output_dir: Path) -> None:
    data = tomllib.loads((output_dir / "data" / "repos.toml").read_text(encoding="utf-8"))
    repos = data.get("repo", [])
    stats = {"repos": len(repos), "stars": sum(int(repo.get("stars", 0)) for repo in repos)}
    text = json.dumps(stats, indent=1, sort_keys=True) + "\n"
    target = output_dir / "_build" / "stats.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same numbers, same bytes: the index downstream is skipped (early cutoff).
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    print(f"{stats['repos']} repos, {stats['stars']} stars")
