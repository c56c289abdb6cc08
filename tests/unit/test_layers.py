"""The library's layers, held for the whole package: what each folder may import at module level,
where the heavy optional packages may be imported, and no import cycle among module-level imports.

Module-level imports are what importing a module runs; an import inside a function runs only when
called (the heavy optional packages, and for now some upward calls: see docs/architecture.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import skipwise

PACKAGE = Path(skipwise.__file__).resolve().parent

#: layer -> the skipwise layers its modules may import at module level (besides the standard
#: library and third-party packages not listed in HEAVY)
ALLOWED = {
    "core": {"core"},
    "formats": {"core", "formats"},
    "store": {"core", "store"},
    "adapters.dvc": {"core", "store", "adapters.dvc"},
}
#: heavy optional packages -> the only layer that may import them at module level
HEAVY = {
    "dagster": "adapters.dagster",
    "dagster_celery": "adapters.dagster",
    "dvc": None,
    "torch": None,
    "fsspec": None,
}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = ["skipwise", *f.relative_to(PACKAGE).with_suffix("").parts]
        out[".".join(p for p in parts if p != "__init__")] = f
    return out


def _layer(module: str) -> str:
    parts = module.split(".")[1:]
    if parts and parts[0] == "adapters" and len(parts) > 1:
        return f"adapters.{parts[1]}"
    return parts[0] if parts and parts[0] in ("core", "formats", "store", "adapters") else "top"


def _toplevel_imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in tree.body:  # module level only (try/if blocks included; `if TYPE_CHECKING:` never runs)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or _type_checking(node):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                out |= {a.name for a in sub.names}
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - sub.level + 1] + ([base] if base else [])
                    )
                # `from package import submodule` depends on the submodule (a package's __init__ runs
                # before any of its submodules anyway)
                subs = {f"{base}.{a.name}" for a in sub.names if f"{base}.{a.name}" in MODULES}
                out |= subs if len(subs) == len(sub.names) else subs | {base}
    return out


def _type_checking(node: ast.stmt) -> bool:
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (
        isinstance(test, (ast.Name, ast.Attribute))
        and (getattr(test, "id", "") or getattr(test, "attr", "")) == "TYPE_CHECKING"
    )


MODULES = _modules()
IMPORTS = {m: _toplevel_imports(p, m) for m, p in MODULES.items()}


def test_each_layer_imports_only_the_layers_below_it():
    bad = []
    for module, imports in IMPORTS.items():
        allowed = ALLOWED.get(_layer(module))
        if allowed is None:
            continue
        bad += [f"{module} imports {i}" for i in imports if i.startswith("skipwise.") and _layer(i) not in allowed]
    assert not bad, bad


def test_heavy_optional_packages_are_imported_only_where_they_belong():
    bad = []
    for module, imports in IMPORTS.items():
        for i in imports:
            home = HEAVY.get(i.split(".")[0], "anywhere")
            if home != "anywhere" and _layer(module) != home:
                bad.append(f"{module} imports {i} at module level")
    assert not bad, bad


def test_no_import_cycle_among_module_level_imports():
    graph = {m: {i for i in imports if i in MODULES and i != m} for m, imports in IMPORTS.items()}
    # a package's __init__ importing its own submodules is how a package exports: not a cycle of layers
    index, low, stack, on, cycles = {}, {}, [], set(), []
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
