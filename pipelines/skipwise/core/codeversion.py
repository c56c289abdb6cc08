"""Code versions computed from source: a function plus the code it reaches.

The closure is found statically (no import of the project), so planning never loads polars or torch:
starting from "module:function", every name the function uses is resolved through its module's
bindings and imports, with Python's scoping (a parameter named like a module's function is not that
function). What a reference reaches counts by what can change output bytes:
- project modules, and modules outside the root that are not installed distributions (editable
  installs, folders on sys.path), are followed: each definition reached counts by its normalized
  source (docstrings dropped, then `ast.unparse`), so comments and formatting never count;
- the non-Python files beside their code (configs, lookups, queries) count by their bytes;
- installed distributions count by version, the standard library counts nothing;
- orchestration (Dagster, skipwise) counts nothing, except skipwise's byte-affecting parts, each by
  its scheme number (`skipwise.core.schemes`); so do the arguments of a declaring decorator such
  as `@sw.asset(partitions_def=...)` that cannot change what the body computes.

A version is part of a cache key, so a version that misses a change is a false cache hit: when the
analysis cannot be precise it includes more, never less, and says so in `CodeVersion.notes`.
- A reached module's top-level code (everything but plain defs: assignments, if/try blocks,
  mutations, imports...) runs on import and counts for every function of it that is reached.
- A name resolves to every module-level statement that binds or mutates it.
- Imported project modules are followed into their top-level code (imports have side effects).
- Dynamic lookups (globals(), getattr(m, name), import_module(name), ...) count whole modules
  (`skipwise.core.codereferences`).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from skipwise.core import codeclosure as cc
from skipwise.core import distributions
from skipwise.core import schemes
from skipwise.core.codecache import FIELDS, VersionCache
from skipwise.core.codefiles import CodeFiles
from skipwise.core.codemodules import CodeModules
from skipwise.core.codereferences import EFFECTS, PACKAGE, TOP, WHOLE, References, Request
from skipwise.core.codetargets import CallTargets
from skipwise.core.errors import ConfigError
from skipwise.core.hashing import digest


@dataclass(frozen=True)
class CodeVersion:
    """The digest of a function's code closure, and what it was made of (for explanations).

    `notes` say where the analysis counted more than needed (never part of the digest); `files`
    are the Python sources the code runs from: (path, sha256 of their bytes), the path relative to
    the index root, or absolute for code outside it; `resources` are the files beside that code
    that count (`codepaths.resource_files`), in the same form.
    """

    digest: str
    parts: tuple[tuple[str, str], ...]  # (qualified name, digest of its normalized source or version)
    notes: tuple[str, ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    resources: tuple[tuple[str, str], ...] = ()


@dataclass
class _Trace:
    """What one version computation reached."""

    modules: set[str] = field(default_factory=set)
    notes: set[str] = field(default_factory=set)


class CodeIndex:
    """Parses project modules once and answers code versions for functions under `root`.

    `read_source(path) -> bytes` replaces reading project files from disk (e.g. to version the
    exact bytes that were imported); with it the `cache` file is never used.
    """

    def __init__(
        self,
        root: Path,
        cache: Path | None = None,
        read_source: Callable[[Path], bytes] | None = None,
    ) -> None:
        self.root = Path(root)
        self.files = CodeFiles(self.root, read_source)
        self.calls = CallTargets(self.files.find)
        self.modules = CodeModules(self.root, self.files, self.calls)
        self.references = References(self.modules)
        # A cache file is only used for versions of the files on disk.
        self._cache = VersionCache(cache, self.files) if cache is not None and read_source is None else None
        self._dists: dict[str, list[str | bool]] = {}  # import name -> [recorded version, from the fast path]
        self._results: dict[str, CodeVersion] = {}

    def version(self, ref: str) -> CodeVersion:
        """The code version of `ref` ("package.module:function").

        With a `cache` file, a version is reused while every file it was computed from is unchanged
        under this root (inode, mtime, ctime, size), every module lookup still finds the same file,
        and the installed distributions are the same.
        """
        if ref not in self._results:
            cached = self._cache.get(ref) if self._cache is not None else None
            cv = CodeVersion(**cached) if cached is not None else None
            if cv is None:
                cv = self._compute(ref)
                if self._cache is not None:
                    self._cache.put(ref, {name: getattr(cv, name) for name in FIELDS}, self._dists)
            self._results[ref] = cv
        return self._results[ref]

    # -- the closure ----------------------------------------------------------------------------

    def _compute(self, ref: str) -> CodeVersion:
        mod_name, _, qual = ref.partition(":")
        if not qual:
            raise ConfigError(f"function reference {ref!r} has no ':'", hint="write it as package.module:function")
        root_mod = self.modules.get(mod_name)
        if root_mod is None or root_mod.kind != "source":
            raise ConfigError(
                f"module {mod_name!r} of {ref!r} is not a file under {self.root}",
                hint="asset functions must live in the project (e.g. assets/features/x.py)",
            )
        name = qual.split(".")[0]
        if not root_mod.binds(name):
            raise ConfigError(f"{ref!r}: no top-level definition named {name!r} in {self.root / root_mod.rel}")
        trace = _Trace()
        parts: dict[str, str] = {}
        seen: set[Request] = set()
        queue: list[Request] = [(mod_name, name)]
        while queue:
            req = queue.pop()
            if req in seen:
                continue
            seen.add(req)
            key, value, more = self._expand(req, trace)
            parts[key] = value
            queue.extend(r for r in more if r not in seen)
        mods = [m for m in map(self.modules.get, sorted(trace.modules)) if m is not None and m.kind != "namespace"]
        resources = self.files.resources(mods)
        parts.update((f"file:{rel}", sha) for rel, sha in resources)
        items = tuple(sorted(parts.items()))
        files = tuple(sorted((m.rel, m.sha256) for m in mods))
        return CodeVersion(
            digest=digest(items), parts=items, notes=tuple(sorted(trace.notes)), files=files, resources=resources
        )

    def _expand(self, req: Request, trace: _Trace) -> tuple[str, str, list[Request]]:
        """(part key, part value, further requests) of one request."""
        module, name = req
        if name == PACKAGE:
            return f"{module}:{PACKAGE}", "package", [(m, WHOLE) for m in self.files.package_modules(module)]
        mod = self.modules.get(module)
        if mod is None:
            whole = name in (TOP, WHOLE, EFFECTS)
            key = f"{module}:{'__module__' if whole else name}"
            if self.files.find(module.split(".")[0]) is not None:
                return key, "missing", []  # a project package without that module: recorded as such
            return key, self._not_followed(module if whole else f"{module}.{name}"), []
        if name in (TOP, EFFECTS):
            return self._expand_module(mod, trace, effects_only=name == EFFECTS)
        if name == WHOLE:
            # every def and top-level statement: what globals() or getattr(module, name) may reach
            return f"{module}:{WHOLE}", "whole", [(module, TOP), *((module, n) for n in mod.names())]
        return self._expand_name(mod, name, trace)

    def _expand_module(
        self, mod: cc.ModuleInfo, trace: _Trace, effects_only: bool = False
    ) -> tuple[str, str, list[Request]]:
        """A reached module: its top-level code counts, and importing it imports its parents.

        With `effects_only` (the module is imported, none of its names is used), statements that
        only bind the module's own names to inert values (`X = 1`, `RE = re.compile(...)`) are left
        out: nothing outside the module can see them except through a name, which would be reached.
        """
        trace.modules.add(mod.name)
        reqs: list[Request] = []
        if mod.kind == "namespace":
            value = "namespace"
        elif mod.kind == "binary":
            value = f"binary:{mod.sha256}"
            trace.notes.add(f"{mod.rel}: a compiled module — the bytes of its file count")
        else:
            stmts = [
                st
                for st in mod.toplevel
                if not self._declares_only(mod, st) and not (effects_only and self._binds_only(mod, st))
            ]
            value = digest([self.modules.text(st) for st in stmts])
            reqs += self.references.code(mod, stmts, trace.notes)
        if mod.impure:
            names = ", ".join(mod.impure[:4]) + (", ..." if len(mod.impure) > 4 else "")
            trace.notes.add(
                f"{mod.rel}: {names} count with the module's top-level code (defining them runs a decorator, "
                "base class or call of project or third-party code, or they are module hooks like __getattr__)"
            )
        parents = mod.name.split(".")
        for i in range(1, len(parents)):
            parent = ".".join(parents[:i])
            if self.modules.get(parent) is not None:
                reqs.append((parent, EFFECTS))
        return f"{mod.name}:{EFFECTS if effects_only else TOP}", value, reqs

    def _declares_only(self, mod: cc.ModuleInfo, stmt: ast.AST) -> bool:
        """`X = dg.Definitions(...)` and the like: a declaring library call (`cc.DECLARING_CALLS`)
        whose arguments call no project code, bound to plain names or not bound at all."""
        value: ast.expr | None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign):
            targets, value = [stmt.target], stmt.value
        elif isinstance(stmt, ast.Expr):
            targets, value = [], stmt.value
        else:
            return False
        if not isinstance(value, ast.Call) or not all(isinstance(t, ast.Name) for t in targets):
            return False
        if not self.calls.targets_in(mod, cc.chain_of(value.func), cc.DECLARING_CALLS):
            return False
        return all(self.calls.library_only(mod, a) for a in [*value.args, *(k.value for k in value.keywords)])

    def _binds_only(self, mod: cc.ModuleInfo, stmt: ast.AST) -> bool:
        """An assignment to plain names of a value whose evaluation calls only inert stdlib code."""
        if isinstance(stmt, ast.Assign):
            targets = stmt.targets
        elif isinstance(stmt, ast.AnnAssign):
            targets = [stmt.target]
        else:
            return False
        names = all(
            isinstance(n, ast.Name)
            for t in targets
            for n in ([t] if not isinstance(t, (ast.Tuple, ast.List)) else t.elts)
        )
        return names and (stmt.value is None or self.calls.inert(mod, stmt.value))

    def _expand_name(self, mod: cc.ModuleInfo, name: str, trace: _Trace) -> tuple[str, str, list[Request]]:
        """A module-level name: every statement binding it, what it imports, a submodule of that name."""
        sources = list({id(s): s for s in (*mod.plain.get(name, ()), *mod.binders.get(name, ()))}.values())
        reqs: list[Request] = [(mod.name, TOP)]
        reqs += self.references.code(mod, sources, trace.notes)
        for target in mod.imports.get(name, ()):
            reqs += self.references.follow(target)
        sub = f"{mod.name}.{name}"
        is_sub = mod.is_package and self.modules.get(sub) is not None
        if is_sub:
            reqs.append((sub, TOP))
        if sources:
            value = digest([self.modules.text(s) for s in sources])
        elif name in mod.imports:
            value = "alias"
        elif is_sub:
            value = "module"
        elif mod.star:  # may come from any star-imported module (each counts wholly anyway)
            value = "star"
            reqs += [(m, name) for m in mod.star]
        else:
            value = "unresolved"  # conservative: the name is recorded
        return f"{mod.name}:{name}", value, reqs

    def _not_followed(self, dotted: str) -> str:
        """What a reference into code that is not followed counts: nothing for the standard library
        and orchestration (skipwise's byte-affecting parts by scheme number), else the versions of
        the distributions providing it ("x==unknown" when none does)."""
        top = dotted.split(".")[0]
        if schemes.is_orchestration(top):
            return schemes.value_of(dotted)
        if top in sys.stdlib_module_names:
            return "stdlib"
        value, _ = distributions.distribution_versions(top)
        self._dists[top] = [value, distributions.fast_distribution(top) is not None]
        return value
