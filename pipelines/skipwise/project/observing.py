"""Observing what project code reads: files, folder listings and environment variables.

A code version sees Python source; what the code reads while it runs (a JSON config, a CSV lookup,
a `.sql` query, `os.environ["FEATURE_MODE"]`) is observed instead, while a partition's body runs
(`recording()`) and while each project module's top-level code runs on import (`importing()`,
called by `skipwise.project.recorder`'s loader), and kept in the partition's manifest (`skipwise.core.observed`).

How each read is seen:
- Python's own I/O (`open`, `Path.read_text`, `os.open`, pandas' C parser, `os.listdir`/`scandir`,
  so `glob` and `Path.iterdir` too) through an audit hook (`sys.addaudithook`);
- the native readers of polars, pandas, pyarrow and DuckDB open files themselves, unseen by the hook:
  their Python entry points are wrapped and their path arguments observed (a folder counts by its
  listing and every file in it; a glob by its matches and its folder's listing; DuckDB SQL by the
  quoted literals that name existing files). Names imported from those modules into project modules
  (`from polars import read_csv`) are rebound to the wrappers as the modules finish importing;
- environment variables through `os.environ`'s class (so `os.getenv`, `.get`, `in`, `[...]`), counted
  only when the first caller outside the standard library is project code: boto3 reading credentials
  is not a dependency of the partition.

A file counts when project code asked for it (its own read, or a library reading a path the project
gave it; not a read skipwise makes for itself) and it is not part of the Python installation, a system
or user-configuration folder, bytecode or Python source (code versions count those), or a file the
same body wrote. What skipwise manages (partition outputs, DVC sources) is left out by the engine.
"""

from __future__ import annotations

import contextlib
import functools
import glob as _glob
import os
import re
import sys
import sysconfig
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

Stamp = tuple[int, int, int]  # (st_mtime_ns, st_ctime_ns, st_size) when opened


@dataclass(eq=False)  # one per body or import: the stack removes this one, not an equal one
class Reads:
    """What one body (or one module's import) read: path -> stamp when opened (None: absent),
    folder -> its entry names, variable -> value (None: unset)."""

    files: dict[str, Stamp | None] = field(default_factory=dict)
    dirs: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    env: dict[str, str | None] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)

    def merge(self, other: "Reads") -> None:
        for path, st in other.files.items():
            self.files.setdefault(path, st)
        for path, names in other.dirs.items():
            self.dirs.setdefault(path, names)
        for name, value in other.env.items():
            self.env.setdefault(name, value)


_STACK: list[Reads] = []  # innermost last: a module imported inside a body records its own reads
_IMPORTS: dict[str, Reads] = {}  # real path of a project module -> what its top-level code read
_GUARD = threading.local()
_INSTALLED = [False]
_ORIGINALS: dict[int, Callable] = {}  # id(original reader) -> its wrapper
_PATCHED: set[str] = set()

_SKIP_SUFFIXES = (".py", ".pyc", ".pyo", ".pyi", ".so", ".pyd", ".pth")
_METADATA = re.compile(r"\.(egg|dist)-info(/|$)")


#: the skipwise package's folder (this module is in its project/ folder)
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _excluded_prefixes() -> tuple[str, ...]:
    paths = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        _PACKAGE,
    }  # skipwise's own files
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            paths.add(sysconfig.get_path(key))
        except KeyError:
            continue
    home = os.path.expanduser("~")
    out = {os.path.realpath(p) + os.sep for p in paths if p} | {os.path.abspath(p) + os.sep for p in paths if p}
    # dot-folders of the home folder hold credentials and caches (~/.aws, ~/.config, ~/.cache)
    out |= {"/proc/", "/sys/", "/dev/", "/etc/", "/usr/", os.path.join(home, ".")}
    return tuple(sorted(out))


_EXCLUDED: tuple[str, ...] = ()
_SELF = _PACKAGE + os.sep  # skipwise's own files
_OBSERVING = os.path.abspath(__file__).removesuffix("c")  # this module: its wrappers call on the project's behalf
_STDLIB: tuple[str, ...] = ()


