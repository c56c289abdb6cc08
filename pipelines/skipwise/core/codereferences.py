"""What code refers to, as requests for the parts of a code version: the names it uses, resolved
with Python's scoping through its module's bindings and imports (`skipwise.core.codeclosure`), the
modules it imports, and dynamic lookups (globals(), getattr(m, name), import_module(name), ...),
which count whole modules or every module of the package. Standard library only.
"""

from __future__ import annotations

import ast
from typing import Callable, Sequence

from skipwise.core import codeclosure as cc
from skipwise.core.codemodules import CodeModules

# Pseudo-names of requests: a module's top-level code, a whole module, every module of a package.
TOP, WHOLE, PACKAGE = "<toplevel>", "<whole>", "<package>"
# A module that is only imported (none of its names reached) counts by what importing it can do to
# others: its top-level statements except those that only bind its own names to inert values.
EFFECTS = "<effects>"

Request = tuple[str, str]  # (module, name or pseudo-name)


class References:
    """The requests code of the `modules` makes, each statement's found once."""

    def __init__(self, modules: CodeModules) -> None:
        self.modules = modules
        self._code_memo: dict[int, tuple[list[Request], list[str]]] = {}

    def code(self, mod: cc.ModuleInfo, stmts: Sequence[ast.AST], notes: set[str]) -> list[Request]:
        """Requests made by statements of `mod` (memoized per statement); what they say into `notes`."""
        reqs: list[Request] = []
        for stmt in stmts:
            if id(stmt) not in self._code_memo:
                self._code_memo[id(stmt)] = self._scan_requests(mod, [stmt])
            more, said = self._code_memo[id(stmt)]
            reqs += more
            notes.update(said)
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
            reqs += [r for targets in scan.bound.values() for t in targets for r in self.follow(t)]
        for chain, line in scan.refs.items():
            self._reference(mod, scan, chain, line, None, reqs, notes)
        for call in scan.calls:
            self._reference(mod, scan, call.chain, call.line, call, reqs, notes)
        return reqs, notes

    def _import_requests(self, imp: cc.Import) -> list[Request]:
        """An import runs the imported module (and star-imports all of it), wherever it is written."""
        if not imp.module:
            return []
        reqs: list[Request] = [(imp.module, WHOLE if imp.star else EFFECTS)]
        mod = self.modules.get(imp.module)
        if mod is not None and mod.is_package:
            for name in imp.names:  # `from pkg import sub` imports the submodule pkg.sub
                if self.modules.get(f"{imp.module}.{name}") is not None:
                    reqs.append((f"{imp.module}.{name}", EFFECTS))
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
                reqs += self.follow(target, notes, f"{mod.rel}:{line}")

    def follow(self, target: cc.Target, notes: list[str] | None = None, where: str = "") -> list[Request]:
        """Requests for `module.a.b.c`: the longest project-module prefix, then the name in it."""
        module, attrs = target
        if self.modules.get(module) is None:
            return [(module, attrs[0] if attrs else TOP)]
        reqs: list[Request] = [] if attrs else [(module, TOP)]
        for attr in attrs:
            if attr == "__dict__":  # module.__dict__: any of its names
                reqs.append((module, WHOLE))
                if notes is not None:
                    notes.append(f"{where}: {module}.__dict__ — the whole module counts")
                break
            reqs.append((module, attr))
            mod = self.modules.get(module)
            assert mod is not None  # checked above, or as the package's submodule
            if not (mod.is_package and self.modules.get(f"{module}.{attr}") is not None):
                break
            module = f"{module}.{attr}"
        return reqs

    def _canonical(self, target: cc.Target, depth: int = 0) -> list[cc.Target]:
        """Where a target really points: through re-exports and submodules of project modules."""
        module, attrs = target
        mod = self.modules.get(module)
        if mod is None or not attrs or depth > 16:
            return [target]
        name, rest = attrs[0], attrs[1:]
        out: list[cc.Target] = []
        if mod.is_package and self.modules.get(f"{module}.{name}") is not None:
            out += self._canonical((f"{module}.{name}", rest), depth + 1)
        for imported, more in mod.imports.get(name, ()):
            out += self._canonical((imported, more + rest), depth + 1)
        if not out or name in mod.plain or name in mod.binders:
            out.append(target)
        return out

    def _dynamic_target(self, target: cc.Target) -> str | None:
        """The dynamic lookup (a cc.DYNAMIC_TARGETS entry) `target` is, if any."""
        for module, attrs in self._canonical(target):
            if self.modules.get(module) is not None:
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
                if not rest and self.modules.get(m) is not None:
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
            reqs.extend((m, WHOLE) for m in modules)
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
            reqs += [(mod.name, WHOLE), (top, PACKAGE)]
            notes.append(f"{where}: {short}() of a computed string — the whole module and every module of {top} count")
        elif target in ("builtins.__import__", "importlib.import_module", "importlib.__import__", "runpy.run_module"):
            names = self._imported_names(mod, target, arg)
            if names:
                whole(names, f"{short}({names[0]!r})")
            else:
                reqs.append((top, PACKAGE))
                notes.append(f"{where}: {short}() of a computed name — every module of {top} counts")
        elif target == "sys.modules":
            for kind in sorted(scan.keys.get(chain, {("other",)})):
                if kind[0] == "const":
                    whole([kind[1]], f"sys.modules[{kind[1]!r}]")
                elif kind[0] == "self":
                    whole([mod.name], "sys.modules[__name__]")
                else:
                    reqs += [(mod.name, WHOLE), (top, PACKAGE)]
                    notes.append(f"{where}: sys.modules — the whole module and every module of {top} count")
        else:  # loading by file path (runpy.run_path, importlib.util...): any file may be loaded
            reqs.append((top, PACKAGE))
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
