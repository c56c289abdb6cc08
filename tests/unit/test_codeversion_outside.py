"""Code outside the project root counts by its source unless an installed distribution provides it,
and the non-Python files beside reached code (configs, lookups, queries) count by their bytes."""

import hashlib
import importlib.util
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from skipwise.core import distributions
from skipwise.core import codefiles
from skipwise.core.codeversion import CodeIndex


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


BODIES = """
import polars as pl
from extlib.helpers import scale


def f(df):
    return pl.DataFrame(scale(df))
"""

EXTLIB = {
    "extlib/__init__.py": "",
    "extlib/helpers.py": "def scale(x):\n    return x * 2\n\n\ndef unused(x):\n    return x\n",
}


@pytest.fixture
def outside(tmp_path, monkeypatch) -> Path:
    """A folder outside the project root on sys.path (like $PYTHONPATH or an editable install's .pth)."""
    folder = write(tmp_path / "outside", EXTLIB)
    monkeypatch.syspath_prepend(str(folder))
    return folder


@pytest.fixture
def root(tmp_path) -> Path:
    return write(tmp_path / "proj", {"pk/__init__.py": "", "pk/bodies.py": BODIES})


def test_a_module_on_sys_path_outside_the_root_is_followed_like_project_code(root, outside):
    before = CodeIndex(root).version("pk.bodies:f")
    helper = outside / "extlib" / "helpers.py"
    assert (str(helper), sha(helper)) in before.files  # absolute: `root / rel` is the file
    assert root / str(helper) == helper
    assert "extlib.helpers:scale" in dict(before.parts) and "extlib.helpers:unused" not in dict(before.parts)
    helper.write_text(helper.read_text().replace("return x\n", "return x + 1\n"))  # the unused function
    assert CodeIndex(root).version("pk.bodies:f").digest == before.digest
    helper.write_text(helper.read_text().replace("x * 2", "x * 3"))
    assert CodeIndex(root).version("pk.bodies:f").digest != before.digest


def test_a_wheel_installed_distribution_counts_by_version_and_is_never_read(root, outside):
    cv = CodeIndex(root).version("pk.bodies:f")
    assert dict(cv.parts)["polars:DataFrame"].startswith("polars==")
    assert not any("polars" in rel for rel, _ in cv.files)


def test_an_editable_install_by_import_hook_is_followed(tmp_path, monkeypatch):
    # setuptools' editable installs map an import name to a folder of any name through a meta path finder
    src = write(tmp_path / "checkout" / "src_dir", {"__init__.py": "from .core import K\n", "core.py": "K = 1\n"})

    class Finder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name != "hooked":
                return None
            return importlib.util.spec_from_file_location(
                name, src / "__init__.py", submodule_search_locations=[str(src)]
            )

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder()])
    root = write(
        tmp_path / "proj",
        {"pk/__init__.py": "", "pk/bodies.py": "from hooked.core import K\n\ndef f():\n    return K\n"},
    )
    before = CodeIndex(root).version("pk.bodies:f")
    assert str(src / "core.py") in dict(before.files)
    (src / "core.py").write_text("K = 2\n")
    assert CodeIndex(root).version("pk.bodies:f").digest != before.digest


def test_a_distribution_installed_into_a_folder_on_sys_path_counts_by_version(tmp_path, monkeypatch):
    # `pip install --target DIR` and DIR on $PYTHONPATH: a wheel's files, with its metadata beside them
    target = write(
        tmp_path / "target",
        {
            "wheeled/__init__.py": "def g():\n    return 1\n",
            "wheeled-1.4.dist-info/METADATA": "Name: wheeled\nVersion: 1.4\n",
            "wheeled-1.4.dist-info/RECORD": "wheeled/__init__.py,,\nwheeled-1.4.dist-info/METADATA,,\n",
        },
    )
    # after sys.path[0] (the script's folder, whose metadata is not what is installed), as $PYTHONPATH is
    monkeypatch.setattr(sys, "path", [sys.path[0], str(target), *sys.path[1:]])
    monkeypatch.setattr(distributions, "_INSTALLED", None)  # the distributions on sys.path, listed again
    monkeypatch.setattr(distributions, "_VERSIONS", {})
    monkeypatch.setattr(distributions, "_ENVIRONMENT", None)
    root = write(
        tmp_path / "proj",
        {"pk/__init__.py": "", "pk/bodies.py": "import wheeled\n\ndef f():\n    return wheeled.g()\n"},
    )
    cv = CodeIndex(root).version("pk.bodies:f")
    assert dict(cv.parts)["wheeled:g"] == "wheeled==1.4"
    assert [rel for rel, _ in cv.files] == ["pk/__init__.py", "pk/bodies.py"]


