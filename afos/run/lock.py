"""One writer per run directory, and Ctrl-C that stops a search cleanly (used by ``afos.run``)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from afos.errors import RunError
from afos.run.files import json_text, read_json_or_none


class Messenger(Protocol):
    def message(self, text: str) -> None: ...


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path) -> dict | None:
    """The process a lock file names ({pid, host}), or None where it is unreadable (a damaged lock is stale)."""
    owner = read_json_or_none(path)
    try:
        return {"pid": int(owner["pid"]), "host": str(owner["host"])}
    except (TypeError, KeyError, ValueError):
        return None


@contextlib.contextmanager
def run_lock(path: Path, reporter: Messenger) -> Iterator[None]:
    """One writer per run directory (``path`` is its lock file); a lock left by a dead process is taken over."""
    run_dir = path.parent
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = _owner(path)
            if owner and owner["host"] == me["host"] and _process_alive(owner["pid"]):
                raise RunError(f"{run_dir} is being written by process {owner['pid']} "
                               f"(lock file {path}); stop it first or wait for it to finish") from None
            if owner and owner["host"] != me["host"]:
                raise RunError(f"{run_dir} is locked by process {owner['pid']} on host "
                               f"{owner['host']}; delete {path} if that process is gone") from None
            reporter.message(f"taking over the stale lock of dead process {owner and owner['pid']}")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json_text(me))
        break
    else:  # another process took the lock between our attempts
        raise RunError(f"{run_dir}: another process keeps taking its lock ({path}); stop it first")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def stop_on_sigint(reporter: Messenger, resume_hint: str) -> Iterator[Callable[[], bool]]:
    """First Ctrl-C: stop after the evaluation in flight. Second: stop at once (KeyboardInterrupt)."""
    requested = []

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(True)
        reporter.message(f"stopping after the evaluation in flight (Ctrl-C again to stop at once); {resume_hint}")

    if not _main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        # Only while ours is in place: a Ctrl-C that lands inside the `with` statement's exit can leave this
        # generator to be closed later by the garbage collector, after the CLI chose to ignore SIGINT.
        if signal.getsignal(signal.SIGINT) is handler:
            signal.signal(signal.SIGINT, previous)


def ignore_sigint() -> None:
    """For a process on its way out after a Ctrl-C stop: further Ctrl-C changes nothing (main thread only)."""
    if _main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
