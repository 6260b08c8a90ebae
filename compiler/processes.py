"""External tools (Yosys, nextpnr) run in a process group of their own, which is killed whole when
bnnc stops waiting for them: on a timeout, on Ctrl-C, or on `kill` (SIGTERM). Killing only the
process bnnc started is not enough: Yosys starts yosys-abc, and a YoWASP tool is a Python launcher
running the tool inside it. Tools run in their own session, so a Ctrl-C in the terminal reaches
only bnnc; its handler (stop_tools_on_signals) kills every tool group still running -- also those
that `bnnc report` waits for in threads, where no KeyboardInterrupt arrives -- and then raises
KeyboardInterrupt in the main thread."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

_running: set[int] = set()  # process groups of the tools started and not yet reaped
_lock = threading.Lock()


def _kill(group: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def run_tool(cmd: list[str], timeout: float | None, **popen: Any) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, timeout=timeout, **popen), with the tool and its children killed on any exit
    but its own (subprocess.TimeoutExpired and KeyboardInterrupt are re-raised after the kill)."""
    proc = subprocess.Popen(cmd, start_new_session=True, **popen)
    with _lock:
        _running.add(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        _kill(proc.pid)
        proc.communicate()
        raise
    finally:
        with _lock:
            _running.discard(proc.pid)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _stop(signum: int, frame: object) -> None:
    with _lock:
        groups = list(_running)
    for group in groups:
        _kill(group)
    raise KeyboardInterrupt


SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_tools_on_signals() -> None:
    """SIGINT and SIGTERM kill the running tools and raise KeyboardInterrupt (a worker process's
    initializer: for the rest of the process)."""
    for signum in SIGNALS:
        signal.signal(signum, _stop)


@contextlib.contextmanager
def tools_stopped_on_signals() -> Iterator[None]:
    """stop_tools_on_signals while the block runs (the CLI), the handlers before restored after; a
    no-op outside the main thread, where Python allows no handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _stop) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
