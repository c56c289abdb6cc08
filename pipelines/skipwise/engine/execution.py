"""Running the partitions a plan found stale: each decided again under its lock, computed from its
inputs under a `Meter`, written under its fingerprint and committed by its manifest; hits and
restores recorded with what they avoided; every outcome in the cost ledger, and the process's run
record at the end of each call.

`Execution` is a `Project`'s (`project.execution`; `Project.materialize` calls it): the project
plans and versions, this runs. It is handed the project and works on its stores.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Iterator, Mapping, cast

from skipwise.core import metakeys as mk
from skipwise.core.cost import CostVector, IOSnapshot, utc_now_iso
from skipwise.core.errors import InputError
from skipwise.core.manifest import InputVersions, Manifest, fingerprint
from skipwise.core.metakeys import GIT_COMMIT, NOT_RESTORABLE
from skipwise.core.plan import BLOCKED, RESTORE, RUN, SKIP, Current, Decision
from skipwise.core.spec import Asset, Result
from skipwise.engine.bodies import default_call, is_output, row_count, serialize
from skipwise.engine.computing import computing
from skipwise.engine.metering import Meter, Share, measure
from skipwise.engine.processmeter import process_meter
from skipwise.engine.outcomes import Outcome
from skipwise.project import observing


class Execution:
    """What runs a project's partitions (`skipwise.engine.project.Project`, which builds this)."""

    def __init__(self, project: Any) -> None:  # the engine's Project (engine/project.py)
        self.project = project

    def materialize(
        self,
        asset_name: str,
        keys: list[str] | None = None,
        run_id: str = "",
        tags: Mapping[str, str] | None = None,
        call: Callable[[str, Mapping[str, Mapping[str, Any]], Mapping[str, Any]], Any] | None = None,
    ) -> Iterator[Outcome]:
        """Compute the partitions of `asset_name` whose fingerprint changed; skip the rest.

        Before any work, the cost of the partitions to run is projected from the asset's history
        and checked against the budgets (BudgetExceeded stops the run). Each partition is decided
        again under its lock (a concurrent process may have just done it), written atomically under
        its fingerprint, and committed by writing its manifest last. Every outcome, hit or miss,
        goes to the cost ledger, and the call ends with this process's run record: what the
        process used since its previous one outside the partitions just recorded (its overhead).

        `call(key, inputs, params)` computes one partition from its inputs (upstream name ->
        key -> decoded value); the Dagster adapter passes one that hands the body Dagster's
        context. Without it, the registered body is called with a plain `PartitionContext`.
        """
        p = self.project
        pm = process_meter()  # this process's account: its run record closes every call
        asset = p.graph.asset(asset_name)
        tags = {**asset.tags, **(tags or {})}
        with pm.phase("plan"):
            keys = p.keys_for(asset, keys)
            if p.accounts.budgeted(asset.name) or p.locality.egress_limited():
                # What will run, before any of it does: only a budget needs it (each key is decided again below).
                to_run = [k for k in keys if p.decide(asset, k).action == RUN]
                p.accounts.check_budgets({asset.name: len(to_run)}, tags, run_id)
                p.locality.check_egress([(asset.name, k) for k in to_run], tags)
        fn = None
        hits: list[Outcome] = []
        with p.ledger.journal(run_id) as journal:
            try:
                for key in keys:
                    if p.store.remote:
                        # A hit needs no lease: the listing shows the manifest with this
                        # fingerprint and its output as committed (no request per partition).
                        with pm.phase("plan"):
                            decision, cur = p.planner.assess(asset, key)
                            outcome = self.hit(asset, key, decision) if decision.action == SKIP else None
                        if outcome is not None:
                            hits.append(outcome)
                            yield outcome
                            continue
                    with p.store.lock(asset.layer, asset.name, key):
                        with pm.phase("plan"):
                            decision, cur = p.planner.assess(asset, key)
                        if decision.action == SKIP:
                            with pm.phase("plan"):
                                outcome = self.hit(asset, key, decision)
                            hits.append(outcome)
                        elif decision.action == RESTORE:
                            with pm.phase("ledger"):
                                outcome = self._restore(asset, key, decision)
                                journal.write(p.accounts.records([*hits, outcome], run_id, tags))
                                hits = []
                                p.store.commit(asset.layer, asset.name, outcome.manifest, keep=False)
                        elif decision.action == BLOCKED:
                            raw = p.planner.absent_raw(asset, cur)
                            if raw is not None:
                                raise InputError(f"{asset.name}[{key}] cannot run: {raw[0]}", hint=raw[1])
                            raise InputError(
                                f"{asset.name}[{key}] cannot run: {decision.reason}",
                                hint="materialize its upstream assets first (or select them in the same run)",
                            )
                        else:
                            if fn is None:
                                with pm.phase("load"):
                                    fn = call or default_call(asset, p.definitions)
                            outcome = self._compute(asset, key, decision, cur, fn, run_id)
                            with pm.phase("ledger"):
                                # The record goes first: a run killed after the commit keeps its cost.
                                journal.write(p.accounts.records([*hits, outcome], run_id, tags))
                                p.accounts.count_partition_work(outcome.cost)
                                hits = []
                                p.store.commit(asset.layer, asset.name, outcome.manifest)
                    yield outcome
            finally:
                with pm.phase("ledger"):
                    records = p.accounts.records(hits, run_id, tags)
                    try:  # accounting must never cost the hits their records, nor hide an error
                        records.append(p.accounts.run_record(asset.name, run_id, tags))
                    except Exception as exc:  # noqa: BLE001
                        p.warn(f"no run record for {asset.name}: {type(exc).__name__}: {exc}")
                    journal.write(records)

    def hit(self, asset: Asset, key: str, decision: Decision) -> Outcome:
        """The outcome of a skipped partition, with the dollars it avoided."""
        p = self.project
        # A hit avoided what the same fingerprint last cost: the manifest recorded it.
        m = p.manifest(asset, key)
        return Outcome(decision, m, _hit_cost(m.usd if m else None))

    def hits(self, decisions: list[Decision]) -> list[Outcome]:
        """The outcomes of partitions this project's last plan found up to date (`decisions`, all
        SKIP), for the cost ledger: what each avoided is what its manifest recorded, taken from
        the settled record the plan answered from (for a partition with the same fingerprint, not
        decided afresh: its manifest is the one the record was taken from) where there was one,
        else read from the manifest (`hit`)."""
        p = self.project
        known: dict[str, dict[str, tuple[str, Any]]] = {}
        out = []
        for d in decisions:
            found = known.get(d.asset)
            if found is None:
                found = known[d.asset] = self._remembered_hits(d.asset)
            fp, usd = found.get(d.partition or "", ("", None))
            if fp and fp == d.fingerprint:
                out.append(Outcome(d, None, _hit_cost(usd)))
            else:
                out.append(self.hit(p.graph.asset(d.asset), d.partition, d))
        return out

    def _remembered_hits(self, asset: str) -> dict[str, tuple[str, Any]]:
        """key -> (fingerprint, dollars) of the partitions the last plan of `asset` answered from its
        settled record (those it decided afresh left out)."""
        p = self.project
        if asset not in p.remembered_usd:
            return {}
        keys, decided, usd, suspects = p.remembered_usd[asset]
        found = {k: (d.fingerprint, u) for k, d, u in zip(keys, decided, usd)}
        for i in suspects:
            found.pop(keys[i], None)
        return found

    def _restore(self, asset: Asset, key: str, decision: Decision) -> Outcome:
        """Make the kept version with the decision's fingerprint current again (the caller commits
        it, holding the partition's lock): no data is copied, and the dollars the version cost
        when it was computed are what this avoided."""
        p = self.project
        kept = p.store.read_version(asset.layer, asset.name, key, decision.fingerprint)
        if kept is None:  # removed between the decision and now: `gc` ran meanwhile
            raise InputError(
                f"{asset.name}[{key}]: the kept version {decision.fingerprint[:12]} vanished while restoring",
                hint="run again (it will be computed)",
            )
        usd = kept.usd
        cost = CostVector(usd_avoided=usd, method="restore: usd_avoided from the kept version's recorded cost")
        return Outcome(decision, kept, cost, dict(kept.metadata))

    def _compute(
        self, asset: Asset, key: str, decision: Decision, cur: Current, fn: Callable[..., Any], run_id: str
    ) -> Outcome:
        p = self.project
        p.store.sweep_temp(asset.layer, asset.name, key)  # leftovers of a killed run, if any
        params = p.params_of(asset)  # read once per run: not the first partition's cost
        # Inputs are read before the meter starts, each measured alone, and charged by
        # `Inputs.load`'s rule; polars' threads keep spinning a moment after a decode, and that
        # tail then falls in the next read's measurement, not in this partition's body.
        reads: list[Share] = []
        inputs = {
            dep.name: p.inputs.load(asset, dep.name, cur.inputs[dep.name], key, reads) for dep in asset.deps if dep.data
        }
        with Meter(p.io) as m:
            for share in reads:
                m.charge(share)
            with computing(p, asset, key, cur) as now, observing.recording() as seen:
                value = fn(key, inputs, params)  # library helpers the body calls see what it runs from (`now`)
            with measure(None) as check, process_meter().phase("plan"):
                ran = p.code.that_ran(asset, cur.code_version)  # after the call: lazy imports have happened
                observed = p.observations.of(asset, seen, [p.root / rel for rel, _ in p.code.of(asset).files])
            m.charge(Share(-check[0].cpu_seconds, -check[0].wall_seconds, IOSnapshot()))  # overhead, not the body's
            inputs_known = cast(InputVersions, cur.inputs)  # a partition runs only when every input version is known
            fp = fingerprint(ran, cur.params_digest, inputs_known, key, observed=observed)
            if ran != cur.code_version:
                decision = replace(decision, reason=f"{decision.reason} (ran code imported before it changed)")
            if fp != cur.fingerprint:  # the code that ran, and what it read, name the output
                cur = replace(cur, code_version=ran, fingerprint=fp, observed=observed)
                decision = replace(decision, fingerprint=fp)
            metadata: Mapping[str, Any] = {}
            if isinstance(value, Result) or is_output(value):
                value, metadata = value.value, {k: getattr(v, "value", v) for k, v in (value.metadata or {}).items()}
            fmt, data = serialize(asset, value)
            rows = row_count(value)
            metadata = {
                **({"dagster/row_count": rows} if rows is not None else {}),
                **metadata,
                mk.FORMAT: fmt.name,
            }
            if now.outside:
                metadata[NOT_RESTORABLE] = "depends on " + "; ".join(now.outside)
            if p.git_commit:
                metadata[GIT_COMMIT] = p.git_commit
            name, sha, size = p.store.write_output(asset.layer, asset.name, key, cur.fingerprint, fmt.ext, data)
        cost = p.config.price(m.result())
        rows = metadata.get("dagster/row_count")
        if asset.cost_unit and rows and cost.usd is not None:
            metadata = {**metadata, f"cost/usd_per_1k_{asset.cost_unit}": cost.usd / rows * 1000}
        manifest = Manifest(
            asset=asset.name,
            partition=key,
            fingerprint=cur.fingerprint,
            code_version=cur.code_version,
            params_digest=cur.params_digest,
            inputs=inputs_known,
            output=name,
            output_hash=sha,
            output_size=size,
            observed=dict(cur.observed),
            run_id=run_id,
            created_at=utc_now_iso(),
            reason=decision.reason,
            metadata=_jsonable(metadata),
            cost=cost.to_record(),
        )
        return Outcome(decision, manifest, cost, metadata)  # the caller records, then commits


def _hit_cost(usd: Any) -> CostVector:
    return CostVector(usd_avoided=usd, method="hit: usd_avoided from the manifest's recorded cost")


def _jsonable(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in metadata.items()}
