"""Verifying cached partitions: the cache audits itself.

A sample of the up-to-date partitions is recomputed the way a materialization computes them (the
same inputs by version, the same registered body, the same serialization), in memory: nothing is
written where committed data lives. Each fresh output's sha256 is compared with the one its
manifest recorded. Equal outputs confirm the fingerprint covers what the output depends on.

A fresh output that differs is computed once more. Twice the same bytes, and not the committed
ones: the output is stale through a dependency skipwise does not record (a subprocess, a network
read), so the partition is made a suspect (`skipwise.store.suspects`) and the next run recomputes
it. Two fresh outputs that differ from each other: the asset is nondeterministic, reported once
and not sampled further. What verifying cost goes to the cost ledger (records with cache
"verify"), followed by the process's run record.
"""

from __future__ import annotations

import enum
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence, TypeVar

from skipwise.core import metakeys as mk
from skipwise.core.cost import CostVector, LedgerRecord, utc_now_iso
from skipwise.core.errors import ConfigError
from skipwise.core.hashing import sha256_bytes
from skipwise.core.metakeys import NOT_RESTORABLE
from skipwise.core.plan import SKIP, Current
from skipwise.core.spec import Asset, Result
from skipwise.core.units import format_usd
from skipwise.engine.computing import computing
from skipwise.engine.metering import Meter
from skipwise.engine.processmeter import process_meter
from skipwise.engine.bodies import default_call, is_output, serialize
from skipwise.store.suspects import Suspect

if TYPE_CHECKING:  # the engine is imported when verifying starts, not by `skipwise --help`
    from skipwise.core.manifest import Manifest
    from skipwise.engine.project import Project

T = TypeVar("T")

#: What a mismatch with nothing changed among the recorded dependencies means, and the fix.
UNOBSERVED = (
    "nothing skipwise records changed: an unobserved dependency (a subprocess, a network read, a file "
    "read by a native reader skipwise does not wrap): declare it with @sw.asset(files=[...], env=[...])"
)
#: How to make an asset that disagrees with itself comparable (or say it never will be).
NONDETERMINISTIC_FIX = "seed its randomness, sort before writing, or declare @sw.asset(nondeterministic=True)"
#: The ledger's cache value of a verification's records.
CACHE = "verify"


class Verdict(str, enum.Enum):
    """How a sampled partition's fresh computation compared with its committed output."""

    MATCH = "match"
    MISMATCH = "mismatch"
    NONDETERMINISTIC = "nondeterministic"
    DECLARED = "skipped: declared nondeterministic"
    OUTSIDE_STATE = "skipped: depends on state outside its fingerprint"

    @property
    def is_problem(self) -> bool:
        return self in (Verdict.MISMATCH, Verdict.NONDETERMINISTIC)

    @property
    def is_skipped(self) -> bool:
        return self in (Verdict.DECLARED, Verdict.OUTSIDE_STATE)


@dataclass(frozen=True)
class Verified:
    """One sampled partition: its committed hash, the fresh one(s) and the verdict."""

    asset: str
    partition: str
    committed_hash: str
    fresh_hash: str | None  # None: not computed (skipped)
    verdict: Verdict
    second_hash: str | None = None  # the second computation, done when the first differed
    changed: str = ""  # a mismatch: what changed among the recorded dependencies, or UNOBSERVED
    cost: CostVector = field(default_factory=CostVector)

    def line(self) -> str:
        """The line a person reads for a problem (mismatch or nondeterministic)."""
        where = f"{self.asset}[{self.partition}]"
        if self.verdict is Verdict.NONDETERMINISTIC:
            return (
                f"NONDETERMINISTIC  {self.asset}: two computations of {where} differ ({_short(self.fresh_hash)} "
                f"!= {_short(self.second_hash)}): {NONDETERMINISTIC_FIX}"
            )
        return (
            f"MISMATCH  {where}: committed {_short(self.committed_hash)}, a fresh computation gives "
            f"{_short(self.fresh_hash)} (twice): {self.changed}; marked stale, the next run recomputes it"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "partition": self.partition,
            "verdict": self.verdict.value,
            "committed_hash": self.committed_hash,
            "fresh_hash": self.fresh_hash,
            "second_hash": self.second_hash,
            "changed": self.changed,
            "usd": self.cost.usd,
            "wall_seconds": self.cost.wall_seconds,
        }


