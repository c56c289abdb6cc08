"""Flight delay classifier: a small torch MLP (or logistic regression) on joined features.

The artifact is plain `torch.save` bytes of a dict holding only tensors and Python
primitives, so it loads with `torch.load(..., weights_only=True)` and carries everything
needed to rebuild the design matrix (vocabularies, normalisation stats) at scoring time.
"""

from __future__ import annotations

import datetime
import io
import math
from typing import Any

import polars as pl


FEATURE_COLUMNS = [
    "sched_dep_hour",
    "weekday",
    "distance",
    "carrier_mean_dep_delay_7d",
    "origin_mean_dep_delay_7d",
    "temp",
    "wind_speed",
    "visib",
    "precip",
    "temp_mean_3h",
    "wind_speed_mean_3h",
    "visib_mean_3h",
    "precip_mean_3h",
]

CATEGORICAL_COLUMNS = ["carrier", "origin", "dest"]

KEY_COLUMNS = ["date", "carrier", "flight", "origin", "dest", "sched_dep"]

# Hour and weekday are also fed as points on a circle so 23h sits next to 0h and Sunday
# next to Monday; the linear (standardised) copies stay in FEATURE_COLUMNS.
_CYCLIC = {"sched_dep_hour": 24.0, "weekday": 7.0}

#: The defaults of the asset's config (DelayModelConfig in assets/definitions.py; a test keeps them equal).
DEFAULT_PARAMS: dict[str, Any] = {
    "valid_from": "2013-11-01",
    "hidden": 32,
    "epochs": 6,
    "lr": 0.003,
    "batch_size": 2048,
    "seed": 0,
    "weight_decay": 1e-5,
    "promote_metric": "auc",
    "promote_tolerance": 0.005,
    "auc_floor": 0.6,
    "retrain_min_changed_fraction": 0.05,
    "retrain_cooldown_minutes": 60.0,
}

#: The params training reads (the others decide promotion, checks and retraining, not the weights).
TRAINING_PARAMS = ("valid_from", "hidden", "epochs", "lr", "batch_size", "seed", "weight_decay")

_ARTIFACT_VERSION = 1


def _fit_preprocessing(train: pl.DataFrame) -> dict[str, Any]:
    """Learn standardisation stats and one-hot vocabularies from the training rows only."""
    stats = train.select(
        *[pl.col(c).cast(pl.Float64).mean().alias(f"{c}__mean") for c in FEATURE_COLUMNS],
        *[pl.col(c).cast(pl.Float64).std(ddof=0).alias(f"{c}__std") for c in FEATURE_COLUMNS],
    ).row(0, named=True)
    means, stds = [], []
    for c in FEATURE_COLUMNS:
        mean, std = stats[f"{c}__mean"], stats[f"{c}__std"]
        # An all-null or constant column carries no signal; neutral stats keep it at 0.
        means.append(0.0 if mean is None or math.isnan(mean) else float(mean))
        stds.append(1.0 if std is None or math.isnan(std) or std == 0.0 else float(std))
    vocabularies = {
        c: sorted(train.get_column(c).drop_nulls().cast(pl.String).unique().to_list())
        for c in CATEGORICAL_COLUMNS
    }
    return {"means": means, "stds": stds, "vocabularies": vocabularies}


def _feature_names(prep: dict[str, Any]) -> list[str]:
    """Column names of the design matrix, in order."""
    names = list(FEATURE_COLUMNS)
    for c in _CYCLIC:
        names += [f"{c}__sin", f"{c}__cos"]
    for c in CATEGORICAL_COLUMNS:
        names += [f"{c}={v}" for v in prep["vocabularies"][c]]
    return names


