"""`skipwise serve`: a warm process that runs `skipwise` commands without paying their start.

A `skipwise` command that runs anything through Dagster spends 2-3 s before its first partition:
importing Dagster and its storage layers (SQLAlchemy, Alembic), polars and skipwise, in every
process (each `dvc repro` stage is one). The server imports those libraries once and then, for each
command a client hands it, forks a child that runs the command as the client would have: the
client's arguments, working folder, environment, `sys.path`, and its stdin, stdout and stderr (the
file descriptors themselves, passed over the socket). The exit code goes back to the client, which
forwards Ctrl-C and termination signals to the child.

What keeps it faithful:
- the server never imports a project's code: each child imports the definitions from disk, so code
  versions are those of the code that runs, exactly as in a fresh process;
- every library module the server loaded is checked (inode, size, times) before each command: an
  upgraded or edited library makes the server refuse the command and exit; the client then runs it
  itself, like any command without a server;
- a client is served only by a server of the same interpreter, library version and `sys.path`
  (the socket's name is a digest of them) and of the same user (checked on the socket);
- the server has no threads when it forks (checked).

Accounting: a child's CPU, wall and memory are its own (the OS counts a forked child from zero); the
server's own start (the imports) is recorded once, as a run record in the ledger of the project it
was started in. Any failure to reach the server runs the command in the client's process.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import gc
import hashlib
import json
import os
import select
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from skipwise.core.version import __version__

#: commands never handed to a server: the server itself, the project scaffold, the long-running UI
NOT_SERVED = frozenset({"serve", "init", "ui"})
#: $SKIPWISE_SERVER=off: never hand a command to a server
SERVER_ENV = "SKIPWISE_SERVER"
#: the libraries a command imports before its first partition (what the server saves each command)
PRELOAD = (
    "skipwise.cli.main",
    "skipwise.adapters.dagster",
    "skipwise.adapters.dagster.run",
    "skipwise.adapters.dagster.step",
    "skipwise.adapters.dagster.eventlog",
    "dagster._core.storage.legacy_storage",
    "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.execution.api",
    "dagster._core.definitions.materialize",
    # what a run imports as it goes (its executor, the instance's factories, secrets from .env,
    # the compute logs, the IO manager's paths): about 0.1 s of each served command otherwise
    "dagster._core.execution.execute_in_process",
    "dagster._core.executor.in_process",
    "dagster._core.execution.plan.active",
    "dagster._core.instance.factory",
    "dagster._core.instance.runs.run_domain",
    "dagster._core.secrets.env_file",
    "dagster._core.storage.root",
    "dagster._core.definitions.repository_definition.repository_data_builder",
    "dagster._core.definitions.external_asset",
    "dagster._core.system_config.composite_descent",
    "dagster._core.types.transform_typing",
    "dagster._core.types.primitive_mapping",
    "skipwise.adapters.dagster.computelogs",
    "upath.implementations.local",
    "statistics",
    "_strptime",
    "alembic.command",
    "alembic.config",
    "polars",
    "polars._utils.parquet",
    "pyarrow.parquet",
)


# -- where a server listens -----------------------------------------------------------------------


def socket_path() -> Path:
    """The socket of the server for this interpreter, library version and module path, in a
    folder only this user can enter."""
    key = json.dumps([os.path.realpath(sys.executable), sys.prefix, __version__, _module_path(sys.path)])
    name = hashlib.sha256(key.encode()).hexdigest()[:20]
    return _private_folder() / f"{name}.sock"


def _module_path(path: list[str]) -> list[str]:
    # sys.path[0] is the script's folder (`skipwise`) or the working folder (`python -m`): each
    # child takes its client's own, so it does not have to match.
    return [os.path.abspath(p) for p in path[1:]]


def _private_folder() -> Path:
    folder = Path(tempfile.gettempdir()) / f"skipwise-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    st = folder.lstat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not folder.is_dir() or folder.is_symlink():
        raise OSError(errno.EPERM, f"{folder} is not a folder of this user's alone")
    return folder


# -- the client -------------------------------------------------------------------------------------


def hand_over(argv: list[str]) -> int | None:
    """Run `skipwise <argv>` in a server's child and return its exit code; None when no server
    takes it (none is running, it refused, or it could not be reached): run it here then."""
    if os.environ.get(SERVER_ENV, "").lower() in ("off", "0", "false", "no"):
        return None
    command = command_of(argv)
    if command is None or command in NOT_SERVED or "-h" in argv or "--help" in argv:
        return None
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(socket_path()))
    except OSError:
        return None
    with conn:
        try:
            request = {
                "argv": list(argv),
                "cwd": os.getcwd(),
                "env": dict(os.environ),
                "path": list(sys.path),
                "program": sys.argv[0],
            }
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            socket.send_fds(conn, [(json.dumps(request) + "\n").encode()], [0, 1, 2])
            reply = _read_line(conn)
        except (OSError, ValueError):
            return None
        if reply is None or "pid" not in reply:
            return None  # refused (say why only when asked: the command runs here as usual)
        pid = int(reply["pid"])
        forward = _forward_signals(pid)
        try:
            done = _read_line(conn)
        finally:
            for sig, old in forward.items():
                signal.signal(sig, old)
    if done is None or "rc" not in done:
        print(
            "Error: the skipwise server's process for this command ended without an exit code",
            file=sys.stderr,
        )
        return 1
    return int(done["rc"])


#: the options before the command that take a value (`skipwise --root DIR --defs MODULE <command>`)
GLOBAL_OPTIONS_WITH_VALUE = frozenset({"--root", "--defs"})


def command_of(argv: list[str]) -> str | None:
    """The subcommand of `skipwise <argv>`: the first argument that is neither a global option nor
    a global option's value; None when there is none."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in GLOBAL_OPTIONS_WITH_VALUE:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1  # --root=DIR, or a flag
            continue
        return arg
    return None


