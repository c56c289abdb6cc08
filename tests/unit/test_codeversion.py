"""Code versions come from source: the function and the project helpers it reaches, nothing else."""

import textwrap
from pathlib import Path

import pytest
from skipwise.core.codeversion import CodeIndex
from skipwise.core.errors import ConfigError

HELPERS = '''
"""Helpers."""
SCALE = 2


def shared(x):
    return x * SCALE


def only_weather(x):
    return x + 1
'''

BODIES = '''
import polars as pl
from proj.helpers import shared
from proj import helpers


def flights(ctx, df):
    """Flights."""
    return shared(df)  # a comment


def weather(ctx, df):
    return helpers.only_weather(df)


def lazy(ctx, df):
    from proj.helpers import only_weather
    return only_weather(df)
'''


def make(tmp: Path, helpers: str = HELPERS, bodies: str = BODIES) -> CodeIndex:
    pkg = tmp / "proj"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text(textwrap.dedent(helpers))
    (pkg / "bodies.py").write_text(textwrap.dedent(bodies))
    return CodeIndex(tmp)


def versions(idx: CodeIndex) -> dict[str, str]:
    return {n: idx.version(f"proj.bodies:{n}").digest for n in ("flights", "weather", "lazy")}


def test_comments_docstrings_and_formatting_do_not_count(tmp_path):
    before = versions(make(tmp_path))
    reformatted = BODIES.replace('"""Flights."""', '"""Flights, documented better."""').replace(
        "return shared(df)  # a comment", "return shared(\n        df\n    )"
    )
    assert versions(make(tmp_path, bodies=reformatted)) == before


def test_editing_a_helper_changes_only_its_users(tmp_path):
    before = versions(make(tmp_path))
    after = versions(make(tmp_path, helpers=HELPERS.replace("x + 1", "x + 2")))
    assert after["flights"] == before["flights"]
    assert after["weather"] != before["weather"]  # reached through `helpers.only_weather`
    assert after["lazy"] != before["lazy"]  # reached through an import inside the function


def test_module_constants_used_by_a_helper_count(tmp_path):
    before = versions(make(tmp_path))
    after = versions(make(tmp_path, helpers=HELPERS.replace("SCALE = 2", "SCALE = 3")))
    assert after["flights"] != before["flights"]
    # Top-level code runs when the module is imported, so it counts for every function of the
    # module that is reached (weather reaches helpers.only_weather), not only for SCALE's users.
    assert after["weather"] != before["weather"]


def test_third_party_modules_count_by_version(tmp_path):
    parts = dict(make(tmp_path).version("proj.bodies:flights").parts)
    # pl is imported but not used by flights; the import still runs (and may register plugins)
    assert parts["polars:__module__"].startswith("polars==")
    assert "polars:DataFrame" not in parts
    idx = make(tmp_path, bodies=BODIES.replace("return shared(df)", "return pl.DataFrame(shared(df))"))
    parts = dict(idx.version("proj.bodies:flights").parts)
    assert parts["polars:DataFrame"].startswith("polars==")


def test_unknown_function_is_a_clear_error(tmp_path):
    idx = make(tmp_path)
    with pytest.raises(ConfigError, match="no top-level definition"):
        idx.version("proj.bodies:nope")
    with pytest.raises(ConfigError, match="not a file"):
        idx.version("proj.missing:f")


def test_demo_assets_have_independent_code_versions():
    repo = Path(__file__).resolve().parents[2]
    idx = CodeIndex(repo)
    flights = dict(idx.version("assets.definitions:flight_features").parts)
    weather = dict(idx.version("assets.definitions:weather_features").parts)
    assert "assets.features.flights:build_flight_features" in flights
    assert "assets.features.weather:build_weather_features" not in flights
    assert "assets.features.weather:build_weather_features" in weather
    assert "assets.definitions:LOOKBACK_DAYS" in flights
    # The @sw.asset decorators and `defs = dg.Definitions(...)` do not tie the assets together.
    assert "assets.definitions:delay_model" not in flights
    assert "assets.definitions:flight_features" not in weather


