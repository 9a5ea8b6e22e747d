"""The content-hash cache: the key byte for byte, entry files, and the seed's library API."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import stagewatch.cache
import stagewatch.entry
from stagewatch import Stage, compute_key, invalidate, mark_done, should_skip
from stagewatch.cache import Workspace
from stagewatch.entry import CorruptEntry, Entry, parse_entry
from stagewatch.file_identity import RACY_WINDOW_NS
from stagewatch.freshness import FileProblem, Trouble
from stagewatch.hashing import DigestCache, _Known
from stagewatch.layout import write_atomic
from stagewatch.regular import NotRegularFile


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "helpers.py").write_text("X = 1\n")
    (tmp_path / "pipeline" / "render.py").write_text(
        "from pipeline import helpers\n\ndef run(out):\n    pass\n"
    )
    (tmp_path / "content").mkdir()
    (tmp_path / "content" / "b.md").write_text("bee\n")
    (tmp_path / "content" / "a.md").write_text("ay\n")
    return tmp_path


def render_stage(**overrides: object) -> Stage:
    fields: dict[str, object] = {
        "name": "render",
        "module": "pipeline.render",
        "inputs": ("content/*.md",),
        "outputs": ("out.html",),
    }
    fields.update(overrides)
    return Stage(**fields)  # type: ignore[arg-type]


def test_key_matches_the_byte_layout_of_the_design(site: Path) -> None:
    h = hashlib.sha256()
    h.update(b"render")
    h.update(b"code:" + sha((site / "pipeline/render.py").read_bytes()).encode())
    for rel in ("pipeline/__init__.py", "pipeline/helpers.py"):
        h.update(b"dep:" + rel.encode() + b"=" + sha((site / rel).read_bytes()).encode())
    for rel in ("content/a.md", "content/b.md"):
        h.update(b"in:" + rel.encode() + b"=" + sha((site / rel).read_bytes()).encode())
    assert compute_key(render_stage(), site) == h.hexdigest()


def test_command_key_hashes_argv_joined_by_nul(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("x")
    stage = Stage(name="css", command=("sassc", "a b", "c"), inputs=("in.txt",))
    h = hashlib.sha256()
    h.update(b"css")
    h.update(b"code:" + sha(b"sassc\0a b\0c").encode())
    h.update(b"in:in.txt=" + sha(b"x").encode())
    assert compute_key(stage, tmp_path) == h.hexdigest()


def test_an_input_named_twice_counts_once(site: Path) -> None:
    twice = render_stage(inputs=("content/*.md", "content/a.md"))
    assert compute_key(twice, site) == compute_key(render_stage(), site)


def test_input_outside_output_dir_keeps_its_absolute_path(tmp_path: Path) -> None:
    outside = tmp_path / "shared.txt"
    outside.write_text("s")
    project = tmp_path / "project"
    project.mkdir()
    stage = Stage(name="s", command=("true",), inputs=(str(outside),))
    fingerprint = Workspace(project).fingerprint(stage)
    assert fingerprint.inputs == ((str(outside), sha(b"s")),)


def test_key_does_not_depend_on_where_the_project_lives(
    site: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    moved = tmp_path_factory.mktemp("moved") / "site"
    os.rename(site, moved)
    key_there = compute_key(render_stage(), moved)
    os.rename(moved, site)
    assert key_there == compute_key(render_stage(), site)


def test_missing_explicit_input_means_no_key(site: Path) -> None:
    assert compute_key(render_stage(inputs=("content/nope.md",)), site) is None


def test_missing_module_means_no_key(site: Path) -> None:
    assert compute_key(render_stage(module="pipeline.gone"), site) is None


def test_a_helper_module_edit_changes_the_key(site: Path) -> None:
    before = compute_key(render_stage(), site)
    (site / "pipeline" / "helpers.py").write_text("X = 2\n")
    assert compute_key(render_stage(), site) != before


def test_sources_count_as_code_dependencies(site: Path) -> None:
    (site / "templates").mkdir()
    (site / "templates" / "page.html").write_text("<p>")
    stage = render_stage(sources=("templates/**",))
    fingerprint = Workspace(site).fingerprint(stage)
    assert ("templates/page.html", sha(b"<p>")) in fingerprint.deps


def test_should_skip_only_after_mark_done_and_with_outputs(site: Path) -> None:
    stage = render_stage()
    assert not should_skip(stage, site)
    (site / "out.html").write_text("html")
    mark_done(stage, site)
    assert should_skip(stage, site)
    (site / "out.html").unlink()
    assert not should_skip(stage, site)


def test_changed_input_makes_the_stage_stale(site: Path) -> None:
    stage = render_stage()
    (site / "out.html").write_text("html")
    mark_done(stage, site)
    (site / "content" / "a.md").write_text("changed\n")
    assert not should_skip(stage, site)


def test_mark_done_records_the_key_it_is_given(site: Path) -> None:
    stage = render_stage()
    (site / "out.html").write_text("html")
    key_before_run = compute_key(stage, site)
    (site / "content" / "a.md").write_text("edited while running\n")
    mark_done(stage, site, key=key_before_run)
    assert not should_skip(stage, site)


def test_stage_without_inputs_or_ttl_is_never_skipped(tmp_path: Path) -> None:
    stage = Stage(name="always", command=("true",))
    mark_done(stage, tmp_path)
    assert not should_skip(stage, tmp_path)


def test_no_input_ttl_stage_is_fresh_until_its_entry_is_older_than_ttl(tmp_path: Path) -> None:
    stage = Stage(name="fetch", command=("curl", "x"), ttl_s=3600)
    mark_done(stage, tmp_path)
    assert should_skip(stage, tmp_path)
    entry = tmp_path / "_build" / ".cache" / "fetch.hash"
    old = time.time() - 3601
    os.utime(entry, (old, old))
    assert not should_skip(stage, tmp_path)


def test_invalidate_removes_the_entry(site: Path) -> None:
    stage = render_stage()
    (site / "out.html").write_text("html")
    mark_done(stage, site)
    assert invalidate(stage, site) is True
    assert not should_skip(stage, site)
    assert invalidate(stage, site) is False


def test_entry_file_is_key_value_text(site: Path) -> None:
    stage = render_stage()
    mark_done(stage, site)
    lines = (site / "_build/.cache/render.hash").read_text().splitlines()
    assert lines[0] == "version=2"
    assert lines[1] == f"key={compute_key(stage, site)}"
    assert lines[2].startswith("code=") and lines[2].endswith(" pipeline/render.py")
    assert [line.split(" ", 1)[1] for line in lines if line.startswith("dep=")] == [
        "pipeline/__init__.py",
        "pipeline/helpers.py",
    ]
    assert [line.split(" ", 1)[1] for line in lines if line.startswith("in=")] == [
        "content/a.md",
        "content/b.md",
    ]
    assert any(line.startswith("finished=") for line in lines)


def test_legacy_one_line_entry_is_honoured(site: Path) -> None:
    stage = render_stage()
    (site / "out.html").write_text("html")
    entry = site / "_build/.cache/render.hash"
    entry.parent.mkdir(parents=True)
    entry.write_text(f"{compute_key(stage, site)}\n")
    assert should_skip(stage, site)
    parsed = parse_entry(entry.read_text(), str(entry), 0.0)
    assert isinstance(parsed, Entry) and parsed.legacy


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage\n",
        "version=2\nkey=xyz\n",
        "version=2\nkey=" + "a" * 64 + "\nin=notahash path\n",
        "\x00\x01",
    ],
)
def test_corrupt_entry_is_stale_with_a_warning(site: Path, text: str) -> None:
    stage = render_stage()
    (site / "out.html").write_text("html")
    entry = site / "_build/.cache/render.hash"
    entry.parent.mkdir(parents=True)
    entry.write_text(text)
    with capture_logs() as logs:
        assert not should_skip(stage, site)
    assert [log["event"] for log in logs] == ["cache.entry_corrupt"]
    assert logs[0]["stage"] == "render"


def test_binary_entry_is_stale_not_a_crash(site: Path) -> None:
    entry = site / "_build/.cache/render.hash"
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"\xff\xfe\x00garbage")
    assert isinstance(Workspace(site).read_entry("render"), CorruptEntry)


def test_atomic_write_leaves_the_old_entry_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "x.hash"
    target.write_text("old\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["x.hash"]


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a" / "x.hash", "new\n")
    assert os.listdir(tmp_path / "a") == ["x.hash"]


def test_entry_mtime_is_the_finish_time(site: Path) -> None:
    before = time.time()
    mark_done(render_stage(), site)
    mtime = (site / "_build/.cache/render.hash").stat().st_mtime
    assert before - 1 <= mtime <= time.time() + 1


def test_digest_cache_reuses_a_digest_while_stat_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("one")
    old = time.time() - 10
    os.utime(path, (old, old))
    cache = DigestCache(tmp_path / "d.sqlite")
    assert cache.digests([str(path)]) == {str(path): sha(b"one")}
    cache.close()
    warm = DigestCache(tmp_path / "d.sqlite")
    calls: list[str] = []
    original = hashlib.file_digest

    def counting(*args: object, **kwargs: object) -> object:
        calls.append("hash")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hashlib, "file_digest", counting)
        assert warm.digests([str(path)]) == {str(path): sha(b"one")}
    assert calls == []


def test_digest_cache_sees_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("one")
    cache = DigestCache(None)
    cache.digests([str(path)])
    path.write_text("two")
    assert cache.digests([str(path)]) == {str(path): sha(b"two")}


def test_racy_digest_is_not_trusted() -> None:
    mtime_ns = 5 * 10**9
    racy = _Known(3, mtime_ns, 7, mtime_ns, mtime_ns + RACY_WINDOW_NS // 2, "d")
    settled = _Known(3, mtime_ns, 7, mtime_ns, mtime_ns + RACY_WINDOW_NS * 2, "d")
    st = os.stat_result((0o644, 7, 0, 1, 0, 0, 3, 5, 5, 5, 5.0, 5.0, 5.0, mtime_ns, mtime_ns, mtime_ns))
    assert not racy.still_valid(st)
    assert settled.still_valid(st)


def test_corrupt_digest_database_costs_only_a_rehash(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite"
    db.write_bytes(b"this is not sqlite" * 100)
    path = tmp_path / "f"
    path.write_text("one")
    with capture_logs() as logs:
        cache = DigestCache(db)
        assert cache.digests([str(path)]) == {str(path): sha(b"one")}
        cache.close()
    assert "digests.unreadable" in [log["event"] for log in logs]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM digests").fetchone() == (1,)
    conn.close()


def test_entry_paths_with_newlines_and_percents_round_trip(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    names = ["new\nline.md", "per%cent.md", "cr\rx.md", "sep\u2028x.md"]
    for name in names:
        (tmp_path / "in" / name).write_text("x")
    stage = Stage(name="odd", command=("true",), inputs=("in/",))
    mark_done(stage, tmp_path)
    entry = Workspace(tmp_path).read_entry("odd")
    assert isinstance(entry, Entry)
    assert sorted(rel for rel, _ in entry.inputs) == sorted(f"in/{name}" for name in names)
    assert should_skip(stage, tmp_path)


def test_a_locked_digest_database_is_kept_and_gone_without(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite"
    path = tmp_path / "f"
    path.write_text("one")
    first = DigestCache(db)
    first.digests([str(path)])
    first.close()
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with capture_logs() as logs:
            cache = DigestCache(db)
            assert cache.digests([str(path)]) == {str(path): sha(b"one")}
        assert [log["event"] for log in logs] == ["digests.unavailable"]
    finally:
        holder.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM digests").fetchone() == (1,)
    conn.close()


def test_malformed_digest_rows_are_dropped_and_the_good_ones_kept(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite"
    path = tmp_path / "f"
    path.write_text("one")
    first = DigestCache(db)
    first.digests([str(path)])
    first.close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO digests VALUES (?, NULL, 'x', 1, 2, 3, 'short')", (b"/elsewhere",))
    conn.close()
    with capture_logs() as logs:
        cache = DigestCache(db)
    assert [(log["event"], log["error"]) for log in logs] == [("digests.unreadable", "1 malformed rows")]
    assert list(cache._known) == [str(path)]
    with capture_logs() as logs:
        DigestCache(db).close()
    assert logs == []


def test_a_fifo_is_never_opened_for_hashing(tmp_path: Path) -> None:
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    got = DigestCache(None).hash_files([str(fifo)])[str(fifo)]
    assert isinstance(got, NotRegularFile)
    assert (got.kind, got.filename) == ("a FIFO", str(fifo))


def test_a_fifo_named_in_sources_is_not_a_regular_file(site: Path) -> None:
    os.mkfifo(site / "data.fifo")
    stage = render_stage(inputs=("content/*.md",), sources=("data.fifo",))
    fingerprint = Workspace(site).fingerprint(stage)
    assert fingerprint.key is None
    assert fingerprint.problems == (FileProblem("data.fifo", Trouble.NOT_REGULAR, "a FIFO"),)


def test_a_sources_imports_are_kept_by_digest_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite"
    source = tmp_path / "m.py"
    source.write_text("import json\n")
    reads: list[str] = []

    def read(path: str) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
        reads.append(path)
        return ((0, "json", ()),)

    first = DigestCache(db)
    assert first.python_imports(str(source), read) == ((0, "json", ()),)
    first.close()
    again = DigestCache(db)
    assert again.python_imports(str(source), read) == ((0, "json", ()),)
    assert reads == [str(source)]  # the second process reads no source

    source.write_text("import csv\n")
    again.python_imports(str(source), read)
    assert reads == [str(source), str(source)]


@pytest.mark.parametrize(
    "stored",
    [
        "not json",
        "{}",
        '[[0, "json"]]',
        "[[0, 1, []]]",
        '[["0", "json", []]]',
        '[[0, "json", [1]]]',
        '[[0, "json", "ab"]]',
    ],
)
def test_a_damaged_imports_row_is_read_again_from_the_source(site: Path, stored: str) -> None:
    workspace = Workspace(site, persistent_digests=True)
    before = workspace.fingerprint(render_stage())
    workspace.close()
    with sqlite3.connect(site / "_build/.cache/digests.sqlite") as conn:
        conn.execute("UPDATE imports_v1 SET statements = ?", (stored,))
    conn.close()
    workspace = Workspace(site, persistent_digests=True)
    assert workspace.fingerprint(render_stage()).deps == before.deps
    assert [rel for rel, _ in before.deps] == ["pipeline/__init__.py", "pipeline/helpers.py"]
    workspace.close()


def test_imports_read_after_an_edit_are_not_kept_under_the_digest_before_it(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    render = site / "pipeline/render.py"
    original = render.read_text()
    real_read = stagewatch.cache.read_imports

    def read_after_an_editor_saved(path: str) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
        # The editor saves between the digest of the source and the read of its statements.
        if path == str(render):
            render.write_text("def run(out):\n    pass\n")
        return real_read(path)

    monkeypatch.setattr(stagewatch.cache, "read_imports", read_after_an_editor_saved)
    workspace = Workspace(site, persistent_digests=True)
    workspace.fingerprint(render_stage())
    workspace.close()
    monkeypatch.setattr(stagewatch.cache, "read_imports", real_read)

    render.write_text(original)  # undone: the bytes digested first are back
    workspace = Workspace(site, persistent_digests=True)
    deps = [rel for rel, _ in workspace.fingerprint(render_stage()).deps]
    workspace.close()
    assert deps == ["pipeline/__init__.py", "pipeline/helpers.py"]


@pytest.mark.parametrize("version", ["99", "1", "two", ""])
def test_an_entry_of_another_version_is_stale_and_said(tmp_path: Path, version: str) -> None:
    text = f"version={version}\nkey={'a' * 64}\nfinished=2026-01-01T00:00:00+00:00\n"
    entry = parse_entry(text, "x.hash", 0.0)
    assert entry == CorruptEntry("x.hash", f"version={version} is not 2, the version this stagewatch writes")


@pytest.mark.parametrize(
    "path", ["plain/a.md", "per%cent", "new\nline", "cr\rx", "bad\udcffbyte", "%FF literally", "é ü \u2028"]
)
def test_a_path_is_one_line_of_utf8_in_an_entry_and_comes_back_whole(path: str) -> None:
    escaped = stagewatch.entry.escape_path(path)
    assert "\n" not in escaped and "\r" not in escaped
    escaped.encode("utf-8")  # no lone surrogate left: it is UTF-8 text
    assert stagewatch.entry.unescape_path(escaped) == path
