"""`skipwise init [DIR]`: a new project, ready to run: a package with its Dagster definitions (a DVC
source over three days of sample sales and a daily feature), its config, its own test, and the
sample data under DVC when the `dvc` command is there. It never overwrites a file.

The files are written from the templates in `skipwise/cli/templates/` (package data).
"""

from __future__ import annotations

import argparse
import io
import keyword
import re
import shutil
import subprocess
import sys
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from string import Template

from skipwise.core.errors import UsageError
from skipwise.core.version import __version__

SOURCE_DIR = "data/raw/sales"
DAYS = [date(2024, 1, 1) + timedelta(days=i) for i in range(3)]
#: template -> where it goes in the new project ({name}: the package)
FILES = (
    ("pyproject.toml.tmpl", "pyproject.toml"),
    ("workspace.yaml.tmpl", "workspace.yaml"),
    ("params.yaml.tmpl", "params.yaml"),
    ("gitignore.tmpl", ".gitignore"),
    ("package_init.py.tmpl", "{name}/__init__.py"),
    ("definitions.py.tmpl", "{name}/definitions.py"),
    ("test_definitions.py.tmpl", "tests/test_definitions.py"),
)
#: names a project package must not take: it would hide the library (or a module) it imports
TAKEN = {"skipwise", "dagster", "polars", "pyarrow", "pandas", "duckdb", "dvc", "tests", "test", "data"}
INSTALL_DVC = "pipx install dvc   (DVC in its own environment, beside skipwise: it pins a parser Dagster cannot share)"


def add_init_parser(sub) -> None:
    p = sub.add_parser(
        "init",
        help="create a new project: definitions, config, a test and sample raw data under DVC",
        description="Creates a project in DIR (default: the current folder) that `skipwise materialize`, "
        "`dagster dev` and `pytest` run as it is. It never overwrites a file: if DIR already has one "
        "of the files it would write, it stops and writes nothing.",
    )
    p.add_argument("dir", nargs="?", default=".", metavar="DIR", help="the project's folder (created if needed)")
    p.add_argument(
        "--name", default=None, help="the Python package (default: DIR's folder name made into an identifier)"
    )
    p.add_argument("--no-dvc", action="store_true", help="do not run `dvc init` / `dvc add`, even if dvc is there")
    p.set_defaults(func=cmd_init)


def package_name(folder: str) -> str:
    """A folder's name made into a Python package name: lower case, `_` for anything else,
    `_project` added to a name that would hide a module the project imports."""
    name = re.sub(r"\W+", "_", folder.strip().lower(), flags=re.ASCII).strip("_") or "project"
    if name[0].isdigit():
        name = f"p_{name}"
    if keyword.iskeyword(name) or name in TAKEN or name in sys.stdlib_module_names:
        name = f"{name}_project"
    return name


def cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    name = args.name or package_name(root.name)
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"--name {name!r} is not a Python package name", hint="e.g. --name my_project")
    if root.exists() and not root.is_dir():
        raise UsageError(f"{args.dir} is a file, not a folder", hint="name a new or empty folder")
    planned = {dest.format(name=name): template for template, dest in FILES}
    samples = [f"{SOURCE_DIR}/{day.isoformat()}.parquet" for day in DAYS]
    taken = [rel for rel in [*planned, *samples, f"{SOURCE_DIR}.dvc"] if (root / rel).exists()]
    if taken:
        shown = ", ".join(taken[:4]) + (f" and {len(taken) - 4} more" if len(taken) > 4 else "")
        raise UsageError(
            f"{root} already has {shown}: skipwise init never overwrites a file",
            hint="run it in a new or empty folder (`skipwise init my_project`), or add "
            '[tool.skipwise] definitions = "package.module" to your own pyproject.toml (docs/authoring.md)',
        )
    values = {"name": name, "dist": name.replace("_", "-"), "version": __version__}
    for rel, template in planned.items():
        _write(root / rel, Template(_template(template)).substitute(values).encode())
    write_sample_sales(root / SOURCE_DIR)
    print(f"created {name} in {root}:")
    print("  pyproject.toml, workspace.yaml, params.yaml, .gitignore")
    print(f"  {name}/definitions.py    raw_sales (a DVC source) and daily_sales (a daily feature)")
    print("  tests/test_definitions.py   materializes daily_sales in tmp_path, then checks nothing reruns")
    print(f"  {SOURCE_DIR}/          {len(DAYS)} days of sample sales, one parquet file per day")
    if not args.no_dvc:
        _track(root)
    cd = "" if root == Path.cwd().resolve() else f"cd {args.dir} && "
    print(f"next: {cd}skipwise materialize && skipwise plan && pytest")
    return 0


def _template(name: str) -> str:
    return resources.files("skipwise.cli").joinpath("templates", name).read_text(encoding="utf-8")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as f:  # "x": a file that appeared since the check is never overwritten
        f.write(data)


def write_sample_sales(folder: Path) -> list[Path]:
    """Three days of made-up orders (store, amount), one parquet file per day, in `folder`."""
    import polars as pl  # a heavy import, for `init` alone

    out = []
    for i, day in enumerate(DAYS):
        rows = [
            {"store": f"s{s}", "order": n, "amount": float((i * 7 + s * 5 + n * 3) % 11) * 2.5 + 1.0}
            for s in (1, 2, 3)
            for n in range(4)
        ]
        path = folder / f"{day.isoformat()}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, _parquet_bytes(pl.DataFrame(rows)))
        out.append(path)
    return out


def _parquet_bytes(frame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def _track(root: Path) -> None:
    """`dvc init` (unless the folder is in a DVC repository already) and `dvc add` of the sample
    data; without the `dvc` command, say how to install it (the project works without it)."""
    dvc = shutil.which("dvc")
    if dvc is None:
        print(
            f"dvc: not found, so {SOURCE_DIR} is not under DVC yet: skipwise versions its files by their "
            "content meanwhile (and warns)"
        )
        print(f"  install it: {INSTALL_DVC}; then: dvc init && dvc add {SOURCE_DIR}")
        return
    steps = []
    if not any((d / ".dvc").is_dir() for d in (root, *root.parents)):
        git = shutil.which("git")
        top = _git_toplevel(git, root) if git else None
        if git and top is None:
            steps.append([git, "init", "-q"])  # DVC keeps its own files in git
            top = root
        flags = [] if top == root else ["--subdir"] if top else ["--no-scm"]
        steps.append([dvc, "init", "-q", *flags])
    steps.append([dvc, "add", "-q", SOURCE_DIR])
    for cmd in steps:
        p = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        if p.returncode != 0:
            said = (p.stderr or p.stdout).strip().splitlines()
            print(f"dvc: `{' '.join([Path(cmd[0]).name, *cmd[1:]])}` failed: {said[-1] if said else p.returncode}")
            print(f"  the project works without it; fix DVC, then: dvc add {SOURCE_DIR}")
            return
    done = ", ".join(" ".join([Path(c[0]).name, c[1]]) for c in steps)
    print(f"dvc: {done}: {SOURCE_DIR} is versioned by {SOURCE_DIR}.dvc")


def _git_toplevel(git: str, root: Path) -> Path | None:
    """The top of the git work tree `root` is in (None outside any): inside a larger one, DVC
    needs `dvc init --subdir`."""
    p = subprocess.run([git, "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True)
    return Path(p.stdout.strip()).resolve() if p.returncode == 0 else None