def _design_matrix(frame: pl.DataFrame, prep: dict[str, Any]):
    """Float32 tensor of model inputs; nulls -> training mean, unknown category -> all zeros."""
    import torch

    exprs: list[pl.Expr] = []
    for c, mean, std in zip(FEATURE_COLUMNS, prep["means"], prep["stds"]):
        # Filling with the mean before scaling is the same as filling with 0 after it.
        exprs.append(
            ((pl.col(c).cast(pl.Float64) - mean) / std).fill_nan(None).fill_null(0.0)
        )
    for c, period in _CYCLIC.items():
        angle = pl.col(c).cast(pl.Float64) * (2.0 * math.pi / period)
        exprs += [angle.sin().fill_null(0.0), angle.cos().fill_null(0.0)]
    for c in CATEGORICAL_COLUMNS:
        col = pl.col(c).cast(pl.String)
        exprs += [(col == v).fill_null(False) for v in prep["vocabularies"][c]]
    names = _feature_names(prep)
    matrix = frame.select(
        e.cast(pl.Float32).alias(n) for e, n in zip(exprs, names)
    ).to_numpy()
    return torch.tensor(matrix, dtype=torch.float32)


def _build_model(n_inputs: int, hidden: int):
    """Logistic regression when hidden == 0, else a one-hidden-layer ReLU MLP."""
    from torch import nn

    if hidden <= 0:
        return nn.Linear(n_inputs, 1)
    return nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def _roc_auc(scores: pl.Series, labels: pl.Series) -> float | None:
    """ROC AUC via the Mann-Whitney rank statistic (ties get average ranks)."""
    y = labels.cast(pl.Boolean)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = scores.rank(method="average")
    rank_sum_pos = float(ranks.filter(y).sum())
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _evaluate(logits, y) -> dict[str, float | None]:
    """AUC, log loss and accuracy (threshold 0.5) of logits against 0/1 labels."""
    import torch.nn.functional as F

    if y.numel() == 0:
        return {"auc": None, "log_loss": None, "accuracy": None, "positive_rate_valid": None}
    logits64, y64 = logits.double(), y.double()
    log_loss = float(F.binary_cross_entropy_with_logits(logits64, y64))
    accuracy = float(((logits64 >= 0).double() == y64).double().mean())
    auc = _roc_auc(
        pl.Series(logits64.tolist(), dtype=pl.Float64),
        pl.Series((y64 > 0.5).tolist(), dtype=pl.Boolean),
    )
    return {
        "auc": auc,
        "log_loss": log_loss,
        "accuracy": accuracy,
        "positive_rate_valid": float(y64.mean()),
    }


def training_device():
    """The GPU when one is usable at run time, else the CPU.

    On CUDA, cuBLAS is deterministic only with a fixed workspace; it must be set before its first
    use in the process, so it is set here (unless the user chose one).
    """
    import os

    import torch

    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        return torch.device("cuda")
    return torch.device("cpu")