# -- conservative rules: each construct below was once a false cache hit -------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    """Write a project under `root` (every folder of `pk` a package unless listed otherwise)."""
    for rel, text in {"pk/__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def version(root: Path, ref: str = "pk.bodies:f", **kw):
    return CodeIndex(root, **kw).version(ref)


def changes(tmp_path: Path, files: dict[str, str], rel: str, old: str, new: str, ref: str = "pk.bodies:f") -> bool:
    """Whether replacing `old` by `new` in file `rel` changes the version of `ref`."""
    before = version(write(tmp_path / "a", files), ref).digest
    edited = {**files, rel: files[rel].replace(old, new)}
    assert edited[rel] != files[rel]
    return version(write(tmp_path / "b", edited), ref).digest != before


def test_augmented_assignment_counts_with_every_binding(tmp_path):
    files = {"pk/bodies.py": "X = 0.0\nX += 1.0\n\ndef f():\n    return X\n"}
    assert changes(tmp_path / "1", files, "pk/bodies.py", "X = 0.0", "X = 5.0")
    assert changes(tmp_path / "2", files, "pk/bodies.py", "X += 1.0", "X += 2.0")


def test_constant_in_a_module_level_if_block_counts(tmp_path):
    files = {
        "pk/bodies.py": "import sys\nif sys.version_info >= (3,):\n    K = 1\nelse:\n    K = 2\n\ndef f():\n    return K\n"
    }
    assert changes(tmp_path, files, "pk/bodies.py", "K = 1", "K = 3")


def test_helper_in_a_module_level_try_block_counts(tmp_path):
    files = {
        "pk/bodies.py": """
            try:
                def helper():
                    return 1
            except Exception:
                def helper():
                    return 0

            def f():
                return helper()
            """
    }
    assert changes(tmp_path, files, "pk/bodies.py", "return 1", "return 2")


def test_conditional_import_is_followed(tmp_path):
    files = {
        "pk/_label.py": "label_offset = 3\n",
        "pk/bodies.py": """
            try:
                from pk._label import label_offset
            except ImportError:
                label_offset = 0

            def f():
                return label_offset + 1
            """,
    }
    assert changes(tmp_path, files, "pk/_label.py", "= 3", "= 4")


def test_star_import_counts_the_whole_module(tmp_path):
    files = {
        "pk/helpers.py": "def helper():\n    return 1\n\ndef other():\n    return 2\n",
        "pk/bodies.py": "from pk.helpers import *\n\ndef f():\n    return helper()\n",
    }
    assert changes(tmp_path / "1", files, "pk/helpers.py", "return 1", "return 5")
    assert changes(tmp_path / "2", files, "pk/helpers.py", "return 2", "return 5")  # star: all of it


def test_dotted_import_chain_is_resolved(tmp_path):
    files = {
        "pk/sub/__init__.py": "",
        "pk/sub/h.py": "def helper():\n    return 1\n",
        "pk/bodies.py": "import pk.sub.h\n\ndef f():\n    return pk.sub.h.helper()\n",
    }
    assert changes(tmp_path, files, "pk/sub/h.py", "return 1", "return 2")
    parts = dict(version(tmp_path / "a").parts)
    assert "pk.sub.h:helper" in parts and "pk.sub:<toplevel>" in parts  # parents run on import too


def test_globals_lookup_counts_the_whole_module_with_a_note(tmp_path):
    files = {"pk/bodies.py": 'def helper():\n    return 1\n\ndef f():\n    return globals()["helper"]()\n'}
    assert changes(tmp_path, files, "pk/bodies.py", "return 1", "return 2")
    notes = version(tmp_path / "a").notes
    assert any(n.startswith("pk/bodies.py:5: globals()") and "whole module" in n for n in notes)


def test_module_level_mutation_of_a_dict_counts(tmp_path):
    files = {
        "pk/bodies.py": 'CFG = {"a": 1}\nCFG["u"] = 2\nCFG.update(v=4)\n\ndef f():\n    return CFG["a"], CFG["v"]\n'
    }
    assert changes(tmp_path / "1", files, "pk/bodies.py", '{"a": 1}', '{"a": 5}')
    assert changes(tmp_path / "2", files, "pk/bodies.py", '["u"] = 2', '["u"] = 3')
    assert changes(tmp_path / "3", files, "pk/bodies.py", "v=4", "v=5")


def test_import_name_of_another_distribution_counts_by_its_version(tmp_path):
    from importlib import metadata

    write(tmp_path, {"pk/bodies.py": "import yaml\n\ndef f(s):\n    return yaml.safe_load(s)\n"})
    parts = dict(version(tmp_path).parts)
    # the distribution is PyYAML: its upgrades change the version (names compare case-insensitively)
    assert parts["yaml:safe_load"].lower() == f"pyyaml=={metadata.version('PyYAML')}"


def test_an_import_name_provided_by_several_distributions_records_all(monkeypatch):
    from skipwise.core import distributions

    monkeypatch.setattr(distributions, "_PROVIDERS", {"shared_ns": ["dist-b", "dist-a"]})
    monkeypatch.setattr(distributions, "_VERSIONS", {})
    assert distributions.distribution_versions("shared_ns")[0] == "dist-a==unknown,dist-b==unknown"
    value, note = distributions.distribution_versions("surely_not_installed_anywhere")
    assert value == "surely_not_installed_anywhere==unknown" and "not installed" in note


def test_modules_imported_by_reached_modules_run_their_top_level_code(tmp_path):
    # importing pk.patch mutates pk.cfg.CFG: the patch counts although f never names it
    files = {
        "pk/cfg.py": "CFG = {'k': 1}\n",
        "pk/patch.py": "import pk.cfg\npk.cfg.CFG['k'] = 2\n",
        "pk/bodies.py": "import pk.patch\nfrom pk.cfg import CFG\n\ndef f():\n    return CFG['k']\n",
    }
    assert changes(tmp_path, files, "pk/patch.py", "= 2", "= 3")


def test_registering_decorators_and_base_classes_count(tmp_path):
    decorator = {
        "pk/bodies.py": """
            REG = {}

            def register(fn):
                REG[fn.__name__] = fn
                return fn

            @register
            def a():
                return 1

            def f():
                return REG["a"]()
            """
    }
    assert changes(tmp_path / "1", decorator, "pk/bodies.py", "return 1", "return 2")
    subclass = {
        "pk/bodies.py": """
            class Base:
                registry = []

                def __init_subclass__(cls):
                    Base.registry.append(cls)

            class Plugin(Base):
                def run(self):
                    return 1

            def f():
                return Base.registry[0]().run()
            """
    }
    assert changes(tmp_path / "2", subclass, "pk/bodies.py", "return 1", "return 2")


def test_dynamic_imports(tmp_path):
    files = {
        "pk/a.py": "def g():\n    return 1\n",
        "pk/b.py": "def g():\n    return 2\n",
        "pk/bodies.py": """
            import importlib

            def f(name):
                return importlib.import_module(name).g()

            def fixed():
                return importlib.import_module("pk.a").g()
            """,
    }
    # a computed module name: every module of the package counts
    assert changes(tmp_path / "1", files, "pk/b.py", "return 2", "return 3")
    assert any("every module of pk" in n for n in version(tmp_path / "1" / "a").notes)
    # a constant one: that module wholly, nothing else
    assert changes(tmp_path / "2", files, "pk/a.py", "return 1", "return 3", ref="pk.bodies:fixed")
    assert not changes(tmp_path / "3", files, "pk/b.py", "return 2", "return 3", ref="pk.bodies:fixed")


def test_getattr_and_sys_modules_lookups(tmp_path):
    files = {
        "pk/helpers.py": "def one():\n    return 1\n\ndef two():\n    return 2\n",
        "pk/bodies.py": """
            import sys
            from pk import helpers

            def local_helper():
                return 3

            def f(name):
                return getattr(helpers, name)()

            def constant():
                return getattr(helpers, "one")()

            def by_self(name):
                return getattr(sys.modules[__name__], name)()
            """,
    }
    assert changes(tmp_path / "1", files, "pk/helpers.py", "return 2", "return 5")
    assert not changes(tmp_path / "2", files, "pk/helpers.py", "return 2", "return 5", ref="pk.bodies:constant")
    assert changes(tmp_path / "3", files, "pk/helpers.py", "return 1", "return 5", ref="pk.bodies:constant")
    assert changes(tmp_path / "4", files, "pk/bodies.py", "return 3", "return 5", ref="pk.bodies:by_self")


def test_eval_of_a_literal_is_followed_and_of_a_computed_string_counts_the_module(tmp_path):
    files = {
        "pk/bodies.py": """
            def helper():
                return 1

            def f():
                return eval("helper()")

            def g(code):
                return eval(code)
            """
    }
    assert changes(tmp_path / "1", files, "pk/bodies.py", "return 1", "return 2")
    assert changes(tmp_path / "2", files, "pk/bodies.py", "return 1", "return 2", ref="pk.bodies:g")
    assert version(tmp_path / "1" / "a").notes == ()  # a literal is read like code: precise, no note
    assert any("eval() of a computed string" in n for n in version(tmp_path / "2" / "a", "pk.bodies:g").notes)


def test_files_lists_the_sources_read_with_their_hashes(tmp_path):
    import hashlib

    write(tmp_path, {"pk/helpers.py": HELPERS, "pk/bodies.py": BODIES.replace("proj", "pk"), "pk/other.py": "X = 1\n"})
    files = dict(version(tmp_path, "pk.bodies:flights").files)
    assert set(files) == {"pk/__init__.py", "pk/bodies.py", "pk/helpers.py"}  # not pk/other.py
    assert files["pk/helpers.py"] == hashlib.sha256((tmp_path / "pk/helpers.py").read_bytes()).hexdigest()


def test_read_source_versions_the_given_bytes_and_never_uses_the_cache(tmp_path):
    write(tmp_path, {"pk/bodies.py": "def f():\n    return 1\n"})
    cache = tmp_path / "code.json"
    on_disk = version(tmp_path, cache=cache)
    loaded = {tmp_path / "pk/bodies.py": b"def f():\n    return 2\n"}
    read = lambda path: loaded.get(path) or path.read_bytes()  # noqa: E731
    cache.unlink()
    cv = version(tmp_path, cache=cache, read_source=read)
    assert cv.digest != on_disk.digest
    assert not cache.exists()
    import hashlib

    assert dict(cv.files)["pk/bodies.py"] == hashlib.sha256(loaded[tmp_path / "pk/bodies.py"]).hexdigest()


# -- the cache file ----------------------------------------------------------------------------


def test_a_cache_hit_is_the_same_code_version(tmp_path, monkeypatch):
    write(
        tmp_path,
        {"pk/helpers.py": HELPERS, "pk/bodies.py": BODIES.replace("proj", "pk") + "\ndef d():\n    return globals()\n"},
    )
    cache = tmp_path / ".skipwise" / "code.json"
    fresh = [version(tmp_path, f"pk.bodies:{n}", cache=cache) for n in ("flights", "weather", "d")]
    monkeypatch.setattr(CodeIndex, "_compute", lambda self, ref: pytest.fail("recomputed"))
    idx = CodeIndex(tmp_path, cache=cache)
    assert [idx.version(f"pk.bodies:{n}") for n in ("flights", "weather", "d")] == fresh
    assert fresh[2].notes and fresh[0].files


def test_cache_entries_are_keyed_by_paths_relative_to_the_root(tmp_path):
    import os
    import shutil

    original = write(tmp_path / "orig", {"pk/helpers.py": HELPERS, "pk/bodies.py": BODIES.replace("proj", "pk")})
    shared = tmp_path / "shared.json"
    before = version(original, "pk.bodies:weather", cache=original / ".cache.json").digest
    assert version(original, "pk.bodies:weather", cache=shared).digest == before
    copy = tmp_path / "copy"
    shutil.copytree(original, copy, copy_function=shutil.copy2)  # mtimes kept, the cache file too
    helper = copy / "pk" / "helpers.py"
    st = os.stat(helper)
    helper.write_text(helper.read_text().replace("x + 1", "x + 3"))  # same size
    os.utime(helper, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(helper).st_size == st.st_size and os.stat(helper).st_mtime_ns == st.st_mtime_ns
    for cache in (copy / ".cache.json", shared):
        assert version(copy, "pk.bodies:weather", cache=cache).digest != before
    for cache in (original / ".cache.json", shared):
        assert version(original, "pk.bodies:weather", cache=cache).digest == before


def test_cache_validates_stats_and_module_lookups(tmp_path, monkeypatch):
    import os
    import time

    from skipwise.core import codefiles

    root = write(tmp_path, {"pk/helpers.py": HELPERS, "pk/bodies.py": BODIES.replace("proj", "pk")})
    cache = tmp_path / "code.json"
    monkeypatch.setattr(codefiles, "_RACY_NS", 0)  # trust stats even for files written just now
    before = version(root, "pk.bodies:weather", cache=cache).digest
    time.sleep(0.05)  # past the file system's timestamp granularity
    helper = root / "pk" / "helpers.py"
    st = os.stat(helper)
    helper.write_text(helper.read_text().replace("x + 1", "x + 3"))
    os.utime(helper, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored: ctime still moves
    edited = version(root, "pk.bodies:weather", cache=cache).digest
    assert edited != before
    # a new package shadowing pk/helpers.py changes what `from pk import helpers` imports
    (root / "pk" / "helpers").mkdir()
    (root / "pk" / "helpers" / "__init__.py").write_text("def only_weather(x):\n    return x\n")
    assert version(root, "pk.bodies:weather", cache=cache).digest not in (before, edited)


def test_cache_is_invalidated_by_another_environment_and_old_schemes_are_ignored(tmp_path, monkeypatch):
    from skipwise.core import distributions

    root = write(tmp_path, {"pk/bodies.py": "def f():\n    return 1\n"})
    cache = tmp_path / "code.json"
    cache.write_text('{"scheme": 1, "pk.bodies:f": {"digest": "stale", "parts": [], "files": {}, "versions": {}}}')
    first = version(root, cache=cache)
    assert first.digest != "stale"
    calls = []
    compute = CodeIndex._compute
    monkeypatch.setattr(CodeIndex, "_compute", lambda self, ref: calls.append(ref) or compute(self, ref))
    assert version(root, cache=cache) == first and calls == []
    distributions.installed()
    monkeypatch.setattr(distributions, "_ENVIRONMENT", "another set of distributions")
    assert version(root, cache=cache) == first and calls == ["pk.bodies:f"]


H = {"pk/sub/__init__.py": "", "pk/sub/h.py": "def helper():\n    return 1\n"}


@pytest.mark.parametrize(
    "files, rel, old, new",
    [
        pytest.param(
            {**H, "pk/bodies.py": "def f():\n    import pk.sub.h\n    return pk.sub.h.helper()\n"},
            "pk/sub/h.py",
            "1",
            "2",
            id="local-import-chain",
        ),
        pytest.param(
            {**H, "pk/bodies.py": "from pk import sub\n\ndef f():\n    return sub.h.helper()\n"},
            "pk/sub/h.py",
            "1",
            "2",
            id="subpackage-attribute",
        ),
        pytest.param(
            {
                **H,
                "pk/api.py": "from pk.sub.h import *\n",
                "pk/bodies.py": "from pk.api import helper\n\ndef f():\n    return helper()\n",
            },
            "pk/sub/h.py",
            "1",
            "2",
            id="star-re-export",
        ),
        pytest.param(
            {"pk/bodies.py": "X = 1\n\ndef setup():\n    global X\n    X = 2\n\ndef f():\n    return X\n"},
            "pk/bodies.py",
            "X = 2",
            "X = 3",
            id="global-writer",
        ),
        pytest.param(
            {"pk/bodies.py": "TABLE = []\nfor i in range(3):\n    TABLE.append(i * 2)\n\ndef f():\n    return TABLE\n"},
            "pk/bodies.py",
            "i * 2",
            "i * 3",
            id="for-loop-mutation",
        ),
        pytest.param(
            {
                "pk/lazy.py": "def __getattr__(name):\n    return 1\n",
                "pk/bodies.py": "import pk.lazy\n\ndef f():\n    return pk.lazy.anything\n",
            },
            "pk/lazy.py",
            "1",
            "2",
            id="module-getattr",
        ),
        pytest.param(
            {
                "pk/x.py": "def g():\n    return 1\n",
                "pk/bodies.py": "def f():\n    ns = {}\n    exec('from pk.x import g as out', ns)\n    return ns['out']()\n",
            },
            "pk/x.py",
            "1",
            "2",
            id="exec-literal-import",
        ),
        pytest.param(
            {
                "pk/x.py": "def g():\n    return 1\n",
                "pk/bodies.py": "from importlib import import_module as load\n\ndef f(n):\n    return load(n).g()\n",
            },
            "pk/x.py",
            "1",
            "2",
            id="aliased-import-module",
        ),
        pytest.param(
            {
                "pk/bodies.py": "import functools\n\n@functools.singledispatch\ndef show(x):\n    return 0\n\n@show.register\ndef _(x: int):\n    return 1\n\ndef f():\n    return show(3)\n"
            },
            "pk/bodies.py",
            "return 1",
            "return 2",
            id="singledispatch-register",
        ),
        pytest.param(
            {
                "pk/cfg.py": "K = 1\n",
                "pk/plug.py": "import pk.cfg\npk.cfg.K = 9\n",
                "pk/__init__.py": "import pk.plug\n",
                "pk/bodies.py": "from pk import cfg\n\ndef f():\n    return cfg.K\n",
            },
            "pk/plug.py",
            "9",
            "8",
            id="parent-package-import-side-effect",
        ),
    ],
)
def test_more_constructs_that_must_count(tmp_path, files, rel, old, new):
    assert changes(tmp_path, files, rel, old, new)


def _tree(tmp: Path, files: dict[str, str]) -> CodeIndex:
    for rel, text in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(textwrap.dedent(text))
    return CodeIndex(tmp)


def test_a_module_only_imported_counts_by_what_importing_it_can_do_to_others(tmp_path):
    base = {
        "pk/__init__.py": "",
        "pk/cfg.py": "CFG = {'u': 1}\n",
        "pk/other.py": "import re\nfrom pk import cfg\nUNUSED = 1\nPAT = re.compile('x')\n\ndef g():\n    return 0\n",
        "pk/bodies.py": "from pk.cfg import CFG\nfrom pk.other import g\n\ndef f(ctx):\n    return CFG['u']\n",
    }
    v = lambda files: _tree(tmp_path, files).version("pk.bodies:f").digest  # noqa: E731
    before = v(base)
    # other.g is imported but f never calls it: other's inert constants cannot reach f
    assert v({**base, "pk/other.py": base["pk/other.py"].replace("UNUSED = 1", "UNUSED = 2")}) == before
    # ...but importing other runs its top level, which may change what f reads
    mutated = base["pk/other.py"] + "cfg.CFG['u'] = 2\n"
    assert v({**base, "pk/other.py": mutated}) != before
