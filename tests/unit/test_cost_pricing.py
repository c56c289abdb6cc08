"""Pricing turns measured figures into dollars by a formula a person can redo by hand, and
skipwise.toml errors name the file, the line or key, and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from skipwise.core.cost import CostVector
from skipwise.core.errors import ConfigError
from skipwise.core.pricing import DEFAULT_PRICES, load_config, load_prices

GIB = 2**30
REPO = Path(__file__).resolve().parents[2]

# Round numbers: $0.036/vCPU-h = $0.00001/vCPU-s; egress, requests, storage are the defaults.
ROUND = {
    "compute": {
        "round": {
            "usd_per_vcpu_hour": 0.036,
            "usd_per_gb_ram_hour": 0.0036,
            "usd_per_gpu_hour": 3.6,
            "spot": {
                "usd_per_vcpu_hour": 0.018,
                "usd_per_gb_ram_hour": 0.0,
                "usd_per_gpu_hour": 1.8,
            },
        }
    }
}

MEASURED = CostVector(
    wall_seconds=1800.0,
    cpu_seconds=3600.0,
    peak_rss_bytes=2 * GIB,
    gpu_seconds=100.0,
    bytes_read=16 * GIB,
    bytes_written=4 * GIB,
    get_requests=10_000,
    put_requests=2_000,
    list_requests=1_000,
    requests=13_000,
    egress_same_host_bytes=5 * GIB,
    egress_cross_region_bytes=10 * GIB,
    egress_internet_bytes=1 * GIB,
    egress_bytes=11 * GIB,
    method="test",
)


def test_known_vector_gives_dollars_computed_by_hand():
    priced = load_prices(ROUND, "test.toml").price(MEASURED, "round")
    # compute: 3600 s x $0.00001 + 2 GiB x 0.5 h x $0.0036 + 100/3600 h x $3.6
    assert priced.usd_compute == pytest.approx(0.036 + 0.0036 + 0.1)
    # egress: 5 GiB x $0 + 10 GiB x $0.02 + 1 GiB x $0.09
    assert priced.usd_egress == pytest.approx(0.29)
    # requests: 10 x $0.0004 + 2 x $0.005 + 1 x $0.005
    assert priced.usd_requests == pytest.approx(0.019)
    # storage: 4 GiB x $0.023 x 1 month
    assert priced.usd_storage == pytest.approx(0.092)
    assert priced.usd == pytest.approx(0.1396 + 0.29 + 0.019 + 0.092)
    assert priced.cpu_seconds == MEASURED.cpu_seconds  # measured figures untouched
    assert "priced: round on-demand (test.toml)" in priced.method


def test_spot_and_storage_months():
    priced = load_prices(ROUND, "t").price(MEASURED, "round", spot=True, storage_months=3)
    assert priced.usd_compute == pytest.approx(0.018 + 0.0 + 0.05)
    assert priced.usd_storage == pytest.approx(0.092 * 3)


def test_unmeasured_parts_stay_none():
    prices = load_prices({}, "t")
    only_wall = prices.price(CostVector(wall_seconds=5.0), "aws-m7i")
    assert only_wall.usd_compute is None and only_wall.usd is None
    cpu_only = prices.price(CostVector(cpu_seconds=3600.0), "aws-m7i")
    assert cpu_only.usd_compute == pytest.approx(0.03465)
    assert cpu_only.usd_egress is None and cpu_only.usd_requests is None
    assert cpu_only.usd_storage is None
    assert cpu_only.usd == pytest.approx(0.03465)
    assert "cost/usd_egress" not in cpu_only.to_metadata()


def test_zero_prices_give_zero_not_none():
    priced = load_prices({}, "t").price(CostVector(cpu_seconds=10.0), "laptop")
    assert priced.usd_compute == 0.0 and priced.usd == 0.0


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        load_prices({}, "skipwise.toml").price(MEASURED, "aws-m8")
    text = str(err.value)
    assert "aws-m8" in text and "aws-m7i" in text and "laptop" in text
    assert "skipwise.toml" in text


def test_unknown_key_names_the_key_path_and_file():
    with pytest.raises(ConfigError) as err:
        load_prices({"egress_usd_per_gb": {"internt": 0.09}}, "conf/skipwise.toml")
    text = str(err.value)
    assert "pricing.egress_usd_per_gb.internt" in text
    assert "conf/skipwise.toml" in text
    assert "internet" in text  # the fix: did you mean


def test_wrong_type_names_the_key_path_and_line(tmp_path):
    cfg = tmp_path / "skipwise.toml"
    cfg.write_text(
        "[pricing.compute.a]\nusd_per_vcpu_hour = 1.0\nusd_per_gb_ram_hour = 0.0\n"
        'usd_per_gpu_hour = 0.0\n\n[pricing.compute.b]\nusd_per_vcpu_hour = "cheap"\n'
        "usd_per_gb_ram_hour = 0.0\nusd_per_gpu_hour = 0.0\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "pricing.compute.b.usd_per_vcpu_hour" in str(err.value)
    assert err.value.location == f"{cfg}:7"


@pytest.mark.parametrize(
    "pricing",
    [
        {"storage": {"usd_per_gb_month": True}},
        {"storage": {"usd_per_gb_month": -1}},
        {"compute": {"x": {"usd_per_vcpu_hour": 1.0, "usd_per_gb_ram_hour": 1.0}}},
        {"requests_usd_per_1000": 5},
    ],
)
def test_bad_values_are_config_errors(pricing):
    with pytest.raises(ConfigError, match="pricing\\."):
        load_prices(pricing, "t.toml")


def test_malformed_toml_names_file_and_line(tmp_path):
    cfg = tmp_path / "skipwise.toml"
    cfg.write_text('[compute]\nprofile = "aws-m7i"\nspot = maybe\n')
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.location == f"{cfg}:3"
    assert str(cfg) in str(err.value)


def test_missing_file_gives_defaults(tmp_path):
    config = load_config(tmp_path / "absent.toml")
    assert config.profile == "aws-m7i" and config.spot is False
    assert config.prices == load_prices(DEFAULT_PRICES, "d")
    assert config.budgets.per_run_usd == 50.0 and config.budgets.per_day_usd is None


def test_repo_skipwise_toml_matches_the_defaults():
    config = load_config(REPO / "skipwise.toml")
    assert config.prices == load_prices({}, "defaults")
    assert set(config.prices.profiles) == {"laptop", "aws-m7i", "aws-g5-gpu"}
    assert config.profile == "aws-m7i"


def test_compute_and_budgets_sections(tmp_path):
    cfg = tmp_path / "skipwise.toml"
    cfg.write_text(
        '[compute]\nprofile = "aws-g5-gpu"\nspot = true\n\n'
        "[budgets]\nper_run_usd = 3\nper_day_usd = 10.5\ndefault_partition_usd_estimate = 0.2\n"
        '[budgets.assets]\ntrain = 1.5\n\n[locations.s3]\nurl = "s3://b"\n\n[team_notes]\nowner = "ml"\n'
    )
    config = load_config(cfg)
    assert (config.profile, config.spot) == ("aws-g5-gpu", True)
    assert config.budgets.per_run_usd == 3.0 and config.budgets.per_day_usd == 10.5
    assert dict(config.budgets.assets) == {"train": 1.5}
    assert config.default_partition_usd_estimate == 0.2
    assert config.extra == {"team_notes": {"owner": "ml"}}  # other sections kept
    assert (config.locations["s3"].url, config.locations["s3"].kind) == ("s3://b", "object_store")
    priced = config.price(CostVector(gpu_seconds=3600.0))
    assert priced.usd_compute == pytest.approx(0.2815)


def test_unknown_profile_in_config_and_misspelt_section(tmp_path):
    cfg = tmp_path / "skipwise.toml"
    cfg.write_text('[compute]\nprofile = "aws-m8"\n')
    with pytest.raises(ConfigError, match="compute.profile.*aws-m8"):
        load_config(cfg)
    cfg.write_text("[budget]\nper_run_usd = 1\n")
    with pytest.raises(ConfigError, match="budgets"):
        load_config(cfg)


def test_metadata_leaves_out_zeros_of_costs_not_incurred_and_rounds_noise():
    v = CostVector(
        cpu_seconds=0.010000000000001563,
        gpu_seconds=0.0,
        egress_bytes=0,
        egress_internet_bytes=0,
        usd_egress=0.0,
        bytes_read=0,
        usd=0.000005804774007277995,
        method="m",
    )
    meta = v.to_metadata()
    assert meta["cost/cpu_seconds"] == 0.01 and meta["cost/usd"] == 5.80477e-06
    assert meta["cost/bytes_read"] == 0  # a zero that could have been more is a measurement: kept
    for absent in ("cost/gpu_seconds", "cost/egress_bytes", "cost/egress_internet_bytes", "cost/usd_egress"):
        assert absent not in meta
    assert meta["cost/summary"] == "$0.00000580: 0.01 s CPU, read 0 B"


def test_cost_vector_metadata_round_trip_and_sum():
    v = CostVector(wall_seconds=1.5, cpu_seconds=0.5, peak_rss_bytes=100, method="m")
    meta = v.to_metadata()
    assert meta == {
        "cost/wall_seconds": 1.5,
        "cost/cpu_seconds": 0.5,
        "cost/peak_rss_bytes": 100,
        "cost/summary": "1.5 s wall, 0.5 s CPU, 100 B peak",
        "cost/method": "m",
    }
    assert CostVector.from_metadata({**meta, "other": 1}) == v
    assert CostVector.from_record(v.to_record()) == v
    total = v + CostVector(cpu_seconds=1.0, peak_rss_bytes=300, bytes_read=7, method="m")
    assert total.wall_seconds == 1.5  # x + None = x
    assert total.cpu_seconds == 1.5
    assert total.bytes_read == 7
    assert total.usd is None  # None + None = None
    assert total.peak_rss_bytes == 300  # peaks combine by max
    assert sum([v, v]).cpu_seconds == 1.0
