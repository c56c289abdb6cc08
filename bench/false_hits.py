"""The false-hit soak, one command:

    .venv/bin/python -m bench.false_hits --steps 500 [--seed N] [--ledger-keep 100] [--out bench/results/false_hits.md]

A false cache hit (a partition reported up to date whose stored output differs from what the current
code, params and raw data would produce) is the worst bug skipwise can have. This soak looks for one:

1. It makes a real project in a temporary folder (the demo's code location `assets/` with
   `assets/definitions.py`, params.yaml, pyproject.toml and the other config files, 12 days of raw
   data written by `assets.ingest`, `git init`, `dvc init`, `dvc add data/raw/flights
   data/raw/weather`) and builds it. The copy holds no pipelines/: it runs the installed library
   (`skipwise`), so the edits are to the project's own files only. Before the first build the copy
   gets dependencies no code version sees (`inject_dependencies`; the repository's assets/ stay as
   they are), each changing the output of a built asset: flight_features reads
   assets/features/soak_config.json (beside its module, `Path(__file__).with_name(...).read_text()`),
   $SOAK_MODE when assets/features/flights.py is imported, and config/soak_pandas.csv and
   config/soak_arrow.csv through pandas' and pyarrow's own CSV readers; weather_features reads
   config/soak_lookup.csv with `pl.read_csv`, $SOAK_SCALE while its body runs, and calls
   `soakshared.wind_factor()`, a package in <tmp>/outside (outside every copy, on PYTHONPATH);
   training_set adds a column DuckDB computes from config/soak_weights.csv (read by DuckDB itself)
   with the query in config/soak_weight.sql.
2. Then, for each of N seeded random steps: one random edit (see KINDS), then one fresh process in
   the project (its own code: cwd and `PYTHONPATH=<project>`; no Dagster run) that runs an
   incremental build of flight_features, weather_features and training_set over the 12 days through
   `skipwise.engine.project.load_project(".")` and `Project.materialize`, and then the oracle
   (`bench/false_hits_worker.py`): every partition recomputed straight from the raw files,
   params.yaml and the `@sw.asset` functions with their `dg.Config` classes, windows read off the
   Dagster definitions' partition mappings, with no engine state, serialized by the library's writer.
   Code edits go to assets/definitions.py (partition mappings, config defaults, bodies, module
   constants) and the feature modules the bodies call (assets/features/); params.yaml toggles also
   remove a key (the config class default applies) and put it back. The injected dependencies get
   their own kinds: the data files set to another version, the variables set, changed or unset
   (SOAK_MODE, SOAK_SCALE, and ones no project code reads: SOAK_UNUSED, and POLARS_VERBOSE and
   POLARS_QUERY_MONITORING, which polars' own code reads while the bodies run), the outside package
   edited (or only its comments and docstrings), flight_features' body or helper edited without
   changing its output (`x` -> `x * 1`, an unused local...), and the partitions definition's
   end_date moved later and back (assets/calendar.py). The process is a child forked by a server
   that imported Dagster and the other third-party libraries once (`--fresh-process`: a plain new
   interpreter per step, seconds slower); it imports skipwise and the project itself. Either way it
   gets the step's whole environment (the soak's variables as they are now, PYTHONPATH=<copy>:<outside>),
   for the build and the oracle alike.
3. A **false hit** is a partition the build reported as a skip whose committed bytes (or manifest
   hash) differ from the oracle's. Also counted: partitions recomputed and still wrong, builds that
   failed (none of the edits is meant to be refused), and **wasted recomputes**: partitions recomputed
   after an edit that cannot change anything (NO_RECOMPUTE: comment-only edits, here or in the outside
   package, touched files, a plain `cp -a`, a variable no project code reads, the end_date moved), and
   after an edit whose readers are known (MAY_RECOMPUTE) any partition of another asset, but
   training_set when a flight_features or weather_features output's bytes changed in the step (the
   manifests' output_hash before the edit and after the build): after a same-output edit of
   flight_features, training_set must not recompute.
4. Every --scratch-every steps and at the end, the oracle itself is checked against a from-scratch
   engine build of the same state in a separate folder (code, raw data and DVC state, no outputs).

Writes a markdown table (steps by edit kind, false hits, failures, wasted recomputes, median and min
seconds per step, CPU steal from /proc/stat) to --out and prints it, and one JSON line per step (its
edit, what was recomputed and why, any failure) to <out>.steps.jsonl; a progress line per step goes
to stderr. Exit code 1 on any false hit or unexpected failure; the failing step is printed with its
seed, and `--seed N --replay STEP` makes the same edits up to that step (the random draws never
depend on build results), prints each with what it recomputed, stops there and keeps the project
folder for a look. `--stop-on-failure` stops at the first failure instead. `--kind TEXT` (repeatable)
draws only the kinds whose names contain TEXT.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import steal_percent
from bench.workspace import COPY_FILES, demo_copy

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "false_hits_worker.py"
BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc") if (BIN / "dvc").exists() else (shutil.which("dvc") or "dvc")
#: What a copy holds: the demo's code location and its config. Not pipelines/: the copy runs the
#: installed library (`skipwise`, editable from this repository's pipelines/), whatever the copy holds.
PROJECT_FILES = COPY_FILES
FIRST, LAST = "2013-01-01", "2013-01-12"
SOAK_BUCKET, SOAK_PREFIX = "soak", "features"  # --store s3
DAYS = [f"2013-01-{d:02d}" for d in range(1, 13)]
RAW_KINDS = ("flights", "weather")

# Edit kinds, drawn uniformly.
RAW_ADD, RAW, REVERT_ADD, REVERT, SAME_SIZE = (
    "raw edit + dvc add",
    "raw edit, no dvc add",
    "raw revert + dvc add",
    "raw revert, no dvc add",
    "same-size raw edit, mtime restored",
)
PARAMS, HELPER, CONSTANT, COMMENT = (
    "params.yaml toggle",
    "helper edit/revert",
    "module constant add/remove",
    "comment/docstring only",
)
DELETE, TRUNCATE, MANIFEST, TOUCH, COPY = (
    "output deleted",
    "output truncated/corrupted",
    "manifest hand-edited",
    "file touched (mtime)",
    "cp -a to a new folder",
)
# What a code version cannot see (the dependencies `inject_dependencies` adds to the copy).
JSON_BESIDE = "JSON beside a feature module (read_text)"
POLARS_FILE = "config/ CSV read by polars"
PANDAS_ARROW_FILE = "config/ CSVs read by pandas / pyarrow"
DUCKDB_FILE = "config/ CSV read by DuckDB, .sql query file"
ENV_IMPORT = "env var read at import"
ENV_RUN = "env var read at run"
ENV_UNUSED = "env var not read by project code"
OUTSIDE = "code outside the root (PYTHONPATH) edit/revert"
OUTSIDE_COMMENT = "code outside the root, comment/docstring only"
SAME_OUTPUT_BODY = "flight_features body edit, same output"
SAME_OUTPUT_HELPER = "flight_features helper edit, same output"
CALENDAR = "partitions end_date moved"
KINDS = [
    RAW_ADD,
    RAW,
    REVERT_ADD,
    REVERT,
    SAME_SIZE,
    PARAMS,
    HELPER,
    CONSTANT,
    COMMENT,
    DELETE,
    TRUNCATE,
    MANIFEST,
    TOUCH,
    COPY,
    JSON_BESIDE,
    POLARS_FILE,
    PANDAS_ARROW_FILE,
    DUCKDB_FILE,
    ENV_IMPORT,
    ENV_RUN,
    ENV_UNUSED,
    OUTSIDE,
    OUTSIDE_COMMENT,
    SAME_OUTPUT_BODY,
    SAME_OUTPUT_HELPER,
    CALENDAR,
]
#: Edits after which nothing may be recomputed (a plain `cp -a` only: one followed by an edit is not).
NO_RECOMPUTE = {COMMENT, TOUCH, COPY, ENV_UNUSED, OUTSIDE_COMMENT, CALENDAR}
#: Edits whose legitimate recomputes are known exactly: the assets that read what was edited (any of
#: their partitions may recompute); training_set, downstream of both, may also recompute when the
#: bytes of a flight_features or weather_features output changed in the step (the manifests'
#: output_hash before the edit and after the build). Any other recompute after such an edit is wasted.
#: (The JSON config and the import-time variable are not here: a file beside project modules counts in
#: the code version of every asset that reaches their folder, and a module's top-level code in every
#: asset that reaches the module, assets/definitions.py's imports included.)
MAY_RECOMPUTE: dict[str, set[str]] = {
    POLARS_FILE: {"weather_features"},
    PANDAS_ARROW_FILE: {"flight_features"},
    DUCKDB_FILE: {"training_set"},
    ENV_RUN: {"weather_features"},
    OUTSIDE: {"weather_features"},
    SAME_OUTPUT_BODY: {"flight_features"},  # training_set(flight_features=...): a parameter, not the asset's code
    SAME_OUTPUT_HELPER: {"flight_features"},  # early cutoff: same bytes, so training_set stays
}
#: What training_set reads: its recompute is legitimate after a MAY_RECOMPUTE edit when one of their outputs changed.
UPSTREAM = ("flight_features", "weather_features")

#: The code the three built assets run: their definitions (graph, config classes and bodies in one
#: module) and the feature modules they call. Comment-only edits go to any of them.
CODE_FILES = [
    "assets/definitions.py",
    "assets/features/flights.py",
    "assets/features/weather.py",
    "assets/features/training.py",
]
#: Helper edits, each toggled (applied, or reverted when applied); each `old` occurs once in its file.
HELPERS = [
    # assets/definitions.py: the graph (partition mappings), the dg.Config defaults and the bodies.
    ("assets/definitions.py", "start_offset=-LOOKBACK_DAYS)", "start_offset=-LOOKBACK_DAYS + 1)"),  # one day less read
    (
        "assets/definitions.py",
        '"raw_weather": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-WEATHER_HISTORY_DAYS))',
        '"raw_weather": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=0))',
    ),  # no previous day
    (
        "assets/definitions.py",
        "window_hours: int = 3",
        "window_hours: int = 4",
    ),  # a config default (params.yaml may override it)
    ("assets/definitions.py", "delay_threshold_minutes: int = 15", "delay_threshold_minutes: int = 20"),
    (
        "assets/definitions.py",
        "float(config.delay_threshold_minutes))",
        "float(config.delay_threshold_minutes) + 1)",
    ),  # a body
    (
        "assets/definitions.py",
        "datetime.timedelta(minutes=config.weather_lead_minutes))",
        "datetime.timedelta(minutes=config.weather_lead_minutes + 30))",
    ),  # training_set's body, not delay_predictions'
    # the feature modules the bodies call
    ("assets/features/weather.py", 'closed="right"', 'closed="both"'),
    ("assets/features/flights.py", "minutes=sched % 100", "minutes=sched % 60"),  # a numeric constant
    (
        "assets/features/flights.py",
        "delay_threshold_minutes: float = 15.0",
        "delay_threshold_minutes: float = 16.0",
    ),  # unused default
    (
        "assets/features/flights.py",
        "| (arr_delay > delay_threshold_minutes)",
        "| (arr_delay >= delay_threshold_minutes)",
    ),
    (
        "assets/features/flights.py",
        'pl.col("dep_delay").cast(pl.Float64).mean()',
        'pl.col("dep_delay").cast(pl.Float64).median()',
    ),
    ("assets/features/training.py", "nulls_last=True", "nulls_last=False"),
    ("assets/features/weather.py", "pl.col(c).mean().alias(m)", "pl.col(c).last().alias(m)"),  # same size
]
#: Module-level constants used by helpers: (file, the assigned name, the augmented assignment toggled after it).
CONSTANTS = [
    ("assets/definitions.py", "LOOKBACK_DAYS", "LOOKBACK_DAYS -= 2"),  # the graph's window and the body's argument
    (
        "assets/definitions.py",
        "WEATHER_HISTORY_DAYS",
        "WEATHER_HISTORY_DAYS += 1",
    ),  # the window only (delay_predictions' too)
    ("assets/features/weather.py", "WEATHER_VALUE_COLUMNS", 'WEATHER_VALUE_COLUMNS += ["dewp"]'),
    (
        "assets/features/flights.py",
        "FLIGHT_SORT_KEYS",
        'FLIGHT_SORT_KEYS += ["distance"]',
    ),  # training.py imports it too
    ("assets/features/flights.py", "FLIGHT_FEATURE_COLUMNS", 'FLIGHT_FEATURE_COLUMNS += ["air_time"]'),
]
#: (params.yaml section, key, values); None: the key removed, so the dg.Config class default applies.
PARAM_VALUES = [
    ("flight_features", "delay_threshold_minutes", [15, 20, 10, None]),
    ("weather_features", "window_hours", [3, 2, 4, None]),
    ("training_set", "weather_lead_minutes", [60, 30, None]),
]

# -- dependencies a code version does not see, injected into the copy (never into assets/ here) ------
#
# Each changes the output of one of the three built assets. (file, anchor, replacement): the anchor
# occurs once in the demo's file; the replacement keeps it (or its line) so later edits still apply.
OUTSIDE_PACKAGE = "soakshared"
INJECT_CODE = [
    # flight_features: a JSON config beside the module (read_text), a mode read from the environment
    # when the module is imported, and two CSVs under config/ read by pandas and by pyarrow.
    (
        "assets/features/flights.py",
        "import polars as pl\n",
        '''import json
import os
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow.csv as pacsv

# Soak: the label threshold's mode, read from the environment when this module is imported.
if os.environ.get("SOAK_MODE") == "alt":
    SOAK_THRESHOLD_FACTOR = 2
else:
    SOAK_THRESHOLD_FACTOR = 1

_SOAK_CONFIG = Path(__file__).resolve().parents[2] / "config"


def _soak_threshold(threshold: float) -> float:
    """The label threshold: scaled by the import-time mode, plus the JSON config's extra minutes."""
    config = json.loads(Path(__file__).with_name("soak_config.json").read_text())
    return threshold * SOAK_THRESHOLD_FACTOR + config["extra_threshold_minutes"]


