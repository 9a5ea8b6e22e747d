"""Copy every file of static/ (the stylesheet) to _build/site/assets/, as it is."""

from __future__ import annotations

from pathlib import Path


def run(output_dir: Path) -> None:
    static = output_dir / "static"
    out = output_dir / "_build" / "site" / "assets"
    out.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for source in sorted(path for path in static.rglob("*") if path.is_file()):
        target = out / source.relative_to(static)
        data = source.read_bytes()
        # Identical bytes are left alone: an open page sees no change, nothing downstream runs.
        if not target.exists() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            print(f"copied {source.relative_to(output_dir)} -> {target.relative_to(output_dir)}")
        wanted.add(target)
    for stale in [path for path in out.rglob("*") if path.is_file() and path not in wanted]:
        stale.unlink()
        print(f"removed {stale.relative_to(output_dir)}")
