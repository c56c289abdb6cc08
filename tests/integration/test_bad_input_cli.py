"""Bad input through the real `skipwise` command on a real project: one `Error:` line naming the
file or key (plus its `fix:`), a non-zero exit, no traceback, and no data touched."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import polars as pl
import pytest
from skipwise.core.cost import CostVector, LedgerRecord

from tests.conftest import run

pytestmark = pytest.mark.integration

OVERRIDE = {"skipwise/budget_override": "true"}


def cli(root: Path, *args: str):
    env = {"PYTHONPATH": str(root), "DAGSTER_HOME": str(root / ".dagster")}
    return run([sys.executable, "-m", "skipwise.cli.main", *args], cwd=root, env=env, check=False)


def error_line(p, rc: int | None = None) -> str:
    """The one `Error:` line of a failed command (its `fix:` line follows it)."""
    assert p.returncode != 0, p.stdout
    if rc is not None:
        assert p.returncode == rc, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, p.stderr
    return errors[0]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under data/ (skipwise's own caches aside) -> its sha256."""
    data = root / "data"
    return {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data.rglob("*"))
        if p.is_file() and ".skipwise" not in p.relative_to(data).parts
    }


@pytest.fixture
def proj(project_dir) -> Path:
    """The project with an existing committed-looking partition, so "unchanged" means something."""
    from skipwise.core.manifest import Manifest

    d = project_dir / "data" / "features" / "flight_features" / "2013-01-01"
    d.mkdir(parents=True)
    data = b"existing output"
    (d / "f0.parquet").write_bytes(data)
    (d / "manifest.json").write_text(
        Manifest(
            asset="flight_features",
            partition="2013-01-01",
            fingerprint="f0",
            code_version="c0",
            params_digest="p0",
            inputs={"raw_flights": {"2013-01-01": "md5:0"}},
            output="f0.parquet",
            output_hash=hashlib.sha256(data).hexdigest(),
            output_size=len(data),
        ).to_json()
    )
    return project_dir


def write_ledger(
    root: Path, rows: list[tuple[str, str, float]], run_id: str = "earlier-run", ts: str = "2020-01-01T00:00:00+00:00"
) -> None:
    """A pre-made cost history: (asset, partition, usd) misses."""
    from skipwise.store.ledger import Ledger

    Ledger(root / "data" / "ledger").append(
        LedgerRecord(
            ts=ts,
            run_id=run_id,
            asset=a,
            partition=k,
            cache="miss",
            reason="missing",
            fingerprint=f"fp-{a}-{k}",
            cost=CostVector(usd=usd),
        )
        for a, k, usd in rows
    )


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


# -- 1. an empty --partition -------------------------------------------------------------------


@pytest.mark.parametrize("command", ["plan", "materialize"])
def test_an_empty_partition_is_a_usage_error_not_the_whole_range(proj, command):
    before = snapshot(proj)
    for spec, words in (
        ("", "--partition is empty"),
        ("2013-01-01...", "the range has no end"),
        ("...2013-01-02", "the range has no start"),
    ):
        p = cli(proj, command, "--partition", spec)
        assert words in error_line(p, rc=2)
        assert "fix:" in p.stderr
        assert "RUN" not in p.stdout and "computed" not in p.stdout
    assert snapshot(proj) == before
    assert not (proj / ".dagster").exists()  # no Dagster run was started


def test_materialize_project_refuses_an_empty_partition(project):
    from skipwise.adapters.dagster.run import materialize_project
    from skipwise.core.errors import UsageError

    with pytest.raises(UsageError, match="is empty"):
        materialize_project(project, ["flight_features"], "", {})
    assert not (project.root / "data" / "features").exists()


# -- 2. YAML dates -------------------------------------------------------------------------------


