"""What code versions are made of: what a module binds at top level and what code refers to (with
Python's scoping). Where modules and the files beside them are is `skipwise.core.codepaths`.

Nothing here imports the analysed code; `References` (codereferences.py) follows the references.
Standard library only.

Two ideas keep the analysis conservative:
- a module's top-level statements other than plain definitions run on import, so they are kept
  together (`ModuleInfo.toplevel`) and count for every function of the module that is reached;
- a name that no enclosing function, lambda or comprehension binds resolves to every statement
  that binds or mutates it, at any depth of module-level code.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field


BUILTIN_NAMES = frozenset(dir(builtins))

#: What looks code up by a computed name: reached code using one of these counts more (see
#: References._dynamic in codereferences.py). Matched on where a name really points, so aliases
#: are seen too.
DYNAMIC_TARGETS = frozenset(
    {
        "builtins.globals",
        "builtins.locals",
        "builtins.vars",
        "builtins.eval",
        "builtins.exec",
        "builtins.getattr",
        "builtins.__import__",
        "importlib.import_module",
        "importlib.__import__",
        "importlib.util.spec_from_file_location",
        "importlib.util.module_from_spec",
        "runpy.run_module",
        "runpy.run_path",
        "sys.modules",
        "inspect.getmembers",
    }
)

#: Last attribute of calls among those whose arguments matter (`getattr(m, "f")` is precise,
#: `getattr(m, name)` is not): such calls are kept with their arguments.
DYNAMIC_CALL_NAMES = frozenset(
    {"getattr", "vars", "getmembers", "eval", "exec", "__import__", "import_module", "run_module"}
)

#: Decorators that only declare the function (skipwise's and Dagster's): defining it runs no code its body depends on.
DECLARING = frozenset(
    {
        "skipwise.asset",
        "skipwise.adapters.dagster.asset",
        "skipwise.adapters.dagster.authoring.asset",
        "dagster.asset",
        "dagster.observable_source_asset",
        "dagster.sensor",
        "dagster.schedule",
        "dagster.asset_check",
    }
)
#: Base classes of config models (pydantic): their metaclass declares fields, it computes nothing.
DECLARING_BASES = frozenset({"dagster.Config", "dagster.ConfigurableResource", "pydantic.BaseModel"})
#: Calls that only declare (Dagster's definitions objects, skipwise's sources and IO manager): a
#: top-level statement binding their result is left out of the module's top-level code (it runs
#: nothing a body depends on); a body that uses the name still reaches the statement.
DECLARING_CALLS = frozenset(
    {
        "skipwise.dvc_source",
        "skipwise.object_source",
        "skipwise.IOManager",
        "skipwise.stale_partitions_sensor",
        "dagster.Definitions",
        "dagster.AssetIn",
        "dagster.AssetKey",
        "dagster.AssetDep",
        "dagster.AssetSelection",
        "dagster.define_asset_job",
        "dagster.ScheduleDefinition",
        "dagster.BackfillPolicy",
        *(
            f"dagster.{k}PartitionsDefinition"
            for k in ("Daily", "Hourly", "Weekly", "Monthly", "TimeWindow", "Static", "Multi", "Dynamic")
        ),
        *(
            f"dagster.{k}PartitionMapping"
            for k in ("TimeWindow", "Identity", "All", "Static", "MultiToSingleDimension", "Last", "Specific")
        ),
    }
)
#: Keyword arguments of declaring calls (DECLARING, DECLARING_CALLS) that cannot change what the
#: declared function computes: the partition key and the resolved upstream keys are in each
#: partition's fingerprint, declared files and env are checked on their own, the rest is metadata.
#: They are left out of the code's text and not followed (a body using the same names reaches them).
NON_COUNTING_ARGS = frozenset(
    {
        "partitions_def",
        "ins",
        "deps",
        "group_name",
        "tags",
        "kinds",
        "description",
        "owners",
        "metadata",
        "automation_condition",
        "backfill_policy",
        "required_resource_keys",
        "io_manager_key",
        "cost_unit",
        "key_prefix",
        "name",
        "retry_policy",
        "pool",
        "op_tags",
        "compute_kind",
        "files",
        "env",
        "nondeterministic",
    }
)

#: Decorators known to register nothing anywhere: a def decorated only with these stays plain.
PURE_DECORATORS = frozenset(
    {
        "builtins.property",
        "builtins.staticmethod",
        "builtins.classmethod",
        "dataclasses.dataclass",
        "functools.wraps",
        "functools.lru_cache",
        "functools.cache",
        "functools.cached_property",
        "functools.total_ordering",
        "functools.singledispatch",
        "functools.singledispatchmethod",
        "abc.abstractmethod",
        "typing.overload",
        "typing.final",
        "typing.runtime_checkable",
        "typing.no_type_check",
        "typing_extensions.overload",
        "typing_extensions.final",
        "typing_extensions.override",
        "typing_extensions.runtime_checkable",
        "contextlib.contextmanager",
        "contextlib.asynccontextmanager",
        "enum.unique",
    }
)

#: (module, attributes): where an imported name or attribute chain points. `("pkg.mod", ())` is the
#: module object itself, `("pkg.mod", ("f",))` the name `f` in it.
Target = tuple[str, tuple[str, ...]]


@dataclass
class Import:
    """One import statement, with its module made absolute."""

    module: str
    names: tuple[str, ...]  # names of `from m import a, b`; () for `import m`
    star: bool
    line: int


@dataclass
class Call:
    """A call whose function might be a dynamic lookup (see DYNAMIC_CALL_NAMES)."""

    chain: tuple[str, ...]
    args: list[ast.expr]
    keywords: dict[str, ast.expr]
    line: int


@dataclass
class Scan:
    """What a piece of code refers to: name/attribute chains, imports, possibly dynamic calls."""

    refs: dict[tuple[str, ...], int] = field(default_factory=dict)  # chain -> first line
    calls: list[Call] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    bound: dict[str, list[Target]] = field(default_factory=dict)  # names bound by those imports
    # `x.modules[...]` / `x.modules.get(...)`: chain -> keys ("const", name) / ("self",) / ("other",)
    keys: dict[tuple[str, ...], set[tuple[str, ...]]] = field(default_factory=dict)


@dataclass
class ModuleInfo:
    """A parsed project module. `settle` splits its top level into plain defs and the rest."""

    name: str
    rel: str  # path relative to the index root (the folder, for a namespace package)
    sha256: str
    is_package: bool
    body: list[ast.stmt] = field(default_factory=list)
    kind: str = "source"  # "source", "namespace" (a folder without __init__.py) or "binary"
    future_annotations: bool = False
    # name -> import targets, from imports anywhere in module-level code (try/if blocks included)
    imports: dict[str, list[Target]] = field(default_factory=dict)
    star: list[str] = field(default_factory=list)  # star-imported modules
    # name -> top-level statements (not plain defs) that bind or mutate it, or declare it `global`
    binders: dict[str, list[ast.stmt]] = field(default_factory=dict)
    plain: dict[str, list[ast.stmt]] = field(default_factory=dict)  # name -> plain top-level defs
    toplevel: list[ast.stmt] = field(default_factory=list)  # every other top-level statement, in order
    impure: list[str] = field(default_factory=list)  # defs/classes moved to toplevel (for a note)
    defined: set[str] = field(default_factory=set)  # names bound by module-level code other than imports
    bound_by: list[set[str]] = field(default_factory=list)  # per statement of body: names it binds

    @property
    def package(self) -> str:
        """The package relative imports of this module start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]

    def binds(self, name: str) -> bool:
        """Whether module-level code binds `name` (a def, a statement or an import)."""
        return name in self.plain or name in self.binders or name in self.imports

    def names(self) -> list[str]:
        """Every name module-level code binds."""
        return sorted({*self.plain, *self.binders, *self.imports})

    def settle(self, is_plain: Callable[[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef], bool]) -> None:
        """Sort top-level statements: plain defs (is_plain(node) true) apart, everything else in order.

        A def or class statement itself runs code when its decorators, defaults or class body call
        something; such a definition is not plain and counts with the top-level code.
        """
        for stmt, bound in zip(self.body, self.bound_by):
            if isinstance(stmt, DEFS) and stmt.name not in _HOOKS and is_plain(stmt):
                self.plain.setdefault(stmt.name, []).append(stmt)
                continue
            self.toplevel.append(stmt)
            if isinstance(stmt, DEFS):
                self.impure.append(stmt.name)
            for name in bound:
                self.binders.setdefault(name, []).append(stmt)


DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
# Module hooks that run on attribute access (PEP 562): they always count with the top level.
_HOOKS = frozenset({"__getattr__", "__dir__"})


def parse_module(name: str, rel: str, sha256: str, source: bytes, is_package: bool, filename: str) -> ModuleInfo:
    """Parse `source` (raises SyntaxError), drop docstrings, collect module-level imports and globals."""
    tree = ast.parse(source, filename=filename)
    strip_docstrings(tree)
    mod = ModuleInfo(name=name, rel=rel, sha256=sha256, is_package=is_package, body=tree.body)
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            mod.future_annotations |= any(a.name == "annotations" for a in stmt.names)
        bound, imports = _module_level_facts(stmt)
        # direct imports bind through `imports`; imports nested in try/if blocks bind both ways
        bound = set() if isinstance(stmt, (ast.Import, ast.ImportFrom)) else bound
        mod.bound_by.append(bound)
        mod.defined |= bound
        for node in imports:
            imps, bindings = import_bindings(node, mod.package)
            mod.star.extend(imp.module for imp in imps if imp.star)
            for local, target in bindings:
                mod.imports.setdefault(local, []).append(target)
    if b"global" in source:  # a function declaring `global X` rebinds X when it runs
        for stmt in tree.body:
            for inner in walk([stmt]):
                if isinstance(inner, ast.Global):
                    for gname in inner.names:
                        mod.binders.setdefault(gname, []).append(stmt)
    return mod


