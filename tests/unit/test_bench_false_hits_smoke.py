"""The false-hit soak (bench/false_hits.py) cannot rot: its edits and its verdicts are checked here,
and a real 3-step soak runs with a false hit planted at step 3, which its oracle must catch."""

from __future__ import annotations

import ast
import io
import json
import random
from pathlib import Path

import polars as pl
import pytest

from bench import false_hits as fh

REPO = Path(__file__).resolve().parents[2]


def _result(outcomes, expected, committed, **kw) -> dict:
    return {"outcomes": outcomes, "expected": expected, "committed": committed, "build_error": None, "oracle_error": None, **kw}


def test_verdicts_tell_false_hits_from_recomputed_and_unreported_partitions():
    ok, bad = {"manifest": "a", "file": "a"}, {"manifest": "a", "file": "b"}
    res = _result(
        [["f", "1", "skip", "up to date"], ["f", "2", "run", "code changed"], ["f", "3", "skip", "up to date"]],
        {"f/1": "a", "f/2": "a", "f/3": "a", "f/4": "a"},
        {"f/1": bad, "f/2": bad, "f/3": ok},
    )
    r = fh.check(1, fh.RAW, {}, res, 1.0, 1.0, True)
    assert r.false_hits == ["f/1"] and r.wrong_after_run == ["f/2"] and r.missing == ["f/4"] and r.recomputed == 1
    assert r.failed
    # After a comment-only edit every recompute is wasted (not a failure); after a failed step it is not counted.
    clean = _result([["f", "1", "run", "code changed"]], {"f/1": "a"}, {"f/1": ok})
    assert fh.check(2, fh.COMMENT, {}, clean, 1.0, 1.0, True).wasted == 1
    assert fh.check(2, fh.COMMENT, {}, clean, 1.0, 1.0, False).wasted == 0
    assert not fh.check(2, fh.COMMENT, {}, clean, 1.0, 1.0, True).failed
    # A build that stopped early never reported the partitions after it: stale, not a false hit.
    stopped = _result([], {"f/1": "a"}, {"f/1": bad}, build_error="boom")
    r = fh.check(3, fh.RAW, {}, stopped, 1.0, 1.0, True)
    assert r.stale_unreported == ["f/1"] and not r.false_hits and r.failed


def test_same_size_raw_edit_is_valid_parquet_of_the_same_size():
    rng = random.Random(1)  # values like the raw weather's: little to compress away
    frame = pl.DataFrame({"temp": [round(rng.uniform(-10, 30), 1) for _ in range(500)], "origin": ["EWR", "JFK"] * 250})
    old = fh._write_parquet(frame)
    changed = frame.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(pl.col("temp") + 7).otherwise(pl.col("temp")).alias("temp"))
    data = fh._same_size_bytes(changed, len(old))
    assert data is not None and len(data) == len(old) and data != old
    assert pl.read_parquet(io.BytesIO(data)).equals(changed)


def test_comment_edits_and_helper_toggles_apply_to_the_real_sources(tmp_path):
    for rel in fh.CODE_FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((REPO / rel).read_text())
    s = fh.Soak(tmp_path, tmp_path, random.Random(0))
    for _ in range(30):
        fh.comment_only(s)  # raises if an edit changed more than comments, blank lines or docstrings
    for rel, old, new in fh.HELPERS:
        assert old in (REPO / rel).read_text(), f"{rel} no longer has {old!r}: update HELPERS"
    for rel, name, line in fh.CONSTANTS:
        tree = ast.parse((REPO / rel).read_text())
        assert any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == name for t in n.targets) for n in tree.body), name


@pytest.mark.integration
@pytest.mark.skip(reason="bench.false_hits drives the old string-reference graph; it is being ported to @sw.asset definitions")
def test_a_short_soak_runs_clean_and_catches_a_planted_false_hit(tmp_path):
    out = tmp_path / "false_hits.md"
    rc = fh.main(["--steps", "3", "--seed", "5", "--out", str(out), "--tmp", str(tmp_path), "--inject-false-hit", "3", "--scratch-every", "0",
                  "--ledger-keep", "2"])
    text = out.read_text()
    assert rc == 1, text
    assert "| forged output (injected false hit) | 1 |" in text
    failures = [line for line in text.splitlines() if line.startswith("- step ")]
    assert len(failures) == 1 and failures[0].startswith("- step 3 (forged output"), text  # steps 1 and 2 were clean
    assert "false hits ['flight_features/2013-01-12']" in failures[0]
    assert "0 partitions disagreed" in text  # the oracle agrees with a from-scratch build
    steps = [json.loads(line) for line in out.with_suffix(".steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3] and steps[2]["false_hits"] == ["flight_features/2013-01-12"]
    assert not list(tmp_path.glob("false_hits-*"))  # the temporary project is removed
