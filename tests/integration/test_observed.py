"""What the code reads counts: files read through Python's I/O and through native readers, folder
listings, environment variables read by project code at run and at import, and what an asset
declares. Each build is a fresh process over a small project of its own, as a user's runs are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DEFS = """
import json
import os
import subprocess
from pathlib import Path

import dagster as dg
import polars as pl

import skipwise as sw
from obsproj.helpers import scale

# read when the module is imported: a branch on the environment
MODE = "alt" if os.environ.get("OBS_IMPORT_MODE") == "alt" else "base"
KEYS = dg.StaticPartitionsDefinition(["a", "b"])
ROOT = Path(__file__).resolve().parent.parent


@sw.asset(partitions_def=KEYS)
def scores(context: dg.AssetExecutionContext) -> dict:
    lookup = pl.read_csv(str(ROOT / "tables" / "lookup.csv"))  # a native reader: Python's I/O never sees it
    import botocore.session  # third-party code reading the environment is not a dependency

    botocore.session.get_session().get_config_variable("region")
    names = sorted(p.name for p in (ROOT / "inbox").glob("*.txt"))  # a folder listing
    return {"key": context.partition_key, "lookup": int(lookup["v"].sum()), "scale": scale(), "mode": MODE,
            "inbox": names}


@sw.asset(partitions_def=KEYS, files=["tables/declared*.txt"], env=["OBS_DECLARED"])
def declared(context: dg.AssetExecutionContext) -> dict:
    # a subprocess reads the file and the variable: observation cannot see it, the declaration says it
    out = subprocess.run("cat tables/declared*.txt; echo $OBS_DECLARED", shell=True, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return {"key": context.partition_key, "out": out}


defs = dg.Definitions(assets=[scores, declared], resources={"skipwise": sw.IOManager()})
"""

HELPERS = """
import json
import os
from pathlib import Path


def scale() -> int:
    factor = json.loads(Path(__file__).with_name("conf.json").read_text())["factor"]
    return factor * int(os.environ.get("OBS_RUN_SCALE", "1"))  # read at run, by project code
"""

BUILD = (
    "from skipwise.engine.loading import load_project\n"
    "p = load_project('.')\n"
    "for a in ['scores', 'declared']:\n"
    "    for o in p.materialize(a, None, run_id='r'):\n"
    "        print(a, o.decision.partition, o.decision.action, '|', o.decision.reason, flush=True)\n"
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "obs"
    (root / "obsproj").mkdir(parents=True)
    (root / "obsproj" / "__init__.py").write_text("")
    (root / "obsproj" / "defs.py").write_text(textwrap.dedent(DEFS))
    (root / "obsproj" / "helpers.py").write_text(textwrap.dedent(HELPERS))
    (root / "obsproj" / "conf.json").write_text('{"factor": 2}')
    (root / "tables").mkdir()
    (root / "tables" / "lookup.csv").write_text("v\n1\n2\n")
    (root / "tables" / "declared1.txt").write_text("one\n")
    (root / "inbox").mkdir()
    (root / "inbox" / "x.txt").write_text("x")
    (root / "pyproject.toml").write_text('[tool.skipwise]\ndefinitions = "obsproj.defs"\n')
    return root


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OBS_") and k not in ("AWS_DEFAULT_REGION", "SKIPWISE_ROOT")
    }
    return {**env, **extra}


def build(root: Path, **env: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(asset, key) -> (action, reason) of a fresh process's incremental build."""
    p = subprocess.run(
        [sys.executable, "-c", BUILD],
        cwd=root,
        env={**_env(**env), "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-4000:]
    out = {}
    for line in p.stdout.splitlines():
        head, _, reason = line.partition(" | ")
        asset, key, action = head.split()
        out[(asset, key)] = (action, reason)
    return out


def computed(result: dict, asset: str = "scores") -> set[str]:
    return {k for (a, k), (action, _) in result.items() if a == asset and action == "run"}


def reasons(result: dict, asset: str = "scores") -> set[str]:
    return {reason for (a, _), (action, reason) in result.items() if a == asset and action != "skip"}


def output(root: Path, asset: str, key: str) -> dict:
    folder = root / "data" / "default" / asset / key
    return json.loads((folder / json.loads((folder / "manifest.json").read_text())["output"]).read_text())


def test_every_kind_of_read_counts_and_what_is_not_the_projects_does_not(root):
    assert computed(build(root)) == {"a", "b"}
    assert computed(build(root)) == set()
    manifest = json.loads((root / "data" / "default" / "scores" / "a" / "manifest.json").read_text())
    assert {"file:tables/lookup.csv", "env:OBS_RUN_SCALE", "env:OBS_IMPORT_MODE", "dir:inbox"} <= set(
        manifest["observed"]
    )
    assert not any("AWS" in k for k in manifest["observed"])  # botocore's read, not the project's
    assert "file:pyproject.toml" not in manifest["observed"]  # skipwise reads its own configuration

    (root / "tables" / "lookup.csv").write_text("v\n1\n5\n")  # read by polars, natively
    r = build(root)
    assert computed(r) == {"a", "b"} and reasons(r) == {"file tables/lookup.csv changed"}
    assert output(root, "scores", "a")["lookup"] == 6

    r = build(root, OBS_RUN_SCALE="3")  # read at run
    assert computed(r) == {"a", "b"} and reasons(r) == {"environment variable OBS_RUN_SCALE changed"}
    assert output(root, "scores", "a")["scale"] == 6
    assert computed(build(root, OBS_RUN_SCALE="3")) == set()

    r = build(root, OBS_RUN_SCALE="3", OBS_IMPORT_MODE="alt")  # read at import, in a module-level branch
    assert computed(r) == {"a", "b"} and reasons(r) == {"environment variable OBS_IMPORT_MODE changed"}
    assert output(root, "scores", "a")["mode"] == "alt"

    r = build(root, OBS_RUN_SCALE="3", OBS_IMPORT_MODE="alt", AWS_DEFAULT_REGION="eu-west-1")  # third party's only
    assert computed(r) == set()

    (root / "inbox" / "y.txt").write_text("y")  # a new file where the body globs
    r = build(root, OBS_RUN_SCALE="3", OBS_IMPORT_MODE="alt")
    assert computed(r) == {"a", "b"} and reasons(r) == {"folder listing of inbox changed"}
    assert output(root, "scores", "a")["inbox"] == ["x.txt", "y.txt"]

    # Back to the first state: each partition's first version is kept and restored, not recomputed.
    (root / "inbox" / "y.txt").unlink()
    (root / "tables" / "lookup.csv").write_text("v\n1\n2\n")
    r = build(root)
    assert computed(r) == set() and {a for (s, _), (a, _) in r.items() if s == "scores"} == {"restore"}, r
    assert output(root, "scores", "a") == {"key": "a", "lookup": 3, "scale": 2, "mode": "base", "inbox": ["x.txt"]}


def test_declared_files_and_variables_count_from_the_first_run_and_values_are_never_stored(root):
    assert computed(build(root, OBS_DECLARED="s3cr3t-v4lue"), "declared") == {"a", "b"}
    text = (root / "data" / "default" / "declared" / "a" / "manifest.json").read_text()
    assert "s3cr3t-v4lue" not in text and "env:OBS_DECLARED" in text  # a keyed digest, never the value
    assert computed(build(root, OBS_DECLARED="s3cr3t-v4lue"), "declared") == set()
    assert computed(build(root, OBS_DECLARED="other"), "declared") == {"a", "b"}
    (root / "tables" / "declared2.txt").write_text("two\n")  # a new match of the declared glob
    r = build(root, OBS_DECLARED="other")
    assert computed(r, "declared") == {"a", "b"}
    assert output(root, "declared", "a")["out"] == "one\ntwo\nother\n"
    (root / "tables" / "declared1.txt").write_text("uno\n")
    assert computed(build(root, OBS_DECLARED="other"), "declared") == {"a", "b"}
    assert computed(build(root, OBS_DECLARED="other"), "declared") == set()


def test_the_digest_key_is_shared_by_every_process_of_the_store(root):
    build(root, OBS_RUN_SCALE="2")
    key = (root / "data" / ".skipwise" / "digest.key").read_bytes()
    assert len(key) == 64 and oct((root / "data" / ".skipwise" / "digest.key").stat().st_mode & 0o777) == "0o600"
    assert computed(build(root, OBS_RUN_SCALE="2")) == set()  # another process, the same key: the same digests
    assert (root / "data" / ".skipwise" / "digest.key").read_bytes() == key


def test_status_explain_lists_what_the_committed_partitions_read(root):
    build(root, OBS_RUN_SCALE="2")
    p = subprocess.run(
        [sys.executable, "-m", "skipwise.cli.main", "status", "--explain", "--json", "--select", "scores"],
        cwd=root,
        env={**_env(OBS_RUN_SCALE="2"), "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    seen = json.loads(p.stdout)["code"]["scores"]["observed_at_run"]
    assert (
        "file:tables/lookup.csv (read by 2 partitions)" in seen and "env:OBS_RUN_SCALE (read by 2 partitions)" in seen
    )


def test_a_long_lived_project_sees_a_change_between_two_plans(root, monkeypatch):
    build(root, OBS_RUN_SCALE="2")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("OBS_RUN_SCALE", "2")
    from skipwise.engine.loading import load_project

    project = load_project(root)  # one process, like a sensor's or the UI's code server
    assert {d.action for d in project.plan(["scores"])} == {"skip"}
    (root / "tables" / "lookup.csv").write_text("v\n7\n")
    assert {d.reason for d in project.plan(["scores"])} == {"file tables/lookup.csv changed"}
