"""Code versions computed from source: a function plus the project-local code it reaches.

The closure is found statically (no import of the project), so planning never loads polars or torch:
starting from "module:function", every name the function uses is resolved through its module's
top-level definitions and imports; project-local targets are followed, third-party modules contribute
their installed version, the standard library contributes nothing. Each definition is normalized
(docstrings dropped, then `ast.unparse`), so comments, docstrings and formatting never count.
Unresolvable names make the version more conservative, never less: when unsure, include.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.core.errors import ConfigError
from pipelines.core.hashing import digest


@dataclass
class _Module:
    name: str
    path: Path
    defs: dict[str, ast.AST] = field(default_factory=dict)
    # local name -> (module, attribute or None for a whole module)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class CodeVersion:
    """The digest of a function's code closure and the parts it was made of (for explanations)."""

    digest: str
    parts: tuple[tuple[str, str], ...]  # (qualified name, digest of its normalized source or version)


class CodeIndex:
    """Parses project modules once and answers code versions for functions under `root`."""

    def __init__(self, root: Path, cache: Path | None = None) -> None:
        self.root = Path(root)
        self.cache = cache
        self._modules: dict[str, _Module | None] = {}
        self._versions: dict[str, str] = {}

    def version(self, ref: str) -> CodeVersion:
        """The code version of `ref` ("package.module:function").

        With a `cache` file, a version is reused while every source file it was computed from has
        the same (mtime, size) and every third-party version it recorded is still installed.
        """
        if self.cache is None:
            return self._compute(ref)
        entries = _read_cache(self.cache)
        hit = entries.get(ref)
        if hit and _still_valid(hit):
            return CodeVersion(hit["digest"], tuple(tuple(p) for p in hit["parts"]))
        cv = self._compute(ref)
        files = {str(m.path): _stat(m.path) for m in self._modules.values() if m is not None}
        entries[ref] = {"digest": cv.digest, "parts": cv.parts, "files": files, "versions": dict(self._versions)}
        _write_cache(self.cache, entries)
        return cv

    def _compute(self, ref: str) -> CodeVersion:
        mod_name, _, qual = ref.partition(":")
        if not qual:
            raise ConfigError(f"function reference {ref!r} has no ':'", hint="write it as package.module:function")
        root_mod = self._module(mod_name)
        if root_mod is None:
            raise ConfigError(
                f"module {mod_name!r} of {ref!r} is not a file under {self.root}",
                hint="asset functions must live in the project (e.g. assets/features/x.py)",
            )
        if qual not in root_mod.defs:
            raise ConfigError(f"{ref!r}: no top-level definition named {qual!r} in {root_mod.path}")
        parts: dict[str, str] = {}
        queue: list[tuple[str, str]] = [(mod_name, qual)]
        while queue:
            mod_name, name = queue.pop()
            key = f"{mod_name}:{name}"
            if key in parts:
                continue
            mod = self._module(mod_name)
            if mod is None:
                parts[key] = self._third_party(mod_name)
                continue
            node = mod.defs.get(name)
            if node is None:
                if name in mod.imports:  # re-exported name: follow it
                    queue.append(self._target(mod.imports[name]))
                    parts[key] = "alias"
                    continue
                if self._module(f"{mod_name}.{name}") is not None:  # a submodule used as attribute
                    parts[key] = "module"
                    continue
                parts[key] = "unresolved"  # conservative: the name is recorded
                continue
            parts[key] = digest(_normalize(node))
            queue.extend(self._references(mod, node))
        items = tuple(sorted(parts.items()))
        return CodeVersion(digest=digest(items), parts=items)

    # -- resolution ---------------------------------------------------------------------------

    def _references(self, mod: _Module, node: ast.AST) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        # Imports inside the function (lazy imports of heavy modules) resolve like module-level ones.
        local = _Module(mod.name, mod.path)
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                _add_import(local, sub, _package_of(mod))
        imports = {**mod.imports, **local.imports}
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                base = sub.value.id
                target = imports.get(base)
                if target and target[1] is None:  # `import x.y as m` then `m.attr`
                    out.append((target[0], sub.attr))
                elif target and self._module(f"{target[0]}.{target[1]}") is not None:
                    out.append((f"{target[0]}.{target[1]}", sub.attr))  # `from pkg import mod` then mod.attr
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                name = sub.id
                if name in mod.defs:
                    out.append((mod.name, name))
                elif name in imports:
                    out.append(self._target(imports[name]))
        return out

    def _target(self, target: tuple[str, str | None]) -> tuple[str, str]:
        module, attr = target
        if attr is None:
            return (module, "__module__")
        return (module, attr)

    def _third_party(self, module: str) -> str:
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top == "__future__":
            return "stdlib"
        if top not in self._versions:
            self._versions[top] = _installed().get(top.lower().replace("-", "_")) or _version_slow(top)
        return f"{top}=={self._versions[top]}"

    def _module(self, name: str) -> _Module | None:
        if name in self._modules:
            return self._modules[name]
        rel = Path(*name.split("."))
        mod = None
        for path in (self.root / rel.with_suffix(".py"), self.root / rel / "__init__.py"):
            if path.is_file():
                mod = _parse(name, path)
                break
        self._modules[name] = mod
        return mod


