"""Both partition stores, both ledgers and both kinds of source implement the interfaces the engine
is handed (`skipwise.store.base`, `skipwise.sources.base`): every declared method and attribute,
with the declared parameters (an implementation may add optional ones after them)."""

from __future__ import annotations

import inspect

import pytest
from skipwise.sources import base as sources
from skipwise.sources.dvc import DvcSources
from skipwise.sources.objects import ObjectSources
from skipwise.store import base
from skipwise.store.ledger import Ledger
from skipwise.store.objectledger import ObjectLedger
from skipwise.store.objectpartitions import ObjectPartitionStore
from skipwise.store.partitions import LocalPartitionStore


def _declared(protocol: type) -> dict[str, inspect.Signature | None]:
    out: dict[str, inspect.Signature | None] = {}
    for name, value in vars(protocol).items():
        if name.startswith("_"):
            continue
        out[name] = inspect.signature(value) if inspect.isfunction(value) else None
    for name in getattr(protocol, "__annotations__", {}):
        out.setdefault(name, None)
    return out


@pytest.mark.parametrize(
    "protocol, implementation",
    [
        (base.PartitionStore, LocalPartitionStore),
        (base.PartitionStore, ObjectPartitionStore),
        (base.CostLedger, Ledger),
        (base.CostLedger, ObjectLedger),
        (sources.SourceReader, DvcSources),
        (sources.SourceReader, ObjectSources),
    ],
    ids=["local store", "object store", "local ledger", "object ledger", "dvc sources", "object sources"],
)
def test_each_implementation_has_every_declared_member_with_its_parameters(protocol, implementation):
    missing, different = [], []
    for name, signature in _declared(protocol).items():
        member = getattr(implementation, name, None)
        if member is None and name not in inspect.signature(implementation.__init__).parameters:
            # a data attribute set in __init__: look for the assignment
            sources = "".join(inspect.getsource(c) for c in implementation.__mro__ if c is not object)
            if not any(f"self.{name}{op}" in sources for op in (" =", ":")):
                missing.append(name)
            continue
        if signature is not None:
            params = inspect.signature(member).parameters
            declared = list(signature.parameters)
            extra = list(params)[len(declared) :]
            if list(params)[: len(declared)] != declared or any(
                params[p].default is inspect.Parameter.empty for p in extra
            ):
                different.append(f"{name}{inspect.signature(member)} is not {name}{signature}")
    assert not missing and not different, (missing, different)