def install() -> None:
    """Start observing (idempotent): the audit hook and the environment's class. Cheap while
    nothing records: each hook call returns at once."""
    global _EXCLUDED, _STDLIB
    if _INSTALLED[0]:
        return
    _INSTALLED[0] = True
    _EXCLUDED = _excluded_prefixes()
    # os.py's folder: sysconfig's "stdlib" of a virtual environment is its own lib/pythonX.Y, which holds site-packages
    stdlib = os.path.dirname(os.path.abspath(os.__file__))
    _STDLIB = tuple(sorted({os.path.realpath(stdlib) + os.sep, stdlib + os.sep}))
    sys.addaudithook(_hook)
    if type(os.environ) is os._Environ:  # noqa: E721 - exactly the stdlib class, not a subclass already
        os.environ.__class__ = _ObservedEnviron


@contextlib.contextmanager
def recording() -> Iterator[Reads]:
    """Observe what runs inside the block (a partition's body)."""
    _patch_readers()
    reads = Reads()
    _STACK.append(reads)
    try:
        yield reads
    finally:
        _STACK.remove(reads)


@contextlib.contextmanager
def importing(path: str, module: Any = None) -> Iterator[None]:
    """Observe the top-level code of the project module at `path` while it is imported."""
    _patch_readers()
    reads = Reads()
    _STACK.append(reads)
    try:
        yield
    finally:
        _STACK.remove(reads)
        _IMPORTS[os.path.realpath(path)] = reads
        if module is not None:
            _rebind(module)


def imported_reads(path: str) -> Reads | None:
    """What the module at `path` read while it was imported; None if it was not observed."""
    # A path recorded as it is (module files usually are real paths) needs no resolving: every
    # partition asks for each module its code ran from.
    found = _IMPORTS.get(path)
    return found if found is not None else _IMPORTS.get(os.path.realpath(path))


# -- the audit hook ---------------------------------------------------------------------------------


def _hook(event: str, args: tuple) -> None:
    if not _STACK or getattr(_GUARD, "busy", False):
        return
    if event == "open":
        path, mode, flags = args
        if path is None or isinstance(path, int):
            return
        if isinstance(mode, str):
            reading = "r" in mode or "+" in mode
            writing = any(c in mode for c in "wax+")
        else:
            access = (flags or 0) & os.O_ACCMODE
            reading, writing = access != os.O_WRONLY, access != os.O_RDONLY or bool((flags or 0) & os.O_CREAT)
        _note_file(path, reading, writing)
    elif event in ("os.listdir", "os.scandir"):
        path = args[0] if args else None
        if not isinstance(path, int):
            _note_dir("." if path is None else path)


@contextlib.contextmanager
def _busy() -> Iterator[None]:
    """Observation's own reads (a listing, a glob) are not the project's: the hook ignores them."""
    before = getattr(_GUARD, "busy", False)
    _GUARD.busy = True
    try:
        yield
    finally:
        _GUARD.busy = before


def _candidate(path: Any) -> str | None:
    """The absolute path of `path` if it may be a dependency (cheap checks first), else None."""
    try:
        text = os.fsdecode(path)
    except TypeError:
        return None
    if "://" in text or text.startswith("<"):
        return None
    full = os.path.abspath(text)
    if full.endswith(_SKIP_SUFFIXES) or full.startswith(_EXCLUDED) or "/__pycache__/" in full or _METADATA.search(full):
        return None  # (packaging metadata: importlib.metadata scans every sys.path entry for plugins)
    return full


_STDLIB_CODE, _OWN_CODE, _OBSERVING_CODE, _LIBRARY_CODE, _PROJECT_CODE = range(5)
_KINDS: dict[str, int] = {}  # a code object's file name -> what kind of code it is (asked per frame: memoized)


def _kind(filename: str) -> int:
    kind = _KINDS.get(filename)
    if kind is None:
        full = os.path.abspath(filename)
        if filename.startswith("<") or full.startswith(_STDLIB) and "-packages" + os.sep not in full:
            kind = _STDLIB_CODE
        elif full.startswith(_OBSERVING):
            kind = _OBSERVING_CODE
        elif full.startswith(_SELF):
            kind = _OWN_CODE
        elif full.startswith(_EXCLUDED):
            kind = _LIBRARY_CODE
        else:
            kind = _PROJECT_CODE
        _KINDS[filename] = kind
    return kind


