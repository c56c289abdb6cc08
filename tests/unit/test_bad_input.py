"""Bad input gets one clear error naming the file or key and the fix: the pure parts (params
declarations, partition specs, money, DVC's files, prices), on real files where files are involved."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date
from pathlib import Path

import pytest
from skipwise.adapters.dvc.manifest import file_version, read_tracked_dir
from skipwise.core.budget import Budgets, check_budgets, project_run_cost
from skipwise.core.cost import CostVector
from skipwise.core.errors import ConfigError, InputError, PartitionKeyError, UsageError
from skipwise.core.partitions import DailyPartitions, parse_range, validate_key
from skipwise.core.pricing import load_config
from skipwise.core.spec import Asset, Graph, Source, check_params
from skipwise.core.units import format_usd, total_usd
from skipwise.store.statcache import StatCache

DAYS = DailyPartitions(date(2013, 1, 1), date(2013, 2, 1))
GRAPH = Graph(
    sources=(Source("raw", "data/raw/x", DAYS),),
    assets=(
        Asset("typed", "m:f", DAYS, params={"threshold": 15, "rate": 0.5, "on": True, "name": "a", "anything": None}),
        Asset("free", "m:g", DAYS),
    ),
)


def one_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0]


# -- 3. params declarations ---------------------------------------------------------------------


def test_declared_defaults_merge_and_types_are_converted():
    out = check_params(GRAPH, {"typed": {"rate": 2, "threshold": 20}, "free": {"x": [1, {"y": "z"}]}})
    assert out["typed"] == {"threshold": 20, "rate": 2.0, "on": True, "name": "a", "anything": None}
    assert isinstance(out["typed"]["rate"], float)  # an int where a float is expected
    assert out["free"] == {"x": [1, {"y": "z"}]}  # undeclared: any keys, as they are
    # Writing a default out gives the same effective params as leaving it out.
    assert (
        check_params(GRAPH, {"typed": {"threshold": 15}})
        == check_params(GRAPH, {})
        == check_params(GRAPH, {"typed": None})
    )


@pytest.mark.parametrize(
    "section, where, words",
    [
        ({"threshold": "abc"}, "typed.threshold", ["expected an integer", "'abc'"]),
        ({"threshold": 1.5}, "typed.threshold", ["expected an integer", "1.5"]),
        ({"threshold": True}, "typed.threshold", ["expected an integer", "true"]),  # a bool is not an int
        ({"on": 1}, "typed.on", ["expected a boolean"]),
        ({"rate": "0.5"}, "typed.rate", ["expected a number", "'0.5'"]),
        ({"name": 3}, "typed.name", ["expected a string"]),
        ({"rate": math.nan}, "typed.rate", ["not a finite number"]),
        ({"rate": math.inf}, "typed.rate", ["not a finite number"]),
        ({"anything": [1.0, math.nan]}, "typed.anything[1]", ["not a finite number"]),
        ({"treshold": 10}, "typed.treshold", ["unknown param of typed", "did you mean 'threshold'"]),
    ],
)
def test_a_bad_declared_param_names_the_key_the_type_and_the_value(section, where, words):
    with pytest.raises(ConfigError) as e:
        check_params(GRAPH, {"typed": section})
    line = one_line(e.value)
    assert line.startswith(f"params.yaml: {where}: "), line
    for w in words:
        assert w in line, (w, line)
    assert "fix:" in str(e.value)


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ConfigError) as e:
        check_params(GRAPH, {"typed": {"zzz": 1}})
    assert "known params of typed: anything, name, on, rate, threshold" in str(e.value)


def test_generic_checks_hold_for_undeclared_assets_too():
    with pytest.raises(ConfigError, match=r"^params.yaml: free.x: nan is not a finite number"):
        check_params(GRAPH, {"free": {"x": float("nan")}})
    with pytest.raises(ConfigError, match=r"^params.yaml: free.x.deep: -inf is not a finite number"):
        check_params(GRAPH, {"free": {"x": {"deep": -math.inf}}})
    with pytest.raises(ConfigError, match="non-string key"):
        check_params(GRAPH, {"free": {"x": {1: "a"}}})


def test_a_section_naming_no_asset_or_not_a_mapping():
    with pytest.raises(ConfigError) as e:
        check_params(GRAPH, {"typd": {}})
    assert one_line(e.value) == "params.yaml: typd: names no asset; did you mean 'typed'?"
    assert "asset names: free, typed" in str(e.value)
    with pytest.raises(ConfigError, match="raw: is a source"):
        check_params(GRAPH, {"raw": {}})
    with pytest.raises(
        ConfigError, match=r"^params.yaml: typed: expected a mapping of param -> value, got an integer 5"
    ):
        check_params(GRAPH, {"typed": 5})
    with pytest.raises(ConfigError, match="expected a mapping of asset name"):
        check_params(GRAPH, ["typed"])


def test_a_bad_declaration_is_caught_when_the_graph_is_written():
    with pytest.raises(ConfigError, match="unsupported type"):
        Asset("a", "m:f", None, params={"when": date(2013, 1, 1)})
    with pytest.raises(ConfigError, match="not a finite number"):
        Asset("a", "m:f", None, params={"x": math.nan})


def test_the_demo_declares_what_its_bodies_use():
    from skipwise.project.resolving import resolve_graph

    from assets.models.delay import DEFAULT_PARAMS

    DEMO = resolve_graph(Path(__file__).resolve().parents[2], "assets.definitions")[0]

    declared = {a.name: a.params for a in DEMO.assets}
    assert declared["delay_model"] == DEFAULT_PARAMS
    assert all(p is not None for p in declared.values())
    # The repository's params.yaml passes and is what the defaults are.
    from skipwise.engine.project import load_params

    repo = Path(__file__).resolve().parents[2]
    assert check_params(DEMO, load_params(repo)) == {a.name: dict(a.params) for a in DEMO.assets}


def test_yaml_dates_and_yaml_1_2_floats(tmp_path):
    from skipwise.engine.project import load_params

    (tmp_path / "params.yaml").write_text(
        "a:\n  day: 2013-11-01\n  at: 2013-11-01 10:30:00\n  wd: 1e-05\n  q: '2013-11-01'\n"
    )
    assert load_params(tmp_path) == {
        "a": {"day": "2013-11-01", "at": "2013-11-01T10:30:00", "wd": 1e-05, "q": "2013-11-01"}
    }


def test_params_yaml_syntax_error_is_one_line_with_its_line(tmp_path):
    from skipwise.engine.project import load_params

    (tmp_path / "params.yaml").write_text("a:\n  x: 1\nb: [1\n")
    with pytest.raises(ConfigError) as e:
        load_params(tmp_path)
    assert one_line(e.value).startswith("params.yaml:4: not valid YAML: ")
    (tmp_path / "params.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="params.yaml: not a text file"):
        load_params(tmp_path)


# -- 1, 7. partition specs and keys ----------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", "is empty"),
        ("  ", "is empty"),
        ("2013-01-01...", "no end"),
        ("...2013-01-02", "no start"),
        ("...", "no start"),
    ],
)
def test_an_empty_partition_spec_is_a_usage_error(spec, words):
    with pytest.raises(UsageError, match=words) as e:
        parse_range(spec)
    assert e.value.exit_code == 2


def test_partition_ranges_parse():
    assert parse_range("2013-01-01") == ("2013-01-01", "2013-01-01")
    assert parse_range("2013-01-01...2013-01-03") == ("2013-01-01", "2013-01-03")


def test_long_keys_are_cut_in_messages():
    key = "k" * 10000
    for check in (validate_key, DAYS.parse):
        with pytest.raises(PartitionKeyError) as e:
            check(key)
        assert "... (10000 characters)" in str(e.value) and len(str(e.value)) < 400
    with pytest.raises(UsageError) as e:
        parse_range("...x" + "y" * 5000)
    assert "(5004 characters)" in str(e.value) and len(str(e.value)) < 300


# -- 8. money ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        (0, "$0"),
        (0.0, "$0"),
        (0.00001, "$0.0000100"),
        (0.0000123456, "$0.0000123"),
        (0.001, "$0.00100"),
        (0.0009999, "$0.00100"),
        (0.0123, "$0.0123"),
        (20, "$20.0000"),
        (1234.5, "$1234.5000"),
        (-0.00002, "-$0.0000200"),
        (None, "-"),
        (1e-12, "$1.00e-12"),
    ],
)
def test_format_usd(value, text):
    assert format_usd(value) == text


def test_budget_messages_never_round_a_small_amount_to_zero():
    p = project_run_cost({"a": [0.00001]}, {"a": 3}, 0.01)
    d = check_budgets(p, Budgets(per_run_usd=0.00001), 0.0, override=False)
    assert not d.ok and "projected $0.0000300 for this run is over budgets.per_run_usd = $0.0000100" in d.message
    assert "$0.0000" not in d.message.replace("$0.00003", "").replace("$0.00001", "")


def test_per_run_budget_counts_what_the_run_already_spent():
    p = project_run_cost({"b": [0.0002]}, {"b": 1}, 0.01)
    alone = check_budgets(p, Budgets(per_run_usd=0.0007), 0.0, override=False)
    assert alone.ok
    later = check_budgets(p, Budgets(per_run_usd=0.0007), 0.0, override=False, spent_this_run_usd=0.0006)
    assert not later.ok and later.breaches == ("per_run_usd",)
    assert (
        "$0.000600 already spent by this run + projected $0.000200 = $0.000800 is over budgets.per_run_usd = $0.000700"
        in later.message
    )


# -- 4, 6. DVC's files ------------------------------------------------------------------------------


def make_repo(root: Path, files: dict[str, bytes]) -> str:
    d = root / "data" / "raw" / "x"
    d.mkdir(parents=True)
    entries = []
    for name, data in sorted(files.items()):
        (d / name).write_bytes(data)
        entries.append({"md5": hashlib.md5(data).hexdigest(), "relpath": name})
    manifest = json.dumps(entries).encode()
    h = hashlib.md5(manifest).hexdigest()
    cache = root / ".dvc" / "cache" / "files" / "md5" / h[:2]
    cache.mkdir(parents=True)
    (cache / f"{h[2:]}.dir").write_bytes(manifest)
    (root / "data" / "raw" / "x.dvc").write_text(f"outs:\n- md5: {h}.dir\n  hash: md5\n  path: x\n")
    return h


GARBAGE_DVC = [
    (b"outs: [\n", "data/raw/x.dvc:2: not valid YAML"),
    (b"\xff\xfe\x00\x01", "data/raw/x.dvc: not a text file"),
    (b"- a\n- b\n", "data/raw/x.dvc: expected a mapping with `outs`"),
    (b"", "data/raw/x.dvc: expected a mapping with `outs` (what `dvc add` writes), got empty"),
    (b"outs: 5\n", "data/raw/x.dvc: `outs` is a number, not a list"),
    (b"outs:\n- 7\n", "data/raw/x.dvc: outs[0] is a number, not a mapping"),
    (b"outs:\n- path: x\n  size: 3\n", "data/raw/x.dvc: outs[0] (x) has no md5"),
    (b"outs:\n- md5: 12345\n  path: x\n", "data/raw/x.dvc: outs[0] (x) md5 is a number 12345, not an md5 hash"),
    (b"outs:\n- md5: [a]\n  path: x\n", "data/raw/x.dvc: outs[0] (x) md5 is a list"),
    (
        b"outs:\n- md5: d41d8cd98f00b204e9800998ecf8427e\n  path: x\n",
        "data/raw/x.dvc: records data/raw/x with the file hash",
    ),
    (
        b"outs:\n- md5: d41d8cd98f00b204e9800998ecf8427e.dir\n  path: y\n",
        "data/raw/x.dvc: records no output for data/raw/x",
    ),
]


@pytest.mark.parametrize("text, line", GARBAGE_DVC)
def test_a_garbage_dvc_file_is_one_input_error_naming_it(tmp_path, text, line):
    make_repo(tmp_path, {"a.parquet": b"aaa"})
    (tmp_path / "data/raw/x.dvc").write_bytes(text)
    with pytest.raises(InputError) as e:
        read_tracked_dir(tmp_path, "data/raw/x")
    assert one_line(e.value).startswith(line), one_line(e.value)
    assert "dvc add data/raw/x" in str(e.value)


GARBAGE_LOCK = [
    (b"stages: {a: [\n", "dvc.lock:2: not valid YAML"),
    (b"- 1\n", "dvc.lock: expected a mapping with `stages`"),
    (b"stages: [1]\n", "dvc.lock: `stages` is a list, not a mapping"),
    (b"stages:\n  s: 3\n", "dvc.lock: stages.s is a number"),
    (b"stages:\n  s:\n    outs: {}\n", "dvc.lock: stages.s.`outs` is a mapping, not a list"),
    (b"stages:\n  s:\n    outs:\n    - path: data/raw/x\n", "dvc.lock: stages.s.outs[0] (data/raw/x) has no md5"),
    (
        b"stages:\n  s:\n    outs:\n    - path: data/raw/x\n      md5: 3\n",
        "dvc.lock: stages.s.outs[0] (data/raw/x) md5 is a number",
    ),
]


@pytest.mark.parametrize("text, line", GARBAGE_LOCK)
def test_a_garbage_dvc_lock_is_one_input_error_naming_it(tmp_path, text, line):
    make_repo(tmp_path, {"a.parquet": b"aaa"})
    (tmp_path / "data/raw/x.dvc").unlink()
    (tmp_path / "dvc.lock").write_bytes(text)
    with pytest.raises(InputError) as e:
        read_tracked_dir(tmp_path, "data/raw/x")
    assert one_line(e.value).startswith(line), one_line(e.value)
    assert "dvc.lock" in str(e.value) and "fix:" in str(e.value)


def test_a_good_dvc_lock_still_works(tmp_path):
    h = make_repo(tmp_path, {"a.parquet": b"aaa"})
    (tmp_path / "data/raw/x.dvc").unlink()
    (tmp_path / "dvc.lock").write_text(
        f"schema: '2.0'\nstages:\n  s:\n    outs:\n    - path: data/raw/x\n      md5: {h}.dir\n"
    )
    assert read_tracked_dir(tmp_path, "data/raw/x").files == {"a.parquet": hashlib.md5(b"aaa").hexdigest()}


def test_a_missing_dir_manifest_is_one_warning_and_files_keep_their_versions(tmp_path):
    h = make_repo(tmp_path, {"a.parquet": b"aaa", "b.parquet": b"bbb"})
    cache = StatCache(tmp_path / "stat.db")
    with_cache = read_tracked_dir(tmp_path, "data/raw/x")
    before = {n: file_version(tmp_path, with_cache, n, cache).version for n in ("a.parquet", "b.parquet")}
    for p in (tmp_path / ".dvc" / "cache").rglob("*.dir"):
        p.unlink()
    tracked = read_tracked_dir(tmp_path, "data/raw/x")
    assert tracked.missing_manifest == f"{h}.dir"
    got = {n: file_version(tmp_path, tracked, n, cache) for n in ("a.parquet", "b.parquet")}
    assert {n: v.version for n, v in got.items()} == before  # versioned by content: nothing turns stale
    warnings = {v.warning for v in got.values()}
    assert len(warnings) == 1  # the same text for every file: the project shows it once
    (w,) = warnings
    assert "data/raw/x.dvc" in w and f"{h}.dir" in w and "dvc fetch" in w and "dvc pull" in w
    assert "not committed" not in w
    assert file_version(tmp_path, tracked, "never.parquet", cache).version == "absent"


# -- 11. cost records name skipwise.toml relative to the project --------------------------------------


def test_cost_method_names_the_config_relative_to_the_project(tmp_path):
    (tmp_path / "skipwise.toml").write_text('[compute]\nprofile = "laptop"\n')
    config = load_config(tmp_path / "skipwise.toml")
    method = config.price(CostVector(cpu_seconds=1.0)).method
    assert "(skipwise.toml)" in method and str(tmp_path) not in method
    assert config.source == str(tmp_path / "skipwise.toml")  # errors keep the full path
    absent = load_config(tmp_path / "nope" / "skipwise.toml").price(CostVector(cpu_seconds=1.0)).method
    assert "(skipwise.toml (absent, defaults))" in absent and str(tmp_path) not in absent
    (tmp_path / "skipwise.toml").write_text("[compute]\nprofile = 3\n")
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_config(tmp_path / "skipwise.toml")


@pytest.mark.parametrize(
    "amounts, total",
    [([], 0.0), ([None], None), ([None, None], None), ([None, 0.25], 0.25), ([0.0, 0.0], 0.0), ([1e-7, 2e-7], 3e-7)],
)
def test_a_total_of_dollars_is_zero_with_nothing_to_count_and_unknown_when_none_is_known(amounts, total):
    got = total_usd(amounts)
    assert got == pytest.approx(total) if total is not None else got is None
    assert format_usd(got) == ("-" if total is None else format_usd(total))
