"""Fingerprints and decisions: every skip and every recompute has a reason."""

import dataclasses

from skipwise.core.manifest import Manifest, fingerprint
from skipwise.core.plan import BLOCKED, RUN, SKIP, Current, decide

INPUTS = {"raw": {"2013-01-01": "md5:aa", "2013-01-02": "md5:bb"}}


def current(code="c1", params="p1", inputs=INPUTS):
    return Current(code, params, inputs, fingerprint(code, params, inputs, "2013-01-02"))


def manifest_for(cur: Current) -> Manifest:
    return Manifest(
        "a", "2013-01-02", cur.fingerprint, cur.code_version, cur.params_digest, cur.inputs, "x.parquet", "h", 10
    )


def test_fingerprint_golden_value():
    # Pinned: an accidental change of the fingerprint scheme must be a red test, not a silent cache bust.
    assert (
        fingerprint("c1", "p1", INPUTS, "2013-01-02")
        == "3d0ee7e5a531600b03de370009ac63d79893112c2c76f84833c697f45358923d"
    )
    observed = {"file:assets/q.sql": "ab" * 16, "env:FEATURE_MODE": "cd" * 16}
    assert (
        fingerprint("c1", "p1", INPUTS, "2013-01-02", observed=observed)
        == "a98f01435921ef9c5064edc83549bd09c9db09ca3920ab6017707c02cf919b98"
    )
    # Scheme 2 (before observed reads counted) is still computed as it was, to check old manifests.
    assert (
        fingerprint("c1", "p1", INPUTS, "2013-01-02", scheme=2)
        == "67276a1283ecfe0fc1d79420c8a47db911355469f1f3be2010d9c14acccea538"
    )
    # Scheme 1 (before the partition key counted) is still computed as it was, to check old manifests.
    assert (
        fingerprint("c1", "p1", INPUTS, "2013-01-02", scheme=1)
        == "8225d9790d6fbaa6e84e232ca2e50348086644943aac53d32495dbe9b0c72502"
    )


def test_fingerprint_counts_the_partition_key():
    # Four static partitions with the same inputs must not share one fingerprint.
    fps = {fingerprint("c", "p", {}, k) for k in ("north", "south", "east", "west")}
    assert len(fps) == 4


def test_fingerprint_ignores_dict_order_but_not_values():
    swapped = {"raw": {"2013-01-02": "md5:bb", "2013-01-01": "md5:aa"}}
    assert fingerprint("c", "p", INPUTS, "k") == fingerprint("c", "p", swapped, "k")
    assert fingerprint("c", "p", INPUTS, "k") != fingerprint("c", "p", {"raw": {"2013-01-01": "md5:aa"}}, "k")


def test_missing_manifest_runs():
    assert decide("a", "k", current(), None, "missing").reason == "missing"


def test_same_fingerprint_with_output_present_skips():
    cur = current()
    d = decide("a", "2013-01-02", cur, manifest_for(cur), "ok")
    assert (d.action, d.reason) == (SKIP, "up to date")


def test_deleted_or_edited_output_runs():
    cur = current()
    assert decide("a", "k", cur, manifest_for(cur), "missing").reason == "output file missing"
    assert decide("a", "k", cur, manifest_for(cur), "changed").reason == "output file changed"


def test_reasons_name_what_changed():
    old = current()
    new_input = current(inputs={"raw": {"2013-01-01": "md5:aa", "2013-01-02": "md5:XX"}})
    assert decide("a", "k", new_input, manifest_for(old), "ok").reason == "input raw[2013-01-02] changed"
    assert decide("a", "k", current(code="c2"), manifest_for(old), "ok").reason == "code of a changed"
    assert decide("a", "k", current(params="p2"), manifest_for(old), "ok").reason == "params changed"


def test_hand_edited_manifest_cannot_cause_a_false_hit():
    old = current()
    new = current(inputs={"raw": {"2013-01-01": "md5:aa", "2013-01-02": "md5:XX"}})
    # Someone pastes the new fingerprint into the old manifest: its provenance no longer matches.
    forged = dataclasses.replace(manifest_for(old), fingerprint=new.fingerprint)
    d = decide("a", "k", new, forged, "ok")
    assert d.action == RUN and "edited" in d.reason