class Pick(NamedTuple):
    """An up-to-date partition drawn for verification, with the fingerprint it was planned with."""

    asset: Asset
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Sample:
    """The partitions drawn for verification out of the up-to-date ones, and how to draw them again."""

    picked: tuple[Pick, ...]
    up_to_date: int
    seed: int


@dataclass(frozen=True)
class Report:
    """What one verification found and cost."""

    sample: Sample
    results: tuple[Verified, ...]
    seconds: float
    run_id: str = ""
    overhead_usd: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problems(self) -> list[Verified]:
        return [r for r in self.results if r.verdict.is_problem]

    @property
    def usd(self) -> float | None:
        spent = [r.cost.usd for r in self.results if r.cost.usd is not None]
        return sum(spent) if spent else None

    def count(self, verdict: Verdict) -> int:
        return sum(r.verdict is verdict for r in self.results)

    def skipped_lines(self) -> list[str]:
        """One line per asset whose sampled partitions were not compared, and why."""
        by_asset: dict[tuple[str, str], int] = {}
        for r in self.results:
            if r.verdict.is_skipped:
                by_asset[(r.asset, r.verdict.value)] = by_asset.get((r.asset, r.verdict.value), 0) + 1
        return [
            f"skipped  {asset}: {why.removeprefix('skipped: ')} ({n} sampled partition(s) not compared)"
            for (asset, why), n in by_asset.items()
        ]

    def summary(self) -> str:
        """``verified 18 of 365 up-to-date partitions (5%): 18 match, 0 mismatch; recomputed in 4.2 s for $0.0000123``"""
        compared = sum(not r.verdict.is_skipped for r in self.results)
        extra = "".join(
            f", {n} {label}"
            for label, n in (
                ("nondeterministic", self.count(Verdict.NONDETERMINISTIC)),
                ("skipped", sum(r.verdict.is_skipped for r in self.results)),
            )
            if n
        )
        return (
            f"verified {compared} of {self.sample.up_to_date} up-to-date partitions "
            f"({share(compared, self.sample.up_to_date)}): {self.count(Verdict.MATCH)} match, "
            f"{self.count(Verdict.MISMATCH)} mismatch{extra}; recomputed in {self.seconds:.1f} s for "
            f"{format_usd(self.usd)} (seed {self.sample.seed})"
        )

    def failure(self) -> str:
        """The one-line error of a verification that found problems."""
        mismatched = self.count(Verdict.MISMATCH)
        odd = self.count(Verdict.NONDETERMINISTIC)
        parts = (
            [f"{mismatched} partition(s) differ from a fresh computation (now marked stale)"] if mismatched else []
        ) + ([f"{odd} asset(s) are nondeterministic"] if odd else [])
        return "skipwise verify: " + "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "up_to_date": self.sample.up_to_date,
            "sampled": len(self.sample.picked),
            "seed": self.sample.seed,
            "run_id": self.run_id,
            "seconds": self.seconds,
            "usd": self.usd,
            "overhead_usd": self.overhead_usd,
            "counts": {v.value: self.count(v) for v in Verdict},
            "results": [r.to_json() for r in self.results],
        }


# -- sampling (pure) -----------------------------------------------------------------------------


def sample_size(population: int, fraction: float | None = None, count: int | None = None) -> int:
    """How many of `population` to draw: `count` (at most all of them), else the `fraction`
    rounded, at least one while there is anything to draw."""
    if count is not None:
        return min(count, population)
    if not population or not fraction:
        return 0
    return min(population, max(1, round(fraction * population)))


