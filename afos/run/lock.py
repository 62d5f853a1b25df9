"""One writer per run directory, and Ctrl-C that stops a search cleanly (used by ``afos.run``).

The lock is a file naming its writer ({pid, host, since}). A lock whose process is gone is stale and is taken
over; so is one naming this process's own PID (reused, as in a container) that this process does not hold.
Every decision about a lock file is made holding ``flock`` on it, after checking that it is still the file its
path names, and a takeover rewrites the file in place: of any number of processes that find one stale lock at
once, exactly one takes it over and the others find the winner alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from afos.errors import RunError
from afos.run.files import json_text

ATTEMPTS = 5  # a lock file released between our opening and locking it is tried again, this many times at most
# The lock files this process holds (real path -> what it wrote): one naming our own PID is stale unless it is
# listed here. Per process by nature: the PID in a lock file cannot tell this process from an earlier one.
_HELD: dict[str, dict] = {}


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


def _owner(fd: int) -> dict | None:
    """The process a lock file names ({pid, host, since}), or None where it is unreadable (a damaged lock is
    stale)."""
    try:
        owner = json.loads(os.pread(fd, os.fstat(fd).st_size, 0))
        return {"pid": int(owner["pid"]), "host": str(owner["host"]), "since": owner.get("since")}
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


@contextlib.contextmanager
def run_lock(path: Path, reporter: Messenger) -> Iterator[None]:
    """One writer per run directory (``path`` is its lock file); a lock left by a dead process is taken over."""
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    if not any(_acquire(path, me, reporter) for _ in range(ATTEMPTS)):
        raise RunError(f"{path.parent}: another process keeps taking its lock ({path}); stop it first")
    try:
        yield
    finally:
        _release(path, me)


def _acquire(path: Path, me: dict, reporter: Messenger) -> bool:
    """Makes ``path`` name ``me``: True once it does, False where the file was released before we locked it (try
    again). RunError where a live process holds it."""
    opened = _open(path)
    if opened is None:
        return False
    fd, created = opened
    try:
        with _flocked(fd):
            if not _names(fd, path):
                return False
            if not (created and os.fstat(fd).st_size == 0):  # not the empty file we made: whose is it?
                owner = _owner(fd)
                _refuse_live(path, owner, me)
                reporter.message(_takeover(owner, me))
            os.ftruncate(fd, 0)
            os.pwrite(fd, json_text(me).encode(), 0)
            os.fsync(fd)
            _HELD[os.path.realpath(path)] = me
        return True
    finally:
        os.close(fd)


def _open(path: Path) -> tuple[int, bool] | None:
    """``path`` opened to read and write, created if missing, and whether we created it (None: it was removed
    between our two tries)."""
    try:
        return os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644), True
    except FileExistsError:
        try:
            return os.open(path, os.O_RDWR), False
        except FileNotFoundError:
            return None


def _refuse_live(path: Path, owner: dict | None, me: dict) -> None:
    """RunError where ``owner`` (of the lock file ``path``) is a process that may be writing the run."""
    if owner is None:
        return
    if owner["host"] != me["host"]:
        raise RunError(f"{path.parent} is locked by process {owner['pid']} on host {owner['host']}; delete "
                       f"{path} if that process is gone")
    ours = owner["pid"] == me["pid"]
    if (ours and _HELD.get(os.path.realpath(path)) == owner) or (not ours and _process_alive(owner["pid"])):
        raise RunError(f"{path.parent} is being written by process {owner['pid']} (lock file {path}); stop it "
                       "first or wait for it to finish")


def _takeover(owner: dict | None, me: dict) -> str:
    if owner is not None and owner["pid"] == me["pid"]:
        return f"taking over the stale lock of process {owner['pid']} (this process's own PID, reused)"
    return f"taking over the stale lock of dead process {owner and owner['pid']}"


def _release(path: Path, me: dict) -> None:
    """Removes the lock file if it still names ``me``."""
    key = os.path.realpath(path)
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDWR)
        try:
            with _flocked(fd):
                if _names(fd, path) and _owner(fd) == me:
                    path.unlink()
        finally:
            os.close(fd)
    if _HELD.get(key) == me:
        del _HELD[key]


def _names(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, nor replaced, since it was opened)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


@contextlib.contextmanager
def _flocked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


# A Ctrl-C noted while a command starts (``noting_sigint``): Python drops a KeyboardInterrupt raised inside a garbage
# collector callback (JAX registers one) with "Exception ignored in", so the command checks this before it commits
# to work (``raise_if_interrupted``).
_NOTED: list[bool] = []


@contextlib.contextmanager
def noting_sigint() -> Iterator[None]:
    """A command's SIGINT handler: Python's own (KeyboardInterrupt), which also notes the Ctrl-C for
    ``raise_if_interrupted`` in case the interrupt is swallowed where it lands (main thread only)."""
    if not _main_thread():
        yield
        return

    def handler(signum, frame):
        _NOTED.append(True)
        raise KeyboardInterrupt

    _NOTED.clear()
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is handler:
            signal.signal(signal.SIGINT, previous)
        _NOTED.clear()


def raise_if_interrupted() -> None:
    """KeyboardInterrupt if a Ctrl-C was noted (``noting_sigint``) and swallowed where it landed."""
    if _NOTED:
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_sigint(reporter: Messenger, resume_hint: str) -> Iterator[Callable[[], bool]]:
    """First Ctrl-C: stop after the evaluation in flight. Second: stop at once (a KeyboardInterrupt that says so,
    with ``resume_hint``)."""
    requested = []

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt(f"stopped at once; every finished evaluation is saved; {resume_hint}")
        requested.append(True)
        reporter.message(f"stopping after the evaluation in flight (Ctrl-C again to stop at once); {resume_hint}")

    if not _main_thread():
        yield lambda: False
        return
    raise_if_interrupted()  # before the first evaluation: a Ctrl-C swallowed while the command started
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