def test_unavailable_upstream_blocks():
    cur = Current("c", "p", {"up": {"k": None}}, "")
    d = decide("a", "k", cur, None, "missing")
    assert d.action == BLOCKED and "up[k]" in d.reason


def test_manifest_json_round_trip_and_rejects_garbage():
    m = manifest_for(current())
    assert Manifest.from_json(m.to_json()) == m
    for bad in ("[]", "{}", '{"asset": 1}'):
        try:
            Manifest.from_json(bad)
        except (ValueError, TypeError):
            continue
        raise AssertionError(f"accepted {bad}")


def test_a_kept_version_whose_output_depends_on_outside_state_is_never_restored():
    from skipwise.core.manifest import Manifest, fingerprint
    from skipwise.core.plan import NOT_RESTORABLE, RESTORE, RUN, Decision, restorable

    fp = fingerprint("code", "params", {"up": {"k": "v"}}, "all")
    kept = Manifest(
        asset="model",
        partition="all",
        fingerprint=fp,
        code_version="code",
        params_digest="params",
        inputs={"up": {"k": "v"}},
        output=f"{fp}.bin",
        output_hash="h",
        output_size=1,
    )
    run = Decision("model", "all", RUN, "params changed", fp)
    assert restorable(run, kept, "ok").action == RESTORE
    assert restorable(run, kept, "changed").action == RUN  # its output no longer has the recorded hash
    marked = Manifest(**{**kept.__dict__, "metadata": {NOT_RESTORABLE: "depends on the promoted version"}})
    assert restorable(run, marked, "ok") == run
    other = Manifest(**{**kept.__dict__, "partition": "other"})
    assert restorable(run, other, "ok") == run


def test_a_changed_observed_read_is_the_reason():
    from skipwise.core.observed import changes

    was = {"file:assets/q.sql": "a" * 32, "env:FEATURE_MODE": "b" * 32}
    now = {"file:assets/q.sql": "c" * 32, "env:FEATURE_MODE": "b" * 32, "env:NEW": "d" * 32}
    assert changes(was, now) == ["environment variable NEW declared", "file assets/q.sql changed"]
    cur = Current("c", "p", INPUTS, fingerprint("c", "p", INPUTS, "2013-01-02", observed=now), now)
    old = Manifest(
        "a",
        "2013-01-02",
        fingerprint("c", "p", INPUTS, "2013-01-02", observed=was),
        "c",
        "p",
        INPUTS,
        "x.parquet",
        "h",
        10,
        observed=was,
    )
    d = decide("a", "2013-01-02", cur, old, "ok")
    assert d.action == "run" and "file assets/q.sql changed" in d.reason


def test_observed_reads_are_part_of_a_manifests_consistency():
    was = {"env:FEATURE_MODE": "b" * 32}
    m = Manifest(
        "a", "k", fingerprint("c", "p", {}, "k", observed=was), "c", "p", {}, "x.parquet", "h", 10, observed=was
    )
    assert m.consistent()
    assert not dataclasses.replace(m, observed={"env:FEATURE_MODE": "e" * 32}).consistent()
    assert Manifest.from_json(m.to_json()) == m


def test_a_manifest_s_bytes_are_those_of_its_fields_as_json():
    """The committed bytes: every field, nested mappings as JSON objects, keys sorted (a dataclass
    in the metadata is written as its fields); an empty ETag, and no reads before scheme 3, left out."""
    import json

    @dataclasses.dataclass
    class Point:
        x: int

    m = dataclasses.replace(
        manifest_for(current()),
        metadata={"rows": 3, "cols": ("a", "b"), "where": {"z": 1, "a": [1, 2]}},
        cost={"usd": 0.5, "cpu_seconds": 1.25},
        observed={"env:X": "d1"},
    )
    expected = dataclasses.asdict(m)
    del expected["output_etag"]
    assert m.to_json() == json.dumps(expected, sort_keys=True, indent=1)
    assert json.loads(m.to_json())["metadata"]["cols"] == ["a", "b"]
    odd = dataclasses.replace(m, metadata={"p": Point(2)})
    assert json.loads(odd.to_json())["metadata"] == {"p": {"x": 2}}
    old = dataclasses.replace(m, observed={}, scheme=2)
    assert "observed" not in json.loads(old.to_json()) and "output_etag" not in json.loads(old.to_json())