def draw(candidates: Sequence[T], size: int, seed: int) -> list[T]:
    """`size` of `candidates` drawn at random by `seed` (the same seed, the same draw), kept in
    their given order (upstream first: the report reads like a plan)."""
    picked = random.Random(seed).sample(range(len(candidates)), size)
    return [candidates[i] for i in sorted(picked)]


def new_seed() -> int:
    """A seed for a verification not given one (printed, so the same sample can be drawn again)."""
    return random.SystemRandom().randrange(1, 2**31)


def share(part: int, whole: int) -> str:
    """``5%``, ``0.27%``: `part` of `whole` as a percentage a person reads."""
    if not whole:
        return "0%"
    pct = 100.0 * part / whole
    return f"{pct:.0f}%" if pct >= 1 or pct == 0 else f"{pct:.2g}%"


def choose(
    project: Project,
    select: list[str] | None = None,
    partition: str | None = None,
    fraction: float | None = None,
    count: int | None = None,
    seed: int | None = None,
) -> Sample:
    """Draw the partitions to verify among the up-to-date ones (planned as SKIP: no data read)."""
    candidates = [
        Pick(project.graph.asset(d.asset), d.partition, d.fingerprint)
        for d in project.plan(select, partition=partition)
        if d.action == SKIP
    ]
    seed = new_seed() if seed is None else seed
    picked = draw(candidates, sample_size(len(candidates), fraction, count), seed)
    return Sample(tuple(picked), len(candidates), seed)


# -- recomputing ---------------------------------------------------------------------------------


def recompute(
    project: Project, asset: Asset, key: str, current: Current, fn: Callable[..., Any]
) -> tuple[str, CostVector]:
    """(sha256 of the output bytes, priced cost) of one fresh computation of partition `key`, done
    as `Project._compute` does it (inputs by the versions decided on, the body inside `computing`,
    a `dg.Output` or `sw.Result` unwrapped, the asset's format), with nothing written."""
    params = project.params_of(asset)
    reads: list[Any] = []  # inputs are read before the meter starts and charged to it, as `_compute` does
    inputs = {
        dep.name: project.inputs.load(asset, dep.name, current.inputs[dep.name], key, reads)
        for dep in asset.deps
        if dep.data
    }
    with Meter(project.io) as meter:
        for one in reads:
            meter.charge(one)
        with computing(project, asset, key, current):
            value = fn(key, inputs, params)
        if isinstance(value, Result) or is_output(value):
            value = value.value
        _, data = serialize(asset, value)
        sha = sha256_bytes(data)
    return sha, project.config.price(meter.result())


def provenance(manifest: Manifest) -> Current:
    """What an up-to-date partition is computed from: exactly what its manifest records (its
    fingerprint is the current one, so its code, params and input versions are too)."""
    return Current(manifest.code_version, manifest.params_digest, manifest.inputs, manifest.fingerprint)


def verify_one(project: Project, pick: Pick, fn: Callable[..., Any]) -> Verified | None:
    """Verify one up-to-date partition (None: committed again since it was drawn, nothing to compare)."""
    asset, key = pick.asset, pick.key
    m = project.manifest(asset, key)
    if m is None or m.fingerprint != pick.fingerprint:
        return None
    skipped = (
        Verdict.DECLARED
        if asset.nondeterministic
        else Verdict.OUTSIDE_STATE
        if (m.metadata or {}).get(NOT_RESTORABLE)
        else None
    )
    if skipped is not None:  # e.g. a model registry's promoted version: recomputing would write to it
        return Verified(asset.name, key, m.output_hash, None, skipped)
    current = provenance(m)
    first, cost = recompute(project, asset, key, current, fn)
    if first == m.output_hash:
        return Verified(asset.name, key, m.output_hash, first, Verdict.MATCH, cost=cost)
    second, again = recompute(project, asset, key, current, fn)
    cost = cost + again
    if second != first:
        return Verified(asset.name, key, m.output_hash, first, Verdict.NONDETERMINISTIC, second, cost=cost)
    return Verified(
        asset.name, key, m.output_hash, first, Verdict.MISMATCH, second, what_changed(project, asset, key), cost
    )


