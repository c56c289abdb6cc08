"""The Dagster UI and the HTML cost report in a real browser: Chromium driven by Playwright, against
the real webserver (`skipwise ui`) over a small project materialized by the real `skipwise`.

Needs /usr/bin/chromium (Debian's `chromium` package) and the `playwright` package; without them
the tests skip, except under CI ($CI set), where they fail. Screenshots are saved under
test-artifacts/browser/ (or $SKIPWISE_TEST_ARTIFACTS).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BIN, DVC, REPO, copy_project, run

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = os.environ.get("SKIPWISE_CHROMIUM", "/usr/bin/chromium")
# The newest days of the demo's partitioning: the asset page plots the newest 120 partitions.
DAYS = "2013-12-18...2013-12-31"
PLOTTED = "2013-12-25...2013-12-31"
ASSETS = "flight_features,weather_features"


def _need_browser():
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if missing:
        reason = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI installs them: .ci/run)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    out = Path(os.environ.get("SKIPWISE_TEST_ARTIFACTS") or REPO / "test-artifacts") / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui_project(tmp_path_factory):
    """A copy of the project over the last days of 2013 (DVC-versioned), its features computed by
    `skipwise materialize` twice (the second run has hits in its span), and the real webserver over it."""
    _need_browser()
    root = copy_project(tmp_path_factory.mktemp("ui") / "proj")
    run([sys.executable, "-m", "assets.ingest", "--root", str(root), "--days", DAYS], cwd=REPO)
    for cmd in (
        ["git", "init", "-q"],
        [DVC, "init", "-q"],
        [DVC, "config", "core.analytics", "false"],
        [DVC, "add", "-q", "data/raw/flights", "data/raw/weather"],
    ):
        run(cmd, cwd=root)
    home = root / ".dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"PYTHONPATH": str(root), "DAGSTER_HOME": str(home)}
    run(
        [str(BIN / "skipwise"), "materialize", "--select", ASSETS, "--partition", "2013-12-26...2013-12-30"],
        cwd=root,
        env=env,
    )
    run([str(BIN / "skipwise"), "materialize", "--select", ASSETS, "--partition", PLOTTED], cwd=root, env=env)
    port = _free_port()
    log = open(root / "ui.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "skipwise"), "ui", "--no-daemon", "-p", str(port)],
        cwd=root,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/server_info", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the webserver did not start:\n" + (root / "ui.log").read_text()[-3000:])
                time.sleep(0.5)
        yield root, url
    finally:
        from skipwise.adapters.dagster.ui import stop

        stop(proc, timeout=30)
        log.close()


def _graphql(url: str, query: str) -> dict:
    req = urllib.request.Request(
        url + "/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(req, timeout=60).read())["data"]


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


def _dismiss_welcome(page) -> None:
    """Dagster shows a one-time "Join the Dagster community" dialog on a first visit, a moment after
    the page loads (seconds later on a loaded machine): whenever it shows, it is skipped before the
    next action, instead of blocking every click behind its backdrop."""
    page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())


def _painted(chart, least: int, seconds: float = 60) -> int:
    """The pixels of the chart's line and points (Dagster's blue-violet) on its canvas, once there
    are more than `least` of them or `seconds` have passed (a loaded machine draws slowly)."""
    deadline = time.monotonic() + seconds
    while True:
        n = chart.locator("canvas").first.evaluate(
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
                      for (let i = 0; i < d.length; i += 4) { const [r, g, b, a] = [d[i], d[i+1], d[i+2], d[i+3]];
                        if (a > 0 && b > 150 && r < 140 && g < 120) n++; } return n; }"""
        )
        if n > least or time.monotonic() > deadline:
            return n
        chart.page.wait_for_timeout(500)


def test_the_asset_page_plots_cost_by_partition(ui_project, browser, artifacts):
    root, url = ui_project
    keys = _graphql(
        url,
        '{ assetNodeOrError(assetKey: {path: ["flight_features"]}) { ... on AssetNode { '
        "partitionKeyConnection(limit: 120, ascending: false) { results } } } }",
    )
    newest = keys["assetNodeOrError"]["partitionKeyConnection"]["results"]
    assert newest[0] == "2013-12-31" and newest[-1] == "2013-09-03"  # from the partitioning's end, not from today

    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    asked: list[dict] = []

    def on_response(response):
        if "op=AssetPartitionEventsQuery" in response.url:
            asked.append(response.json())

    page.on("response", on_response)
    _dismiss_welcome(page)
    page.goto(f"{url}/assets/flight_features")
    page.get_by_text("Plots", exact=True).click(timeout=60000)
    page.get_by_role("button", name="Partitions").first.click()
    chart = page.locator("div", has=page.get_by_text("cost/usd", exact=True)).filter(has=page.locator("canvas")).last
    chart.wait_for(state="visible", timeout=60000)
    painted = _painted(chart, least=50)  # the line is animated in: waited for, not slept for
    page.screenshot(path=str(artifacts / "flight_features_plots.png"), full_page=True)
    chart.screenshot(path=str(artifacts / "flight_features_cost_usd.png"))

    # What the page asked for: the newest 120 partitions, and it got the computed ones with their cost.
    assert asked, "the page never asked for events by partition"
    events = [e for e in asked[-1]["data"]["assetNodeOrError"]["latestMaterializationByPartition"] if e]
    assert sorted(e["partition"] for e in events) == [f"2013-12-{d}" for d in range(25, 32)]
    usd = {e["partition"]: next(m for m in e["metadataEntries"] if m["label"] == "cost/usd") for e in events}
    assert all(m.get("floatValue", 0) > 0 for m in usd.values())

    # The chart is drawn (on a canvas): the line's pixels are there, not only the grid.
    assert "Asset plots are automatically generated" not in page.inner_text("body")
    assert painted > 50, painted  # the line and points (Dagster's blue-violet), not only the grid

    # Readable text beside the numbers, and the step's summary of what the cache saved.
    page.get_by_text("Table", exact=True).click()
    page.get_by_text("cost/summary").first.wait_for(state="visible", timeout=60000)
    table = page.inner_text("body")
    assert "cost/summary" in table and " s wall" in table
    page.screenshot(path=str(artifacts / "flight_features_table.png"), full_page=True)
    page.close()


def test_the_html_report_in_the_browser(ui_project, browser, artifacts):
    root, _ = ui_project
    report = root / "report.html"
    run([str(BIN / "skipwise"), "cost", "--html", str(report)], cwd=root, env={"PYTHONPATH": str(root)})
    page = browser.new_page(viewport={"width": 1200, "height": 1600})
    page.goto(report.as_uri())
    page.screenshot(path=str(artifacts / "cost_report.png"), full_page=True)
    text = page.inner_text("body")
    assert "Spend by data day" in text and "Spend by run day" in text
    assert "2013-12-31" in text and "2026-" in text  # data days and run days, with their year
    assert re.search(r"\$0\.0000[1-9]", text)  # small amounts keep their digits
    ticks = page.locator("svg .tick").count()
    assert ticks >= 6, ticks  # axes with ticks, not only the maximum
    assert page.locator("svg .overhead").count() >= 1  # the processes' overhead, its own series
    page.close()