def _forward_signals(pid: int) -> dict[int, Any]:
    def forward(signum: int, _frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except OSError:
            pass  # already gone

    return {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}


def _read_line(conn: socket.socket) -> dict[str, Any] | None:
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = conn.recv(65536)
        except InterruptedError:
            continue
        if not chunk:
            return None
        data += chunk
    value = json.loads(data)
    return value if isinstance(value, dict) else None


# -- the server -------------------------------------------------------------------------------------


def serve(
    idle_minutes: float,
    run: Callable[[list[str]], int],
    record_start: Callable[[], None] = lambda: None,
    log: Any = None,
) -> int:
    """Import the libraries, `record_start()` what that cost, then serve commands (each
    `run(argv)` in a child) until idle for `idle_minutes` (or a library changes, or SIGTERM/SIGINT)."""
    log = log or sys.stderr
    t0 = time.perf_counter()
    for name in PRELOAD:
        __import__(name)
    if threading.active_count() != 1:
        print(
            f"Error: importing the libraries started {threading.active_count() - 1} thread(s); "
            "forking is not safe here, so this server cannot run",
            file=log,
        )
        return 1
    record_start()
    # Every object so far is the libraries': the children's collections need not visit them, and
    # visiting them would copy every page of the heap into each child (copy-on-write).
    gc.collect()
    gc.freeze()
    loaded = _loaded_files()
    path = socket_path()
    listener = _bind(path)
    if listener is None:
        print(f"skipwise serve: a server is already running for this environment ({path})", file=log)
        return 0
    stop = {"now": False}

    def ask_stop(_signum: int, _frame: Any) -> None:
        stop["now"] = True

    old = {s: signal.signal(s, ask_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    children: set[int] = set()
    print(
        f"skipwise serve: ready in {time.perf_counter() - t0:.1f} s ({len(loaded)} library files watched), "
        f"listening on {path}; idle exit after {idle_minutes:g} min",
        file=log,
        flush=True,
    )
    last = time.monotonic()
    try:
        while not stop["now"]:
            _reap(children)
            if children:
                last = time.monotonic()
            elif time.monotonic() - last > idle_minutes * 60:
                print("skipwise serve: idle, exiting", file=log, flush=True)
                break
            try:
                ready, _, _ = select.select([listener], [], [], 0.5)
            except InterruptedError:
                continue
            if not ready:
                continue
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            last = time.monotonic()
            with conn:
                changed = _changed(loaded)
                if changed:
                    _refuse(conn, f"{changed} changed since the server started")
                    print(f"skipwise serve: {changed} changed since it started; exiting", file=log, flush=True)
                    break
                pid = _accept(conn, listener, run, log)
                if pid:
                    children.add(pid)
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            if path.is_socket():
                path.unlink()
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0


def _bind(path: Path) -> socket.socket | None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe, contextlib.suppress(OSError):
        probe.connect(str(path))
        return None  # another server answers there
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a server that was killed
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener


def _accept(conn: socket.socket, listener: socket.socket, run: Callable[[list[str]], int], log: Any) -> int | None:
    """Read one request and fork its child; the child's pid (None when refused)."""
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    if uid != os.getuid():
        _refuse(conn, "another user")
        return None
    conn.settimeout(10)
    try:
        msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        while not msg.endswith(b"\n"):
            more = conn.recv(1 << 20)
            if not more:
                raise ValueError("the request ended early")
            msg += more
        request = json.loads(msg)
    except (OSError, ValueError) as exc:
        print(f"skipwise serve: a request could not be read ({exc})", file=log, flush=True)
        return None
    conn.settimeout(None)
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        _refuse(conn, "stdin, stdout and stderr were not passed")
        return None
    pid = os.fork()
    if pid == 0:
        listener.close()
        _child(conn, request, fds, run)  # never returns
    for fd in fds:
        os.close(fd)
    print(f"skipwise serve: {' '.join(request['argv'])} (in {request['cwd']}): process {pid}", file=log, flush=True)
    return pid


def _child(conn: socket.socket, request: dict[str, Any], fds: list[int], run: Callable[[list[str]], int]) -> None:
    """In the forked child: become the client's command, run it, send its exit code, exit."""
    rc = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpgid(0, 0)  # signals for the server's group are not the command's
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]  # out of 0-2's way first
        for fd in fds:
            os.close(fd)
        for target, fd in enumerate(high):
            os.dup2(fd, target)  # inheritable: the command's own children write there too
            os.close(fd)
        sys.stdin = os.fdopen(0, "r", closefd=False)
        sys.stdout = os.fdopen(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = request["path"]
        sys.argv = [request["program"], *request["argv"]]
        conn.sendall((json.dumps({"pid": os.getpid()}) + "\n").encode())
        rc = run(request["argv"])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        rc = 130
    except BaseException:  # noqa: BLE001 - the client must hear of it, not the server
        traceback.print_exc()
        rc = 1
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()  # what a process's normal exit runs (the cost records' last write)
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
        with contextlib.suppress(OSError):
            conn.sendall((json.dumps({"rc": rc}) + "\n").encode())
        os._exit(rc if isinstance(rc, int) and 0 <= rc < 256 else 1)


def _refuse(conn: socket.socket, why: str) -> None:
    with contextlib.suppress(OSError):
        conn.sendall((json.dumps({"refused": why}) + "\n").encode())


def _reap(children: set[int]) -> None:
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


def _loaded_files() -> dict[str, tuple[int, int, int, int]]:
    """Every file a loaded module came from, with (inode, size, mtime, ctime)."""
    out: dict[str, tuple[int, int, int, int]] = {}
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None)
        if not name or name in out:
            continue
        try:
            st = os.stat(name)
        except OSError:
            continue
        out[name] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return out


def _changed(loaded: dict[str, tuple[int, int, int, int]]) -> str:
    """The first loaded library file that changed (or disappeared) since the start, else ""."""
    for name, was in loaded.items():
        try:
            st = os.stat(name)
        except OSError:
            return name
        if (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) != was:
            return name
    return ""
