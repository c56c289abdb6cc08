"""The false-hit soak (bench/false_hits.py) cannot rot: its edits and its verdicts are checked here,
and a real 3-step soak runs with a false hit planted at step 3, which its oracle must catch."""

from __future__ import annotations

import ast
import io
import json
import os
import random
from pathlib import Path

import polars as pl
import pytest

from bench import false_hits as fh

REPO = Path(__file__).resolve().parents[2]


def _result(outcomes, expected, committed, **kw) -> dict:
    return {
        "outcomes": outcomes,
        "expected": expected,
        "committed": committed,
        "build_error": None,
        "oracle_error": None,
        **kw,
    }


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


def test_wasted_recomputes_after_edits_whose_readers_are_known():
    """After a same-output edit of flight_features, its partitions may recompute; training_set only
    when an upstream output's bytes changed; weather_features never."""
    ok = {"manifest": "a", "file": "a"}
    expected = {"flight_features/d1": "a", "weather_features/d1": "a", "training_set/all": "a"}
    runs = [
        ["flight_features", "d1", "run", "code changed"],
        ["weather_features", "d1", "run", "code changed"],
        ["training_set", "all", "run", "input changed"],
    ]
    res = _result(runs, expected, {pk: ok for pk in expected})
    same = {pk: "a" for pk in expected}
    r = fh.check(1, fh.SAME_OUTPUT_BODY, {}, res, 1.0, 1.0, True, before=same)
    assert r.wasted_at == ["training_set/all", "weather_features/d1"] and r.wasted == 2 and not r.upstream_changed
    changed = {**same, "flight_features/d1": "z"}  # its bytes changed: training_set had to recompute
    r = fh.check(1, fh.SAME_OUTPUT_BODY, {}, res, 1.0, 1.0, True, before=changed)
    assert r.wasted_at == ["weather_features/d1"] and r.upstream_changed == ["flight_features/d1"]
    assert fh.check(1, fh.DUCKDB_FILE, {}, res, 1.0, 1.0, True, before=same).wasted_at == [
        "flight_features/d1",
        "weather_features/d1",
    ]
    assert fh.check(1, fh.ENV_UNUSED, {}, res, 1.0, 1.0, True).wasted == 3  # nothing may recompute
    assert fh.check(1, fh.ENV_UNUSED, {}, res, 1.0, 1.0, False).wasted == 0  # after a failed step: not counted
    assert fh.check(1, fh.ENV_IMPORT, {}, res, 1.0, 1.0, True).wasted == 0  # not counted (—)
    assert set(fh.MAY_RECOMPUTE) | fh.NO_RECOMPUTE <= set(fh.KINDS) and not set(fh.MAY_RECOMPUTE) & fh.NO_RECOMPUTE


def test_injected_dependencies_and_their_edits(tmp_path):
    """The copy's injected reads (files, variables, code outside the root) and every edit of them
    apply to the real sources, and each toggle comes back to where it started."""
    root, outside = tmp_path / "p0", tmp_path / "outside"
    for rel in [*fh.CODE_FILES, fh.CALENDAR_FILE]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text((REPO / rel).read_text())
    fh.inject_dependencies(root, outside)
    assert (
        not (REPO / "config" / "soak_lookup.csv").exists()
        and "soak" not in (REPO / "assets/features/flights.py").read_text()
    )
    for rel in fh.CODE_FILES:
        ast.parse((root / rel).read_text())
    s = fh.Soak(tmp_path, root, random.Random(0))
    assert s.outside == outside and (outside / fh.OUTSIDE_PACKAGE / "__init__.py").read_text() == fh.OUTSIDE_SOURCE
    env = s.step_env()
    assert env["PYTHONPATH"].split(os.pathsep) == [str(root), str(outside)] and not set(fh.SOAK_ENV) & set(env)
    # Data files: each edit sets another of its versions.
    for kind, files in fh.DATA_FILES.items():
        for _ in range(6):
            op = fh.edit_data_file(s, kind)
            assert op["file"] in files and (root / op["file"]).read_text() in fh.DATA_VERSIONS[op["file"]]
    # Variables: set, changed and unset, and the step's environment follows.
    for kind in fh.ENV_VALUES:
        for _ in range(8):
            op = fh.toggle_env(s, kind)
            assert (
                op["from"] != op["to"] and s.env.get(op["env"]) == op["to"] and s.step_env().get(op["env"]) == op["to"]
            )
    # Code edits: same-output edits, the outside package and the calendar change code and revert exactly.
    toggles = [
        (e, lambda s, e=e, k=k: fh.toggle_same_output(s, k)) for k, edits in fh.SAME_OUTPUT_EDITS.items() for e in edits
    ]
    toggles += [(e, fh.toggle_outside) for e in fh.OUTSIDE_EDITS] + [(fh.CALENDAR_EDIT, fh.move_calendar_end)]
    for edit, toggle in toggles:
        path = (
            outside / fh.OUTSIDE_PACKAGE / "__init__.py"
            if toggle is fh.toggle_outside
            else root / (edit[0] if len(edit) == 3 else fh.CALENDAR_FILE)
        )
        before = path.read_text()
        s.rng = _Always(edit[1:] if len(edit) == 3 else edit)
        toggle(s)
        assert fh._code_only(path.read_text()) != fh._code_only(before), edit
        toggle(s)
        assert path.read_text() == before, edit
    s.rng = random.Random(1)
    for _ in range(20):
        fh.outside_comment_only(s)  # raises if an edit changed more than comments, blank lines or docstrings
    assert (
        fh.select_kinds(["ENV VAR"]) == [fh.ENV_IMPORT, fh.ENV_RUN, fh.ENV_UNUSED] and fh.select_kinds(None) == fh.KINDS
    )