def test_an_unquoted_date_plans_with_the_same_fingerprints(proj):
    quoted = cli(proj, "plan", "--json", "--all")
    assert quoted.returncode == 0, quoted.stderr
    edit(proj / "params.yaml", 'valid_from: "2013-11-01"', "valid_from: 2013-11-01")
    unquoted = cli(proj, "plan", "--json", "--all")
    assert unquoted.returncode == 0 and "Traceback" not in unquoted.stderr, unquoted.stderr
    fps = lambda p: {(r["asset"], r["partition"]): r["fingerprint"] for r in json.loads(p.stdout)["partitions"]}
    assert fps(unquoted) == fps(quoted)


# -- 3. params are validated when the project loads -------------------------------------------------


PARAM_CASES = [
    (
        "delay_threshold_minutes: 15",
        'delay_threshold_minutes: "abc"',
        "Error: params.yaml: flight_features.delay_threshold_minutes: expected an integer, got a string 'abc'",
    ),
    ("lr: 0.003", "lr: .nan", "Error: params.yaml: delay_model.lr: nan is not a finite number"),
    (
        "epochs: 6",
        "epoch: 6",
        "Error: params.yaml: delay_model.epoch: unknown param of delay_model; did you mean 'epochs'?",
    ),
    (
        "weather_features:",
        "wether_features:",
        "Error: params.yaml: wether_features: names no asset; did you mean 'weather_features'?",
    ),
    (
        "training_set:\n  weather_lead_minutes: 60",
        "training_set: 60",
        "Error: params.yaml: training_set: expected a mapping of param -> value, got an integer 60",
    ),
]


def test_bad_params_are_one_line_naming_the_key(proj):
    original = (proj / "params.yaml").read_text()
    before = snapshot(proj)
    for old, new, line in PARAM_CASES:
        (proj / "params.yaml").write_text(original.replace(old, new))
        for command in (["plan"], ["status"]):
            p = cli(proj, *command)
            assert error_line(p, rc=2) == line
            assert "\n  fix: " in p.stderr
    assert snapshot(proj) == before


def test_bad_params_stop_materialize_before_dagster_starts(proj):
    before = snapshot(proj)
    edit(proj / "params.yaml", "window_hours: 3", "window_hours: 3.5")
    p = cli(proj, "materialize", "--select", "weather_features", "--partition", "2013-01-01")
    assert error_line(p, rc=2).startswith(
        "Error: params.yaml: weather_features.window_hours: expected an integer, got a number 3.5"
    )
    assert "STEP" not in p.stderr and not (proj / ".dagster").exists()
    assert snapshot(proj) == before


def test_bodies_see_the_declared_defaults_and_fingerprints_ignore_explicit_defaults(project):
    from skipwise.engine.project import Project

    params = project.root / "params.yaml"
    full = Project(project.root, project.graph)
    assert full.params_of(project.graph.asset("delay_model"))["weight_decay"] == 1e-05
    digests = {a.name: full.params_digest(a) for a in project.graph.assets}
    params.write_text("delay_model:\n  epochs: 6\n")  # every other param left to its default
    sparse = Project(project.root, project.graph)
    assert {a.name: sparse.params_digest(a) for a in project.graph.assets} == digests
    assert sparse.params_of(project.graph.asset("flight_features")) == {"delay_threshold_minutes": 15}


# -- 4. garbage DVC files ------------------------------------------------------------------------