_INSTALLED: dict[str, str] | None = None


def _stat(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_mtime_ns, st.st_size]


def _still_valid(entry: dict) -> bool:
    try:
        if any(_stat(Path(f)) != v for f, v in entry["files"].items()):
            return False
    except OSError:
        return False
    installed = _installed()
    return all(installed.get(top.lower().replace("-", "_"), v) == v for top, v in entry["versions"].items())


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) and data.get("scheme") == _CACHE_SCHEME else {"scheme": _CACHE_SCHEME}
    except (OSError, ValueError):
        return {"scheme": _CACHE_SCHEME}


def _write_cache(path: Path, entries: dict) -> None:
    # Derived data: a lost or torn write only costs a recomputation (a torn file reads as empty).
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, path)
    except OSError:
        return  # an unwritable cache only means the next plan recomputes code versions


_CACHE_SCHEME = 1


def _installed() -> dict[str, str]:
    """name -> version of every distribution on sys.path, from dist-info folder names (one listdir each)."""
    global _INSTALLED
    if _INSTALLED is None:
        _INSTALLED = {}
        for entry in sys.path:
            try:
                names = os.listdir(entry or ".")
            except OSError:
                continue
            for n in names:
                if n.endswith(".dist-info"):
                    dist, _, version = n[: -len(".dist-info")].partition("-")
                    _INSTALLED.setdefault(dist.lower().replace("-", "_"), version)
    return _INSTALLED


def _version_slow(top: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(top)
    except metadata.PackageNotFoundError:
        return "unknown"


def _parse(name: str, path: Path) -> _Module:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise ConfigError(f"cannot parse {path}: {exc.msg} (line {exc.lineno})", hint="fix the syntax error") from None
    mod = _Module(name=name, path=path)
    package = _package_of(mod)
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            mod.defs[stmt.name] = stmt
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        mod.defs[n.id] = stmt
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            _add_import(mod, stmt, package)
    return mod


def _package_of(mod: _Module) -> str:
    return mod.name if mod.path.name == "__init__.py" else mod.name.rpartition(".")[0]


def _add_import(mod: _Module, stmt: ast.Import | ast.ImportFrom, package: str) -> None:
    if isinstance(stmt, ast.Import):
        for alias in stmt.names:
            if alias.asname:
                mod.imports[alias.asname] = (alias.name, None)
            else:
                top = alias.name.split(".")[0]
                mod.imports[top] = (top, None)
        return
    base = stmt.module or ""
    if stmt.level:
        parts = package.split(".")
        parent = ".".join(parts[: len(parts) - (stmt.level - 1)])
        base = f"{parent}.{base}" if base else parent
    for alias in stmt.names:
        mod.imports[alias.asname or alias.name] = (base, alias.name)


def _normalize(node: ast.AST) -> str:
    """Source of `node` with docstrings removed and formatting/comments canonicalized."""
    node = _strip_docstrings(ast.parse(ast.unparse(node)))
    return ast.unparse(node)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for n in ast.walk(tree):
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = n.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                if isinstance(body[0].value.value, str):
                    n.body = body[1:] or [ast.Pass()]
    return tree