def test_the_cache_sees_edits_and_new_modules_outside_the_root(root, outside, monkeypatch):
    monkeypatch.setattr(codefiles, "_RACY_NS", 0)  # trust stats even for files written just now
    cache = root / "data" / ".skipwise" / "code.json"
    before = CodeIndex(root, cache=cache).version("pk.bodies:f")
    calls = []
    compute = CodeIndex._compute
    monkeypatch.setattr(CodeIndex, "_compute", lambda self, ref: calls.append(ref) or compute(self, ref))
    assert CodeIndex(root, cache=cache).version("pk.bodies:f") == before and calls == []
    time.sleep(0.05)
    helper = outside / "extlib" / "helpers.py"
    st = os.stat(helper)
    helper.write_text(helper.read_text().replace("x * 2", "x * 5"))  # same size, mtime restored
    os.utime(helper, ns=(st.st_atime_ns, st.st_mtime_ns))
    edited = CodeIndex(root, cache=cache).version("pk.bodies:f")
    assert edited.digest != before.digest and calls == ["pk.bodies:f"]
    # a package of the same name earlier on sys.path now provides extlib: the lookup moved
    write(outside.parent / "earlier", {"extlib/__init__.py": "", "extlib/helpers.py": "def scale(x):\n    return x\n"})
    monkeypatch.syspath_prepend(str(outside.parent / "earlier"))
    assert CodeIndex(root, cache=cache).version("pk.bodies:f").digest not in (before.digest, edited.digest)


def test_the_standard_library_is_never_followed(tmp_path):
    root = write(
        tmp_path, {"pk/__init__.py": "", "pk/bodies.py": "import json\n\ndef f(s):\n    return json.loads(s)\n"}
    )
    cv = CodeIndex(root).version("pk.bodies:f")
    assert dict(cv.parts)["json:loads"] == "stdlib" and len(cv.files) == 2


# -- files beside code ---------------------------------------------------------------------------

PROJECT = {
    "pk/__init__.py": "",
    "pk/bodies.py": "import json\nfrom pathlib import Path\n\ndef f():\n    return json.loads((Path(__file__).parent / 'config.json').read_text())\n",
    "pk/config.json": '{"threshold": 15}',
    "pk/queries/daily.sql": "select 1",
    "pk/sub/__init__.py": "",
    "pk/sub/table.csv": "a,b\n",
    "other/lookup.csv": "x\n",
}


def test_a_config_beside_a_module_counts_and_documentation_does_not(tmp_path):
    root = write(tmp_path, PROJECT)
    before = CodeIndex(root).version("pk.bodies:f")
    assert dict(before.resources) == {
        "pk/config.json": sha(root / "pk/config.json"),
        "pk/queries/daily.sql": sha(root / "pk/queries/daily.sql"),
    }
    assert dict(before.parts)["file:pk/config.json"] == sha(root / "pk/config.json")
    assert "pk/config.json" not in dict(before.files)  # files: the Python sources the code runs from
    (root / "pk" / "README.md").write_text("# notes")
    (root / "pk" / ".hidden").write_text("x")
    (root / "pk" / "__pycache__").mkdir()
    (root / "pk" / "__pycache__" / "bodies.cpython-311.pyc").write_bytes(b"\0")
    (root / "pk" / "dvc.yaml").write_text("stages: {}")
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "x.csv").write_text("1")
    assert CodeIndex(root).version("pk.bodies:f").digest == before.digest
    (root / "pk" / "config.json").write_text('{"threshold": 20}')
    assert CodeIndex(root).version("pk.bodies:f").digest != before.digest