def _soak_distance_offset() -> float:
    """Added to `distance`: one value read by pandas, one by pyarrow (both from config/)."""
    a = float(pd.read_csv(_SOAK_CONFIG / "soak_pandas.csv")["value"].iloc[0])
    b = float(pacsv.read_csv(str(_SOAK_CONFIG / "soak_arrow.csv")).column("value")[0].as_py())
    return a + b
''',
    ),
    (
        "assets/features/flights.py",
        "    frame = _with_local_times(flights)\n",
        "    delay_threshold_minutes = _soak_threshold(delay_threshold_minutes)\n    frame = _with_local_times(flights)\n",
    ),
    (
        "assets/features/flights.py",
        'pl.col("distance").cast(pl.Float64),',
        '(pl.col("distance").cast(pl.Float64) + _soak_distance_offset()),',
    ),
    # weather_features: per-origin factors in a CSV under config/ read by polars, a scale read from the
    # environment while the body runs, and a factor from a package outside the project.
    (
        "assets/features/weather.py",
        "import polars as pl\n",
        f'''import os
from pathlib import Path

import polars as pl
from {OUTSIDE_PACKAGE} import wind_factor

_SOAK_LOOKUP = Path(__file__).resolve().parents[2] / "config" / "soak_lookup.csv"


def _soak_adjust(weather: pl.DataFrame) -> pl.DataFrame:
    """Soak: temp times its origin's factor (config/soak_lookup.csv, read by polars) and $SOAK_SCALE
    (read at run); wind_speed times a factor from code outside the project."""
    lookup = pl.read_csv(_SOAK_LOOKUP)
    factors = dict(zip(lookup["origin"].to_list(), lookup["temp_factor"].to_list()))
    scale = float(os.environ.get("SOAK_SCALE", "1"))
    return weather.with_columns(
        (pl.col("temp") * pl.col("origin").replace_strict(factors, default=1.0, return_dtype=pl.Float64) * scale).alias("temp"),
        (pl.col("wind_speed") * wind_factor()).alias("wind_speed"),
    )
''',
    ),
    ("assets/features/weather.py", "        weather.with_columns(\n", "        _soak_adjust(weather).with_columns(\n"),
    # training_set: a weight column computed by DuckDB from a CSV it reads itself, with a query kept
    # in a .sql file (read by Python).
    (
        "assets/features/training.py",
        "import polars as pl\n",
        """from pathlib import Path

import duckdb
import polars as pl
""",
    ),
    (
        "assets/features/training.py",
        '_ROW_ID = "__row_id"\n',
        '''_ROW_ID = "__row_id"
_SOAK_CONFIG = Path(__file__).resolve().parents[2] / "config"


def _soak_weight() -> float:
    """Soak: a weight DuckDB computes from config/soak_weights.csv with the query in config/soak_weight.sql."""
    query = (_SOAK_CONFIG / "soak_weight.sql").read_text().format(path=_SOAK_CONFIG / "soak_weights.csv")
    return float(duckdb.sql(query).fetchall()[0][0])
''',
    ),
    (
        "assets/features/training.py",
        ".drop(_ROW_ID)\n",
        '.drop(_ROW_ID).with_columns(pl.lit(_soak_weight()).alias("soak_weight"))\n',
    ),
]
#: Files the injected code reads: relative path -> its versions (the first is written at injection).
DATA_VERSIONS = {
    "assets/features/soak_config.json": [
        '{"extra_threshold_minutes": 0}\n',
        '{"extra_threshold_minutes": 5}\n',
        '{"extra_threshold_minutes": 9}\n',
    ],
    "config/soak_lookup.csv": [
        "origin,temp_factor\nEWR,1.0\nJFK,1.0\nLGA,1.0\n",
        "origin,temp_factor\nEWR,1.0\nJFK,1.1\nLGA,1.0\n",
        "origin,temp_factor\nEWR,0.9\nJFK,1.0\nLGA,1.2\n",
    ],
    "config/soak_pandas.csv": ["value\n0\n", "value\n3\n", "value\n-2\n"],
    "config/soak_arrow.csv": ["value\n0.0\n", "value\n1.5\n"],
    "config/soak_weights.csv": ["weight\n1.0\n", "weight\n2.0\n", "weight\n0.5\n"],
    "config/soak_weight.sql": [
        "select max(weight) from read_csv('{path}')\n",
        "select max(weight) * 2 from read_csv('{path}')\n",
    ],
}
#: The data files each kind edits (one a step, set to another of its versions).
DATA_FILES = {
    JSON_BESIDE: ["assets/features/soak_config.json"],
    POLARS_FILE: ["config/soak_lookup.csv"],
    PANDAS_ARROW_FILE: ["config/soak_pandas.csv", "config/soak_arrow.csv"],
    DUCKDB_FILE: ["config/soak_weights.csv", "config/soak_weight.sql"],
}
#: The package outside the project (in <tmp>/outside, on PYTHONPATH for the build and the oracle).
OUTSIDE_SOURCE = '''"""Soak: code shared from outside the project, reached through PYTHONPATH."""


