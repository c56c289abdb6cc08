"""The planner: what each partition would be computed from right now, and what to do about it.

`Planner.plan` decides the selected assets upstream first, reading no data: each partition's
inputs (raw versions, upstream output hashes), code, params and observed reads make its
fingerprint (`skipwise.core.manifest.fingerprint`), compared with its committed manifest
(`skipwise.core.plan.decide`); a whole asset's last full plan may answer for all of its partitions
(`skipwise.engine.settled`). The project (`skipwise.engine.project.Project`) holds what it reads.
"""

from __future__ import annotations

import os
from typing import Any, cast

from skipwise.core.cost import utc_now_iso
from skipwise.core.errors import PartitionKeyError
from skipwise.core.manifest import InputVersions, Manifest, fingerprint
from skipwise.core.partitions import keys_in_range, keys_of, parse_range, upstream_keys, validate_key
from skipwise.core.plan import BLOCKED, CHANGES, RESTORE, RUN, Current, Decision, decide, restorable
from skipwise.core.spec import Asset, Plain, Source


class Planner:
    """Decisions for a project's partitions (`skipwise.engine.project.Project`, which builds this)."""

    def __init__(self, project: Any) -> None:  # the engine's Project (engine/project.py)
        self.project = project
        self._unversioned_token = ""

    def _version_raw_inputs(self, asset: Asset, keys: list[str]) -> None:
        """Version at once every raw partition the partitions `keys` of `asset` read, before they are
        decided one by one: files seen for the first time are hashed on every core
        (`raw_versions`), not one after the other as each partition asks."""
        p = self.project
        for dep in asset.deps:
            up = p.graph.node(dep.name)
            if not isinstance(up, Source):
                continue
            needed: dict[str, None] = {}
            for key in keys:
                ups = upstream_keys(dep.mapping, key, up.partitions)
                if ups is None:  # every key of the source
                    ups = keys_of(up.partitions)
                needed.update(dict.fromkeys(ups))
            p.raw_versions(up, list(needed))  # those versioned already are not asked again

    def current(
        self, asset: Asset, key: str, pending: set[tuple[str, str]] | None = None, manifest: Manifest | None = None
    ) -> Current:
        """What partition `key` of `asset` would be computed from right now (no data read).

        An input partition in `pending` (planned to run first) has no version yet: None. The files
        and variables `manifest` (the committed one) records as read, and those the asset declares,
        count as they are now: a change there changes the fingerprint.
        """
        p = self.project
        inputs: dict[str, dict[str, str | None]] = {}
        for dep in asset.deps:
            up = p.graph.node(dep.name)
            keys = upstream_keys(dep.mapping, key, up.partitions)
            if keys is None:  # all of them: every materialized one (assets) or every key (sources)
                keys = p.materialized_keys(up) if not isinstance(up, Source) else keys_of(up.partitions)
                if isinstance(up, Asset) and pending:
                    keys = sorted(set(keys) | {k for (n, k) in pending if n == up.name})
            versions: dict[str, str | None] = {}
            for k in keys:
                if isinstance(up, Source):
                    versions[k] = p.raw_version(up, k)
                elif isinstance(up, Plain) and not up.stored:
                    versions[k] = self._unversioned(up)
                elif pending and (up.name, k) in pending:
                    versions[k] = None
                else:
                    m = p.manifest(up, k)
                    versions[k] = f"sha256:{m.output_hash}" if m else None
            inputs[dep.name] = versions
        code = p.code.version(asset)
        params = p.params_digest(asset)
        deps = [*p.observations.declared(asset), *(manifest.observed if manifest is not None else ())]
        observed = p.observations.now(deps)
        complete = all(v is not None for vs in inputs.values() for v in vs.values())
        # complete: every version is known (a str), which is what a fingerprint takes
        fp = fingerprint(code, params, cast(InputVersions, inputs), key, observed=observed) if complete else ""
        return Current(code, params, inputs, fp, observed)

    def _unversioned(self, up: Plain) -> str:
        """A plain asset stored by another IO manager has no version skipwise can check: a token
        new in every process, so its dependents always run (recompute when unsure), with a warning."""
        if not self._unversioned_token:
            self._unversioned_token = f"unversioned:{os.getpid()}:{utc_now_iso()}"
        self.project.warn(
            f"{up.name} is a plain Dagster asset not stored by sw.IOManager: skipwise cannot tell whether it "
            'changed, so its dependents always run (give it io_manager_key="skipwise" to version it by content)'
        )
        return self._unversioned_token

    def decide(self, asset: Asset, key: str, pending: set[tuple[str, str]] | None = None) -> Decision:
        """RUN, SKIP or BLOCKED for one partition, with the reason."""
        return self.assess(asset, key, pending)[0]

    def assess(self, asset: Asset, key: str, pending: set[tuple[str, str]] | None = None) -> tuple[Decision, Current]:
        """The decision for one partition (`decide`) and what it was decided on: a partition that
        runs is committed with exactly that provenance."""
        p = self.project
        validate_key(key)
        m = p.manifest(asset, key)
        cur = self.current(asset, key, pending, m)
        raw = self.absent_raw(asset, cur)
        if raw is not None:
            return Decision(asset.name, key, BLOCKED, f"{raw[0]}: {raw[1]}", cur.fingerprint), cur
        if pending and any(v is None and (d, k) in pending for d, vs in cur.inputs.items() for k, v in vs.items()):
            first = next(
                f"{d}[{k}]"
                for d, vs in sorted(cur.inputs.items())
                for k, v in sorted(vs.items())
                if v is None and (d, k) in pending
            )
            return Decision(asset.name, key, RUN, f"input {first} runs first (may cut off early)", ""), cur
        state = p.store.output_state(asset.layer, asset.name, key, m) if m else "missing"
        decision = decide(asset.name, key, cur, m, state)
        kept = None
        if decision.action == RUN and decision.fingerprint:
            kept = p.store.read_version(asset.layer, asset.name, key, decision.fingerprint)
            if kept is not None:
                decision = restorable(decision, kept, p.store.output_state(asset.layer, asset.name, key, kept))
        # An output `skipwise verify` could not reproduce is neither kept (SKIP) nor brought back (RESTORE).
        return p.suspects.vet(decision, kept if decision.action == RESTORE else m), cur

    def absent_raw(self, asset: Asset, cur: Current) -> tuple[str, str] | None:
        """(what is missing, the fix) when a raw file `asset` reads for this partition does not
        exist: the partition's own key of a source it reads (a look-back key before the data
        starts is only left out, as reading leaves it out). None when nothing is missing."""
        p = self.project
        for dep in asset.deps:
            up = p.graph.node(dep.name)
            versions = cur.inputs.get(dep.name) or {}
            if not dep.data or not isinstance(up, Source) or not versions:
                continue
            own = [*versions][-1]  # windows end on the partition's own key
            if versions[own] == "absent":
                return self.missing_raw(up, own)
        return None

    def missing_raw(self, up: Source, key: str) -> tuple[str, str]:
        """(what is missing, the fix) for raw partition `key` of `up`, which does not exist."""
        p = self.project
        if up.url:
            what, fix = up.missing(key)
            return f"{up.name}[{key}] has {what}", fix
        return up.missing(key, p.locality.dvc.add_hint(up))

    def plan(
        self, selection: list[str] | None = None, keys: list[str] | None = None, partition: str | None = None
    ) -> list[Decision]:
        """Decisions for the selected assets (all by default), upstream first, reading no data.

        `keys` (for every partitioned asset) or `partition` (a key or first...last, applied to
        each partitioned asset whose partitioning holds it; the others are left out) narrow it;
        a `partition` that no selected asset holds is a PartitionKeyError.

        A partition downstream of one that will run is planned to run too ("may cut off early"):
        whether its input really changes is known only once the upstream has run.
        """
        p = self.project
        names = set(selection) if selection else {a.name for a in p.graph.assets}
        for n in names:
            p.graph.asset(n)
        if partition is not None:
            first, last = parse_range(partition)
            held = [
                a
                for a in p.graph.assets
                if a.name in names and (a.partitions is None or keys_in_range(a.partitions, partition))
            ]
            if not any(a.partitions is not None for a in held) and any(
                a.partitions is not None for a in p.graph.assets if a.name in names
            ):
                example = next(a.partitions for a in p.graph.assets if a.name in names and a.partitions is not None)
                assert example is not None  # chosen for having partitions
                example.parse(first)
                example.parse(last)
                raise PartitionKeyError(f"no selected asset has partitions {first}...{last}", hint="check the range")
            names = {a.name for a in held}
        pending: set[tuple[str, str]] = set()
        out: list[Decision] = []
        p.remembered_usd = {}
        with p.reading_once():  # each manifest and dependency is read once per plan, afresh in the next
            for asset in p.graph.order():
                if asset.name not in names:
                    continue
                wanted = keys_in_range(asset.partitions, partition) if partition is not None else keys
                asset_keys = p.keys_for(asset, wanted if asset.partitions is not None else None)
                # Every key of the asset: its last full plan may still hold, for all partitions but
                # those a change since then (or an input planned to run first) may reach.
                whole = (partition is None and keys is None) or (
                    asset.partitions is not None and asset_keys == p.keys_for(asset, None)
                )
                remembered = p.settled.check(asset, asset_keys, pending) if whole else None
                if remembered is not None:
                    warned = len(p.warnings)
                    decided = remembered.decisions
                    p.remembered_usd[asset.name] = (asset_keys, list(decided), remembered.usd, remembered.suspects)
                    for i in remembered.suspects:
                        decided[i] = d = self.decide(asset, asset_keys[i], pending)
                        if d.action in CHANGES:
                            pending.add((asset.name, d.partition))
                    out.extend(decided)
                    if (remembered.moved or remembered.pending) and len(p.warnings) == warned:
                        p.settled.update(asset, asset_keys, decided, remembered)
                    continue
                warned = len(p.warnings)
                taken = p.settled.taken(asset, asset_keys) if whole else None  # before deciding
                self._version_raw_inputs(asset, asset_keys)
                decided = []
                for key in asset_keys:
                    d = self.decide(asset, key, pending)
                    if d.action in CHANGES:
                        pending.add((asset.name, key))
                    decided.append(d)
                out.extend(decided)
                if whole and len(p.warnings) == warned:
                    p.settled.remember(asset, asset_keys, decided, taken)
        return out
