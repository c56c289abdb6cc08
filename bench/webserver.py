"""skipwise's assets launched from Dagster's UI: `dagster-webserver` over a workspace, and runs
launched through its GraphQL endpoint the way the UI's launch dialog does.

For assets with a single-run backfill policy, the dialog's "pass partition range to single run"
launches one run (`launchRun`) of the selected assets with the tags
`dagster/asset_partition_range_start` and `..._end`, no daemon involved. The webserver hands the
run to the instance's run coordinator and run launcher: the default launcher has the code server
start a new `dagster api execute_run` process, whose multiprocess executor runs each step in a
child process of its own. Dagster's default coordinator queues the run for `dagster-daemon`
instead; the workspaces set `DefaultRunCoordinator` (see `bench.workspace`), so the run is handed
to the launcher at once and the webserver alone is measured.

    with Webserver(ws, log) as ui:      # started, code location loaded; stopped at the end
        m = ui_launch(ws, ui)           # one run over ws.first...ws.last, launch to finished
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.systems import Measured, ledger_files, ledger_since
from bench.workspace import BIN, Workspace

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
POLL_SECONDS = 0.1

LOCATIONS = """
query { workspaceOrError { __typename
  ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } }
  ... on PythonError { message } } }
"""
ASSET_NODES = """
query($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) {
  assetKey { path } jobNames repository { name location { name } } } }
"""
RELOAD = """
mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename
  ... on WorkspaceLocationEntry { loadStatus } ... on Error { message } } }
