"""The run lock (afos.run.lock): one writer at a time; a stale lock, even one naming our own PID, is taken over,
and by exactly one of the processes that find it at once."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from afos.errors import RunError
from afos.run.lock import run_lock

CONTENDERS, TRIALS = 8, 20


class Recording:
    def __init__(self):
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def _write_lock(path: Path, pid: int) -> None:
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": 0}))


def test_a_stale_lock_naming_our_own_pid_is_taken_over(tmp_path):
    """A PID reused in a container: the lock names this process, which does not hold it."""
    path, reporter = tmp_path / "lock.json", Recording()
    _write_lock(path, os.getpid())
    with run_lock(path, reporter):
        assert json.loads(path.read_text())["since"] > 0  # ours now
    assert not path.exists()
    assert reporter.messages == [f"taking over the stale lock of process {os.getpid()} (this process's own PID, "
                                 "reused)"]


def test_a_lock_this_process_holds_is_not_taken_over_by_it(tmp_path):
    path = tmp_path / "lock.json"
    with run_lock(path, Recording()):
        held = path.read_text()
        with pytest.raises(RunError, match=f"being written by process {os.getpid()} "), run_lock(path, Recording()):
            pass
        assert path.read_text() == held
    assert not path.exists()


def test_a_live_lock_is_left_as_it_is(tmp_path):
    path = tmp_path / "lock.json"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(path, alive.pid)
        before = path.read_text()
        with pytest.raises(RunError, match=f"being written by process {alive.pid} "), run_lock(path, Recording()):
            pass
        assert path.read_text() == before
    finally:
        alive.kill()
        alive.wait()


def _contend(path: Path, barrier, results) -> None:
    """One contender: at each trial, tries to take the stale lock and, if it won, holds it until every
    contender has tried."""
    for trial in range(TRIALS):
        barrier.wait()  # the stale lock is in place
        try:
            with run_lock(path, Recording()):
                results.put((trial, os.getpid()))
                barrier.wait()
        except RunError:
            barrier.wait()
        barrier.wait()  # every winner has let go


def test_processes_taking_over_one_stale_lock_at_once_have_one_winner(tmp_path):
    path, dead = tmp_path / "lock.json", _dead_pid()
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold JAX's threads
    barrier, results = context.Barrier(CONTENDERS + 1, timeout=120), context.Queue()
    procs = [context.Process(target=_contend, args=(path, barrier, results)) for _ in range(CONTENDERS)]
    for p in procs:
        p.start()
    try:
        for _ in range(TRIALS):
            _write_lock(path, dead)
            barrier.wait()
            barrier.wait()  # the winners hold the lock, the others have given up
            barrier.wait()
            assert not path.exists()
        winners = [results.get(timeout=60) for _ in range(TRIALS)]  # at least one per trial, or a timeout
    except BaseException:
        barrier.abort()  # the contenders still waiting stop at once
        raise
    finally:
        for p in procs:
            p.join(timeout=60)
    while not results.empty():  # every contender has ended: what it put is there
        winners.append(results.get(timeout=60))
    assert [p.exitcode for p in procs] == [0] * CONTENDERS
    assert sorted(trial for trial, _ in winners) == list(range(TRIALS))  # one winner per trial