def strip_docstrings(node: ast.AST) -> None:
    """Remove bare string statements (docstrings and the like) in place: they never change behaviour."""
    for name in ("body", "orelse", "finalbody", "handlers", "cases"):
        stmts = getattr(node, name, None)
        if type(stmts) is not list or not stmts:  # Lambda/IfExp bodies are expressions: no statements
            continue
        if name in ("body", "orelse", "finalbody"):
            kept = [s for s in stmts if not _is_bare_string(s)]
            if len(kept) != len(stmts):
                stmts = kept if kept or isinstance(node, ast.Module) else [ast.Pass()]
                setattr(node, name, stmts)
        for child in stmts:  # statements (or except handlers / match cases) holding statements
            strip_docstrings(child)


def _is_bare_string(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def normalize(node: ast.AST) -> str:
    """Canonical source of a (docstring-stripped) node: comments and formatting do not survive."""
    return ast.unparse(node)


# Fields that never hold nodes we look at (names, flags, expression contexts): skipping them makes
# the walks below several times faster than ast.walk.
_LEAF_FIELDS = frozenset(
    {
        "ctx",
        "id",
        "attr",
        "arg",
        "name",
        "names",
        "module",
        "level",
        "kind",
        "type_comment",
        "asname",
        "is_async",
        "conversion",
        "simple",
        "rest",
        "kwd_attrs",
        "tag",
    }
)
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {ast.Constant: ()}


def children(node: ast.AST) -> list[ast.AST]:
    """The child nodes of `node` (without expression contexts)."""
    fields = _CHILD_FIELDS.get(node.__class__)
    if fields is None:
        fields = _CHILD_FIELDS[node.__class__] = tuple(f for f in node._fields if f not in _LEAF_FIELDS)
    out: list[ast.AST] = []
    for f in fields:
        value = getattr(node, f, None)
        if value.__class__ is list:
            out.extend(v for v in value if isinstance(v, ast.AST))
        elif isinstance(value, ast.AST):
            out.append(value)
    return out


def walk(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Every node under `nodes`, parents before their children."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        stack.extend(children(node))
        yield node


def _module_level_facts(stmt: ast.stmt) -> tuple[set[str], list[ast.Import | ast.ImportFrom]]:
    """Names `stmt` binds, deletes or mutates in module scope (`X[k] = v`, `X.a = v`, a statement
    `X.update(...)`), and the imports it runs there. Function, lambda, class and comprehension
    bodies have scopes of their own: only their names and headers (decorators, defaults, bases) count.
    """
    bound: set[str] = set()
    imports: list[ast.Import | ast.ImportFrom] = []
    local: set[int] = set()  # comprehension variables
    stack: list[ast.AST] = [stmt]
    while stack:
        node = stack.pop()
        if isinstance(node, _SCOPES):
            if not isinstance(node, ast.Lambda):
                bound.add(node.name)
            stack.extend(definition_headers(node))
            continue
        stack.extend(children(node))
        if isinstance(node, ast.Name):
            if not isinstance(node.ctx, ast.Load) and id(node) not in local:
                bound.add(node.id)
        elif isinstance(node, (ast.Subscript, ast.Attribute)):
            if not isinstance(node.ctx, ast.Load) and (root := _root_name(node)):
                bound.add(root)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and (root := _root_name(func.value)):
                bound.add(root)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
            bound.update(a.asname or a.name.split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
        elif isinstance(node, ast.comprehension):
            local.update(id(n) for n in walk([node.target]) if isinstance(n, ast.Name))
    return bound, imports


def definition_headers(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda) -> list[ast.expr]:
    """Expressions of a def/class/lambda evaluated where it is defined (not its body)."""
    if isinstance(node, ast.ClassDef):
        return [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]
    args = node.args
    out = [*args.defaults, *(d for d in args.kw_defaults if d is not None)]
    if isinstance(node, ast.Lambda):
        return out
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    out += [a.annotation for a in every if a is not None and a.annotation is not None]
    if node.returns is not None:
        out.append(node.returns)
    return [*node.decorator_list, *out]


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def import_bindings(node: ast.Import | ast.ImportFrom, package: str) -> tuple[list[Import], list[tuple[str, Target]]]:
    """The imports `node` makes (one per module) and the (local name, target) bindings."""
    if isinstance(node, ast.Import):
        bound: list[tuple[str, Target]] = []
        for alias in node.names:
            if alias.asname:
                bound.append((alias.asname, (alias.name, ())))
            else:  # `import a.b.c` binds `a`; a.b.c itself is reached through the Import
                top = alias.name.split(".")[0]
                bound.append((top, (top, ())))
        return [Import(a.name, (), False, node.lineno) for a in node.names], bound
    base = node.module or ""
    if node.level:
        parts = package.split(".") if package else []
        parent = ".".join(parts[: len(parts) - (node.level - 1)]) if node.level - 1 <= len(parts) else ""
        base = f"{parent}.{base}" if base and parent else (parent or base)
    names = tuple(a.name for a in node.names if a.name != "*")
    star = len(names) != len(node.names)
    bound = [(a.asname or a.name, (base, (a.name,))) for a in node.names if a.name != "*"]
    return [Import(base, names, star, node.lineno)], bound


def chain_of(node: ast.AST | None) -> tuple[str, ...] | None:
    """`a.b.c` -> ("a", "b", "c"); None when the chain does not start at a name."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return (node.id, *reversed(attrs))
    return None


def constant_str(node: ast.AST | None) -> str | None:
    """The value of a string literal, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


# -- references, read with Python's scoping ---------------------------------------------------------

_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


class _Scope:
    """A function, lambda or comprehension scope: the names local to it. A name local to an
    enclosing scope is not a reference to the module; a name an import binds there still is one
    (it is followed through `Scan.bound`)."""

    __slots__ = ("local", "imported", "parent")

    def __init__(self, local: set[str], imported: set[str], parent: _Scope | None) -> None:
        self.local = local
        self.imported = imported
        self.parent = parent

    def hides(self, name: str) -> bool:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.local:
                return name not in scope.imported
            scope = scope.parent
        return False


def _function_scope(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, parent: _Scope | None) -> _Scope:
    """The scope of a def or lambda: its parameters and the names its body binds, less those it
    declares `global` (module names) or `nonlocal` (found again in an enclosing function)."""
    args = node.args
    params = {
        a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg) if a is not None
    }
    body = [node.body] if isinstance(node, ast.Lambda) else node.body
    bound, declared, imported = _bindings(body)
    return _Scope((params | bound) - declared, imported - declared, parent)


def _bindings(nodes: Iterable[ast.AST]) -> tuple[set[str], set[str], set[str]]:
    """(names bound, names declared global or nonlocal, names bound by imports) by the code of one
    scope. Nested defs and classes bind their names here and evaluate their headers here; a
    comprehension's own variables are its own, but a walrus in it binds here."""
    bound: set[str] = set()
    declared: set[str] = set()
    imported: set[str] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            stack.extend(definition_headers(node))
            continue
        if isinstance(node, ast.Lambda):
            stack.extend(definition_headers(node))
            continue
        if isinstance(node, _COMPREHENSIONS):
            # every part but the targets: the only names stored there are walrus targets
            stack.extend(p for p in children(node) if not isinstance(p, ast.comprehension))
            for gen in node.generators:
                stack.extend([gen.iter, *gen.ifs])
            continue
        stack.extend(children(node))
        if isinstance(node, ast.Name):
            if not isinstance(node.ctx, ast.Load):
                bound.add(node.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            declared.update(node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = {a.asname or a.name.split(".")[0] for a in node.names if a.name != "*"}
            bound |= names
            imported |= names
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return bound, declared, imported


def scan(nodes: Iterable[ast.AST], package: str) -> Scan:
    """References made by module-level code `nodes` (functions included, with their nested code and
    string annotations). Names are resolved with Python's scoping: a parameter, a local variable or
    a comprehension variable is no reference, even when the module binds the same name. Class
    bodies are read conservatively: a name bound there may still be the module's."""
    out = Scan()
    skip: set[int] = set()  # inner nodes of a chain already recorded, functions of recorded calls
    keyed: dict[int, tuple[str, ...]] = {}  # id(`x.modules` node) -> how it is subscripted
    stack: list[tuple[ast.AST, _Scope | None]] = [(n, None) for n in nodes]
    while stack:
        node, scope = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            # decorators, defaults and annotations are evaluated where the def is
            stack.extend((h, scope) for h in definition_headers(node))
            stack.extend((a, scope) for a in _string_annotations(node))
            inner = _function_scope(node, scope)
            body = [node.body] if isinstance(node, ast.Lambda) else node.body
            stack.extend((b, inner) for b in body)
            continue
        if isinstance(node, _COMPREHENSIONS):
            first, *rest = node.generators
            stack.append((first.iter, scope))  # evaluated in the enclosing scope
            local = {n.id for g in node.generators for n in walk([g.target]) if isinstance(n, ast.Name)}
            inner = _Scope(local, set(), scope)
            parts: list[ast.AST] = [first.target, *first.ifs, *(p for g in rest for p in (g.target, g.iter, *g.ifs))]
            parts += [p for p in children(node) if not isinstance(p, ast.comprehension)]
            stack.extend((p, inner) for p in parts)
            continue
        # a class body sees the enclosing function's names; what it binds itself may be global
        stack.extend((c, scope) for c in children(node))
        if isinstance(node, (ast.Name, ast.Attribute)):
            if id(node) in skip or (isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load)):
                continue
            chain = chain_of(node)
            if chain is None:
                continue
            _skip_inner(node, skip)
            if scope is not None and scope.hides(chain[0]):
                continue
            out.refs.setdefault(chain, getattr(node, "lineno", 0))
            if chain[-1] == "modules":
                out.keys.setdefault(chain, set()).add(keyed.get(id(node), ("other",)))
        elif isinstance(node, ast.Call):
            _scan_call(node, scope, out, skip, keyed)
        elif isinstance(node, ast.Subscript) and _is_modules(node.value):
            keyed[id(node.value)] = _key_kind(node.slice)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imps, bound = import_bindings(node, package)
            out.imports.extend(imps)
            for bound_name, target in bound:
                out.bound.setdefault(bound_name, []).append(target)
        elif isinstance(node, ast.AnnAssign):
            stack.extend((a, scope) for a in _string_annotation(node))
    return out


def _string_annotations(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> list[ast.AST]:
    """The parsed string annotations of a def's parameters and return value."""
    if isinstance(node, ast.Lambda):
        return []
    args = node.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return [e for a in every if a is not None for e in _string_annotation(a)] + _string_annotation(node)


def _scan_call(
    node: ast.Call, scope: _Scope | None, out: Scan, skip: set[int], keyed: dict[int, tuple[str, ...]]
) -> None:
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "get" and _is_modules(func.value):
        skip.add(id(func))  # sys.modules.get(k): recorded as `sys.modules` subscripted by k
        keyed[id(func.value)] = _key_kind(node.args[0] if node.args else None)
        return
    chain = chain_of(func)
    if chain and chain[-1] in DYNAMIC_CALL_NAMES:
        skip.add(id(func))
        _skip_inner(func, skip)
        if scope is None or not scope.hides(chain[0]):
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            out.calls.append(Call(chain, list(node.args), keywords, node.lineno))


def _is_modules(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr == "modules"
    return isinstance(node, ast.Name) and node.id == "modules"


def _skip_inner(node: ast.AST, skip: set[int]) -> None:
    while isinstance(node, ast.Attribute):
        node = node.value
        skip.add(id(node))


def _key_kind(node: ast.AST | None) -> tuple[str, ...]:
    value = constant_str(node)
    if value is not None:
        return ("const", value)
    if isinstance(node, ast.Name) and node.id == "__name__":
        return ("self",)
    return ("other",)


def _string_annotation(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        annotation = node.returns
    else:
        annotation = getattr(node, "annotation", None)
    text = constant_str(annotation)
    if text is None:
        return []
    try:
        return [ast.parse(text, mode="eval").body]
    except SyntaxError:
        return []