def test_resource_folders_count_and_folders_of_code_do_not(tmp_path):
    root = write(tmp_path, PROJECT)
    before = CodeIndex(root).version("pk.bodies:f").digest
    (root / "pk" / "sub" / "table.csv").write_text("a,b\n1,2\n")  # pk.sub is code, not reached
    (root / "other" / "lookup.csv").write_text("y\n")
    assert CodeIndex(root).version("pk.bodies:f").digest == before
    (root / "pk" / "queries" / "daily.sql").write_text("select 2")
    assert CodeIndex(root).version("pk.bodies:f").digest != before


def test_a_module_in_the_root_folder_counts_only_the_roots_own_files(tmp_path):
    root = write(
        tmp_path,
        {
            "job.py": "def f():\n    return 1\n",
            "lookup.csv": "a\n",
            "pyproject.toml": "[x]\n",
            "params.yaml": "a: 1\n",
            "queries/q.sql": "select 1",
            "data/raw/x.csv": "1",
        },
    )
    cv = CodeIndex(root).version("job:f")
    assert [rel for rel, _ in cv.resources] == ["lookup.csv"]


def test_files_beside_code_outside_the_root_count(root, outside):
    before = CodeIndex(root).version("pk.bodies:f").digest
    (outside / "extlib" / "weights.json").write_text("[1, 2]")
    assert CodeIndex(root).version("pk.bodies:f").digest != before


def test_the_cache_sees_files_added_removed_and_edited_beside_code(tmp_path, monkeypatch):
    monkeypatch.setattr(codefiles, "_RACY_NS", 0)
    root = write(tmp_path, PROJECT)
    cache = root / "data" / ".skipwise" / "code.json"
    seen = [CodeIndex(root, cache=cache).version("pk.bodies:f").digest]

    def again() -> str:
        seen.append(CodeIndex(root, cache=cache).version("pk.bodies:f").digest)
        return seen[-1]

    assert again() == seen[0]
    (root / "pk" / "queries" / "weekly.sql").write_text("select 7")
    assert again() not in seen[:-1]
    (root / "pk" / "queries" / "weekly.sql").unlink()
    assert again() == seen[0]
    time.sleep(0.05)
    (root / "pk" / "config.json").write_text('{"threshold": 16}')
    assert again() not in seen[:-1]
    (root / "pk" / "NOTES.md").write_text("documentation does not count")
    assert again() == seen[-2]


def test_the_distribution_map_is_kept_until_a_distribution_changes(tmp_path, monkeypatch):
    """The import-name -> distributions map is read from its file while every sys.path entry holds
    the same distribution metadata folders; a distribution installed since is seen at once."""
    from importlib import metadata

    from skipwise.core import distributions

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(distributions, "_PROVIDERS_FILE", None)
    monkeypatch.setattr(distributions, "_PROVIDERS", None)
    distributions.keep_providers_in(tmp_path / "providers.json")
    first = dict(distributions._providers())
    assert (tmp_path / "providers.json").exists() and "yaml" in first

    def no_metadata() -> None:
        raise AssertionError("asked every distribution's metadata again")

    monkeypatch.setattr(metadata, "packages_distributions", no_metadata)
    monkeypatch.setattr(distributions, "_PROVIDERS", None)
    assert dict(distributions._providers()) == first  # from the file

    info = site / "shiny_tool-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shiny-tool\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("shiny\n")
    monkeypatch.undo()  # the real metadata again (and sys.path as it was: the folder is added back)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(distributions, "_PROVIDERS_FILE", str(tmp_path / "providers.json"))
    monkeypatch.setattr(distributions, "_PROVIDERS", None)
    assert distributions._providers().get("shiny") == ["shiny-tool"]
