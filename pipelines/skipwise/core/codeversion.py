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
- Dynamic lookups (globals(), getattr(m, name), import_module(name), ...) count whole modules.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from skipwise.core import codeclosure as cc
from skipwise.core import distributions
from skipwise.core import schemes
from skipwise.core.codecache import FIELDS, VersionCache
from skipwise.core.codefiles import CodeFiles
from skipwise.core.codetargets import CallTargets
from skipwise.core.errors import ConfigError
from skipwise.core.hashing import digest, sha256_bytes

# Pseudo-names of requests: a module's top-level code, a whole module, every module of a package.
_TOP, _WHOLE, _PACKAGE = "<toplevel>", "<whole>", "<package>"
# A module that is only imported (none of its names reached) counts by what importing it can do to
# others: its top-level statements except those that only bind its own names to inert values.
_EFFECTS = "<effects>"

Request = tuple[str, str]  # (module, name or pseudo-name)


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
        # A cache file is only used for versions of the files on disk.
        self._cache = VersionCache(cache, self.files) if cache is not None and read_source is None else None
        self._mods: dict[str, cc.ModuleInfo | None] = {}
        self._dists: dict[str, list[str | bool]] = {}  # import name -> [recorded version, from the fast path]
        self._texts: dict[int, str] = {}  # id(node) -> normalized source
        self._code_memo: dict[int, tuple[list[Request], list[str]]] = {}
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
        root_mod = self._module(mod_name)
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
        mods = [m for m in (self._mods[n] for n in trace.modules) if m is not None and m.kind != "namespace"]
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
        if name == _PACKAGE:
            return f"{module}:{_PACKAGE}", "package", [(m, _WHOLE) for m in self.files.package_modules(module)]
        mod = self._module(module)
        if mod is None:
            whole = name in (_TOP, _WHOLE, _EFFECTS)
            key = f"{module}:{'__module__' if whole else name}"
            if self.files.find(module.split(".")[0]) is not None:
                return key, "missing", []  # a project package without that module: recorded as such
            return key, self._not_followed(module if whole else f"{module}.{name}"), []
        if name in (_TOP, _EFFECTS):
            return self._expand_module(mod, trace, effects_only=name == _EFFECTS)
        if name == _WHOLE:
            # every def and top-level statement: what globals() or getattr(module, name) may reach
            return f"{module}:{_WHOLE}", "whole", [(module, _TOP), *((module, n) for n in mod.names())]
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
            value = digest([self._text(st) for st in stmts])
            reqs += self._code(mod, stmts, trace)
        if mod.impure:
            names = ", ".join(mod.impure[:4]) + (", ..." if len(mod.impure) > 4 else "")
            trace.notes.add(
                f"{mod.rel}: {names} count with the module's top-level code (defining them runs a decorator, "
                "base class or call of project or third-party code, or they are module hooks like __getattr__)"
            )
        parents = mod.name.split(".")
        for i in range(1, len(parents)):
            parent = ".".join(parents[:i])
            if self._module(parent) is not None:
                reqs.append((parent, _EFFECTS))
        return f"{mod.name}:{_EFFECTS if effects_only else _TOP}", value, reqs

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
        reqs: list[Request] = [(mod.name, _TOP)]
        reqs += self._code(mod, sources, trace)
        for target in mod.imports.get(name, ()):
            reqs += self._follow(target)
        sub = f"{mod.name}.{name}"
        is_sub = mod.is_package and self._module(sub) is not None
        if is_sub:
            reqs.append((sub, _TOP))
        if sources:
            value = digest([self._text(s) for s in sources])
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

    # -- references -----------------------------------------------------------------------------

    def _code(self, mod: cc.ModuleInfo, stmts: Sequence[ast.AST], trace: _Trace) -> list[Request]:
        """Requests made by statements of `mod` (memoized per statement)."""
        reqs: list[Request] = []
        for stmt in stmts:
            if id(stmt) not in self._code_memo:
                self._code_memo[id(stmt)] = self._scan_requests(mod, [stmt])
            more, notes = self._code_memo[id(stmt)]
            reqs += more
            trace.notes.update(notes)
        return reqs

    def _scan_requests(
        self, mod: cc.ModuleInfo, nodes: Sequence[ast.AST], literal: bool = False
    ) -> tuple[list[Request], list[str]]:
        """Requests made by code of `mod`; for code in a string (`literal`), names it imports may
        end up in a namespace dict, so they are followed even though no reference is seen."""
        scan = cc.scan(nodes, mod.package)
        reqs: list[Request] = []
        notes: list[str] = []
        for imp in scan.imports:
            reqs += self._import_requests(imp)
        if literal:
            reqs += [r for targets in scan.bound.values() for t in targets for r in self._follow(t)]
        for chain, line in scan.refs.items():
            self._reference(mod, scan, chain, line, None, reqs, notes)
        for call in scan.calls:
            self._reference(mod, scan, call.chain, call.line, call, reqs, notes)
        return reqs, notes

    def _import_requests(self, imp: cc.Import) -> list[Request]:
        """An import runs the imported module (and star-imports all of it), wherever it is written."""
        if not imp.module:
            return []
        reqs: list[Request] = [(imp.module, _WHOLE if imp.star else _EFFECTS)]
        mod = self._module(imp.module)
        if mod is not None and mod.is_package:
            for name in imp.names:  # `from pkg import sub` imports the submodule pkg.sub
                if self._module(f"{imp.module}.{name}") is not None:
                    reqs.append((f"{imp.module}.{name}", _EFFECTS))
        return reqs

    def _origins(self, mod: cc.ModuleInfo, scan: cc.Scan, name: str) -> list[cc.Target]:
        """Everything `name` may be in code of `mod`: local imports, module bindings, star imports, builtins."""
        out = [*scan.bound.get(name, ()), *mod.imports.get(name, ())]
        if name in mod.plain or name in mod.binders:
            out.append((mod.name, (name,)))
        if not out:
            out = [(m, (name,)) for m in mod.star]
            if name in cc.BUILTIN_NAMES:
                out.append(("builtins", (name,)))
        return out

    def _reference(
        self,
        mod: cc.ModuleInfo,
        scan: cc.Scan,
        chain: tuple[str, ...],
        line: int,
        call: cc.Call | None,
        reqs: list[Request],
        notes: list[str],
    ) -> None:
        for module, attrs in self._origins(mod, scan, chain[0]):
            target = (module, attrs + chain[1:])
            dynamic = self._dynamic_target(target) if module != mod.name else None
            if dynamic:
                self._dynamic(mod, scan, dynamic, chain, call, line, reqs, notes)
            elif module != "builtins":
                reqs += self._follow(target, notes, f"{mod.rel}:{line}")

    def _follow(self, target: cc.Target, notes: list[str] | None = None, where: str = "") -> list[Request]:
        """Requests for `module.a.b.c`: the longest project-module prefix, then the name in it."""
        module, attrs = target
        if self._module(module) is None:
            return [(module, attrs[0] if attrs else _TOP)]
        reqs: list[Request] = [] if attrs else [(module, _TOP)]
        for attr in attrs:
            if attr == "__dict__":  # module.__dict__: any of its names
                reqs.append((module, _WHOLE))
                if notes is not None:
                    notes.append(f"{where}: {module}.__dict__ — the whole module counts")
                break
            reqs.append((module, attr))
            mod = self._module(module)
            assert mod is not None  # checked above, or as the package's submodule
            if not (mod.is_package and self._module(f"{module}.{attr}") is not None):
                break
            module = f"{module}.{attr}"
        return reqs

    def _canonical(self, target: cc.Target, depth: int = 0) -> list[cc.Target]:
        """Where a target really points: through re-exports and submodules of project modules."""
        module, attrs = target
        mod = self._module(module)
        if mod is None or not attrs or depth > 16:
            return [target]
        name, rest = attrs[0], attrs[1:]
        out: list[cc.Target] = []
        if mod.is_package and self._module(f"{module}.{name}") is not None:
            out += self._canonical((f"{module}.{name}", rest), depth + 1)
        for imported, more in mod.imports.get(name, ()):
            out += self._canonical((imported, more + rest), depth + 1)
        if not out or name in mod.plain or name in mod.binders:
            out.append(target)
        return out

    def _dynamic_target(self, target: cc.Target) -> str | None:
        """The dynamic lookup (a cc.DYNAMIC_TARGETS entry) `target` is, if any."""
        for module, attrs in self._canonical(target):
            if self._module(module) is not None:
                continue  # a project object: followed as code
            dotted = [*module.split("."), *attrs]
            for i in range(2, len(dotted) + 1):
                if ".".join(dotted[:i]) in cc.DYNAMIC_TARGETS:
                    return ".".join(dotted[:i])
        return None

    def _modules_of(self, mod: cc.ModuleInfo, scan: cc.Scan, expr: ast.AST | None) -> list[str]:
        """The project modules an expression (a name or attribute chain) may be."""
        chain = cc.chain_of(expr) if expr is not None else None
        if chain is None:
            return []
        out = set()
        for module, attrs in self._origins(mod, scan, chain[0]):
            for m, rest in self._canonical((module, attrs + chain[1:])):
                if not rest and self._module(m) is not None:
                    out.add(m)
        return sorted(out)

    def _dynamic(
        self,
        mod: cc.ModuleInfo,
        scan: cc.Scan,
        target: str,
        chain: tuple[str, ...],
        call: cc.Call | None,
        line: int,
        reqs: list[Request],
        notes: list[str],
    ) -> None:
        """Requests for a dynamic lookup: whole modules, or every module of the package."""
        where, top, short = f"{mod.rel}:{line}", mod.name.split(".")[0], target.removeprefix("builtins.")
        args = call.args if call else []
        keywords = call.keywords if call else {}

        def arg(i: int, name: str = "") -> ast.expr | None:
            return args[i] if len(args) > i else keywords.get(name)

        def whole(modules: list[str], what: str) -> None:
            reqs.extend((m, _WHOLE) for m in modules)
            notes.append(f"{where}: {what} — the whole module {', '.join(modules)} counts")

        if target == "builtins.getattr" and (attr := cc.constant_str(arg(1))) is not None:
            obj = cc.chain_of(arg(0))  # getattr(x, "name") is x.name
            if obj is not None:
                self._reference(mod, scan, (*obj, attr), line, None, reqs, notes)
        elif target in ("builtins.getattr", "builtins.vars", "inspect.getmembers"):
            modules = self._modules_of(mod, scan, arg(0, "object"))
            whole(modules or [mod.name], f"{short}() of a computed name" if short == "getattr" else f"{short}()")
        elif target in ("builtins.globals", "builtins.locals"):
            whole([mod.name], f"{short}()")
        elif (
            target in ("builtins.eval", "builtins.exec") and (code := self._literal_code(arg(0, "source"))) is not None
        ):
            more, more_notes = self._scan_requests(mod, code, literal=True)
            reqs += more
            notes += more_notes
        elif target in ("builtins.eval", "builtins.exec"):
            reqs += [(mod.name, _WHOLE), (top, _PACKAGE)]
            notes.append(f"{where}: {short}() of a computed string — the whole module and every module of {top} count")
        elif target in ("builtins.__import__", "importlib.import_module", "importlib.__import__", "runpy.run_module"):
            names = self._imported_names(mod, target, arg)
            if names:
                whole(names, f"{short}({names[0]!r})")
            else:
                reqs.append((top, _PACKAGE))
                notes.append(f"{where}: {short}() of a computed name — every module of {top} counts")
        elif target == "sys.modules":
            for kind in sorted(scan.keys.get(chain, {("other",)})):
                if kind[0] == "const":
                    whole([kind[1]], f"sys.modules[{kind[1]!r}]")
                elif kind[0] == "self":
                    whole([mod.name], "sys.modules[__name__]")
                else:
                    reqs += [(mod.name, _WHOLE), (top, _PACKAGE)]
                    notes.append(f"{where}: sys.modules — the whole module and every module of {top} count")
        else:  # loading by file path (runpy.run_path, importlib.util...): any file may be loaded
            reqs.append((top, _PACKAGE))
            notes.append(f"{where}: {short}() — every module of {top} counts")

    @staticmethod
    def _literal_code(node: ast.AST | None) -> list[ast.stmt] | None:
        text = cc.constant_str(node)
        if text is None:
            return None
        try:
            return ast.parse(text).body
        except SyntaxError:
            return None

    @staticmethod
    def _imported_names(mod: cc.ModuleInfo, target: str, arg: Callable[[int, str], ast.expr | None]) -> list[str]:
        """Modules a dynamic import with constant arguments imports; [] when they are computed."""
        name = cc.constant_str(arg(0, "name"))
        if name is None:
            return []
        if name.startswith("."):
            package_arg = arg(1, "package")
            package: str | None
            if isinstance(package_arg, ast.Name):  # import_module(".x", __package__)
                package = {"__package__": mod.package, "__name__": mod.name}.get(package_arg.id)
            else:
                package = cc.constant_str(package_arg)
            if target != "importlib.import_module" or not package:
                return []
            level = len(name) - len(name.lstrip("."))
            base = package.rsplit(".", level - 1)[0] if level > 1 else package
            name = f"{base}.{name[level:]}" if name[level:] else base
        out = [name]
        if target == "builtins.__import__":
            fromlist, level_arg = arg(3, "fromlist"), arg(4, "level")
            if level_arg is not None and not (isinstance(level_arg, ast.Constant) and level_arg.value == 0):
                return []
            if fromlist is not None:
                items = fromlist.elts if isinstance(fromlist, (ast.List, ast.Tuple)) else None
                if items is None or any(cc.constant_str(e) is None for e in items):
                    return []
                out += [f"{name}.{cc.constant_str(e)}" for e in items]
        return out

    # -- modules on disk --------------------------------------------------------------------------

    def _module(self, name: str) -> cc.ModuleInfo | None:
        if name in self._mods:
            return self._mods[name]
        found = self.files.find(name)
        mod = None
        if found is not None:
            kind, rel = found
            if kind == "namespace":
                mod = cc.ModuleInfo(name=name, rel=rel, sha256="", is_package=True, kind="namespace")
            else:
                data = self.files.read(rel)
                mod = self._parse(name, kind, rel, data)
        self._mods[name] = mod
        return mod

    def _parse(self, name: str, kind: str, rel: str, data: bytes) -> cc.ModuleInfo:
        sha = sha256_bytes(data)
        if kind == "binary":
            return cc.ModuleInfo(name=name, rel=rel, sha256=sha, is_package=False, kind="binary")
        try:
            mod = cc.parse_module(name, rel, sha, data, kind == "package", str(self.root / rel))
        except (SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", None)
            raise ConfigError(
                f"cannot parse {self.root / rel}: {getattr(exc, 'msg', exc)} (line {line})", hint="fix the syntax error"
            ) from None
        self._drop_declarations(mod)
        mod.settle(lambda node: self.calls.is_plain(mod, node))
        return mod

    def _drop_declarations(self, mod: cc.ModuleInfo) -> None:
        """Remove the arguments of declaring calls in module-level code (`@sw.asset(partitions_def=...)`,
        `dg.asset_check(...)`, `sw.dvc_source(...)`) that cannot change what the declared code
        computes (cc.NON_COUNTING_ARGS): they are then neither in its text nor followed. An argument
        that calls project code stays: running it may do anything."""
        declaring = cc.DECLARING | cc.DECLARING_CALLS
        stack: list[ast.AST] = list(mod.body)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                stack.extend(cc.definition_headers(node))  # bodies run later, with their own names
                continue
            stack.extend(cc.children(node))
            if (
                isinstance(node, ast.Call)
                and node.keywords
                and self.calls.targets_in(mod, cc.chain_of(node.func), declaring)
            ):
                node.keywords = [
                    k
                    for k in node.keywords
                    if k.arg not in cc.NON_COUNTING_ARGS or not self.calls.library_only(mod, k.value)
                ]

    def _text(self, node: ast.AST) -> str:
        if id(node) not in self._texts:
            self._texts[id(node)] = cc.normalize(node)
        return self._texts[id(node)]

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
