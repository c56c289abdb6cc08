"""The `skipwise` command's contract, by subprocess on a real project: exit codes, the shape of
--json, a closed pipe, a command run from a subfolder, tracebacks only on request, progress bars
only on a terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.conftest import BIN, run

pytestmark = pytest.mark.integration

RANGE = "2013-01-01...2013-01-04"
FEATURES = "flight_features,weather_features"


def env_for(root: Path, **extra: str) -> dict:
    return {"PYTHONPATH": str(root), "DAGSTER_HOME": str(root / ".dagster"), **extra}


def sw(root: Path, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return run([str(BIN / "skipwise"), *args], cwd=cwd or root, env=env_for(root, **env), check=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory, raw_days) -> Path:
    """A project whose two feature assets are materialized over RANGE (one real run)."""
    import shutil

    from tests.conftest import DVC, copy_project

    root = copy_project(tmp_path_factory.mktemp("cli") / "proj")
    shutil.copytree(raw_days, root / "data" / "raw")
    for cmd in (
        ["git", "init", "-q"],
        [DVC, "init", "-q"],
        [DVC, "config", "core.analytics", "false"],
        [DVC, "add", "-q", "data/raw/flights", "data/raw/weather"],
    ):
        run(cmd, cwd=root)
    before = sw(root, "status", "--check", "--select", FEATURES, "--partition", RANGE)
    assert before.returncode == 3 and "not up to date" in before.stderr, before.stderr
    p = sw(root, "materialize", "--select", FEATURES, "--partition", RANGE, "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["ok"] is True and out["computed"] == {"flight_features": 4, "weather_features": 4}
    assert out["cost"]["computed"] == 8 and out["cost"]["usd"] > 0 and out["error"] is None
    assert "\x1b[" not in p.stderr and "%|" not in p.stderr  # no progress bar into a pipe
    return root


def test_exit_codes_are_distinct_and_documented(built):
    help_text = sw(built, "--help").stdout
    for line in ("0  ok", "1  failure", "2  usage or configuration error", "3  a gate said no", "SKIPWISE_DEBUG"):
        assert line in help_text
    ok = sw(built, "status", "--check", "--select", FEATURES, "--partition", RANGE)
    assert ok.returncode == 0, ok.stderr
    usage = sw(built, "plan", "--partition", "2013-01-")  # not a key: a usage error, exit 2
    assert usage.returncode == 2 and usage.stderr.startswith("Error: ") and "Traceback" not in usage.stderr
    assert sw(built, "plan", "--bogus").returncode == 2  # argparse's own
    bad = built / "params.yaml"
    text = bad.read_text()
    try:
        bad.write_text(text + "\nno_such_asset:\n  x: 1\n")
        config = sw(built, "status")
        assert config.returncode == 2 and "params.yaml" in config.stderr and "Traceback" not in config.stderr
    finally:
        bad.write_text(text)
    stale = sw(built, "status", "--check", "--select", "flight_features")  # days past RANGE are missing
    assert stale.returncode == 3
    gate = sw(built, "plan", "--select", "flight_features", "--partition", "2013-01-05...2013-01-08", "--max-usd", "0")
    assert gate.returncode == 3


def test_json_shapes(built):
    plan = json.loads(sw(built, "plan", "--select", FEATURES, "--partition", RANGE, "--json", "--all").stdout)
    assert {"run", "skip", "blocked", "projected_usd", "warnings", "partitions"} <= set(plan)
    assert plan["run"] == 0 and plan["skip"] == 8
    assert set(plan["partitions"][0]) == {"asset", "partition", "action", "reason", "fingerprint"}
    status = json.loads(sw(built, "status", "--select", FEATURES, "--partition", RANGE, "--json").stdout)
    assert status["up_to_date"] is True and len(status["partitions"]) == 8
    rows = {r["asset"]: r for r in status["assets"]}
    assert rows["flight_features"]["up_to_date"] == 4 and rows["flight_features"]["computed"] == 4
    assert rows["total"]["partitions"] == 8 and rows["total"]["usd"] > 0
    cost = json.loads(sw(built, "cost", "--json").stdout)
    assert isinstance(cost, list) and {r["asset"] for r in cost} >= {"flight_features", "weather_features"}
    assert all(isinstance(r["usd"], float) for r in cost)


def test_status_table_says_computed_skipped_and_dollars(built):
    text = sw(built, "status", "--select", FEATURES, "--partition", RANGE).stdout
    header = next(line for line in text.splitlines() if line.startswith("asset"))
    assert header.split() == [
        "asset",
        "partitions",
        "up_to_date",
        "stale",
        "missing",
        "blocked",
        "computed",
        "skipped",
        "usd",
        "usd_avoided",
    ]
    flights = next(line for line in text.splitlines() if line.startswith("flight_features")).split()
    assert flights[1:4] == ["4", "4", "0"] and flights[8].startswith("$")


def test_commands_find_the_project_from_a_subfolder(built):
    sub = built / "assets" / "features"
    cost = sw(built, "cost", cwd=sub)
    assert cost.returncode == 0 and "flight_features" in cost.stdout and "no cost records" not in cost.stdout
    status = sw(
        built, "status", "--select", "flight_features", "--partition", RANGE, "--json", cwd=built / "data" / "raw"
    )
    assert json.loads(status.stdout)["up_to_date"] is True


def test_a_closed_pipe_ends_quietly(built):
    p = run(
        ["bash", "-c", f"set -o pipefail; {BIN / 'skipwise'} cost --by partition | true"],
        cwd=built,
        env=env_for(built),
        check=False,
    )
    assert p.returncode == 0 and p.stderr == "", p.stderr
    # The reader goes away before anything is written (the command takes a moment to load).
    proc = subprocess.Popen(
        [str(BIN / "skipwise"), "cost", "--by", "partition"],
        cwd=built,
        env={**os.environ, **env_for(built)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"Broken pipe" not in err and b"Error" not in err, err


def test_an_unexpected_error_is_one_line_unless_debugging(built):
    blocker = built / "blocker"
    blocker.write_text("a file, not a folder")
    quiet = sw(built, "cost", "--html", str(blocker / "report.html"))
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert [
        line for line in quiet.stderr.splitlines() if line.startswith("Error:")
    ] and "SKIPWISE_DEBUG=1" in quiet.stderr
    loud = sw(built, "cost", "--html", str(blocker / "report.html"), SKIPWISE_DEBUG="1")
    assert loud.returncode == 1 and "Traceback" in loud.stderr


def _in_terminal(argv: list[str], cwd: Path, env: dict, timeout: float = 300) -> tuple[int, str]:
    """Run `argv` with stdout and stderr on a pseudo-terminal; its exit code and everything it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal has a size
    proc = subprocess.Popen(
        argv, cwd=cwd, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closed: the command exited
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(), b"".join(chunks).decode(errors="replace")


def test_progress_bars_on_a_terminal(built):
    code, drawn = _in_terminal(
        [str(BIN / "skipwise"), "materialize", "--select", "flight_features", "--partition", "2013-01-05...2013-01-06"],
        built,
        env_for(built),
    )
    assert code == 0, drawn[-3000:]
    assert "materialize" in drawn and "2/2" in drawn and "partition" in drawn, drawn[-3000:]
    code, drawn = _in_terminal(
        [
            sys.executable,
            "-m",
            "assets.ingest",
            "--root",
            str(built / "tmp_ingest"),
            "--days",
            "2013-01-01...2013-01-03",
        ],
        Path(__file__).resolve().parents[2],
        {},
    )
    assert code == 0 and "ingest flights" in drawn and "3/3" in drawn, drawn[-3000:]
