"""The library's layers, held for the whole package (docs/architecture.md draws them):

- each module imports only its own layer and the layers below it, at module level and inside functions;
- no import cycle anywhere, counting imports inside functions;
- an import inside a function only where it spares a light module a heavy package (Dagster, polars,
  torch...): the reason every such import has, checked here rather than said in a comment (the
  package root's public names resolve lazily, each on first use);
- the heavy optional packages are imported at module level only by the Dagster adapter.

Imports under `if TYPE_CHECKING:` never run and do not count."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import skipwise

PACKAGE = Path(skipwise.__file__).resolve().parent

#: bottom to top; a module may import its own layer and any layer before it (layers on one line are peers)
LAYERS = [
    ("core",),
    ("formats", "store", "adapters.dvc", "adapters.git"),
    ("project",),
    ("sources",),
    ("engine",),
    ("models", "reporting", "tables"),
    ("adapters.dagster",),
    ("cli", "testing"),  # the command, and `skipwise.testing` for users' tests: neither imports the other
    ("skipwise",),  # the package root: the public namespace
]
RANK = {layer: n for n, group in enumerate(LAYERS) for layer in group}
#: third-party packages a light module must not import at module level (importing one costs from
#: 0.1 s to seconds): only the Dagster adapter does, because it is Dagster
HEAVY = {
    "dagster": "adapters.dagster",
    "dagster_celery": "adapters.dagster",
    "dagster_postgres": "adapters.dagster",
    "dagster_webserver": None,
    "dvc": None,  # never, anywhere: DVC lives in its own environment
    "torch": None,
    "polars": None,
    "pyarrow": None,
    "pandas": None,
    "duckdb": None,
    "fsspec": None,
    "s3fs": None,
    "celery": "adapters.dagster",  # the services profile's Celery app
    "kombu": "adapters.dagster",
}
#: packages that may only be imported inside functions, never at module level (DVC: not at all)
NEVER = {"dvc"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = ["skipwise", *f.relative_to(PACKAGE).with_suffix("").parts]
        out[".".join(p for p in parts if p != "__init__")] = f
    return out


MODULES = _modules()


def _layer(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return "skipwise"
    if parts[0] == "adapters" and len(parts) > 1:
        return f"adapters.{parts[1]}"
    return parts[0]


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    # `from package import submodule` depends on the submodule
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _imports(path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """(what the module imports at module level, [(line, target)] of the imports inside functions)."""
    tree = ast.parse(path.read_text())
    hidden = {id(s) for node in ast.walk(tree) if _type_checking(node) for s in ast.walk(node)}
    top, inner = set(), []
    for node in tree.body:
        deferred = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Import, ast.ImportFrom)) and id(sub) not in hidden:
                if deferred:
                    inner += [(sub.lineno, t) for t in _targets(sub)]
                else:
                    top |= set(_targets(sub))
    return top, inner


IMPORTS = {m: _imports(p) for m, p in MODULES.items()}


def _packages(target: str) -> list[str]:
    """`skipwise.a.b` runs skipwise.a's __init__ before skipwise.a.b: both are imported."""
    parts = target.split(".")
    return [p for p in (".".join(parts[: i + 1]) for i in range(1, len(parts))) if p in MODULES]


def _heavy(module: str, seen: frozenset[str] = frozenset()) -> str | None:
    """The heavy package importing `module` imports at module level (through skipwise modules too), if any."""
    for t in sorted(IMPORTS[module][0]):
        if t.split(".")[0] in HEAVY:
            return t
        for p in _packages(t) if t.startswith("skipwise.") else ():
            if p != module and p not in seen:
                found = _heavy(p, seen | {module})
                if found:
                    return found
    return None


def test_each_module_imports_only_its_layer_and_those_below():
    bad = []
    for module, (top, inner) in IMPORTS.items():
        for t in sorted(top) + [t for _, t in inner]:
            if t.startswith("skipwise.") and RANK[_layer(t)] > RANK[_layer(module)]:
                bad.append(f"{module} ({_layer(module)}) imports {t} ({_layer(t)})")
    assert not bad, bad


def test_no_import_cycle_anywhere():
    graph = {
        m: {p for t in top | {t for _, t in inner} if t.startswith("skipwise.") for p in _packages(t)} - {m}
        for m, (top, inner) in IMPORTS.items()
    }
    # a package's __init__ importing its submodules (how a package exports) is not a dependency back
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                cycles.append(sorted(scc))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_imports_inside_functions_only_spare_a_light_module_a_heavy_one():
    bad = []
    for module, (_, inner) in IMPORTS.items():
        if module == "skipwise":
            continue  # the public namespace resolves each name on first use: `import skipwise` stays cheap
        if module == "skipwise.cli.entry":
            continue  # the console script asks a running server first: the command's imports come after
        for line, t in inner:
            if not t.startswith("skipwise."):
                continue
            heavy = [h for p in _packages(t) for h in [_heavy(p)] if h]
            if not heavy:
                bad.append(f"{MODULES[module].name}:{line} imports {t} inside a function, which imports nothing heavy")
            elif _heavy(module):
                bad.append(f"{MODULES[module].name}:{line} imports {t} inside a function, but is heavy itself")
    assert not bad, bad


def test_heavy_packages_are_imported_at_module_level_only_by_the_dagster_adapter():
    bad = []
    for module, (top, inner) in IMPORTS.items():
        for t in top:
            root = t.split(".")[0]
            if root in HEAVY and HEAVY[root] != _layer(module):
                bad.append(f"{module} imports {t} at module level")
        bad += [f"{module} imports {t}" for _, t in inner if t.split(".")[0] in NEVER]
    assert not bad, bad


def test_every_folder_says_what_it_holds_and_what_it_may_import():
    missing = [
        str(init.relative_to(PACKAGE))
        for init in PACKAGE.rglob("__init__.py")
        if not (ast.get_docstring(ast.parse(init.read_text())) or "").strip()
    ]
    assert not missing, missing
