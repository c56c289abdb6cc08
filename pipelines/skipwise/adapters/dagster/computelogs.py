"""Dagster's local compute logs (each run's captured stdout and stderr, which the UI shows) with
the terminal copy made by a thread instead of two processes per stream.

Dagster's `LocalComputeLogManager` points the process's stdout and stderr at the run's log files
for the run's duration and, so the output still reaches the terminal, starts for each of them a
`tail -F` of the file and a Python interpreter watching that the tail is not orphaned: four
processes per run, about 15-50 ms of CPU and up to 0.1 s of wall before the run's first step. This
subclass points the streams at the same files the same way and copies what is written to them to
where the streams went before with one thread per stream, which reads the file until the run ends.
The files, their names and the completion marker are Dagster's: the UI, `dagster dev` and a plain
`dagster` command read them as they would.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dagster._core.execution.compute_logs import _fileno, redirect_to_file, should_disable_io_stream_redirect
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION
from dagster._core.storage.local_compute_log_manager import (
    LocalComputeLogManager as DagsterLocalComputeLogManager,
)
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file

DAGSTER_LOCAL = ("dagster._core.storage.local_compute_log_manager", "LocalComputeLogManager")
#: how often the copy looks for more output while the run goes on
POLL_SECONDS = 0.1


class LocalComputeLogManager(DagsterLocalComputeLogManager):
    """Dagster's local compute logs (same files), copied to the terminal by a thread per stream."""

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> LocalComputeLogManager:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Iterator[CapturedLogContext]:
        outpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        errpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with _mirrored(sys.stdout, outpath), _mirrored(sys.stderr, errpath):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))  # as Dagster's: the capture is complete


@contextmanager
def _mirrored(stream: Any, path: str) -> Iterator[None]:
    """`stream`'s file descriptor pointed at `path` (Dagster's `redirect_to_file`), and what is
    written there copied to where it pointed before, from the file's start, until the block ends."""
    ensure_file(path)
    fd = _fileno(stream)
    if not fd or should_disable_io_stream_redirect():
        with redirect_to_file(stream, path):  # which leaves a stream without a descriptor as it is
            yield
        return
    stream.flush()
    target = os.dup(fd)
    done = threading.Event()
    copier = threading.Thread(target=_copy, args=(path, target, done), name="skipwise-compute-log", daemon=True)
    copier.start()
    try:
        with redirect_to_file(stream, path):
            yield
    finally:
        done.set()  # the descriptor points back: what the run wrote is all in the file
        copier.join()
        os.close(target)


def _copy(path: str, target: int, done: threading.Event) -> None:
    """Copy `path` to file descriptor `target` as it grows, until `done` and nothing is left."""
    try:
        with open(path, "rb") as source:
            while True:
                finished = done.wait(POLL_SECONDS)
                while chunk := source.read(1 << 16):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(target, view) :]
                if finished:
                    return
    except OSError:
        return  # the terminal went away (as `tail` would, the copy stops; the file keeps everything)


def with_threaded_capture(ref: Any) -> Any:
    """An instance reference whose compute log manager, where it is Dagster's local one, is this
    module's with the same configuration; any other is left as it is."""
    data = ref.compute_logs_data
    if data is None or (data.module_name, data.class_name) != DAGSTER_LOCAL:
        return ref
    return ref._replace(
        compute_logs_data=ConfigurableClassData(__name__, LocalComputeLogManager.__name__, data.config_yaml)
    )
