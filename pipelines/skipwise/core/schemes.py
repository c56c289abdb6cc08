"""What the orchestration libraries count in a code version: nothing, except skipwise's parts
whose code can change the bytes an asset writes, each by its own scheme number.

Dagster (and its `dagster_*` libraries) and most of skipwise only declare and schedule work: a
patch upgrade of them must not recompute anything. The partition key, the upstream keys and the
declared files and environment are in each partition's fingerprint on their own.

A part listed in `SCHEMES` computes data the asset returns (a join, a model, a read of committed
partitions): bump its number whenever the same inputs would give other output bytes. Standard
library only.
"""

from __future__ import annotations

#: skipwise's byte-affecting parts and their scheme numbers.
SCHEMES: dict[str, int] = {
    "as_of_join": 1,  # skipwise/tables/joins.py
    "train_or_restore": 1,  # skipwise/models/registry.py: training, restoring and promotion
    "model_registry": 1,  # skipwise/models/registry.py: which version a model's bytes are
    "read": 1,  # skipwise/tables/reading.py
    "scan": 1,
    "relation": 1,
}

#: Dotted paths (public names and private module paths) -> the parts they are. A reference is
#: looked up by its longest matching prefix: `skipwise.tables.joins.as_of_join` is `skipwise.tables.joins`.
PATHS: dict[str, tuple[str, ...]] = {
    "skipwise.as_of_join": ("as_of_join",),
    "skipwise.tables.joins": ("as_of_join",),
    "skipwise.train_or_restore": ("train_or_restore",),
    "skipwise.model_registry": ("model_registry",),
    "skipwise.models.registry": ("model_registry", "train_or_restore"),
    "skipwise.models.registry.train_or_restore": ("train_or_restore",),
    "skipwise.models.registry.decide_promotion": ("train_or_restore",),
    "skipwise.models.registry.model_registry": ("model_registry",),
    "skipwise.models.registry.ModelRegistry": ("model_registry",),
    "skipwise.models.registry.registry_for": ("model_registry",),
    "skipwise.read": ("read",),
    "skipwise.scan": ("scan",),
    "skipwise.relation": ("relation",),
    "skipwise.tables.reading": ("read", "relation", "scan"),
    "skipwise.tables.reading.read": ("read",),
    "skipwise.tables.reading.scan": ("scan",),
    "skipwise.tables.reading.relation": ("relation",),
}

#: The value of a reference into orchestration code: the same for every version of it.
ORCHESTRATION = "orchestration"

LIBRARY = "skipwise"


def is_orchestration(top: str) -> bool:
    """Whether top-level module `top` is an orchestration library (Dagster, skipwise)."""
    return top in ("dagster", LIBRARY) or top.startswith("dagster_")


def value_of(dotted: str) -> str:
    """What a reference to `dotted` (e.g. "skipwise.as_of_join") counts: "scheme:as_of_join/1",
    several such joined by commas, or ORCHESTRATION."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        names = PATHS.get(".".join(parts[:n]))
        if names is not None:
            return ",".join(f"scheme:{name}/{SCHEMES[name]}" for name in names)
    return ORCHESTRATION
