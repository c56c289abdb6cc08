"""Unit tests for assets.models.delay on small synthetic, hand-designed data."""

import datetime as dt
import io

import polars as pl
import pytest

from assets.models.delay import (
    CATEGORICAL_COLUMNS,
    FEATURE_COLUMNS,
    _roc_auc,
    score_flights,
    train_delay_model,
)

KEYS = ["date", "carrier", "flight", "origin", "dest", "sched_dep"]

PARAMS = {
    "valid_from": "2013-02-01",
    "hidden": 8,
    "epochs": 25,
    "lr": 0.05,
    "batch_size": 64,
    "seed": 0,
    "weight_decay": 0.0,
}


def synthetic(n_train: int = 300, n_valid: int = 100) -> pl.DataFrame:
    """Rows whose label is exactly `temp > 0`; other features are label-independent noise.

    Training rows fall in January, validation rows in February.
    """
    rows = []
    for i in range(n_train + n_valid):
        temp = float((i * 37) % 101 - 50)  # -50..50, well spread, no randomness
        date = dt.date(2013, 1, 1 + i % 28) if i < n_train else dt.date(2013, 2, 1 + i % 28)
        hour = 6 + i % 15
        sched = dt.datetime(date.year, date.month, date.day, hour, (i * 7) % 60)
        rows.append(
            {
                "date": date,
                "carrier": ["AA", "UA", "B6"][i % 3],
                "flight": i,
                "tailnum": f"N{i}",
                "origin": ["EWR", "JFK", "LGA"][(i // 3) % 3],
                "dest": ["ORD", "MIA", "BOS", "ATL"][i % 4],
                "sched_dep": sched,
                "sched_dep_hour": hour,
                "weekday": sched.isoweekday(),
                "distance": float(200 + (i * 13) % 900),
                "carrier_mean_dep_delay_7d": None if i % 10 == 0 else float(i % 11),
                "origin_mean_dep_delay_7d": float(i % 5),
                "temp": temp,
                "wind_speed": float(i % 9),
                "visib": 10.0,  # constant: zero std must not break standardisation
                "precip": None,  # all null: mean fill must not break
                "temp_mean_3h": temp + 1.0,
                "wind_speed_mean_3h": float(i % 7),
                "visib_mean_3h": 10.0,
                "precip_mean_3h": None,
                "label": temp > 0,
            }
        )
    schema = {
        "date": pl.Date,
        "carrier": pl.String,
        "flight": pl.Int32,
        "tailnum": pl.String,
        "origin": pl.String,
        "dest": pl.String,
        "sched_dep": pl.Datetime("us"),
        "sched_dep_hour": pl.Int32,
        "weekday": pl.Int8,
        **{c: pl.Float64 for c in FEATURE_COLUMNS if c not in ("sched_dep_hour", "weekday")},
        "label": pl.Boolean,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return synthetic()


@pytest.fixture(scope="module")
def trained(data):
    return train_delay_model(data, PARAMS)


def test_separable_data_is_learned_and_metrics_are_reported(data, trained):
    _, metrics = trained
    assert metrics["n_train"] == 300
    assert metrics["n_valid"] == 100
    assert metrics["epochs"] == 25
    expected_rate = data.filter(pl.col("date") >= dt.date(2013, 2, 1))["label"].mean()
    assert metrics["positive_rate_valid"] == pytest.approx(expected_rate)
    assert metrics["auc"] > 0.98
    assert metrics["accuracy"] > 0.9
    assert 0.0 < metrics["log_loss"] < 0.4


def test_logistic_regression_variant(data):
    _, metrics = train_delay_model(data, {**PARAMS, "hidden": 0})
    assert metrics["auc"] > 0.98


def test_training_is_deterministic_and_independent_of_row_order(data, trained):
    artifact, metrics = trained
    again, metrics_again = train_delay_model(data, PARAMS)
    reordered, _ = train_delay_model(data.reverse(), PARAMS)
    assert again == artifact
    assert reordered == artifact
    assert metrics_again == metrics


def test_training_restores_torch_global_settings(data):
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    state = torch.get_rng_state()
    train_delay_model(data, {**PARAMS, "epochs": 1})
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.get_rng_state(), state)


def test_seed_changes_the_model(data, trained):
    other, _ = train_delay_model(data, {**PARAMS, "seed": 1})
    assert other != trained[0]


def test_artifact_is_a_plain_weights_only_dict(trained):
    import torch

    state = torch.load(io.BytesIO(trained[0]), weights_only=True)
    assert state["feature_columns"] == FEATURE_COLUMNS
    assert state["categorical_columns"] == CATEGORICAL_COLUMNS
    assert state["vocabularies"]["carrier"] == ["AA", "B6", "UA"]
    assert state["architecture"]["hidden"] == 8
    assert len(state["means"]) == len(state["stds"]) == len(FEATURE_COLUMNS)


def test_score_flights_keeps_rows_and_order(data, trained):
    frame = data.drop("label").reverse()
    scored = score_flights(trained[0], frame)
    assert scored.columns == [*KEYS, "delay_probability"]
    assert scored.schema["delay_probability"] == pl.Float64
    assert scored.select(KEYS).equals(frame.select(KEYS))
    probs = scored["delay_probability"]
    assert probs.null_count() == 0
    assert ((probs >= 0.0) & (probs <= 1.0)).all()
    # The learned rule: warm -> delayed.
    warm = scored.filter(frame["temp"] > 20)["delay_probability"]
    cold = scored.filter(frame["temp"] < -20)["delay_probability"]
    assert warm.min() > 0.5 > cold.max()


def test_unknown_categories_and_null_features_score_like_missing(data, trained):
    base = data.head(1).drop("label")
    unknown = base.with_columns(
        pl.lit("ZZ").alias("carrier"), pl.lit("XXX").alias("dest"), pl.lit("SFO").alias("origin")
    )
    missing = base.with_columns(
        pl.lit(None, dtype=pl.String).alias("carrier"),
        pl.lit(None, dtype=pl.String).alias("dest"),
        pl.lit(None, dtype=pl.String).alias("origin"),
    )
    p_unknown = score_flights(trained[0], unknown)["delay_probability"].item()
    p_missing = score_flights(trained[0], missing)["delay_probability"].item()
    assert 0.0 <= p_unknown <= 1.0
    assert p_unknown == p_missing  # unseen category == all-zero one-hot

    all_null = base.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in FEATURE_COLUMNS)
    p_null = score_flights(trained[0], all_null)["delay_probability"].item()
    assert 0.0 <= p_null <= 1.0


def test_score_empty_frame(data, trained):
    scored = score_flights(trained[0], data.head(0))
    assert scored.height == 0
    assert scored.columns == [*KEYS, "delay_probability"]


def test_no_training_rows_is_an_error(data):
    with pytest.raises(ValueError, match="no training rows"):
        train_delay_model(data, {**PARAMS, "valid_from": "2012-12-31"})


def test_roc_auc_by_ranks_with_ties():
    scores = pl.Series([0.1, 0.4, 0.35, 0.8, 0.4])
    labels = pl.Series([False, False, True, True, True])
    # pairs (pos, neg): 0.35>0.1 yes, 0.35>0.4 no, 0.8 beats both, 0.4 vs 0.1 yes, 0.4 vs 0.4 tie
    assert _roc_auc(scores, labels) == pytest.approx((1 + 0 + 2 + 1 + 0.5) / 6)
    assert _roc_auc(scores, pl.Series([True] * 5)) is None
