"""Model versions: every trained model kept under its fingerprint, and which one is promoted.

A model asset's body calls `train_or_restore`: the model's fingerprint is the training data's
version, the code that ran, the hyperparameters and the torch version. A fingerprint seen before
restores its stored artifact (its sha256 checked first) instead of training again, and records
the dollars that avoided. A new version is promoted only when its validation metric is at least
the promoted one's minus a tolerance; otherwise it is kept, not promoted, with the reason. The
body returns the promoted artifact, so whatever reads the model asset (predictions) is versioned
by the promoted model's bytes: promoting another version changes its input version and recomputes it.

Layout, next to the model's partitions: ``data/<layer>/<asset>.versions/registry.json`` and one
``<version>.bin`` per version, each written to a temporary file and renamed (a kill leaves the old
registry or the new one), under a file lock (two trainers never lose each other's versions).
Standard library only: torch is imported by the training function, never here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from skipwise.core.cost import utc_now_iso
from skipwise.core.errors import InputError
from skipwise.core.hashing import digest
from skipwise.core.partitions import UNPARTITIONED
from skipwise.core.spec import Asset
from skipwise.engine import computing
from skipwise.engine.metering import Meter
from skipwise.project.root import find_root
from skipwise.store.files import atomic_write
from skipwise.store.paths import ensure_inside

REGISTRY_FORMAT = 1
#: Bump when what a model fingerprint covers changes: every model then trains once more.
MODEL_SCHEME = 1
ROWS = "dagster/row_count"


@dataclass(frozen=True)
class ModelVersion:
    """One trained model: what it was trained from, how good it is, what training it cost."""

    version: str
    fingerprint: str
    created_at: str
    artifact: str  # file name in the versions folder
    artifact_sha256: str
    artifact_size: int
    metric: str
    metric_value: float | None
    metrics: Mapping[str, Any]
    hyperparameters: Mapping[str, Any]
    code_version: str
    training_version: Mapping[str, Mapping[str, str]]  # the model asset's input versions
    torch_version: str
    device: str = ""
    cost: Mapping[str, Any] = field(default_factory=dict)
    #: upstream partition -> [version, rows] of the training data (what the retraining sensor compares)
    trained_on: Mapping[str, Mapping[str, list]] = field(default_factory=dict)
    promotion: str = ""  # why it was (not) promoted when it was trained


@dataclass(frozen=True)
class ModelResult:
    """What `train_or_restore` did: the version this training produced or restored, and the
    promoted version, whose artifact the model asset returns."""

    version: ModelVersion
    promoted_version: ModelVersion
    artifact: bytes
    promoted: bool
    reason: str
    restored: bool
    usd_avoided: float | None = None

    def metadata(self) -> dict[str, Any]:
        """Dagster event metadata: the versions, the promotion decision and the promoted model's metrics."""
        p = self.promoted_version
        md: dict[str, Any] = {
            "model/version": self.version.version,
            "model/promoted_version": p.version,
            "model/promoted": self.promoted,
            "model/promotion": self.reason,
            "model/restored": self.restored,
            f"model/candidate_{self.version.metric}": self.version.metric_value,
            "model/device": self.version.device,
        }
        if self.usd_avoided is not None:
            md["model/usd_avoided"] = self.usd_avoided
        for k in ("gpu_seconds", "gpu_peak_memory_bytes", "usd", "wall_seconds"):
            if self.version.cost.get(k) is not None:
                md[f"model/train_{k}"] = self.version.cost[k]
        # Numbers only: they are plotted by the UI and written to the metrics file `dvc metrics` reads.
        md.update(
            {f"metrics/{k}": v for k, v in p.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        )
        return {k: v for k, v in md.items() if v is not None}


def decide_promotion(
    new: ModelVersion, promoted: ModelVersion | None, tolerance: float, higher_is_better: bool = True
) -> tuple[bool, str]:
    """(promote?, why): the first version is promoted; later ones when their metric is no worse
    than the promoted one's by more than `tolerance`; a missing metric is never promoted."""
    m = new.metric
    if promoted is None:
        return True, "first version of this model"
    if promoted.version == new.version:
        return True, "already the promoted version"
    if new.metric_value is None:
        return False, f"not promoted: {m} could not be computed (no validation rows, or a single class)"
    if promoted.metric_value is None:
        return True, f"promoted: {m} {new.metric_value:.4f}, the promoted version {promoted.version} has none"
    sign = 1.0 if higher_is_better else -1.0
    bar = promoted.metric_value - sign * tolerance
    ok = sign * (new.metric_value - bar) >= 0
    cmp = (">=" if ok else "<") if higher_is_better else ("<=" if ok else ">")
    verdict = "promoted" if ok else "kept, not promoted"
    return ok, (
        f"{verdict}: {m} {new.metric_value:.4f} {cmp} {bar:.4f} (promoted {promoted.version}: "
        f"{promoted.metric_value:.4f}, tolerance {tolerance:g})"
    )


class ModelRegistry:
    """The versions of one model asset, in `folder` (see the module docstring for the layout)."""

    def __init__(self, folder: Path, asset: str) -> None:
        self.folder = Path(folder)
        self.asset = asset

    @property
    def path(self) -> Path:
        return self.folder / "registry.json"

    def load(self) -> dict[str, Any]:
        """The registry as stored (empty when there is none); InputError naming the file when damaged."""
        if not self.path.exists():
            return {
                "format": REGISTRY_FORMAT,
                "asset": self.asset,
                "promoted": None,
                "latest": None,
                "versions": {},
                "events": [],
            }
        try:
            data = json.loads(self.path.read_text())
            if (
                not isinstance(data, dict)
                or data.get("format") != REGISTRY_FORMAT
                or not isinstance(data.get("versions"), dict)
            ):
                raise ValueError(f"not a format-{REGISTRY_FORMAT} model registry")
        except ValueError as exc:
            raise InputError(
                f"{self.path} is not readable ({exc})",
                location=str(self.path),
                hint="restore it from a backup, or move it away to start a new registry (versions are retrained)",
            ) from None
        return data

    def versions(self) -> dict[str, ModelVersion]:
        return {k: ModelVersion(**v) for k, v in self.load()["versions"].items()}

    def promoted(self) -> ModelVersion | None:
        data = self.load()
        return ModelVersion(**data["versions"][data["promoted"]]) if data.get("promoted") else None

    def latest(self) -> ModelVersion | None:
        """The version trained or restored last: the training data the model was last brought up to."""
        data = self.load()
        return ModelVersion(**data["versions"][data["latest"]]) if data.get("latest") else None

    def version_of(self, artifact: bytes) -> ModelVersion | None:
        """The version whose artifact has these bytes (what scored a prediction), or None. Two
        versions can have the same bytes (new validation rows only: the same weights); then the
        promoted one, else the newest, names them."""
        sha = hashlib.sha256(artifact).hexdigest()
        data = self.load()
        same = [ModelVersion(**v) for v in data["versions"].values() if v["artifact_sha256"] == sha]
        same.sort(key=lambda v: (v.version == data.get("promoted"), v.created_at))
        return same[-1] if same else None

    def artifact(self, version: ModelVersion) -> bytes | None:
        """The stored bytes of `version`, or None when the file is missing or its sha256 is not the recorded one."""
        try:
            data = (self.folder / version.artifact).read_bytes()
        except FileNotFoundError:
            return None
        return data if hashlib.sha256(data).hexdigest() == version.artifact_sha256 else None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def save(self, data: Mapping[str, Any]) -> None:
        atomic_write(self.path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())

    def store_artifact(self, version: str, data: bytes) -> tuple[str, str, int]:
        name = f"{version}.bin"
        atomic_write(self.folder / name, data)
        return name, hashlib.sha256(data).hexdigest(), len(data)


def registry_for(project: Any, asset_name: str) -> ModelRegistry:
    """The registry of `asset_name` in a loaded project (data/<layer>/<asset>.versions)."""
    asset = project.graph.asset(asset_name)
    folder = project.data_root / asset.layer / f"{asset.name}.versions"
    ensure_inside(folder, os.path.realpath(project.data_root), f"the versions of {asset.name}")
    return ModelRegistry(folder, asset.name)


def model_registry(asset_name: str, root: str | Path | None = None) -> ModelRegistry:
    """The version registry of the model asset `asset_name`: inside a body, of the project being
    computed; elsewhere of the project at `root` (default: found as the CLI finds it)."""
    now = computing.current()
    if now is not None and root is None:
        return registry_for(now.project, asset_name)

    base = (Path(root) if root else find_root()) / "data"
    found = sorted(base.glob(f"*/{asset_name}.versions"))
    return ModelRegistry(found[0] if found else base / "models" / f"{asset_name}.versions", asset_name)


def torch_version() -> str:
    """The installed torch distribution's version, read without importing torch."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "absent"


def training_parts(
    project: Any,
    model: Any,
    inputs: Mapping[str, Mapping[str, str | None]] | None = None,
) -> dict[str, dict[str, list]]:
    """The partitions a model's training data is made of, `dep -> key -> [version, rows]`, read from
    manifests only. An unpartitioned derived input (a training set over daily features) is looked
    through to its own inputs: with `inputs` (the versions the model was trained from) from the
    manifest that produced them, else (what the training set would be built from now) from the
    current state. Rows are each partition's recorded `dagster/row_count` (None when unknown)."""
    graph = project.graph
    parts: dict[str, dict[str, list]] = {}

    def add(dep: str, versions: Mapping[str, str | None]) -> None:
        node = graph.node(dep)
        for k, v in versions.items():
            rows = None
            if isinstance(node, Asset) and v is not None:
                m = project.manifest(node, k)
                if m is not None and f"sha256:{m.output_hash}" == v:
                    rows = m.metadata.get(ROWS)
            parts.setdefault(dep, {})[k] = [v, rows]

    for dep in model.deps:
        up = graph.node(dep.name)
        if isinstance(up, Asset) and up.partitions is None:
            m = project.manifest(up, UNPARTITIONED)
            wanted = (inputs or {}).get(dep.name, {}).get(UNPARTITIONED)
            if inputs is not None and m is not None and f"sha256:{m.output_hash}" == wanted:
                through = m.inputs
            else:
                through = project.planner.current(up, UNPARTITIONED).inputs
            for sub, versions in through.items():
                add(sub, versions)
        else:
            current = (
                (inputs or {}).get(dep.name)
                if inputs is not None
                else project.planner.current(model, UNPARTITIONED).inputs.get(dep.name, {})
            )
            add(dep.name, current or {})
    return parts


def train_or_restore(
    train: Callable[[], tuple[bytes, Mapping[str, Any]]],
    *,
    metric: str,
    tolerance: float,
    hyperparameters: Mapping[str, Any],
    higher_is_better: bool = True,
    device: Callable[[], str] | None = None,
) -> ModelResult:
    """Train the model asset being computed, or restore the version of the same fingerprint.

    Call it from an `@sw.asset` body: `train()` returns (artifact bytes, metrics); `metric` names
    the validation metric that decides promotion (`tolerance` below the promoted one's is still
    promoted); `hyperparameters` are the params training reads (others, such as the tolerance
    itself, do not make a new version). Return `result.artifact` (the promoted model) with
    `result.metadata()`.
    """
    now = computing.current()
    if now is None:
        raise RuntimeError("train_or_restore is called from an @sw.asset body while skipwise computes it")
    project, asset = now.project, now.asset
    # The output is the promoted version, which the fingerprint does not cover: the registry
    # restores its own versions, the engine must never restore this partition's.
    now.uses_state(f"the promoted version in {asset.name}'s model registry")
    registry = registry_for(project, asset.name)

    def key_of(code: str) -> str:
        return digest(
            {
                "scheme": MODEL_SCHEME,
                "inputs": now.current.inputs,
                "code": code,
                "hyperparameters": dict(hyperparameters),
                "torch": torch_version(),
            }
        )

    code = now.code_that_ran()
    fp = key_of(code)
    known = registry.versions().get(fp[:16])
    artifact = registry.artifact(known) if known is not None and known.fingerprint == fp else None
    if known is not None and artifact is None:
        project.warn(
            f"{registry.folder / known.artifact} is missing or not the bytes recorded for version "
            f"{known.version} of {asset.name}: training it again"
        )
    restored = artifact is not None
    if restored:
        version = known
    else:
        version, artifact = _train(
            project, asset, registry, train, fp, code, metric, hyperparameters, device, now, key_of
        )
    with registry.locked():
        data = registry.load()
        current = ModelVersion(**data["versions"][data["promoted"]]) if data.get("promoted") else None
        promote, reason = decide_promotion(version, current, tolerance, higher_is_better)
        if restored:
            reason = f"restored (fingerprint seen before, sha256 verified); {reason}"
        record = asdict(version)
        if not restored:
            record["promotion"] = reason
        data["versions"][version.version] = record
        data["latest"] = version.version
        if promote:
            data["promoted"] = version.version
        avoided = (known.cost or {}).get("usd") if restored else None
        data.setdefault("events", []).append(
            {
                "at": utc_now_iso(),
                "version": version.version,
                "action": "restored" if restored else "trained",
                "promoted": promote,
                "reason": reason,
                "usd_avoided": avoided,
                "partition_fingerprint": now.current.fingerprint,
            }
        )
        registry.save(data)
    promoted = version if promote else current
    served = artifact if promote else registry.artifact(current)
    if served is None:
        raise InputError(
            f"the promoted version {current.version} of {asset.name} is missing or damaged "
            f"({registry.folder / current.artifact}: its sha256 is not the recorded one)",
            location=str(registry.folder / current.artifact),
            hint=f'restore the file, or set "promoted" in {registry.path} to another version',
        )
    return ModelResult(version, promoted, served, promote, reason, restored, avoided)


def _train(project, asset, registry, train, fp, code, metric, hyperparameters, device, now, key_of):
    import importlib
    import sys

    if "torch" not in sys.modules:  # imported before the meter starts, so its GPU probe sees CUDA
        with contextlib.suppress(ImportError):
            importlib.import_module("torch")
    with Meter(project.io) as meter:
        artifact, metrics = train()
    ran = now.code_that_ran()  # lazy imports inside train() have happened
    if ran != code:
        fp = key_of(ran)  # an edit during training: the version is that of the code that ran
    cost = project.config.price(meter.result()).to_record()
    name, sha, size = registry.store_artifact(fp[:16], artifact)
    value = metrics.get(metric)
    version = ModelVersion(
        version=fp[:16],
        fingerprint=fp,
        created_at=utc_now_iso(),
        artifact=name,
        artifact_sha256=sha,
        artifact_size=size,
        metric=metric,
        metric_value=None if value is None else float(value),
        metrics=dict(metrics),
        hyperparameters=dict(hyperparameters),
        code_version=ran,
        training_version={k: dict(v) for k, v in now.current.inputs.items()},
        torch_version=torch_version(),
        device=(device() if device else str(metrics.get("device", ""))),
        cost=cost,
        trained_on=training_parts(project, asset, now.current.inputs),
    )
    return version, artifact


def list_models(project: Any) -> list[dict[str, Any]]:
    """Every model asset with a registry: its versions (oldest first) and which one is promoted."""
    out = []
    for asset in project.graph.assets:
        reg = registry_for(project, asset.name)
        if not reg.path.exists():
            continue
        data = reg.load()
        versions = sorted(data["versions"].values(), key=lambda v: v["created_at"])
        out.append(
            {
                "asset": asset.name,
                "registry": str(reg.path.relative_to(project.root)),
                "promoted": data.get("promoted"),
                "latest": data.get("latest"),
                "versions": versions,
                "events": data.get("events", []),
            }
        )
    return out