def _base() -> float:
    return 1.0


def wind_factor() -> float:
    """The factor applied to wind_speed."""
    return _base() * 1.0
'''
#: Output-changing toggles of the outside package's code (each `old` once in its file).
OUTSIDE_EDITS = [("return 1.0\n", "return 1.25\n"), ("return _base() * 1.0", "return _base() * 1.5")]
#: Environment variables the soak sets, unsets or changes: name -> values (None: unset; the first is the start).
ENV_VALUES = {
    ENV_IMPORT: {"SOAK_MODE": [None, "alt", "std"]},  # "std" reads like unset: same output, still a changed dependency
    ENV_RUN: {"SOAK_SCALE": [None, "2", "0.5", "1"]},
    # Nothing reads SOAK_UNUSED; polars' own Python code reads POLARS_VERBOSE and POLARS_QUERY_MONITORING
    # while the bodies run (and acts only on "1"): third-party reads, no dependency of a partition.
    ENV_UNUSED: {
        "SOAK_UNUSED": [None, "a", "b"],
        "POLARS_VERBOSE": [None, "0"],
        "POLARS_QUERY_MONITORING": [None, "0"],
    },
}
SOAK_ENV = sorted({name for names in ENV_VALUES.values() for name in names})
#: Edits that change flight_features' code but not its output (toggled like HELPERS): training_set
#: must not recompute (its parameter `flight_features` names the asset, it does not call its code;
#: and the outputs' bytes are the same).
SAME_OUTPUT_EDITS = {
    SAME_OUTPUT_BODY: [
        ("assets/definitions.py", "LOOKBACK_DAYS, float(config", "LOOKBACK_DAYS * 1, float(config"),
        ("assets/definitions.py", "(raw_flights, _day(", "(raw_flights.clone(), _day("),
    ],
    SAME_OUTPUT_HELPER: [
        ("assets/features/flights.py", 'pl.col("flight").cast(pl.Int32),', '(pl.col("flight") * 1).cast(pl.Int32),'),
        ("assets/features/flights.py", "dt.weekday().cast(pl.Int8)", "dt.weekday().cast(pl.Int16).cast(pl.Int8)"),
        (
            "assets/features/flights.py",
            'arr_delay = pl.col("arr_delay").cast(pl.Float64)\n',
            'arr_delay = pl.col("arr_delay").cast(pl.Float64); _soak_unused = len(FLIGHT_SORT_KEYS)\n',
        ),
    ],
}
#: The partitions definition's end date, moved later and back: no built day changes.
CALENDAR_FILE, CALENDAR_EDIT = "assets/calendar.py", ('end_date="2014-01-01"', 'end_date="2014-03-01"')


def inject_dependencies(root: Path, outside: Path) -> None:
    """Add to the copy at `root` what reads files, environment variables and code outside the root
    (INJECT_CODE, DATA_VERSIONS), and the package OUTSIDE_PACKAGE in `outside`."""
    for rel, anchor, new in INJECT_CODE:
        path = root / rel
        text = path.read_text()
        if text.count(anchor) != 1:
            raise RuntimeError(
                f"{rel}: {anchor!r} occurs {text.count(anchor)} times (expected once): update INJECT_CODE"
            )
        path.write_text(text.replace(anchor, new))
    for rel, versions in DATA_VERSIONS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(versions[0])
    (outside / OUTSIDE_PACKAGE).mkdir(parents=True, exist_ok=True)
    (outside / OUTSIDE_PACKAGE / "__init__.py").write_text(OUTSIDE_SOURCE)
    for rel, old, _ in [
        *HELPERS,
        *(e for edits in SAME_OUTPUT_EDITS.values() for e in edits),
        (CALENDAR_FILE, *CALENDAR_EDIT),
    ]:
        if (root / rel).read_text().count(old) != 1:
            raise RuntimeError(f"{rel}: {old!r} is not there once after the injection")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def proc_stat() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat, or None where there is none."""
    try:
        fields_ = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    values = [int(v) for v in fields_[1:9]]
    return values[7], sum(values)


def env_for(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(root)
    env.pop("SKIPWISE_ROOT", None)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=env_for(cwd), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, cmd))} failed ({p.returncode}) in {cwd}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        )
    return p


# -- the project ------------------------------------------------------------------------------------


def make_project(base: Path, source: Path = REPO) -> Path:
    """A real project copy in `base`/p0: project files, 12 days of raw data, git + DVC, raw data
    added; then the dependencies no code version sees (`inject_dependencies`), the package outside
    the project in `base`/outside."""
    root = base / "p0"
    demo_copy(root, len(DAYS), source, env_for(root))
    inject_dependencies(root, base / "outside")
    return root


def copy_without_outputs(src: Path, dst: Path) -> None:
    """Code, raw data and DVC state, none of skipwise's outputs or caches (like test_robustness)."""
    data = (src / "data").resolve()

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n != "raw"] if Path(folder).resolve() == data else []

    shutil.copytree(src, dst, ignore=ignore, symlinks=True)


class StepServer:
    """`false_hits_worker.py --serve`: one long-lived process that has imported the third-party
    libraries (Dagster takes seconds) and forks a fresh child for each step (see its `serve`).
    The child imports skipwise and the project's code itself, in the copy, as a new process would."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def run(self, root: Path, argv: list[str], log: Path, timeout: float, env: dict[str, str]) -> int:
        """Run one step in a child with exactly `env` as its environment (the server's own is not
        inherited: a variable the soak unset stays unset) and `env`'s PYTHONPATH entries first on sys.path."""
        for attempt in (1, 2):  # a server that died is started again, once
            if self.proc is None or self.proc.poll() is not None:
                server_env = env_for(root)
                server_env.pop("PYTHONPATH", None)  # the server sees no project: each child puts its own first
                for name in SOAK_ENV:
                    server_env.pop(name, None)
                self.proc = subprocess.Popen(
                    [sys.executable, "-P", str(WORKER), "--serve"],
                    cwd=root.parent,
                    env=server_env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            try:
                self.proc.stdin.write(
                    json.dumps({"cwd": str(root), "argv": argv, "log": str(log), "timeout": timeout, "env": env}) + "\n"
                )
                self.proc.stdin.flush()
                reply = self.proc.stdout.readline()
            except (BrokenPipeError, OSError):
                reply = ""
            if reply:
                return int(json.loads(reply)["rc"])
            self.close()
            if attempt == 2:
                raise RuntimeError("the step server (false_hits_worker.py --serve) died twice in a row")
        return 1

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
            self.proc = None


#: None: a plain subprocess per step (`--fresh-process`); else the step server.
SERVER: StepServer | None = None


def run_worker(
    root: Path, step: int | str, result: Path, mode: str = "all", env: dict[str, str] | None = None
) -> tuple[dict, float]:
    """One fresh process: the incremental build, then (mode "all") the oracle. Returns (result, wall s).

    The process is a child forked by the step server, or (`--fresh-process`) a plain subprocess
    `cd <root> && PYTHONPATH=<root>:<outside> python -P false_hits_worker.py ...`. `env` is its whole
    environment (`Soak.step_env`: the soak's variables as they are now); by default `env_for(root)`.
    """
    env = env if env is not None else env_for(root)
    result.unlink(missing_ok=True)
    argv = [str(result), str(step), FIRST, LAST, mode]
    t = time.perf_counter()
    if SERVER is not None:
        log = result.with_suffix(".log")
        rc = SERVER.run(root, argv, log, 600, env)
        stderr = log.read_text(errors="replace") if log.exists() else ""
    else:
        p = subprocess.run(
            [sys.executable, "-P", str(WORKER), *argv], cwd=root, env=env, capture_output=True, text=True, timeout=600
        )
        rc, stderr = p.returncode, p.stderr
    wall = time.perf_counter() - t
    if rc != 0 or not result.exists():
        return {
            "outcomes": [],
            "build_error": f"worker exited {rc}:\n{stderr[-4000:]}",
            "oracle_error": "no result",
            "committed": {},
            "warnings": [],
        }, wall
    return json.loads(result.read_text()), wall


# -- edits ------------------------------------------------------------------------------------------


@dataclass
class Soak:
    base: Path
    root: Path
    rng: random.Random
    settle_after_copy: float = 0.0
    history: dict[str, list[bytes]] = field(default_factory=dict)  # raw file -> its distinct versions seen
    copies: int = 0
    comments: int = 0
    bucket: "Bucket | None" = None  # --store s3: partitions live in the bucket, not in data/
    env: dict[str, str] = field(default_factory=dict)  # the soak's variables (SOAK_ENV) set now; the others are unset
    kinds: list[str] = field(default_factory=lambda: list(KINDS))  # what a step draws from (--kind)

    @property
    def outside(self) -> Path:
        """The folder on PYTHONPATH that holds OUTSIDE_PACKAGE (outside every project copy)."""
        return self.base / "outside"

    def step_env(self, root: Path | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The whole environment of a step's process in `root` (default: the project): this process's,
        the soak's variables as they are now (the others unset), PYTHONPATH=<root>:<outside>."""
        root = root or self.root
        env = env_for(root)
        for name in SOAK_ENV:
            env.pop(name, None)
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join([str(root), str(self.outside)])
        env.update(extra or {})
        return env

    def raw_files(self) -> list[str]:
        return [f"data/raw/{k}/{d}.parquet" for k in RAW_KINDS for d in DAYS]

    def remember(self, rel: str) -> None:
        data = (self.root / rel).read_bytes()
        versions = self.history.setdefault(rel, [])
        if data not in versions:
            versions.append(data)

    def dvc_add(self, rel: str) -> None:
        run([DVC, "add", "-q", str(Path(rel).parent)], cwd=self.root)

    def partitions(self) -> list[Path]:
        """Every partition folder of the build, committed or not, in a fixed order.

        Fixed, not read from disk: the random draws of a step then never depend on whether an
        earlier build failed, so a seed replays the same edits.
        """
        keys = (
            [("flight_features", d) for d in DAYS] + [("weather_features", d) for d in DAYS] + [("training_set", "all")]
        )
        return sorted(
            self.root / "data" / "features" / a / k for a, k in keys
        )  # the demo's assets all live in data/features


def _manifest(d: Path) -> dict | None:
    try:
        return json.loads((d / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


class Bucket:
    """`--store s3`: the feature store's prefix on the soak's own moto_server, edited with boto3 (a
    client independent of the library): partition folder `d` (data/<layer>/<asset>/<key>) maps to
    ``<prefix>/<layer>/<asset>/<key>/``."""

    def __init__(self, endpoint: str, bucket: str, prefix: str) -> None:
        import boto3

        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        self.bucket, self.prefix = bucket, prefix

    def key(self, d: Path, name: str = "") -> str:
        layer, asset, part = d.parts[-3:]
        return "/".join(x for x in (self.prefix, layer, asset, part, name) if x)

    def read(self, d: Path, name: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(d, name))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def write(self, d: Path, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key(d, name), Body=data)

    def delete(self, d: Path, name: str = "") -> None:
        """One object, or (no name) every object of the partition."""
        if name:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(d, name))
            return
        for key in self.keys(self.key(d) + "/"):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def keys(self, prefix: str) -> list[str]:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def ledger(self) -> list[dict]:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/ledger/"
        ):
            out += page.get("Contents", [])
        return out


def manifest_of(s: Soak, d: Path) -> dict | None:
    if s.bucket is None:
        return _manifest(d)
    data = s.bucket.read(d, "manifest.json")
    try:
        return json.loads(data) if data is not None else None
    except ValueError:
        return None


def read_file(s: Soak, d: Path, name: str) -> bytes | None:
    if s.bucket is not None:
        return s.bucket.read(d, name)
    try:
        return (d / name).read_bytes()
    except OSError:
        return None


def write_file(s: Soak, d: Path, name: str, data: bytes) -> None:
    if s.bucket is not None:
        s.bucket.write(d, name, data)
    else:
        (d / name).write_bytes(data)


def remove(s: Soak, d: Path, name: str = "") -> None:
    """Delete one file of a partition, or (no name) the whole partition."""
    if s.bucket is not None:
        s.bucket.delete(d, name)
    elif name:
        (d / name).unlink(missing_ok=True)
    else:
        shutil.rmtree(d, ignore_errors=True)


def _write_parquet(frame, **kw) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd", statistics=False, **kw)
    return buf.getvalue()


def _modified_frame(rel: str, data: bytes, rng: random.Random):
    """The raw frame with one random change: rows dropped, a used value changed, or an unused one."""
    import polars as pl

    frame = pl.read_parquet(io.BytesIO(data))
    n = frame.height
    if n == 0:
        return frame, "empty file left as is"
    row = rng.randrange(n)
    flights = "/flights/" in rel
    how = rng.choice(["drop rows", "change a used value", "change an unused value", "drop one row"])
    if how == "drop rows":
        k = rng.randint(1, 4)
        return frame.head(max(n - k, 0)), f"dropped the last {k} rows"
    if how == "drop one row":
        return frame.filter(pl.int_range(pl.len()) != row), f"dropped row {row}"
    if flights:
        col = rng.choice(["dep_delay", "arr_delay"]) if how == "change a used value" else "air_time"
    else:
        col = (
            rng.choice(["temp", "wind_speed", "visib"])
            if how == "change a used value"
            else rng.choice(["humid", "pressure"])
        )
    delta = float(rng.choice([-30, -7, -1, 1, 2, 45]))
    value = pl.col(col).fill_null(0.0) + delta
    changed = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(value).otherwise(pl.col(col)).cast(frame.schema[col]).alias(col)
    )
    return changed, f"{col} of row {row} {delta:+g}"


def _same_size_bytes(frame, size: int) -> bytes | None:
    """`frame` as valid parquet of exactly `size` bytes (a tighter zstd level, then key-value padding)."""
    for level in (19, 12, 6, None):
        kw = {"compression_level": level} if level else {}
        pad = 0
        for _ in range(8):
            data = _write_parquet(frame, metadata={"soak_pad": "x" * pad}, **kw)
            if len(data) == size:
                return data
            pad += size - len(data)
            if pad < 0:
                break
    return None


def edit_raw(s: Soak, add: bool) -> dict:
    rel = s.rng.choice(s.raw_files())
    s.remember(rel)
    frame, what = _modified_frame(rel, (s.root / rel).read_bytes(), s.rng)
    (s.root / rel).write_bytes(_write_parquet(frame))
    s.remember(rel)
    if add:
        s.dvc_add(rel)
    return {"file": rel, "change": what, "dvc_add": add}


def revert_raw(s: Soak, add: bool) -> dict:
    candidates = []
    for rel in sorted(s.history):
        cur = (s.root / rel).read_bytes()
        if any(v != cur for v in s.history[rel]):
            candidates.append(rel)
    if not candidates:  # nothing edited yet: make an earlier version to come back to
        return {"fallback": edit_raw(s, add)}
    rel = s.rng.choice(candidates)
    cur = (s.root / rel).read_bytes()
    options = [i for i, v in enumerate(s.history[rel]) if v != cur]
    i = s.rng.choice(options)
    (s.root / rel).write_bytes(s.history[rel][i])
    if add:
        s.dvc_add(rel)
    return {"file": rel, "to_version": i, "of": len(s.history[rel]), "original": i == 0, "dvc_add": add}


def same_size_raw(s: Soak) -> dict:
    rel = s.rng.choice(s.raw_files())
    path = s.root / rel
    s.remember(rel)
    old = path.read_bytes()
    st = path.stat()
    for attempt in range(6):
        frame, what = _modified_frame(rel, old, s.rng)
        data = _same_size_bytes(frame, len(old))
        if data is not None and data != old:
            break
    else:
        raise RuntimeError(f"could not make a same-size edit of {rel}")
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    s.remember(rel)
    return {"file": rel, "change": what, "attempts": attempt + 1}


def toggle_params(s: Soak) -> dict:
    """Set one param of params.yaml to another value, remove it (the dg.Config default applies) or
    put it back (under its section, which stays, empty or not)."""
    section, key, values = s.rng.choice(PARAM_VALUES)
    path = s.root / "params.yaml"
    lines = path.read_text().splitlines(keepends=True)
    current, header, at = None, None, None
    for i, line in enumerate(lines):
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.strip()[:-1]
            if current == section and header is None:
                header = i
        if current == section and line.strip().startswith(f"{key}:") and at is None:
            at = i
    if header is None:
        raise RuntimeError(f"params.yaml has no section {section}")
    old = lines[at].split(":", 1)[1].strip() if at is not None else None
    new = s.rng.choice([v for v in values if (None if v is None else str(v)) != old])
    if at is None:
        lines.insert(header + 1, f"  {key}: {new}\n")
    elif new is None:
        del lines[at]
    else:
        lines[at] = f"  {key}: {new}\n"
    return _write_text(
        s,
        path,
        "".join(lines),
        {"param": f"{section}.{key}", "from": old or "(absent)", "to": "(absent)" if new is None else new},
    )


def _write_text(s: Soak, path: Path, text: str, out: dict) -> dict:
    """Write `text`; one time in three with the file's mtime set back to what it was (same size or not)."""
    st = path.stat()
    path.write_text(text)
    if s.rng.random() < 1 / 3:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        out["mtime_restored"] = True
        out["same_size"] = path.stat().st_size == st.st_size
    return out


def toggle_helper(s: Soak) -> dict:
    rel, old, new = s.rng.choice(HELPERS)
    return _toggle(s, s.root / rel, rel, old, new)


def _toggle(s: Soak, path: Path, rel: str, old: str, new: str) -> dict:
    """Replace `old` by `new` in `path`, or (when `new` is there) put `old` back."""
    text = path.read_text()
    if old in text:
        return _write_text(s, path, text.replace(old, new), {"file": rel, "edit": f"{old} -> {new}"})
    if new in text:
        return _write_text(s, path, text.replace(new, old), {"file": rel, "edit": f"{new} -> {old} (revert)"})
    raise RuntimeError(f"{rel}: neither {old!r} nor {new!r} found")


def toggle_constant(s: Soak) -> dict:
    rel, name, line = s.rng.choice(CONSTANTS)
    path = s.root / rel
    lines = path.read_text().splitlines(keepends=True)
    if f"{line}\n" in lines:
        lines.remove(f"{line}\n")
        return _write_text(s, path, "".join(lines), {"file": rel, "edit": f"removed `{line}`"})
    node = next(
        n
        for n in ast.parse("".join(lines)).body
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)
    )
    lines.insert(node.end_lineno, f"{line}\n")
    return _write_text(s, path, "".join(lines), {"file": rel, "edit": f"added `{line}`"})


def _statement_lines(text: str) -> list[tuple[int, int]]:
    """(0-based line, indent) of every line that starts a logical line of code (a safe place for a comment)."""
    out, at_start = [], True
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.NEWLINE, tokenize.NL):
            at_start = True
        elif tok.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT, tokenize.ENCODING):
            continue
        elif at_start and tok.type != tokenize.ENDMARKER:
            out.append((tok.start[0] - 1, tok.start[1]))
            at_start = False
    return out


def _code_only(text: str) -> str:
    """The AST without docstrings: what a comment-, blank-line- or docstring-only edit must not change."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(getattr(body[0], "value", None), ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body[0] = ast.Pass()
    return ast.dump(tree)


def comment_only(s: Soak) -> dict:
    rel = s.rng.choice(CODE_FILES)
    return _comment_edit(s, s.root / rel, rel)


def _comment_edit(s: Soak, path: Path, rel: str) -> dict:
    """A comment, a blank line or a docstring note added to `path`, or one of ours removed."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    ours = [i for i, line in enumerate(lines) if line.strip().startswith("# soak note")]
    how = s.rng.choice(["add comment", "add blank line", "docstring", "remove comment" if ours else "add comment"])
    if how == "remove comment":
        i = s.rng.choice(ours)
        del lines[i]
        detail = f"removed the comment on line {i + 1}"
    elif how == "docstring":
        docs = [
            n.body[0]
            for n in ast.walk(ast.parse(text))
            if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Module))
            and n.body
            and isinstance(n.body[0], ast.Expr)
            and isinstance(getattr(n.body[0], "value", None), ast.Constant)
            and isinstance(n.body[0].value.value, str)
        ]
        doc = s.rng.choice(docs)
        i = doc.lineno - 1
        line = lines[i]
        if " (soak)" in line:
            lines[i] = line.replace(" (soak)", "", 1)
            detail = f"docstring on line {i + 1}: note removed"
        else:
            if doc.lineno == doc.end_lineno:  # one-line docstring: inside its closing quotes
                q = line.rstrip().rsplit(line.rstrip()[-3:], 1)
                lines[i] = f"{q[0]} (soak){line.rstrip()[-3:]}{q[1]}\n"
            else:
                lines[i] = line.rstrip("\n") + " (soak)\n"
            detail = f"docstring on line {i + 1}: note added"
    else:
        at, indent = s.rng.choice(_statement_lines(text))
        s.comments += 1
        lines.insert(at, "\n" if how == "add blank line" else f"{' ' * indent}# soak note {s.comments}\n")
        detail = f"{how} before line {at + 1}"
    new = "".join(lines)
    if _code_only(new) != _code_only(text):
        raise RuntimeError(f"comment-only edit of {rel} changed its code: {detail}")
    return _write_text(s, path, new, {"file": rel, "edit": detail})


def edit_data_file(s: Soak, kind: str) -> dict:
    """One of the files the injected code reads set to another of its versions (DATA_VERSIONS)."""
    rel = s.rng.choice(DATA_FILES[kind])
    path = s.root / rel
    versions = DATA_VERSIONS[rel]
    text = path.read_text()
    at = versions.index(text) if text in versions else None
    to = s.rng.choice([i for i in range(len(versions)) if i != at])
    return _write_text(s, path, versions[to], {"file": rel, "version": f"{at} -> {to}"})


def toggle_env(s: Soak, kind: str) -> dict:
    """One of the kind's variables set, changed or unset (ENV_VALUES); the next steps run with it."""
    name = s.rng.choice(sorted(ENV_VALUES[kind]))
    now = s.env.get(name)
    new = s.rng.choice([v for v in ENV_VALUES[kind][name] if v != now])
    if new is None:
        s.env.pop(name, None)
    else:
        s.env[name] = new
    return {"env": name, "from": now, "to": new}


def _outside_file(s: Soak) -> Path:
    return s.outside / OUTSIDE_PACKAGE / "__init__.py"


def toggle_outside(s: Soak) -> dict:
    old, new = s.rng.choice(OUTSIDE_EDITS)
    return _toggle(s, _outside_file(s), f"<outside>/{OUTSIDE_PACKAGE}/__init__.py", old, new)


def outside_comment_only(s: Soak) -> dict:
    return _comment_edit(s, _outside_file(s), f"<outside>/{OUTSIDE_PACKAGE}/__init__.py")


def toggle_same_output(s: Soak, kind: str) -> dict:
    rel, old, new = s.rng.choice(SAME_OUTPUT_EDITS[kind])
    return _toggle(s, s.root / rel, rel, old, new)


def move_calendar_end(s: Soak) -> dict:
    return _toggle(s, s.root / CALENDAR_FILE, CALENDAR_FILE, *CALENDAR_EDIT)


def _pick_partition(s: Soak) -> tuple[Path, dict | None]:
    d = s.rng.choice(s.partitions())
    return d, manifest_of(s, d)


def delete_output(s: Soak) -> dict:
    d, m = _pick_partition(s)
    how = s.rng.choice(["output file", "partition folder", "manifest only"])
    if m is None:
        return {"partition": str(d.relative_to(s.root)), "skipped": "not committed (an earlier build failed)"}
    if how == "output file":
        remove(s, d, Path(m["output"]).name)
    elif how == "partition folder":
        remove(s, d)
    else:
        remove(s, d, "manifest.json")
    return {"partition": str(d.relative_to(s.root)), "deleted": how}


def truncate_output(s: Soak) -> dict:
    d, m = _pick_partition(s)
    how = s.rng.choice(["half", "empty", "same size, bytes flipped, mtime restored"])
    if s.bucket is not None:  # an object has no mtime to restore: rewritten in place, it gets a new ETag
        data = s.bucket.read(d, Path(m["output"]).name) if m else None
        if not data:
            return {
                "partition": str(d.relative_to(s.root)),
                "skipped": "no output to truncate (an earlier build failed)",
            }
        at = s.rng.randrange(len(data))
        new = (
            data[: len(data) // 2]
            if how == "half"
            else b""
            if how == "empty"
            else data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
        )
        s.bucket.write(d, Path(m["output"]).name, new)
        return {"partition": str(d.relative_to(s.root)), "how": how}
    path = d / Path(m["output"]).name if m else None
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return {"partition": str(d.relative_to(s.root)), "skipped": "no output to truncate (an earlier build failed)"}
    st = path.stat()
    if how == "half":
        os.truncate(path, st.st_size // 2)
    elif how == "empty":
        os.truncate(path, 0)
    else:
        with open(path, "r+b") as f:
            at = s.rng.randrange(st.st_size)
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0xFF]))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return {"partition": str(d.relative_to(s.root)), "how": how}


def edit_manifest(s: Soak) -> dict:
    d, m = _pick_partition(s)
    fields_ = [
        "output_hash",
        "inputs",
        "fingerprint",
        "code_version",
        "params_digest",
        "output_size",
        "output",
        "created_at",
    ]
    f = s.rng.choice(fields_)
    if m is None:
        return {"partition": str(d.relative_to(s.root)), "skipped": "not committed (an earlier build failed)"}
    if f == "inputs":
        dep = s.rng.choice(sorted(m["inputs"]))
        key = s.rng.choice(sorted(m["inputs"][dep]))
        v = m["inputs"][dep][key]
        m["inputs"][dep][key] = v[:-1] + ("0" if v[-1:] != "0" else "1")
        f = f"inputs[{dep}][{key}]"
    elif f == "output_size":
        m[f] = int(m[f]) + 1
    elif f == "output":
        m[f] = "0" * 64 + ".parquet"
    elif f == "created_at":
        m[f] = "2001-01-01T00:00:00Z"  # harmless: no recompute needed
    else:
        v = m[f]
        m[f] = v[:-1] + ("0" if v[-1:] != "0" else "1")
    out = {"partition": str(d.relative_to(s.root)), "field": f}
    if s.bucket is not None:
        s.bucket.write(d, "manifest.json", json.dumps(m, sort_keys=True, indent=1).encode())
        return out
    return _write_text(s, d / "manifest.json", json.dumps(m, sort_keys=True, indent=1), out)


def touch(s: Soak) -> dict:
    targets = [
        *s.raw_files(),
        *CODE_FILES,
        "assets/__init__.py",
        "assets/features/__init__.py",
        "pyproject.toml",
        "data/.skipwise/graph.json",
        "params.yaml",
        "data/raw/flights.dvc",
        "data/raw/weather.dvc",
        "dvc.yaml",
        "skipwise.toml",
        *DATA_VERSIONS,
        CALENDAR_FILE,
        str(_outside_file(s)),
    ]  # the last one absolute: outside the project
    for d in s.partitions() if s.bucket is None else []:  # objects have no mtime to touch
        m = _manifest(d)
        output = Path(m["output"]).name if m else "0-no-output"
        targets += [str((d / "manifest.json").relative_to(s.root)), str((d / output).relative_to(s.root))]
    rel = s.rng.choice(sorted(set(targets)))
    path = s.root / rel
    if not path.exists():
        return {"file": rel, "skipped": "missing"}
    when = max(time.time_ns(), path.stat().st_mtime_ns + 1_000_000_000)
    os.utime(path, ns=(when, when))
    return {"file": rel}


def copy_project(s: Soak) -> dict:
    s.copies += 1
    new = s.base / f"p{s.copies}"
    subprocess.run(["cp", "-a", str(s.root), str(new)], check=True)  # mtimes kept, like a CI cache
    shutil.rmtree(s.root)
    s.root = new
    out: dict = {"to": new.name}
    if s.settle_after_copy:
        time.sleep(s.settle_after_copy)
    if s.rng.random() < 0.5:  # then an edit before any build in the copy (its caches are the original's)
        kind = s.rng.choice([k for k in s.kinds if k != COPY] or [COMMENT])
        out["then"] = {"kind": kind, **APPLY[kind](s)}
    return out


FORGED = "forged output (injected false hit)"


def forge_output(s: Soak) -> dict:
    """Not a random edit: a deliberate false hit, to prove the oracle sees one (--inject-false-hit).

    One flight_features partition's output is replaced by another day's output and its manifest's
    output_hash and output_size are set to match: the manifest stays consistent, so the engine has
    no way to tell, skips it, and the oracle must report it.
    """
    parts = [d for d in s.partitions() if d.parent.name == "flight_features"]
    victim, donor = parts[-1], parts[0]
    m, dm = manifest_of(s, victim), manifest_of(s, donor)
    data = read_file(s, donor, Path(dm["output"]).name)
    if s.bucket is not None:
        # On the bucket an output's name holds its sha256, and the manifest its ETag: the forger
        # writes the bytes under the name they would have and records that object's ETag.
        m["output"] = f"{m['fingerprint']}.{dm['output_hash']}.parquet"
    write_file(s, victim, Path(m["output"]).name, data)
    m["output_hash"], m["output_size"] = dm["output_hash"], len(data)
    if s.bucket is not None:
        m["output_etag"] = s.bucket.client.head_object(
            Bucket=s.bucket.bucket, Key=s.bucket.key(victim, Path(m["output"]).name)
        )["ETag"].strip('"')
    write_file(s, victim, "manifest.json", json.dumps(m, sort_keys=True, indent=1).encode())
    return {"partition": str(victim.relative_to(s.root)), "bytes_of": donor.name}


APPLY = {
    RAW_ADD: lambda s: edit_raw(s, True),
    RAW: lambda s: edit_raw(s, False),
    REVERT_ADD: lambda s: revert_raw(s, True),
    REVERT: lambda s: revert_raw(s, False),
    SAME_SIZE: same_size_raw,
    PARAMS: toggle_params,
    HELPER: toggle_helper,
    CONSTANT: toggle_constant,
    COMMENT: comment_only,
    DELETE: delete_output,
    TRUNCATE: truncate_output,
    MANIFEST: edit_manifest,
    TOUCH: touch,
    COPY: copy_project,
    JSON_BESIDE: lambda s: edit_data_file(s, JSON_BESIDE),
    POLARS_FILE: lambda s: edit_data_file(s, POLARS_FILE),
    PANDAS_ARROW_FILE: lambda s: edit_data_file(s, PANDAS_ARROW_FILE),
    DUCKDB_FILE: lambda s: edit_data_file(s, DUCKDB_FILE),
    ENV_IMPORT: lambda s: toggle_env(s, ENV_IMPORT),
    ENV_RUN: lambda s: toggle_env(s, ENV_RUN),
    ENV_UNUSED: lambda s: toggle_env(s, ENV_UNUSED),
    OUTSIDE: toggle_outside,
    OUTSIDE_COMMENT: outside_comment_only,
    SAME_OUTPUT_BODY: lambda s: toggle_same_output(s, SAME_OUTPUT_BODY),
    SAME_OUTPUT_HELPER: lambda s: toggle_same_output(s, SAME_OUTPUT_HELPER),
    CALENDAR: move_calendar_end,
}


# -- checking a step --------------------------------------------------------------------------------


@dataclass
class StepResult:
    step: int
    kind: str
    op: dict
    seconds: float
    worker_seconds: float
    t_build: float = 0.0
    t_oracle: float = 0.0
    recomputed: int = 0
    false_hits: list[str] = field(default_factory=list)
    wrong_after_run: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stale_unreported: list[str] = field(default_factory=list)
    build_error: str | None = None
    oracle_error: str | None = None
    wasted: int = 0
    wasted_at: list[str] = field(default_factory=list)  # the partitions whose recompute was wasted
    upstream_changed: list[str] = field(
        default_factory=list
    )  # MAY_RECOMPUTE kinds: upstream outputs whose bytes changed
    load: float | None = None  # the 1-minute load average after the step (other processes share the CPUs)

    @property
    def failed(self) -> bool:
        return bool(self.false_hits or self.wrong_after_run or self.missing or self.build_error or self.oracle_error)


def check(
    step: int,
    kind: str,
    op: dict,
    res: dict,
    seconds: float,
    worker_seconds: float,
    prev_clean: bool,
    root: Path | None = None,
    before: dict[str, str | None] | None = None,
    outside: Path | None = None,
) -> StepResult:
    """The verdict of one step. `before`: each partition's manifest output_hash before the edit
    (for MAY_RECOMPUTE kinds; None: unknown, every upstream output counts as changed); `outside`:
    the folder OUTSIDE_PACKAGE must have been imported from."""
    r = StepResult(step, kind, op, seconds, worker_seconds, res.get("t_build", 0.0), res.get("t_oracle", 0.0))
    r.build_error, r.oracle_error = res.get("build_error"), res.get("oracle_error")
    foreign = [
        f for f in res.get("code_from", []) if root is not None and not Path(f).resolve().is_relative_to(root.resolve())
    ]
    if foreign:  # the worker must run the project's own code, never this checkout's
        r.oracle_error = f"the worker ran code from outside the project: {foreign}"
    elif (
        root is not None
        and "code_from" in res
        and not any(Path(f).resolve() == (root / "assets" / "definitions.py").resolve() for f in res["code_from"])
    ):
        r.oracle_error = f"the worker never imported the project's assets/definitions.py: {res['code_from']}"
    if (
        outside is not None
        and res.get("outside_from")
        and not Path(res["outside_from"]).resolve().is_relative_to(outside.resolve())
    ):
        r.oracle_error = f"the worker imported {OUTSIDE_PACKAGE} from {res['outside_from']}, not from {outside}"
    lib = res.get("library_from")
    if root is not None and lib and not Path(lib).resolve().is_relative_to(library_dir()):
        r.oracle_error = f"the worker ran another skipwise than the installed one ({library_dir()}): {lib}"
    actions = {f"{a}/{k}": act for a, k, act, _ in res.get("outcomes", [])}
    r.recomputed = sum(act == "run" for act in actions.values())
    committed = res.get("committed", {})
    for pk, exp in sorted((res.get("expected") or {}).items()):
        c = committed.get(pk)
        act = actions.get(pk)
        if c is None:
            if not r.build_error:
                r.missing.append(pk)
            continue
        if c.get("file") == exp and c.get("manifest") == exp:
            continue
        if act == "skip":
            r.false_hits.append(pk)
        elif act == "run":
            r.wrong_after_run.append(pk)
        else:
            r.stale_unreported.append(pk)  # the build stopped before it: never reported up to date
    plain_copy = kind != COPY or "then" not in op
    ran = sorted(pk for pk, act in actions.items() if act == "run")
    if kind in NO_RECOMPUTE and plain_copy and prev_clean:
        r.wasted_at = ran
    elif kind in MAY_RECOMPUTE and prev_clean:
        after = {pk: c.get("manifest") for pk, c in committed.items()}
        was = before or {}
        r.upstream_changed = sorted(
            pk
            for pk in set(was) | set(after)
            if pk.split("/")[0] in UPSTREAM and (before is None or was.get(pk) != after.get(pk))
        )
        may = MAY_RECOMPUTE[kind] | ({"training_set"} if r.upstream_changed else set())
        r.wasted_at = [pk for pk in ran if pk.split("/")[0] not in may]
    r.wasted = len(r.wasted_at)
    return r


def cause(error: str | None) -> str:
    """The exception line of a traceback, without the temporary folder's name (to group failures)."""
    import re

    if not error:
        return ""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    exc = next(
        (line for line in reversed(lines) if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", line)),
        lines[-1],
    )
    exc = re.sub(r"/\S*/false_hits-[^/\s]+/p\d+/?", "<project>/", exc)
    return re.sub(r"\b(flight_features|weather_features|training_set)\b", "<asset>", exc)[:300]


def reasons_of(res: dict, pks: list[str]) -> dict[str, str]:
    by = {f"{a}/{k}": f"{act}: {why}" for a, k, act, why in res.get("outcomes", [])}
    return {pk: by.get(pk, "not reported") for pk in pks}


# -- the report -------------------------------------------------------------------------------------


def render(results: list[StepResult], meta: dict) -> str:
    rows = []
    seen = [k for k in KINDS if any(r.kind == k for r in results)] + sorted({r.kind for r in results} - set(KINDS))
    for kind in [*seen, "all"]:
        rs = [r for r in results if kind == "all" or r.kind == kind]
        if not rs:
            continue
        secs = [r.seconds for r in rs]
        rows.append(
            "| "
            + " | ".join(
                [
                    kind if kind != "all" else "**all**",
                    str(len(rs)),
                    str(sum(r.recomputed for r in rs)),
                    str(sum(len(r.false_hits) for r in rs)),
                    str(sum(len(r.wrong_after_run) + len(r.missing) for r in rs)),
                    str(sum(bool(r.build_error) for r in rs)),
                    str(sum(bool(r.oracle_error) for r in rs)),
                    str(sum(r.wasted for r in rs))
                    if kind in NO_RECOMPUTE or kind in MAY_RECOMPUTE or kind == "all"
                    else "—",
                    f"{statistics.median(secs):.2f}",
                    f"{min(secs):.2f}",
                ]
            )
            + " |"
        )
    head = (
        "| edit kind | steps | partitions recomputed | false hits | wrong after recompute / missing | failed builds | "
        "oracle errors | wasted recomputes | median s/step | min s/step |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    steal = meta.get("steal")
    loads = [r.load for r in results if r.load is not None]
    lines = [
        f"# False-hit soak{' (partial)' if meta.get('partial') else ''}",
        "",
        f"`{meta['command']}`: {len(results)} of {meta['steps']} steps, seed {meta['seed']}, "
        f"{meta['wall'] / 60:.1f} min; engine source digest {meta['digest']}.",
        "",
        head,
        *rows,
        "",
        (
            f"- CPU steal during the run: {steal:.1f} % of all CPU time"
            if steal is not None
            else "- CPU steal: not measured (no /proc/stat)"
        )
        + (
            f"; 1-minute load average after a step: median {_med(loads)}, max {max(loads):.2f} on {os.cpu_count()} CPUs "
            "(other processes on the machine slow the steps down)"
            if loads
            else ""
        ),
        f"- Per step (edit + one fresh process: build, then oracle): median {_med(r.seconds for r in results)} s; of which "
        f"build {_med(r.t_build for r in results)} s, oracle {_med(r.t_oracle for r in results)} s, "
        f"process {_med(r.worker_seconds for r in results)} s.",
        f"- Oracle checked against from-scratch builds of the same state {meta['scratch_checks']} times: "
        f"{meta['scratch_disagreements']} partitions disagreed"
        + (
            f" ({len(meta['refusals'])} scratch builds failed on the first try, right after the copy, and were retried 3 s later: "
            f"`{meta['refusals'][0]}`)."
            if meta["refusals"]
            else "."
        ),
        f"- cp -a steps followed by an edit before the build: {sum(r.kind == COPY and 'then' in r.op for r in results)}; "
        "wasted recomputes count only plain copies, and only after a clean step.",
        "- Wasted recomputes: every recompute after "
        + "; ".join(k for k in KINDS if k in NO_RECOMPUTE)
        + ". A recompute of "
        "another asset than the one that reads what was edited after "
        + "; ".join(f"{k} ({', '.join(sorted(v))})" for k, v in MAY_RECOMPUTE.items())
        + ", but training_set's when a flight_features or weather_features output's bytes changed in the step. None after other kinds (—).",
        *[
            f"- Wasted after {kind}: " + ", ".join(f"{a} ×{n}" for a, n in sorted(by.items()))
            for kind, by in _wasted_by_asset(results).items()
        ],
        f"- Every step, with the reason of each recomputed partition: `{meta['steps_log']}`.",
        *(
            [
                f"- **The installed library changed during the soak** (engine source digests {', '.join(meta['digests'])} in turn; "
                "each step's is in the steps log): its steps did not all test the same code."
            ]
            if len(meta.get("digests") or ()) > 1
            else []
        ),
        f"- Cost ledger: {'pruned to the newest ' + str(meta['ledger_keep']) + ' files after each step' if meta['ledger_keep'] else 'kept whole (the budget check reads all of it on every build that computes, so steps slow down as it grows)'}.",
        "- A false hit: a partition the build skipped whose committed bytes or manifest hash differ from the oracle's "
        "(every partition recomputed from the raw files, params.yaml and the code, with no engine state).",
    ]
    failures = [r for r in results if r.failed]
    if failures:
        lines += ["", f"## Failures ({len(failures)} steps)", ""]
        causes: dict[str, list[int]] = {}
        for r in failures:
            for c in (cause(r.build_error), cause(r.oracle_error)):
                if c:
                    causes.setdefault(c, []).append(r.step)
        for c, at in sorted(causes.items(), key=lambda kv: -len(kv[1])):
            lines.append(
                f"- {len(at)} steps ({', '.join(map(str, at[:12]))}{', ...' if len(at) > 12 else ''}) failed with: `{c}`"
            )
        lines.append("")
        for r in failures[:20]:
            lines.append(
                f"- step {r.step} ({r.kind}): false hits {r.false_hits}, wrong after recompute {r.wrong_after_run}, "
                f"missing {r.missing}, build failed: {bool(r.build_error)}, oracle failed: {bool(r.oracle_error)}; "
                f"op {json.dumps(r.op)}; previous step {results[r.step - 2].kind if r.step > 1 else '—'}"
            )
        first = failures[0]
        lines += ["", f"Replay the first: `{meta['replay'](first.step)}`"]
    else:
        lines += ["", "No false hit, no unexpected failure."]
    return "\n".join(lines) + "\n"


def _wasted_by_asset(results: list[StepResult]) -> dict[str, dict[str, int]]:
    """kind -> asset -> how many of its partitions were recomputed for nothing."""
    out: dict[str, dict[str, int]] = {}
    for r in results:
        for pk in r.wasted_at:
            by = out.setdefault(r.kind, {})
            by[pk.split("/")[0]] = by.get(pk.split("/")[0], 0) + 1
    return out


def _med(values) -> str:
    v = list(values)
    return f"{statistics.median(v):.2f}" if v else "—"


def load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def library_dir() -> Path:
    """The folder of the installed library every copy runs (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("skipwise")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("skipwise is not installed in this environment (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def code_digest(folder: Path) -> str:
    """A digest of the library's source files (what the report calls the engine source digest)."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


# -- the soak ---------------------------------------------------------------------------------------


def scratch_check(s: Soak, expected: dict[str, str], tag: str, refusals: list[str]) -> int:
    """Build the same state from scratch in another folder; count partitions where it and the oracle disagree.

    A scratch build that fails is retried once, 3 s later (a fresh copy's files all have new change
    times, which an engine may distrust for a moment); the first failure is kept in `refusals`.
    """
    scratch = s.base / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    copy_without_outputs(s.root, scratch)
    # With --store s3, the scratch build gets an empty prefix of its own in the bucket.
    env = s.step_env(
        scratch,
        {"SKIPWISE_STORE": f"s3://{s.bucket.bucket}/scratch-{time.time_ns()}"} if s.bucket is not None else None,
    )
    res, _ = run_worker(scratch, f"scratch-{tag}", s.base / "scratch.json", mode="build", env=env)
    if res.get("build_error"):
        refusals.append(cause(res["build_error"]))
        say(f"scratch build failed at {tag}, retrying in 3 s: {cause(res['build_error'])}")
        time.sleep(3)
        res, _ = run_worker(scratch, f"scratch-{tag}-retry", s.base / "scratch.json", mode="build", env=env)
    shutil.rmtree(scratch, ignore_errors=True)
    if res.get("build_error"):
        say(f"scratch build failed at {tag}:\n{res['build_error']}")
        return len(expected) or 1
    got = {pk: c.get("file") for pk, c in res.get("committed", {}).items()}
    bad = sorted(pk for pk in set(expected) | set(got) if expected.get(pk) != got.get(pk))
    if bad:
        say(f"ORACLE DISAGREES with a scratch build at {tag}: {bad}")
    return len(bad)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.false_hits", description=__doc__.split("\n\n")[1])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "false_hits.md")
    ap.add_argument(
        "--scratch-every",
        type=int,
        default=50,
        help="check the oracle against a scratch build every N steps (0: only at the end)",
    )
    ap.add_argument(
        "--replay", type=int, metavar="STEP", help="replay the seed's edits up to STEP, print each, keep the folder"
    )
    ap.add_argument("--stop-on-failure", action="store_true", help="stop at the first failing step (keeps the folder)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary project")
    ap.add_argument("--tmp", type=Path, default=None, help="where to make the temporary project")
    ap.add_argument(
        "--settle-after-copy",
        type=float,
        default=0.0,
        metavar="S",
        help="wait S seconds after a cp -a before going on (default 0: build at once, as a CI job would)",
    )
    ap.add_argument(
        "--ledger-keep",
        type=int,
        default=0,
        metavar="N",
        help="after each step keep only the newest N cost-ledger files (default 0: keep all). The engine's "
        "budget check reads the whole ledger on every build that computes, so without this a long "
        "soak slows down step by step",
    )
    ap.add_argument(
        "--fresh-process",
        action="store_true",
        help="run each step in a plain new interpreter instead of a child forked by a server that has "
        "imported Dagster and the other third-party libraries once (slower by the imports: seconds a step)",
    )
    ap.add_argument("--inject-false-hit", type=int, metavar="STEP", help=argparse.SUPPRESS)  # self-test of the oracle
    ap.add_argument(
        "--store",
        choices=("local", "s3"),
        default="local",
        help="where the feature store lives: data/ (default), or a bucket on a moto_server started for the soak",
    )
    ap.add_argument(
        "--kind",
        action="append",
        metavar="TEXT",
        help="draw only the edit kinds whose name contains TEXT (case-insensitive; repeatable); default all: "
        + "; ".join(KINDS),
    )
    ap.add_argument(
        "--src",
        type=Path,
        default=REPO,
        help="the project to copy (assets, params.yaml, pyproject.toml...; never its pipelines/); default this one",
    )
    args = ap.parse_args(argv)
    global SERVER
    s3 = None
    saved_env = dict(os.environ)
    if args.store == "s3":  # before the step server starts: every step inherits the store's environment
        from bench.s3server import FAKE_CREDENTIALS, S3Server

        s3_logs = Path(tempfile.mkdtemp(prefix="false_hits-s3-", dir=args.tmp))
        s3 = S3Server.start(s3_logs)
        s3.make_bucket(SOAK_BUCKET, "us-east-1")
        os.environ.update(
            {
                **FAKE_CREDENTIALS,
                "AWS_ENDPOINT_URL": s3.endpoint,
                "SKIPWISE_STORE": f"s3://{SOAK_BUCKET}/{SOAK_PREFIX}",
                "SKIPWISE_STORE_REGION": "us-east-1",
                "SKIPWISE_REGION": "us-east-1",
            }
        )
    SERVER = None if args.fresh_process else StepServer()
    try:
        return _soak(args, argv)
    finally:
        if SERVER is not None:
            SERVER.close()
            SERVER = None
        if s3 is not None:
            s3.stop()
            shutil.rmtree(s3_logs, ignore_errors=True)
            os.environ.clear()
            os.environ.update(saved_env)


def _soak(args: argparse.Namespace, argv: list[str] | None) -> int:
    steps = args.replay if args.replay else args.steps
    keep = args.keep or bool(args.replay)
    kinds = select_kinds(args.kind)
    command = "python -m bench.false_hits " + " ".join(argv if argv is not None else sys.argv[1:])

    t_start = time.perf_counter()
    stat0 = proc_stat()
    base = Path(tempfile.mkdtemp(prefix="false_hits-", dir=args.tmp))
    say(f"false_hits: seed {args.seed}, {steps} steps, project in {base}")
    s = Soak(
        base, make_project(base, args.src.resolve()), random.Random(args.seed), args.settle_after_copy, kinds=kinds
    )
    if args.store == "s3":
        s.bucket = Bucket(os.environ["AWS_ENDPOINT_URL"], SOAK_BUCKET, SOAK_PREFIX)
    # The library is the installed one, read afresh by every step: an edit of it during the soak
    # (someone working in this checkout) would mix versions, so its digest is taken at every step.
    digest = code_digest(library_dir())
    digests = [digest]
    res, wall = run_worker(s.root, 0, base / "result.json", env=s.step_env())
    if res.get("build_error") or res.get("oracle_error"):
        say(f"the first build failed:\n{res.get('build_error') or res.get('oracle_error')}")
        return 1
    first = check(0, "first build", {}, res, wall, wall, False, s.root, outside=s.outside)
    if first.failed:
        say(f"the oracle disagrees with the first build: {first.wrong_after_run + first.missing}")
        return 1
    say(
        f"false_hits: first build {wall:.2f} s ({res.get('t_build', 0):.2f} s build, {res.get('t_oracle', 0):.2f} s oracle)"
    )
    results: list[StepResult] = []
    scratch_checks = scratch_bad = 0
    refusals: list[str] = []
    prev_clean = True
    expected = res.get("expected") or {}

    def meta(partial: bool) -> dict:
        stat = proc_stat()
        return {
            "command": command,
            "steps": steps,
            "seed": args.seed,
            "wall": time.perf_counter() - t_start,
            "digest": digest,
            "steal": steal_percent(stat0, stat) if stat0 and stat else None,
            "partial": partial,
            "scratch_checks": scratch_checks,
            "scratch_disagreements": scratch_bad,
            "replay": replay_cmd,
            "refusals": refusals,
            "steps_log": steps_log,
            "ledger_keep": args.ledger_keep,
            "digests": digests,
        }

    def replay_cmd(step: int) -> str:
        extra = f" --inject-false-hit {args.inject_false_hit}" if args.inject_false_hit else ""
        extra += f" --src {args.src}" if args.src.resolve() != REPO else ""
        extra += f" --settle-after-copy {args.settle_after_copy:g}" if args.settle_after_copy else ""
        extra += f" --ledger-keep {args.ledger_keep}" if args.ledger_keep else ""
        extra += " --fresh-process" if args.fresh_process else ""
        extra += " --store s3" if args.store == "s3" else ""
        extra += "".join(f" --kind '{k}'" for k in args.kind or ())
        return f".venv/bin/python -m bench.false_hits --seed {args.seed} --replay {step}{extra}"

    steps_log = args.out.with_suffix(".steps.jsonl")
    steps_log.parent.mkdir(parents=True, exist_ok=True)
    steps_log.write_text("")

    stopped = False
    for step in range(1, steps + 1):
        kind = s.rng.choice(s.kinds)
        if step == args.inject_false_hit:
            kind = FORGED
        # What the partitions held before the edit: MAY_RECOMPUTE kinds allow training_set only if an upstream output changed.
        before = (
            {f"{d.parent.name}/{d.name}": (manifest_of(s, d) or {}).get("output_hash") for d in s.partitions()}
            if kind in MAY_RECOMPUTE
            else None
        )
        t = time.perf_counter()
        try:
            op = forge_output(s) if kind == FORGED else APPLY[kind](s)
        except Exception as exc:  # an edit that could not be made is a bug of the soak: say so and stop
            say(f"step {step}: could not apply {kind}: {type(exc).__name__}: {exc} (project kept in {s.root})")
            _write(args.out, render(results, meta(partial=True)))
            raise
        res, wall = run_worker(s.root, step, base / "result.json", env=s.step_env())
        r = check(step, kind, op, res, time.perf_counter() - t, wall, prev_clean, s.root, before, s.outside)
        r.load = load_average()
        results.append(r)
        library = code_digest(library_dir())
        if library != digests[-1]:
            digests.append(library)
            say(f"        the installed library changed during this step (engine source digest now {library})")
        with open(steps_log, "a") as f:  # every step, with the reasons of what ran: enough to diagnose after the fact
            f.write(
                json.dumps(
                    {
                        "step": step,
                        "kind": kind,
                        "op": op,
                        "seconds": round(r.seconds, 3),
                        "t_build": round(r.t_build, 3),
                        "t_oracle": round(r.t_oracle, 3),
                        "ran": [[a, k, why] for a, k, act, why in res.get("outcomes", []) if act == "run"],
                        "false_hits": r.false_hits,
                        "wrong_after_run": r.wrong_after_run,
                        "missing": r.missing,
                        "wasted": r.wasted_at,
                        "upstream_changed": r.upstream_changed,
                        "env": dict(s.env),
                        "error": cause(r.build_error) or cause(r.oracle_error),
                        "warnings": res.get("warnings", []),
                        "library": library,
                    }
                )
                + "\n"
            )
        if res.get("expected"):
            expected = res["expected"]
        flag = "FAIL" if r.failed else ("wasted" if r.wasted else "ok")
        say(
            f"[{step:4}/{steps}] {flag:6} {r.seconds:5.2f}s ran {r.recomputed:2}  fh {len(r.false_hits)}  "
            f"{kind}: {json.dumps(op)[:160]}"
        )
        if r.wasted:
            say(
                f"        wasted: {[(a, k, why) for a, k, act, why in res.get('outcomes', []) if act == 'run' and f'{a}/{k}' in r.wasted_at]}"
            )
        if args.replay:
            say(
                f"        op: {json.dumps(op)}\n        outcomes: {[(a, k, act) for a, k, act, _ in res.get('outcomes', []) if act == 'run']}"
            )
        if r.failed:
            say(f"step {step} FAILED (seed {args.seed}; replay: {replay_cmd(step)})")
            for label, pks in (
                ("false hits", r.false_hits),
                ("wrong after recompute", r.wrong_after_run),
                ("missing", r.missing),
            ):
                if pks:
                    say(f"  {label}: {json.dumps(reasons_of(res, pks))}")
            for label, err in (("build", r.build_error), ("oracle", r.oracle_error)):
                if err:
                    say(f"  {label} error:\n{err[-2500:]}")
            if args.stop_on_failure or (args.replay and step == steps):  # the failing state stays as it is, for a look
                keep, stopped = True, True
                break
            for pk in r.false_hits + r.wrong_after_run:  # repair, so later steps test afresh (a replay does the same)
                for d in [d for d in s.partitions() if f"{d.parent.name}/{d.name}" == pk]:
                    remove(s, d)
        prev_clean = not r.failed
        if args.ledger_keep:
            prune_ledger(s.root, args.ledger_keep) if s.bucket is None else prune_bucket_ledger(
                s.bucket, args.ledger_keep
            )
        if args.scratch_every and step % args.scratch_every == 0 and step != steps and not r.build_error:
            scratch_checks += 1
            scratch_bad += scratch_check(s, expected, f"step {step}", refusals)
            _write(args.out, render(results, meta(partial=True)))
    if not stopped and expected:
        scratch_checks += 1
        scratch_bad += scratch_check(s, expected, "the end", refusals)
    text = render(results, meta(partial=stopped))
    _write(args.out, text)
    print(text)
    if keep:
        env = " ".join(f"{k}={v}" for k, v in sorted(s.env.items()))
        say(
            f"false_hits: project kept in {s.root}; rerun its step with:\n  cd {s.root} && {env + ' ' if env else ''}"
            f"PYTHONPATH={s.root}{os.pathsep}{s.outside} {sys.executable} -P {WORKER} /tmp/result.json replay {FIRST} {LAST}"
        )
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if any(r.failed for r in results) or scratch_bad else 0


def select_kinds(patterns: list[str] | None) -> list[str]:
    """The kinds whose names contain one of `patterns` (case-insensitive), in KINDS' order; all without."""
    if not patterns:
        return list(KINDS)
    for p in patterns:
        if not any(p.lower() in k.lower() for k in KINDS):
            raise SystemExit(f"--kind {p!r} matches no edit kind: {KINDS}")
    return [k for k in KINDS if any(p.lower() in k.lower() for p in patterns)]


def prune_bucket_ledger(bucket: Bucket, keep: int) -> int:
    """The same on the bucket: all but the newest `keep` ledger objects go (by LastModified)."""
    objs = sorted(bucket.ledger(), key=lambda o: (o["LastModified"], o["Key"]))
    for o in objs[:-keep] if keep else objs:
        bucket.client.delete_object(Bucket=bucket.bucket, Key=o["Key"])
    return max(0, len(objs) - keep)


def prune_ledger(root: Path, keep: int) -> int:
    """Delete all but the newest `keep` ledger files (oldest first, by mtime); returns how many went."""
    files = sorted((root / "data" / "ledger").glob("*/*.jsonl"), key=lambda p: (p.stat().st_mtime_ns, str(p)))
    for f in files[:-keep] if len(files) > keep else []:
        f.unlink(missing_ok=True)
    return max(len(files) - keep, 0)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