"""
LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }
"""
RUN = """
query($id: ID!) { runOrError(runId: $id) { __typename
  ... on Run { status startTime endTime } ... on Error { message } } }
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def code_digest(ws: Workspace) -> str:
    """A digest of the project's Python files: when it moves, the webserver's loaded code is stale."""
    h = hashlib.sha256()
    for path in sorted((ws.root / ws.package).rglob("*.py")):
        h.update(path.relative_to(ws.root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class Webserver:
    """`dagster-webserver -m <definitions>` in the workspace (its DAGSTER_HOME, the frozen library on
    PYTHONPATH), on a free port of 127.0.0.1; ready once its code location has loaded."""

    def __init__(self, ws: Workspace, log: Path, timeout: float = 300.0) -> None:
        self.ws, self.log = ws, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.proc: subprocess.Popen | None = None
        self.loaded_code = ""
        self.reloads = 0
        t0 = time.perf_counter()
        self._start()
        try:
            self._wait_loaded(timeout)
        except BaseException:
            self.stop()
            raise
        #: seconds from the command's start until its code location answered as loaded
        self.start_seconds = time.perf_counter() - t0
        self.location, self.repository, self.job = self._target()

    def _start(self) -> None:
        self.loaded_code = code_digest(self.ws)
        cmd = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port), "-m", self.ws.defs]
        with open(self.log, "ab") as out:
            # A session of its own: the code server and run processes it starts can be ended with it.
            self.proc = subprocess.Popen(
                cmd, cwd=self.ws.root, env=self.ws.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def query(self, text: str, variables: dict | None = None, timeout: float = 60.0) -> dict:
        """POST a GraphQL document; its `data`, or RuntimeError with the errors."""
        body = json.dumps({"query": text, "variables": variables or {}}).encode()
        req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc = json.loads(resp.read())
        if doc.get("errors"):
            raise RuntimeError(f"GraphQL errors from {self.url}: {doc['errors']}")
        return doc["data"]

    def _wait_loaded(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited with {self.proc.returncode}; see {self.log}")
            try:
                entries = self.query(LOCATIONS, timeout=10)["workspaceOrError"].get("locationEntries") or []
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                entries = []  # not listening yet
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                if errors:
                    raise RuntimeError(f"the code location did not load: {errors[0]['locationOrLoadError']['message']}")
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"dagster-webserver did not load its code location in {timeout:.0f} s; see {self.log}"
                )
            time.sleep(0.25)

    def _target(self) -> tuple[str, str, str]:
        """(location, repository, job) that holds every selected asset, as the UI finds them."""
        keys = [{"path": [n]} for n in self.ws.selection]
        nodes = self.query(ASSET_NODES, {"keys": keys})["assetNodes"]
        if len(nodes) != len(keys):
            raise RuntimeError(f"the webserver knows {len(nodes)} of the assets {self.ws.selection}")
        jobs = set.intersection(*(set(n["jobNames"]) for n in nodes))
        asset_jobs = sorted(j for j in jobs if j.startswith("__ASSET_JOB"))
        if not asset_jobs:
            raise RuntimeError(f"no asset job holds all of {self.ws.selection} (jobs: {sorted(jobs)})")
        repo = nodes[0]["repository"]
        return repo["location"]["name"], repo["name"], asset_jobs[0]

    def reload_if_changed(self, timeout: float = 300.0) -> bool:
        """Reload the code location when the project's code changed since it was loaded (as a user
        presses "Reload" after an edit): the launched run would otherwise be planned from the old code."""
        digest = code_digest(self.ws)
        if digest == self.loaded_code:
            return False
        out = self.query(RELOAD, {"name": self.location}, timeout=timeout)["reloadRepositoryLocation"]
        if out["__typename"] != "WorkspaceLocationEntry":
            raise RuntimeError(f"reloading {self.location} failed: {out}")
        self._wait_loaded(timeout)
        self.location, self.repository, self.job = self._target()
        self.loaded_code = digest
        self.reloads += 1
        return True

    def launch(self, first: str, last: str) -> str:
        """Launch one run of the selected assets over first...last; its run id."""
        params = {
            "mode": "default",
            "runConfigData": "{}",
            "executionMetadata": {
                "tags": [
                    {"key": "dagster/from_ui", "value": "true"},
                    {"key": RANGE_START, "value": first},
                    {"key": RANGE_END, "value": last},
                ]
            },
            "selector": {
                "repositoryLocationName": self.location,
                "repositoryName": self.repository,
                "pipelineName": self.job,
                "assetSelection": [{"path": [n]} for n in self.ws.selection],
                "assetCheckSelection": [],
            },
        }
        out = self.query(LAUNCH, {"params": params})["launchRun"]
        if out["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun answered {out['__typename']}: {out.get('message', out)}")
        return out["run"]["runId"]

    def wait(self, run_id: str, timeout: float = 1800.0) -> dict:
        """Poll the run until it has finished; its status, startTime and endTime (epoch seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.query(RUN, {"id": run_id})["runOrError"]
            if run["__typename"] != "Run":
                raise RuntimeError(f"run {run_id}: {run}")
            if run["status"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} still {run['status']} after {timeout:.0f} s")
            time.sleep(POLL_SECONDS)

    def processes(self) -> int:
        """Live processes of the webserver's session (itself, its code server, runs and their steps)."""
        if self.proc is None:
            return 0
        n = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            state, session = fields[0], int(fields[3])
            if state != "Z" and session == self.proc.pid:
                n += 1
        return n

    def settle(self, baseline: int, timeout: float = 60.0) -> None:
        """Wait until the session is back to `baseline` processes: a run's processes write their last
        ledger records as they exit, after Dagster has recorded the run as finished."""
        deadline = time.monotonic() + timeout
        while self.processes() > baseline and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)

    def stop(self, timeout: float = 30.0) -> None:
        """End the webserver (SIGTERM: it stops its code server), then whatever of its session is left."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # its own session: the group id is its pid
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # a code server or run process that outlived it
        self.proc = None

    def __enter__(self) -> Webserver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ui_launch(ws: Workspace, ui: Webserver) -> Measured:
    """One run of the selected assets over the whole range launched through the webserver, timed
    from the launch request to the end Dagster records for the run (polled every 0.1 s; the poll's
    interval is not counted); what skipwise did, from its ledger once the run's processes exited."""
    ui.reload_if_changed()
    baseline = ui.processes()
    before = ledger_files(ws)
    t0 = time.time()  # the run's endTime is epoch seconds, written by the run's own process
    run_id = ui.launch(ws.first, ws.last)
    run = ui.wait(run_id)
    seconds = float(run["endTime"] or time.time()) - t0
    ui.settle(baseline)
    if run["status"] != "SUCCESS":
        raise RuntimeError(f"run {run_id} launched through the webserver ended {run['status']}; see the benchmark log")
    rec = ledger_since(ws, before)
    return rec.measured(seconds)