def _project_on_stack(listing: bool = False) -> bool:
    """Whether project code asked for this read: walking out from the innermost frame past the
    standard library and third-party libraries (numpy opening a path the project gave it), the
    first frame that is neither. A read skipwise makes itself (its configuration) is not one, nor
    a folder the import system lists to find a module (`listing`)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if listing and filename.startswith("<frozen importlib"):
            return False
        kind = _kind(filename)
        if kind == _OWN_CODE:
            return False
        if kind == _PROJECT_CODE:
            return True
        frame = frame.f_back
    return False


def _note_file(path: Any, reading: bool, writing: bool) -> None:
    full = _candidate(path)
    if full is None:
        return
    top = _STACK[-1]
    if writing:
        top.written.add(full)
        top.files.pop(full, None)  # a file the body writes is its own scratch, not an input
        return
    if reading and full not in top.written and full not in top.files and _project_on_stack():
        top.files[full] = _stamp(full)


def _note_dir(path: Any) -> None:
    full = _candidate(path)
    if full is None:
        return
    top = _STACK[-1]
    if full in top.dirs or full in top.written or not _project_on_stack(listing=True):
        return
    with _busy():
        try:
            top.dirs[full] = tuple(sorted(os.listdir(full)))
        except OSError:
            top.dirs[full] = None


def _stamp(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def file_stamp(path: str) -> Stamp | None:
    """What `Reads.files` holds for `path` as it is now (to tell a file changed since it was read)."""
    return _stamp(path)


# -- environment variables ----------------------------------------------------------------------------


class _ObservedEnviron(os._Environ):
    """os.environ, recording the variables project code reads while a body or an import is observed."""

    def __getitem__(self, key: str) -> str:
        try:
            value = super().__getitem__(key)
        except KeyError:
            if _STACK:
                _note_env(key, None)
            raise
        if _STACK:
            _note_env(key, value)
        return value


def _note_env(name: str, value: str | None) -> None:
    if getattr(_GUARD, "busy", False) or not isinstance(name, str) or name in _STACK[-1].env:
        return
    frame = sys._getframe(2)
    while frame is not None and _kind(frame.f_code.co_filename) == _STDLIB_CODE:
        frame = frame.f_back  # the first caller outside the standard library decides
    if frame is not None and _kind(frame.f_code.co_filename) == _PROJECT_CODE:
        _STACK[-1].env.setdefault(name, value)


# -- native readers -----------------------------------------------------------------------------------

#: module -> entry points whose first argument (or these keywords) names what they read
_READERS = {
    "polars": (
        "read_csv",
        "scan_csv",
        "read_csv_batched",
        "read_parquet",
        "scan_parquet",
        "read_ipc",
        "scan_ipc",
        "read_ipc_stream",
        "read_json",
        "read_ndjson",
        "scan_ndjson",
        "read_excel",
        "read_ods",
        "read_avro",
        "read_delta",
        "scan_delta",
        "read_parquet_schema",
    ),
    "pandas": (
        "read_csv",
        "read_table",
        "read_fwf",
        "read_parquet",
        "read_feather",
        "read_orc",
        "read_json",
        "read_excel",
        "read_pickle",
        "read_xml",
        "read_hdf",
        "read_stata",
        "read_sas",
        "read_spss",
    ),
    "pyarrow.parquet": ("read_table", "read_pandas", "read_metadata", "read_schema"),
    "pyarrow.csv": ("read_csv", "open_csv"),
    "pyarrow.json": ("read_json",),
    "pyarrow.feather": ("read_table", "read_feather"),
    "pyarrow.orc": ("read_table",),
    "pyarrow.dataset": ("dataset",),
    "duckdb": ("read_csv", "read_parquet", "read_json", "from_csv_auto", "from_parquet", "sql", "query", "execute"),
}
_PATH_KEYWORDS = (
    "source",
    "path",
    "file",
    "filepath_or_buffer",
    "path_or_buf",
    "path_or_paths",
    "io",
    "where",
    "path_or_buffer",
    "input_file",
    "file_glob",
    "path_or_file",
)
_SQL = ("sql", "query", "execute")
_LITERAL = re.compile(r"'((?:[^']|'')+)'")
_GLOB_CHARS = re.compile(r"[*?\[]")
_MAX_FILES = 10_000  # of one folder argument: a dataset of more files counts by its listing beyond that


def _patch_readers() -> None:
    """Wrap the readers of every target module imported so far (each once)."""
    for name, entries in _READERS.items():
        if name in _PATCHED or name not in sys.modules:
            continue
        _PATCHED.add(name)
        module = sys.modules[name]
        for entry in entries:
            fn = getattr(module, entry, None)
            if fn is None or getattr(fn, "__skipwise_observed__", None) is not None:
                continue
            wrapper = _wrap(fn, entry in _SQL and name == "duckdb")
            try:
                setattr(module, entry, wrapper)
            except (AttributeError, TypeError):
                continue
            _ORIGINALS[id(fn)] = wrapper
        if name == "duckdb":
            _patch_duckdb_connection(module)


def _patch_duckdb_connection(duckdb: Any) -> None:
    cls = getattr(duckdb, "DuckDBPyConnection", None)
    for entry in ("sql", "query", "execute", "read_csv", "read_parquet", "read_json", "from_csv_auto", "from_parquet"):
        fn = getattr(cls, entry, None)
        if fn is None:
            continue
        sql = entry in _SQL

        def method(self: Any, *args: Any, _fn: Callable = fn, _sql: bool = sql, **kwargs: Any) -> Any:
            if _STACK:
                _note_arguments(args, kwargs, _sql)
            return _fn(self, *args, **kwargs)

        try:
            setattr(cls, entry, method)
        except (AttributeError, TypeError):
            return  # a type that refuses new attributes: SQL through a connection is not observed


def _wrap(fn: Callable, sql: bool) -> Callable:
    @functools.wraps(fn)
    def observed(*args: Any, **kwargs: Any) -> Any:
        if _STACK:
            _note_arguments(args, kwargs, sql)
        return fn(*args, **kwargs)

    observed.__skipwise_observed__ = fn  # type: ignore[attr-defined]
    return observed


def _rebind(module: Any) -> None:
    """Point names a project module imported from a reader's module at the wrappers."""
    if not _ORIGINALS:
        return
    for name, value in list(vars(module).items()):
        wrapper = _ORIGINALS.get(id(value))
        if wrapper is not None and getattr(wrapper, "__skipwise_observed__", None) is value:
            setattr(module, name, wrapper)