def test_same_size_raw_edit_is_valid_parquet_of_the_same_size():
    rng = random.Random(1)  # values like the raw weather's: little to compress away
    frame = pl.DataFrame({"temp": [round(rng.uniform(-10, 30), 1) for _ in range(500)], "origin": ["EWR", "JFK"] * 250})
    old = fh._write_parquet(frame)
    changed = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(pl.col("temp") + 7).otherwise(pl.col("temp")).alias("temp")
    )
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
    for rel, old, new in [
        *fh.HELPERS,
        *(e for edits in fh.SAME_OUTPUT_EDITS.values() for e in edits),
        (fh.CALENDAR_FILE, *fh.CALENDAR_EDIT),
    ]:
        text = (REPO / rel).read_text()
        assert text.count(old) == 1 and new not in text, f"{rel} no longer has {old!r} once: update HELPERS"
    for rel, name, line in fh.CONSTANTS:
        tree = ast.parse((REPO / rel).read_text())
        assert any(
            isinstance(n, ast.Assign) and any(getattr(t, "id", None) == name for t in n.targets) for n in tree.body
        ), name
    # Every helper and constant edit changes the code (not only comments), and its revert restores the file.
    for edits, toggle in ((fh.HELPERS, fh.toggle_helper), (fh.CONSTANTS, fh.toggle_constant)):
        for edit in edits:
            rel = edit[0]
            before = (tmp_path / rel).read_text()
            s.rng = _Always(edit)
            toggle(s)
            after = (tmp_path / rel).read_text()
            assert fh._code_only(after) != fh._code_only(before), edit
            toggle(s)
            assert (tmp_path / rel).read_text() == before, edit


class _Always(random.Random):
    """A Random whose choice() picks `item` whenever it is one of the options."""

    def __init__(self, item):
        super().__init__(0)
        self.item = item

    def choice(self, seq):
        if self.item in seq:
            return self.item
        return next(
            (x for x in seq if isinstance(x, tuple) and x[-len(self.item) :] == self.item), None
        ) or super().choice(seq)


def test_no_code_edit_targets_the_library_or_the_old_layout():
    """A copy runs the installed skipwise, so edits of its pipelines/ would change nothing."""
    targets = [
        *fh.CODE_FILES,
        *(h[0] for h in fh.HELPERS),
        *(c[0] for c in fh.CONSTANTS),
        fh.CALENDAR_FILE,
        *(e[0] for edits in fh.SAME_OUTPUT_EDITS.values() for e in edits),
        *(rel for rel, _, _ in fh.INJECT_CODE),
    ]
    assert "pipelines" not in fh.PROJECT_FILES
    assert all(t.startswith("assets/") for t in targets), targets
    assert all((REPO / t).is_file() for t in targets), [t for t in targets if not (REPO / t).is_file()]
    assert "assets/definitions.py" in fh.CODE_FILES


def test_params_toggles_set_remove_and_restore_keys(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    s = fh.Soak(tmp_path, tmp_path, random.Random(3))
    import yaml

    original = yaml.safe_load((REPO / "params.yaml").read_text())
    seen_absent = set()
    for _ in range(60):
        op = fh.toggle_params(s)
        section, key = op["param"].split(".")
        now = yaml.safe_load((tmp_path / "params.yaml").read_text())
        assert set(now) == set(original)  # sections stay (an emptied one reads as null)
        value = (now[section] or {}).get(key)
        if op["to"] == "(absent)":
            seen_absent.add(op["param"])
            assert key not in (now[section] or {})
        else:
            assert value == op["to"]
        untouched = set(original) - {p[0] for p in fh.PARAM_VALUES}
        assert {k: now[k] for k in untouched} == {k: original[k] for k in untouched}
    assert seen_absent  # the config class defaults get exercised


@pytest.mark.integration
@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_short_soak_runs_clean_and_catches_a_planted_false_hit(tmp_path, store):
    """Steps 1 and 2 (seed 5, two kinds): the package outside the project edited, then $SOAK_SCALE set
    (both change weather_features' output: the build and the oracle must see them alike)."""
    out = tmp_path / "false_hits.md"
    rc = fh.main(
        [
            "--steps",
            "3",
            "--seed",
            "5",
            "--out",
            str(out),
            "--tmp",
            str(tmp_path),
            "--inject-false-hit",
            "3",
            "--scratch-every",
            "0",
            "--ledger-keep",
            "2",
            "--store",
            store,
            "--kind",
            "env var read at run",
            "--kind",
            "outside the root (PYTHONPATH)",
        ]
    )
    text = out.read_text()
    assert rc == 1, text
    assert "| forged output (injected false hit) | 1 |" in text
    failures = [line for line in text.splitlines() if line.startswith("- step ")]
    assert len(failures) == 1 and failures[0].startswith("- step 3 (forged output"), text  # steps 1 and 2 were clean
    assert "false hits ['flight_features/2013-01-12']" in failures[0]
    assert "0 partitions disagreed" in text  # the oracle agrees with a from-scratch build
    steps = [json.loads(line) for line in out.with_suffix(".steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3] and steps[2]["false_hits"] == ["flight_features/2013-01-12"]
    assert [s["kind"] for s in steps[:2]] == [fh.OUTSIDE, fh.ENV_RUN] and steps[1]["env"] == {"SOAK_SCALE": "2"}
    assert not list(tmp_path.glob("false_hits-*"))  # the temporary project (and the S3 server's log) is removed
    assert "SKIPWISE_STORE" not in os.environ