def what_changed(project: Project, asset: Asset, key: str) -> str:
    """What changed among the partition's recorded dependencies since it was computed: for an
    up-to-date partition normally nothing, so an unobserved dependency explains the difference."""
    decision = project.decide(asset, key)
    return UNOBSERVED if decision.action == SKIP else f"since it was computed: {decision.reason}"


# -- the whole verification ----------------------------------------------------------------------


def verify(
    project: Project,
    sample: Sample,
    run_id: str = "",
    tags: Mapping[str, str] | None = None,
    on_result: Callable[[Verified], None] | None = None,
) -> Report:
    """Recompute `sample` (see `choose`), compare, mark mismatches stale, record the cost.

    Each partition's record goes to the ledger as it is verified (a killed verification keeps
    what it did), and the process's run record closes it. `on_result` sees each result as it comes.
    """
    run_id = run_id or f"verify-{uuid.uuid4().hex[:12]}"
    tags = {mk.TRIGGER: "verify", **(tags or {})}
    bodies: dict[str, Callable[..., Any]] = {}
    nondeterministic: set[str] = set()
    results: list[Verified] = []
    t0 = time.perf_counter()
    try:
        with project.ledger.journal(run_id) as journal:
            for pick in sample.picked:
                asset = pick.asset
                if asset.name in nondeterministic:
                    continue  # said once: another partition would only say it again, at a cost
                if asset.name not in bodies:
                    with process_meter().phase("load"):
                        bodies[asset.name] = default_call(asset, project.definitions)
                result = verify_one(project, pick, bodies[asset.name])
                if result is None:
                    continue
                if result.verdict is Verdict.NONDETERMINISTIC:
                    nondeterministic.add(asset.name)
                if not result.verdict.is_skipped:
                    with process_meter().phase("ledger"):
                        project.accounts.count_partition_work(result.cost)
                        journal.write([_record(result, pick.fingerprint, run_id, tags)])
                results.append(result)
                if on_result is not None:
                    on_result(result)
        seconds = time.perf_counter() - t0
        mark_stale(project, [r for r in results if r.verdict is Verdict.MISMATCH])
    finally:
        run = project.accounts.record_run(run_id, tags)
    return Report(sample, tuple(results), seconds, run_id, run.cost.usd)


def _record(result: Verified, fingerprint: str, run_id: str, tags: Mapping[str, str]) -> LedgerRecord:
    return LedgerRecord(
        ts=utc_now_iso(),
        run_id=run_id,
        asset=result.asset,
        partition=result.partition,
        cache=CACHE,
        reason=f"skipwise verify: {result.verdict.value}",
        fingerprint=fingerprint,
        tags={str(k): str(v) for k, v in tags.items() if not str(k).startswith("dagster/")},
        cost=result.cost,
    )


def mark_stale(project: Project, mismatches: list[Verified]) -> None:
    """Make each mismatched partition a suspect, by the manifest it has now (a partition
    committed again meanwhile is left alone: the new commit is not what was verified)."""
    found = []
    for r in mismatches:
        m = project.manifest(project.graph.asset(r.asset), r.partition)
        if m is not None and m.output_hash == r.committed_hash:
            found.append(Suspect.of(m, r.fresh_hash or "", utc_now_iso()))
    if not found:
        return

    def still_applies(s: Suspect) -> bool:
        try:
            asset = project.graph.asset(s.asset)
        except ConfigError:  # gone from the graph: its entry goes too
            return False
        return s.covers(project.manifest(asset, s.partition))

    project.suspects.add(found, still_applies)


def _short(sha: str | None) -> str:
    return (sha or "-")[:12]
