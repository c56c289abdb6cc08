"""`skipwise status --explain`: every entry of a code version sorted into what is followed, counted
whole, counted by version, observed at run and not covered; nothing is called safe."""

import textwrap
from pathlib import Path
from types import SimpleNamespace

from skipwise.cli import main as cli
from skipwise.core.codeversion import CodeIndex
from skipwise.engine.versions import CodeVersions


class FakeProject:
    def __init__(self, root: Path):
        self.code = CodeVersions(root, CodeIndex(root), warn=print)


def explain(tmp_path: Path, body: str, observed=None) -> tuple[dict, str]:
    files = {
        "pk/__init__.py": "",
        "pk/lookup.csv": "a,b\n",
        "pk/bodies.py": "import subprocess\nimport polars as pl\nimport surely_not_installed_anywhere as gone\n"
        "import skipwise as sw\n\n\n" + textwrap.dedent(body),
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    asset = SimpleNamespace(name="f", fn="pk.bodies:f")
    explained = cli.explain_code(FakeProject(tmp_path), [asset], observed)
    args = SimpleNamespace(all=False, limit=20)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli._print_status(args, [], [], [], explained)
    return explained["f"], out.getvalue()


BODY = """
@sw.asset()
def f(df):
    subprocess.run(["true"])
    return sw.as_of_join(pl.DataFrame(df), gone.frame(), 1), globals()
"""


def test_every_entry_is_sorted_into_a_section(tmp_path):
    e, text = explain(
        tmp_path, BODY, observed={"f": {"file:data/x.csv": "read by 2 partitions", "env:TZ": "read by 1 partition"}}
    )
    assert e["followed"] == ["pk/__init__.py", "pk/bodies.py"]
    assert any("globals()" in n for n in e["counted_whole"])
    assert any(n.startswith("pk/lookup.csv: a file beside the code") for n in e["counted_whole"])
    assert any(v.startswith("polars==") for v in e["by_version"]) and "skipwise as_of_join: scheme 1" in e["by_version"]
    assert e["observed_at_run"] == ["env:TZ (read by 1 partition)", "file:data/x.csv (read by 2 partitions)"]
    assert any(n.startswith("surely_not_installed_anywhere: no installed distribution") for n in e["not_covered"])
    assert any(n.startswith("subprocess.run: what a subprocess reads is not seen") for n in e["not_covered"])
    assert e["orchestration"] == ["skipwise"]
    for label in ("followed", "counted whole", "by version", "observed at run", "not covered"):
        assert f"    {label}" in text
    assert "safe" not in text.lower()


def test_an_explanation_without_observations_prints_no_such_section(tmp_path):
    e, text = explain(tmp_path, "def f():\n    return 1\n")
    assert e["observed_at_run"] == [] and "observed at run" not in text
    assert "f: code version" in text