def test_a_garbage_dvc_file_or_lock_is_one_error_naming_it(proj):
    dvc_file = proj / "data" / "raw" / "flights.dvc"
    good = dvc_file.read_bytes()
    before = snapshot(proj)
    for text, line in (
        (b"outs: [\n", "Error: data/raw/flights.dvc:2: not valid YAML"),
        (b"- just\n- a list\n", "Error: data/raw/flights.dvc: expected a mapping with `outs`"),
        (b"outs: {path: flights}\n", "Error: data/raw/flights.dvc: `outs` is a mapping, not a list"),
        (b"outs:\n- path: flights\n", "Error: data/raw/flights.dvc: outs[0] (flights) has no md5"),
        (b"outs:\n- path: flights\n  md5: 12\n", "Error: data/raw/flights.dvc: outs[0] (flights) md5 is a number 12"),
    ):
        dvc_file.write_bytes(text)
        p = cli(proj, "plan", "--select", "flight_features", "--partition", "2013-01-02")
        assert error_line(p, rc=1).startswith(line), p.stderr
        assert "dvc add data/raw/flights" in p.stderr and "git checkout -- data/raw/flights.dvc" in p.stderr
        assert snapshot(proj) == {**before, "raw/flights.dvc": hashlib.sha256(text).hexdigest()}
    dvc_file.unlink()  # then DVC's record would come from dvc.lock
    (proj / "dvc.lock").write_text("stages:\n  ingest:\n    outs: 3\n")
    p = cli(proj, "plan", "--select", "flight_features", "--partition", "2013-01-02")
    assert error_line(p, rc=1).startswith("Error: dvc.lock: stages.ingest.`outs` is a number, not a list")
    assert "git checkout -- dvc.lock" in p.stderr
    dvc_file.write_bytes(good)
    assert cli(proj, "plan").returncode == 0


# -- 5. schema drift blames the odd file ----------------------------------------------------------------


def drop_last_column(root: Path, kind: str, day: str) -> str:
    path = root / "data" / "raw" / kind / f"{day}.parquet"
    frame = pl.read_parquet(path)
    frame.drop(frame.columns[-1]).write_parquet(path)
    return frame.columns[-1]


def test_schema_drift_blames_the_odd_file_not_the_partitions_own_day(project):
    from skipwise.core.errors import InputError
    from skipwise.engine.project import Project

    root = project.root
    dropped = drop_last_column(root, "flights", "2013-01-08")
    # flight_features[2013-01-08] reads 2013-01-01..08: seven usual files and the odd one, its own day.
    with pytest.raises(InputError) as e:
        list(Project(root, project.graph).materialize("flight_features", ["2013-01-08"]))
    line = str(e.value).splitlines()[0]
    assert line.startswith(f"schema drift in data/raw/flights/2013-01-08.parquet: missing columns ['{dropped}']"), line
    assert "seen in 7 of 8" in line
    # ... and from a later day, whose window holds it too.
    with pytest.raises(InputError, match=r"^schema drift in data/raw/flights/2013-01-08.parquet"):
        list(Project(root, project.graph).materialize("flight_features", ["2013-01-10"]))
    assert not list((root / "data" / "features").rglob("manifest.json"))  # nothing was committed


def test_schema_drift_in_a_two_file_window_names_both_files(project):
    from skipwise.core.errors import InputError
    from skipwise.engine.project import Project

    dropped = drop_last_column(project.root, "weather", "2013-01-02")
    with pytest.raises(InputError) as e:
        list(Project(project.root, project.graph).materialize("weather_features", ["2013-01-02"]))
    line = str(e.value).splitlines()[0]
    assert "data/raw/weather/2013-01-01.parquet and data/raw/weather/2013-01-02.parquet differ" in line, line
    assert f"columns only in data/raw/weather/2013-01-01.parquet: ['{dropped}']" in line


def test_schema_drift_uses_what_the_run_already_read(project):
    from skipwise.core.errors import InputError
    from skipwise.engine.project import Project

    drop_last_column(project.root, "weather", "2013-01-04")
    p = Project(project.root, project.graph)
    with pytest.raises(InputError) as e:  # 01-01..01-03 are computed first: the run knows the usual schema
        list(p.materialize("weather_features", ["2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04"]))
    line = str(e.value).splitlines()[0]
    assert line.startswith("schema drift in data/raw/weather/2013-01-04.parquet: missing columns"), line
    assert "seen in 3 of 4" in line
    # A fresh project asked for 2013-01-04 alone sees one file of each: it names both.
    with pytest.raises(InputError, match="2013-01-03.parquet and data/raw/weather/2013-01-04.parquet differ"):
        list(Project(project.root, project.graph).materialize("weather_features", ["2013-01-04"]))


# -- 6. a DVC cache that lacks the .dir manifest; warnings once, capped --------------------------------


