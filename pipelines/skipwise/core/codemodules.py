"""The modules a code version reaches, each found, read and parsed once.

A module is parsed into what it binds (`skipwise.core.codeclosure.ModuleInfo`); the arguments of
declaring calls that cannot change what the declared code computes are dropped from it first, and
each definition is judged plain or not (`skipwise.core.codetargets`). Standard library only.
"""

from __future__ import annotations

import ast
from pathlib import Path

from skipwise.core import codeclosure as cc
from skipwise.core.codefiles import CodeFiles
from skipwise.core.codetargets import CallTargets
from skipwise.core.errors import ConfigError
from skipwise.core.hashing import sha256_bytes


class CodeModules:
    """The project's modules (and the followed code outside it) under `root`, by module name."""

    def __init__(self, root: Path, files: CodeFiles, calls: CallTargets) -> None:
        self.root = root
        self.files = files
        self.calls = calls
        self._mods: dict[str, cc.ModuleInfo | None] = {}
        self._texts: dict[int, str] = {}  # id(node) -> normalized source

    def get(self, name: str) -> cc.ModuleInfo | None:
        """Module `name` parsed, or None when it is not followed code (not found under the root nor
        on the code paths followed)."""
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

    def text(self, node: ast.AST) -> str:
        """The normalized source of `node` (docstrings dropped, then `ast.unparse`), once per node."""
        if id(node) not in self._texts:
            self._texts[id(node)] = cc.normalize(node)
        return self._texts[id(node)]