def _note_arguments(args: tuple, kwargs: dict, sql: bool) -> None:
    first = args[0] if args else next((kwargs[k] for k in _PATH_KEYWORDS if k in kwargs), None)
    if first is None:
        return
    if sql:
        if isinstance(first, str):
            for literal in _LITERAL.findall(first):
                _note_path(literal.replace("''", "'"), quiet=True)
        return
    for item in first if isinstance(first, (list, tuple)) else [first]:
        if isinstance(item, (str, bytes, os.PathLike)):
            _note_path(item)


def _note_path(path: Any, quiet: bool = False) -> None:
    """A path a native reader was given: a file, a folder (every file in it) or a glob."""
    try:
        text = os.fsdecode(path)
    except TypeError:
        return
    if "://" in text:
        return
    with _busy():
        wildcard = _GLOB_CHARS.search(text)
        if wildcard:
            matches = _glob.glob(text, recursive=True)
            folders = [text[: wildcard.start()].rpartition(os.sep)[0] or "."]
            files = [m for m in matches if os.path.isfile(m)]
        elif os.path.isdir(text):
            folders, files = [], []
            for dirpath, dirnames, filenames in os.walk(text):
                dirnames.sort()
                folders.append(dirpath)
                files += [os.path.join(dirpath, f) for f in sorted(filenames)]
                if len(files) > _MAX_FILES:
                    break
        else:
            if quiet and not os.path.isfile(text):
                return  # an SQL literal that names no file
            folders, files = [], [text]
    for f in files[:_MAX_FILES]:
        _note_file(f, reading=True, writing=False)
    for d in folders:
        _note_dir(d)