def test_a_missing_dvc_cache_is_one_warning_per_source_printed_once(proj):
    before_plan = json.loads(cli(proj, "plan", "--json", "--all").stdout)
    shutil.rmtree(proj / ".dvc" / "cache")
    p = cli(proj, "plan", "--all", "--json")
    assert p.returncode == 0 and "Traceback" not in p.stderr and p.stderr == "", p.stderr
    out = json.loads(p.stdout)
    assert len(out["warnings"]) == 2 and not any("not committed" in w for w in out["warnings"])
    for w, src in zip(sorted(out["warnings"]), ("flights", "weather")):
        assert (
            f"data/raw/{src}.dvc records data/raw/{src} as " in w
            and ".dir, but that .dir manifest is not in the DVC cache" in w
        )
        assert "dvc fetch" in w and "dvc pull" in w
    assert [d["fingerprint"] for d in out["partitions"]] == [d["fingerprint"] for d in before_plan["partitions"]]
    text = cli(proj, "plan")
    warnings = [line for line in text.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and len(set(warnings)) == 2, text.stderr


def test_long_warning_lists_are_capped(proj):
    raw = proj / "data" / "raw" / "flights"
    for day in range(13, 28):  # 15 new days, not `dvc add`-ed
        shutil.copy(raw / "2013-01-01.parquet", raw / f"2013-01-{day:02d}.parquet")
    p = cli(proj, "plan", "--select", "flight_features")
    warnings = [line for line in p.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 11 and len(set(warnings)) == 11, p.stderr
    assert warnings[-1] == "warning: ... 5 more (--json lists them all)"
    assert len(json.loads(cli(proj, "plan", "--select", "flight_features", "--json").stdout)["warnings"]) == 15


# -- 7. a huge partition key --------------------------------------------------------------------------


def test_a_huge_partition_key_is_cut_in_the_error(proj):
    key = "x" * 10000
    for command in ("plan", "materialize"):
        p = cli(proj, command, "--partition", key)
        line = error_line(p, rc=2)
        assert "... (10000 characters)" in line and len(p.stderr) < 500, p.stderr
    p = cli(proj, "plan", "--partition", f"2013-01-01...{'9' * 5000}")
    assert "... (5000 characters)" in error_line(p, rc=2) and len(p.stderr) < 500


# -- 8, 9. money and budgets ------------------------------------------------------------------------


def test_small_dollar_amounts_keep_their_digits(proj):
    write_ledger(proj, [("flight_features", f"2013-01-{d:02d}", 0.00001) for d in range(1, 4)])
    p = cli(proj, "plan", "--select", "flight_features", "--partition", "2013-01-04", "--cost")
    assert "projected $0.0000100" in p.stdout, p.stdout
    gate = cli(proj, "plan", "--select", "flight_features", "--partition", "2013-01-04", "--max-usd", "0.000001")
    assert gate.returncode == 3
    assert "projected to cost $0.0000100, above --max-usd $0.00000100" in gate.stderr
    cost = cli(proj, "cost")
    assert "$0.0000300 spent" in cost.stdout, cost.stdout


def test_materialize_checks_per_run_budget_for_the_whole_invocation_before_launching(proj):
    days = [f"2013-01-{d:02d}" for d in range(1, 13)]
    write_ledger(proj, [(a, k, 0.0001) for a in ("flight_features", "weather_features") for k in days])
    (proj / "skipwise.toml").write_text("[budgets]\nper_run_usd = 0.0007\n")
    before = snapshot(proj)
    # 5 + 5 partitions at $0.0001: each step alone ($0.0005) is within the budget, the run is not.
    p = cli(
        proj, "materialize", "--select", "flight_features,weather_features", "--partition", "2013-01-01...2013-01-05"
    )
    line = error_line(p, rc=3)
    assert "skipwise.toml" in line and "over budget, nothing was computed" in line
    assert "projected $0.00100 for this run is over budgets.per_run_usd = $0.000700" in p.stderr
    assert "skipwise/budget_override=true" in p.stderr
    assert not (proj / ".dagster").exists() and snapshot(proj) == before  # nothing launched, nothing written
    # Downstream of what runs counts too: the whole graph over two days.
    p = cli(proj, "materialize", "--partition", "2013-01-01...2013-01-02")
    error_line(p, rc=3)
    for asset in ("training_set: 1 partition(s)", "delay_model: 1 partition(s)", "delay_predictions: 2 partition(s)"):
        assert asset in p.stderr, p.stderr


def test_the_whole_run_check_respects_the_override_tag(project):
    from skipwise.engine.materialization import check_plan_budget
    from skipwise.core.errors import BudgetExceeded

    (project.root / "skipwise.toml").write_text("[budgets]\nper_run_usd = 0.000001\n")
    from skipwise.engine.project import Project

    p = Project(project.root, project.graph)
    with pytest.raises(BudgetExceeded):
        check_plan_budget(p, {"flight_features"}, "2013-01-01...2013-01-02", {})
    check_plan_budget(p, {"flight_features"}, "2013-01-01...2013-01-02", OVERRIDE)  # allowed


def test_a_step_adds_what_its_run_already_spent(project):
    from skipwise.core.errors import BudgetExceeded
    from skipwise.engine.project import Project

    root = project.root
    write_ledger(root, [("weather_features", "2013-01-01", 0.0002)])  # history: $0.0002 a partition
    from skipwise.core.cost import utc_now_iso

    write_ledger(
        root, [("flight_features", f"2013-01-0{d}", 0.0001) for d in range(1, 7)], run_id="run-1", ts=utc_now_iso()
    )  # an earlier step of run-1 (this run) spent $0.0006
    (root / "skipwise.toml").write_text("[budgets]\nper_run_usd = 0.0007\n")
    p = Project(root, project.graph)
    weather = project.graph.asset("weather_features")
    p.accounts.check_budgets({weather.name: 1}, {})  # alone: $0.0002 <= $0.0007
    p.accounts.check_budgets({weather.name: 1}, {}, run_id="another-run")
    with pytest.raises(BudgetExceeded) as e:
        p.accounts.check_budgets({weather.name: 1}, {}, run_id="run-1")
    assert "$0.000600 already spent by this run + projected $0.000200 = $0.000800 is over budgets.per_run_usd" in str(
        e.value
    )
    assert "skipwise.toml" in str(e.value) and "skipwise/budget_override=true" in str(e.value)
    p.accounts.check_budgets({weather.name: 1}, OVERRIDE, run_id="run-1")


# -- 10. a failed run's summary ------------------------------------------------------------------------


def test_a_failed_run_says_what_failed_and_what_was_computed(proj):
    (proj / "data" / "raw" / "flights" / "2013-01-03.parquet").write_bytes(b"not parquet")
    p = cli(proj, "materialize", "--select", "flight_features", "--partition", "2013-01-02...2013-01-03")
    line = error_line(p, rc=1)
    assert line.startswith(
        "Error: step flight_features failed after 1 of 2 partitions were computed: "
        "InputError: data/raw/flights/2013-01-03.parquet is not readable parquet"
    ), line
    assert "fix: restore it with `dvc checkout data/raw/flights`" in p.stderr
    assert "FAILED" in p.stdout and "1 of 2 partitions computed before the failure" in p.stdout
    assert "up to date" not in p.stdout and "nothing to do" not in p.stdout
    assert "failed: flight_features: InputError: data/raw/flights/2013-01-03.parquet" in p.stdout


# -- 11. manifests name skipwise.toml relative to the project -----------------------------------------------


def test_manifests_record_the_config_relative_to_the_project(project):
    root = project.root
    assert "(skipwise.toml)" in project.config.price(CostVector(cpu_seconds=1.0)).method
    (outcome,) = list(project.materialize("weather_features", ["2013-01-01"]))
    manifest = (root / "data" / "features" / "weather_features" / "2013-01-01" / "manifest.json").read_text()
    assert "(skipwise.toml)" in json.loads(manifest)["cost"]["method"]
    assert str(root) not in manifest
