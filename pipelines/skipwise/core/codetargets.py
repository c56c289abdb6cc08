"""What a call in module-level code can reach, told from the module's imports: the standard
library, a declaring library call (`@sw.asset(...)`, `dg.Definitions(...)`), other library code,
or code of the project (found by `find`, `CodeFiles.find`) that a version must follow.

Code versions use these judgments to leave out what cannot change a body's output: a definition
whose decorators, bases and class body run only standard-library code is "plain" (it counts by its
own source, not with its module's top-level code), a declaring call's arguments that call only
library code are dropped, and an assignment of an inert value is not an effect of importing its
module. Anything unsure is project code: it counts.
"""

from __future__ import annotations

import ast
import sys
from typing import Callable

from skipwise.core import codeclosure as cc


class CallTargets:
    """Judgments on calls and definitions of a module (`cc.ModuleInfo`), with `find(module)` telling
    whether a module name is followed project code (not None) or not."""

    def __init__(self, find: Callable[[str], tuple[str, str] | None]) -> None:
        self.find = find

    def is_plain(
        self, mod: cc.ModuleInfo, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, in_class: bool = False
    ) -> bool:
        """Whether defining `node` runs only standard-library code (decorators, bases, class body)."""
        evaluated: list[ast.AST] = []
        declared: list[ast.AST] = []
        for dec in node.decorator_list:
            chain = cc.chain_of(dec.func if isinstance(dec, ast.Call) else dec)
            if self.targets_in(mod, chain, cc.DECLARING):
                # @sw.asset(...) registers the function and builds Dagster's definition: what the
                # body computes does not depend on it (its inputs, keys and config are versioned
                # on their own); its arguments may call library code, never project code.
                if isinstance(dec, ast.Call):
                    declared += [*dec.args, *(k.value for k in dec.keywords)]
                continue
            accessor = in_class and chain and len(chain) == 2 and chain[1] in ("setter", "getter", "deleter")
            if not (accessor and chain is not None and chain[0] not in mod.defined and chain[0] not in mod.imports):
                targets = self.known_targets(mod, chain)
                if targets is None or not all(t in cc.PURE_DECORATORS for t in targets):
                    return False
            if isinstance(dec, ast.Call):
                evaluated += [*dec.args, *(k.value for k in dec.keywords)]
        if isinstance(node, ast.ClassDef):
            for base in (*node.bases, *(k.value for k in node.keywords)):
                if isinstance(base, ast.Constant):  # TypedDict's total=False
                    continue
                if isinstance(base, ast.Subscript):  # Generic[T], Protocol[T]
                    evaluated.append(base.slice)
                    base = base.value
                targets = self.known_targets(mod, cc.chain_of(base))
                if self.targets_in(mod, cc.chain_of(base), cc.DECLARING_BASES):
                    continue  # a config model: its metaclass only declares fields
                if targets is None or not all(self.is_stdlib(t) for t in targets):
                    return False  # a project or third-party base may run code (metaclass, __init_subclass__)
            for stmt in node.body:
                if isinstance(stmt, cc.DEFS):
                    if not self.is_plain(mod, stmt, in_class=True):
                        return False
                else:
                    evaluated.append(stmt)
        else:
            evaluated += [e for e in cc.definition_headers(node) if e not in node.decorator_list]
        return all(self.inert(mod, e) for e in evaluated) and all(self.library_only(mod, e) for e in declared)

    def targets_in(self, mod: cc.ModuleInfo, chain: tuple[str, ...] | None, names: frozenset[str]) -> bool:
        """Whether `chain` names one of `names` (dotted paths of library callables) through the module's imports."""
        if chain is None or chain[0] in mod.defined or chain[0] not in mod.imports:
            return False
        paths = [".".join((module, *attrs, *chain[1:])) for module, attrs in mod.imports[chain[0]]]
        return bool(paths) and all(p in names for p in paths)

    def library_only(self, mod: cc.ModuleInfo, node: ast.AST) -> bool:
        """Whether every call in `node` is of library code (never project code, never a dynamic lookup)."""
        for sub in cc.walk([node]):
            if isinstance(sub, ast.Call):
                chain = cc.chain_of(sub.func)
                targets = self.known_targets(mod, chain)
                if targets is None and not self.targets_in(mod, chain, cc.DECLARING_CALLS | cc.DECLARING):
                    return False
                if targets is not None and any(t in cc.DYNAMIC_TARGETS for t in targets):
                    return False
        return True

    def inert(self, mod: cc.ModuleInfo, node: ast.AST) -> bool:
        """Whether every call in `node` is a standard-library callable that looks nothing up by name."""
        for sub in cc.walk([node]):
            if isinstance(sub, ast.Call):
                targets = self.known_targets(mod, cc.chain_of(sub.func))
                if targets is None or not all(self.is_stdlib(t) and t not in cc.DYNAMIC_TARGETS for t in targets):
                    return False
        return True

    def known_targets(self, mod: cc.ModuleInfo, chain: tuple[str, ...] | None) -> list[str] | None:
        """Dotted paths a chain points to outside the project; None when it may be project code."""
        if chain is None or chain[0] in mod.defined or (mod.star and chain[0] not in mod.imports):
            return None
        if chain[0] in mod.imports:
            out = []
            for module, attrs in mod.imports[chain[0]]:
                if self.find(module.split(".")[0]) is not None:
                    return None
                out.append(".".join((module, *attrs, *chain[1:])))
            return out
        return [".".join(("builtins", *chain))] if chain[0] in cc.BUILTIN_NAMES else None

    def is_stdlib(self, dotted: str) -> bool:
        top = dotted.split(".")[0]
        return top in sys.stdlib_module_names and self.find(top) is None
