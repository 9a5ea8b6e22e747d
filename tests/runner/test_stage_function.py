"""The function a module stage calls is part of its code: in its key, its entry, explain and check."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from stagewatch import Stage, compute_key
from tests.helpers.daemon import SYNC_STAGE, RunningDaemon
from tests.helpers.project import Project

MODULE = """\
from pathlib import Path

def run(out):
    Path(out, "site.txt").write_text("from run\\n")

def run_v2(out):
    Path(out, "site.txt").write_text("from run_v2\\n")
"""


def config(function: str | None) -> str:
    line = f'function = "{function}"\n' if function is not None else ""
    return f"""
[[stage]]
name = "render"
module = "pipeline.render"
{line}inputs = ["content.txt"]
outputs = ["site.txt"]
"""


@pytest.fixture
def site(project: Project) -> Project:
    project.write("pipeline/__init__.py", "")
    project.write("pipeline/render.py", MODULE)
    project.write("content.txt", "words\n")
    project.config(config(None))
    return project


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_default_function_keeps_the_key_bytes_of_the_design(tmp_path: Path) -> None:
    (tmp_path / "stage.py").write_text("def run(out):\n    pass\n")
    stage = Stage(name="s", module="stage", inputs=(), ttl_s=60.0)
    h = hashlib.sha256()
    h.update(b"s")
    h.update(b"code:" + sha((tmp_path / "stage.py").read_bytes()).encode())
    assert compute_key(stage, tmp_path) == h.hexdigest()


def test_another_function_is_another_key(tmp_path: Path) -> None:
    (tmp_path / "stage.py").write_text("def run(out):\n    pass\n\ndef other(out):\n    pass\n")
    default = Stage(name="s", module="stage", inputs=(), ttl_s=60.0)
    other = Stage(name="s", module="stage", function="other", inputs=(), ttl_s=60.0)
    h = hashlib.sha256()
    h.update(b"s")
    h.update(b"code:" + sha((tmp_path / "stage.py").read_bytes()).encode())
    h.update(b"function:other")
    assert compute_key(other, tmp_path) == h.hexdigest()
    assert compute_key(other, tmp_path) != compute_key(default, tmp_path)


def test_changing_the_function_reruns_the_stage_and_explain_says_so(site: Project) -> None:
    assert site.cli("build").returncode == 0
    assert site.read("site.txt") == "from run\n"
    site.config(config("run_v2"))

    status = json.loads(site.cli("status", "--json").stdout)
    assert [s["state"] for s in status["stages"] if s["name"] == "render"] == ["stale"]
    explain = site.cli("explain", "render")
    assert "function changed: run -> run_v2" in explain.stdout, explain.stdout

    assert site.cli("build").returncode == 0
    assert site.read("site.txt") == "from run_v2\n"
    assert "function=run_v2" in site.entry("render").read_text()
    assert "fresh" in site.cli("explain", "render").stdout

    site.config(config(None))  # and back: the entry of run_v2 does not vouch for run
    assert "function changed: run_v2 -> run" in site.cli("explain", "render").stdout
    assert site.cli("build").returncode == 0
    assert site.read("site.txt") == "from run\n"


def test_an_entry_of_the_default_function_stays_valid(site: Project) -> None:
    assert site.cli("build").returncode == 0
    entry = site.entry("render").read_text()
    assert "function=" not in entry
    site.config(config("run"))  # said out loud, it is the same stage
    assert "fresh" in site.cli("explain", "render").stdout


def test_check_names_a_function_the_module_does_not_define(site: Project) -> None:
    site.config(config("render"))
    proc = site.cli("check")
    assert proc.returncode == 2
    assert 'stage "render": "function": pipeline.render defines no function "render"' in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("source", "said"),
    [
        (
            "def run_v2(out)\n    pass\n",
            "\"module\": pipeline.render is not valid Python: expected ':' (line 1)",
        ),
        ("def run_v2():\n    pass\n", '"function": pipeline.render "run_v2" takes no argument'),
        ("def run_v2(*, out):\n    pass\n", '"function": pipeline.render "run_v2" takes no argument'),
    ],
    ids=["syntax", "no-argument", "keyword-only"],
)
def test_check_names_a_module_its_run_cannot_call(site: Project, source: str, said: str) -> None:
    site.write("pipeline/render.py", source)
    site.config(config("run_v2"))
    proc = site.cli("check")
    assert proc.returncode == 2
    assert f'stage "render": {said}' in proc.stderr
    assert "(pipeline/render.py)" in proc.stderr


def test_check_reads_the_module_without_importing_it(site: Project) -> None:
    site.write("pipeline/render.py", 'raise SystemExit("imported")\n' + MODULE)
    site.config(config("run_v2"))
    proc = site.cli("check")
    assert proc.returncode == 0, proc.stderr
    assert "imported" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "source",
    [
        "from pipeline.helpers import run_v2\n",
        "import pipeline.helpers as run_v2\n",
        "run_v2 = lambda out: None\n",
        "class run_v2:\n    def __init__(self, out):\n        pass\n",
        "try:\n    from fast import run_v2\nexcept ImportError:\n    def run_v2(out):\n        pass\n",
        "from pipeline.helpers import *\n",
        "def __getattr__(name):\n    return print\n",
        "async def run_v2(out):\n    pass\n",
        "run_v2: object = print\n",
        "def run_v2(*args):\n    pass\n",
        "import sys\nsetattr(sys.modules[__name__], 'run_v2', print)\n",
        "exec('def run_v2(out): pass')\n",
        "vars()['run_v2'] = print\n",
        "def run_v2(out=None):\n    pass\n",
    ],
    ids=[
        "imported",
        "module-alias",
        "assigned",
        "class",
        "try",
        "star",
        "getattr",
        "async",
        "annotated",
        "varargs",
        "setattr",
        "exec",
        "vars",
        "default",
    ],
)
def test_check_accepts_every_way_a_module_can_define_the_name(site: Project, source: str) -> None:
    site.write("pipeline/helpers.py", "def run_v2(out):\n    pass\n")
    site.write("pipeline/render.py", source)
    site.config(config("run_v2"))
    proc = site.cli("check")
    assert proc.returncode == 0, proc.stderr


def test_a_reload_with_another_function_reruns_the_stage(site: Project) -> None:
    site.config(SYNC_STAGE + config(None))
    site.write("sync/token", "0")
    with RunningDaemon(site) as daemon:
        since = daemon.ready()
        assert site.read("site.txt") == "from run\n"
        site.config(SYNC_STAGE + config("run_v2"))
        done = daemon.wait_event("stage.succeeded", since, stage="render")
        assert site.read("site.txt") == "from run_v2\n"
        assert daemon.wait_event("watch.idle", done) > done
        assert daemon.stop() == 0


@pytest.mark.parametrize("function", ["x\nkey=0000", "", "run()", "1run"])
def test_a_library_stage_refuses_a_function_that_is_no_identifier(function: str) -> None:
    with pytest.raises(ValueError, match="is not a Python identifier"):
        Stage(name="s", module="pipeline.m", function=function)


def test_an_async_function_is_run_to_its_end(site: Project) -> None:
    site.write(
        "pipeline/render.py",
        """\
        import asyncio
        from pathlib import Path

        async def run(out):
            await asyncio.sleep(0.01)
            Path(out, "site.txt").write_text("awaited\\n")
        """,
    )
    proc = site.cli("build")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert site.read("site.txt") == "awaited\n"
    assert "never awaited" not in proc.stdout + proc.stderr
