"""Promotion decisions and the retraining sensor's change summary: pure values."""

from skipwise.models.registry import ModelVersion, decide_promotion
from skipwise.models.retraining import TrainingChange


def version(name: str, auc) -> ModelVersion:
    return ModelVersion(
        version=name,
        fingerprint=name * 4,
        created_at="",
        artifact=f"{name}.bin",
        artifact_sha256="",
        artifact_size=0,
        metric="auc",
        metric_value=auc,
        metrics={},
        hyperparameters={},
        code_version="",
        training_version={},
        torch_version="2.13.0",
    )


def test_promotion_needs_the_metric_within_the_tolerance():
    assert decide_promotion(version("a", 0.7), None, 0.01) == (True, "first version of this model")
    ok, why = decide_promotion(version("b", 0.695), version("a", 0.7), 0.01)
    assert ok and why.startswith("promoted: auc 0.6950 >= 0.6900")
    ok, why = decide_promotion(version("c", 0.68), version("a", 0.7), 0.01)
    assert not ok and why.startswith("kept, not promoted: auc 0.6800 < 0.6900 (promoted a: 0.7000")
    assert decide_promotion(version("d", None), version("a", 0.7), 0.01)[0] is False
    # Lower is better (a loss): the tolerance is above the promoted value.
    assert decide_promotion(version("e", 0.31), version("a", 0.3), 0.02, higher_is_better=False)[0] is True
    assert decide_promotion(version("f", 0.33), version("a", 0.3), 0.02, higher_is_better=False)[0] is False


def change(**kw) -> TrainingChange:
    base = dict(
        model="m",
        baseline="v1",
        total_keys=365,
        new_keys=(),
        changed_keys=("2013-03-01", "2013-03-02", "2013-03-03"),
        removed_keys=(),
        changed_rows=4,
        total_rows=1000,
        state="s",
    )
    return TrainingChange(**{**base, **kw})


def test_change_summary_reads_as_a_reason():
    c = change()
    assert (
        not c.material(0.02)
        and c.describe(0.02) == "3 of 365 partitions changed, 0.4 % of rows, below 2 % since version v1"
    )
    assert change(changed_rows=30).material(0.02)
    assert change(new_keys=("2014-01-01",), changed_rows=0).material(0.5)
    assert change(baseline=None).material(1.0) and change(baseline=None).any
    assert not change(changed_keys=(), changed_rows=0).any
    # Unknown row counts: the share of partitions counts instead.
    assert change(total_rows=0, changed_rows=0).fraction == 3 / 365


def test_registry_names_bytes_by_the_promoted_version_and_refuses_a_damaged_file(tmp_path):
    import dataclasses
    import hashlib
    import json

    import pytest
    from skipwise.core.errors import InputError
    from skipwise.models.registry import REGISTRY_FORMAT, ModelRegistry

    reg = ModelRegistry(tmp_path / "m.versions", "m")
    assert reg.latest() is None and reg.promoted() is None and reg.version_of(b"x") is None
    sha = hashlib.sha256(b"weights").hexdigest()
    a = dataclasses.replace(version("a", 0.7), artifact_sha256=sha, created_at="2026-01-01T00:00:00")
    b = dataclasses.replace(version("b", 0.6), artifact_sha256=sha, created_at="2026-01-02T00:00:00")
    data = {
        "format": REGISTRY_FORMAT,
        "asset": "m",
        "promoted": "a",
        "latest": "b",
        "events": [],
        "versions": {"a": dataclasses.asdict(a), "b": dataclasses.asdict(b)},
    }
    reg.save(data)
    assert reg.version_of(b"weights").version == "a"  # same bytes: the promoted one names them
    reg.save({**data, "promoted": None})
    assert reg.version_of(b"weights").version == "b"  # else the newest
    name, stored_sha, size = reg.store_artifact("a", b"weights")
    assert reg.artifact(dataclasses.replace(a, artifact=name)) == b"weights"
    (reg.folder / name).write_bytes(b"weightz")
    assert reg.artifact(dataclasses.replace(a, artifact=name)) is None  # the sha256 is checked
    reg.path.write_text(json.dumps({"format": 99}))
    with pytest.raises(InputError, match="registry.json is not readable"):
        reg.load()