def train_delay_model(training: pl.DataFrame, params: dict) -> tuple[bytes, dict]:
    """Train the delay classifier on as_of_join output and evaluate on a later time slice.

    Rows with `date >= params["valid_from"]` (ISO date) are the validation set, everything
    earlier is training; all preprocessing stats come from the training part only. Other
    params (defaults in DEFAULT_PARAMS): hidden (0 = logistic regression), epochs, lr (Adam),
    batch_size, seed, weight_decay.

    Training is deterministic: rows are put in a canonical order first, the seed drives
    init and shuffling in a forked RNG, and it runs single-threaded with deterministic
    algorithms (the caller's torch settings are restored afterwards).

    Returns (artifact bytes, metrics) where metrics has auc, log_loss, accuracy,
    positive_rate_valid (None when there is no validation row or, for auc, a single class),
    n_train, n_valid, epochs and device ("cuda" when a GPU was used, see training_device:
    deterministic for a given device and seed; CPU and GPU results may differ in the last bits).
    """
    import torch
    import torch.nn.functional as F

    p = {**DEFAULT_PARAMS, **params}
    valid_from = datetime.date.fromisoformat(str(p["valid_from"]))
    hidden, epochs = int(p["hidden"]), int(p["epochs"])
    batch_size, seed = int(p["batch_size"]), int(p["seed"])

    # Canonical order so the result does not depend on how the caller concatenated days.
    order = [c for c in [*KEY_COLUMNS, "tailnum"] if c in training.columns]
    frame = training.sort(order, nulls_last=True, maintain_order=True)
    is_valid = pl.col("date") >= valid_from
    train = frame.filter(~is_valid)
    valid = frame.filter(is_valid)
    if train.height == 0:
        raise ValueError(f"no training rows before valid_from={valid_from}")

    prep = _fit_preprocessing(train)
    x_train = _design_matrix(train, prep)
    x_valid = _design_matrix(valid, prep)
    y_train = torch.tensor(train.get_column("label").cast(pl.Float32).to_list())
    y_valid = torch.tensor(valid.get_column("label").cast(pl.Float32).to_list())

    device = training_device()
    prev_deterministic = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            torch.use_deterministic_algorithms(True)
            torch.set_num_threads(1)
            torch.manual_seed(seed)
            # Init on the CPU from the seed, then moved: the same weights whatever the device.
            model = _build_model(x_train.shape[1], hidden).to(device)
            optimizer = torch.optim.Adam(
                model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"])
            )
            shuffler = torch.Generator().manual_seed(seed)  # CPU: the same batches on every device
            n = x_train.shape[0]
            x_dev, y_dev = x_train.to(device), y_train.to(device)
            model.train()
            for _ in range(epochs):
                perm = torch.randperm(n, generator=shuffler).to(device)
                for start in range(0, n, batch_size):
                    idx = perm[start : start + batch_size]
                    optimizer.zero_grad()
                    loss = F.binary_cross_entropy_with_logits(
                        model(x_dev[idx]).squeeze(1), y_dev[idx]
                    )
                    loss.backward()
                    optimizer.step()
            model.eval()
            with torch.no_grad():
                valid_logits = model(x_valid.to(device)).squeeze(1).cpu()
            model = model.cpu()
        finally:
            torch.use_deterministic_algorithms(prev_deterministic)
            torch.set_num_threads(prev_threads)

    metrics = {
        **_evaluate(valid_logits, y_valid),
        "n_train": train.height,
        "n_valid": valid.height,
        "epochs": epochs,
        "device": device.type,
    }
    artifact = {
        "version": _ARTIFACT_VERSION,
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "architecture": {"n_inputs": int(x_train.shape[1]), "hidden": hidden},
        "feature_columns": list(FEATURE_COLUMNS),
        "cyclic_columns": dict(_CYCLIC),
        "categorical_columns": list(CATEGORICAL_COLUMNS),
        "feature_names": _feature_names(prep),
        "vocabularies": prep["vocabularies"],
        "means": prep["means"],
        "stds": prep["stds"],
        # Normalised known params only: arbitrary caller objects (a YAML date, say) would make
        # the artifact unloadable with weights_only=True.
        "params": {
            "valid_from": valid_from.isoformat(),
            "hidden": hidden,
            "epochs": epochs,
            "lr": float(p["lr"]),
            "batch_size": batch_size,
            "seed": seed,
            "weight_decay": float(p["weight_decay"]),
        },
    }
    buffer = io.BytesIO()
    torch.save(artifact, buffer)
    return buffer.getvalue(), metrics


def score_flights(artifact: bytes, frame: pl.DataFrame) -> pl.DataFrame:
    """Predict delay probabilities for feature rows (as_of_join output, label not needed).

    Returns the key columns (date, carrier, flight, origin, dest, sched_dep) plus
    `delay_probability` (Float64), one row per input row in the input order. Categories
    unseen in training score as all-zero one-hots; null features as the training mean.
    """
    import torch

    state = torch.load(io.BytesIO(artifact), weights_only=True)
    if state.get("version") != _ARTIFACT_VERSION:
        raise ValueError(f"unsupported delay model artifact version {state.get('version')!r}")
    if (
        state["feature_columns"] != FEATURE_COLUMNS
        or state["categorical_columns"] != CATEGORICAL_COLUMNS
    ):
        raise ValueError("artifact was trained with a different feature set")
    prep = {k: state[k] for k in ("means", "stds", "vocabularies")}
    arch = state["architecture"]
    model = _build_model(arch["n_inputs"], arch["hidden"])
    model.load_state_dict(state["state_dict"])
    model.eval()
    x = _design_matrix(frame, prep)
    with torch.no_grad():
        probs = torch.sigmoid(model(x).squeeze(1).double())
    return frame.select(KEY_COLUMNS).with_columns(
        pl.Series("delay_probability", probs.tolist(), dtype=pl.Float64)
    )
