"""Stopping a run costs nothing but the evaluation in flight; resuming equals never stopping."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from afos import config, types
from afos.errors import RunError
from afos.expr import ExpressionError
from afos.ga import genome
from afos.ga import strategy as search
from afos.run import driver, rundir
from afos.run.rundir import Run

pytestmark = pytest.mark.slow  # processes killed and resumed: `python -m pytest -m "not slow"` leaves it out

ARGS = ["--population", "4", "--generations", "1", "--train-size", "128", "--val-size", "96", "--seed", "7"]
TIMING = ("seconds",)

# Runs afos's CLI, optionally SIGKILLing itself in the middle of the N-th checkpoint write
# (after the old checkpoint was moved aside and half of the new one written to the temp file).
KILLER = textwrap.dedent("""
    import os, signal, sys
    from afos.run import checkpoints
    original, calls = checkpoints.write_text_atomic, [0]
    def write(path, text):
        if path.name == checkpoints.CHECKPOINT:
            calls[0] += 1
            if calls[0] == int(os.environ.get("KILL_AT_CHECKPOINT", "0")):
                path.with_name("." + path.name + ".tmp").write_text(text[: len(text) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        original(path, text)
    checkpoints.write_text_atomic = write
    from afos.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _afos(*args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-c", KILLER, *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _lines(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.to_json().items() if k not in TIMING} for r in Run.open(run_dir).records()]


def _assert_same_run(run_dir: Path, baseline: Path) -> None:
    lines = _lines(run_dir)
    keys = [(r["generation"], r["index"]) for r in lines]
    assert len(keys) == len(set(keys)), "duplicated evaluation lines"
    assert lines == _lines(baseline)
    assert (run_dir / rundir.PARETO).read_text() == (baseline / rundir.PARETO).read_text()
    assert Run.open(run_dir).checkpoint() == Run.open(baseline).checkpoint()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("baseline") / "run"
    proc = _afos("search", "--run-dir", str(run_dir), *ARGS)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert len(_lines(run_dir)) == 2 * 4 + len(config.DEFAULT_ANCHORS)  # the anchors open every run
    return run_dir


def _finish(run_dir: Path) -> None:
    proc = _afos("resume", str(run_dir))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err


def _wait_for_lines(run_dir: Path, n: int, proc, timeout: float = 300.0) -> None:
    log = run_dir / rundir.EVALUATIONS
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if n == 0 or (log.exists() and log.read_text().count("\n") >= n):
            return
        time.sleep(0.02)


def test_sigkill_at_random_moments_then_resume_equals_the_uninterrupted_run(tmp_path, baseline):
    rng = random.Random(11)
    killed = 0
    for trial in range(3):
        run_dir = tmp_path / f"trial{trial}"
        proc = _afos("search", "--run-dir", str(run_dir), *ARGS)
        _wait_for_lines(run_dir, rng.randint(0, 6), proc)  # a random moment: after k finished lines...
        time.sleep(rng.uniform(0.0, 0.3))  # ...and a little more, mid-evaluation or mid-write
        proc.kill()
        proc.communicate()
        killed += proc.returncode == -signal.SIGKILL
        if trial == 0:  # a resume killed in its turn
            proc = _afos("resume", str(run_dir))
            _wait_for_lines(run_dir, len(_lines(run_dir)) + 1, proc)
            proc.kill()
            proc.communicate()
        _finish(run_dir)
        _assert_same_run(run_dir, baseline)
    assert killed >= 2  # the kills really landed inside the runs


@pytest.mark.parametrize("kill_at", [1, 2])
def test_sigkill_during_a_checkpoint_write(tmp_path, baseline, kill_at):
    run_dir = tmp_path / "run"
    proc = _afos("search", "--run-dir", str(run_dir), *ARGS, env={"KILL_AT_CHECKPOINT": str(kill_at)})
    proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert (run_dir / ".checkpoint.json.tmp").exists()
    _finish(run_dir)
    _assert_same_run(run_dir, baseline)


def test_sigint_finishes_the_evaluation_in_flight_and_says_how_to_resume(tmp_path, baseline):
    run_dir = tmp_path / "run"
    proc = _afos("search", "--run-dir", str(run_dir), *ARGS)
    log = run_dir / rundir.EVALUATIONS
    _wait_for_lines(run_dir, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert f"afos resume {run_dir}" in err
    assert log.read_text().endswith("\n")  # every line complete
    assert not (run_dir / rundir.LOCK).exists()
    _finish(run_dir)
    _assert_same_run(run_dir, baseline)


def test_second_sigint_stops_at_once_without_losing_finished_lines(tmp_path, baseline):
    run_dir = tmp_path / "run"
    proc = _afos("search", "--run-dir", str(run_dir), *ARGS)
    _wait_for_lines(run_dir, 1, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "resume" in err
    _finish(run_dir)
    _assert_same_run(run_dir, baseline)


def test_ctrl_c_held_down_still_ends_in_a_clean_stop(tmp_path, baseline):
    """SIGINT every few milliseconds until the process is gone: also lands while it reports and exits."""
    run_dir = tmp_path / "run"
    proc = _afos("search", "--run-dir", str(run_dir), *ARGS)
    _wait_for_lines(run_dir, 1, proc)
    sent = 0
    while proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        sent += 1
        time.sleep(0.005)
    _, err = proc.communicate(timeout=300)
    assert sent > 1
    assert proc.returncode == 130, err
    assert "resume" in err and "Traceback" not in err
    assert (run_dir / rundir.EVALUATIONS).read_text().endswith("\n")
    _finish(run_dir)
    _assert_same_run(run_dir, baseline)


# --- in-process cases ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A finished 2-generation in-process run and its config."""
    cfg = config.override(config.Config(), search={"population": 4, "generations": 1, "seed": 5},
                          fitness={"train_size": 128, "val_size": 64, "seed": 5})
    run_dir = tmp_path_factory.mktemp("small") / "run"
    driver.run(cfg, run_dir)
    return cfg, run_dir


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(run_dir, dst)
    return dst


def test_truncated_last_line_is_ignored_with_a_warning_and_redone(tmp_path, small):
    _, run_dir = small
    copy = _copy(run_dir, tmp_path)
    log = copy / rundir.EVALUATIONS
    text = log.read_text()
    log.write_text(text[: len(text) - 40])  # killed mid-write of the last line
    shutil.copy(copy / rundir.PREVIOUS_CHECKPOINT, copy / rundir.CHECKPOINT)  # ...before the checkpoint
    with pytest.warns(UserWarning, match="truncated last line"):
        driver.resume(copy)
    _assert_same_run(copy, run_dir)


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, small):
    _, run_dir = small
    copy = _copy(run_dir, tmp_path)
    (copy / rundir.CHECKPOINT).write_text('{"format": "afos-checkpoint", "gener')
    with pytest.warns(UserWarning, match="using checkpoint.prev.json"):
        driver.resume(copy)
    _assert_same_run(copy, run_dir)
    (copy / rundir.CHECKPOINT).write_text("garbage")
    (copy / rundir.PREVIOUS_CHECKPOINT).write_text("garbage")
    driver.resume(copy)  # neither readable: the state is rebuilt by replaying the log (tests/test_run.py)
    _assert_same_run(copy, run_dir)


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, small):
    _, run_dir = small
    copy = _copy(run_dir, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (copy / rundir.LOCK).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": 0}))
    driver.resume(copy, generations=2)
    assert not (copy / rundir.LOCK).exists()
    assert max(r["generation"] for r in _lines(copy)) == 2


def test_live_lock_refuses_a_second_writer(tmp_path, small):
    _, run_dir = small
    copy = _copy(run_dir, tmp_path)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (copy / rundir.LOCK).write_text(json.dumps({"pid": alive.pid, "host": os.uname().nodename, "since": 0}))
        with pytest.raises(RunError, match=f"being written by process {alive.pid}"):
            driver.resume(copy, generations=2)
    finally:
        alive.kill()
        alive.wait()


def test_changed_config_is_refused_with_the_differences(tmp_path, small):
    cfg, run_dir = small
    changed = config.override(cfg, fitness={"epochs": 2, "dataset": "digits"}, search={"generations": 5})
    with pytest.raises(RunError, match=r"changed config: fitness\.epochs: 1 -> 2$"):
        driver.resume(run_dir, config=changed)


def test_raising_generations_equals_a_longer_run_from_scratch(tmp_path, small):
    cfg, run_dir = small
    copy = _copy(run_dir, tmp_path)
    driver.resume(copy, generations=2)
    longer = tmp_path / "longer"
    driver.run(config.override(cfg, search={"generations": 2}), longer)
    assert _lines(copy) == _lines(longer)
    assert (copy / rundir.PARETO).read_text() == (longer / rundir.PARETO).read_text()


def test_run_directory_is_all_text(small):
    _, run_dir = small
    for path in run_dir.iterdir():
        text = path.read_bytes().decode("utf-8")
        assert "pickle" not in text.lower()
        if path.suffix == ".json":
            json.loads(text)
    assert config.load(run_dir / rundir.CONFIG) == small[0].resolved()


# --- warm start ---------------------------------------------------------------------


def test_init_exprs_open_the_first_population():
    cfg = config.override(config.Config(), search={"population": 6, "init_exprs": ["x*sigmoid(x)", "max(x, 0)"]})
    s = search.Search(cfg)
    pop = s.ask(s.init())
    assert [s.candidate(ind).text for ind in pop[:2]] == ["x*sigmoid(x)", "Max(0, x)"]
    assert len(pop) == 6 and len({s.candidate(ind).fingerprint for ind in pop}) == 6


def test_init_exprs_in_a_template_space():
    cfg = config.override(config.Config(), search={"space": "afos", "init_exprs": ["-x*erf(exp(-x))"]})
    s = search.Search(cfg)
    assert genome.to_text(s.ask(s.init())[0]) == "mul_erf(neg(x), exp_neg(x))"


def test_bad_init_exprs_give_clear_errors():
    with pytest.raises(ExpressionError, match="unknown function 'foo'"):
        config.override(config.Config(), search={"init_exprs": ["foo(x)"]})
    cfg = config.override(config.Config(), search={"space": "afos", "init_exprs": ["tanh(x)"]})
    s = search.Search(cfg)
    with pytest.raises(ValueError, match="'tanh\\(x\\)' cannot be built from the primitives of search space 'afos'"):
        s.ask(s.init())


def test_init_from_a_run_directory(tmp_path, small, capsys):
    from afos.cli import main

    _, run_dir = small
    front = Run.open(run_dir).front()
    new = tmp_path / "warm"
    assert main(["search", "--run-dir", str(new), "--init-from", str(run_dir), "--population", "4",
                 "--generations", "0", "--train-size", "128", "--val-size", "64"]) == 0
    first = next(r for r in _lines(new) if r["status"] != types.ANCHOR)
    best = max(front, key=lambda e: e.val_accuracy)
    assert first["fingerprint"] == best.fingerprint


def test_a_second_ctrl_c_says_it_stopped_at_once_and_how_to_resume():
    from afos.run.lock import stop_on_sigint

    class Said:
        def __init__(self):
            self.lines = []

        def message(self, text):
            self.lines.append(text)

    said = Said()
    with stop_on_sigint(said, "resume with: afos resume r") as stop:
        ctrl_c = signal.getsignal(signal.SIGINT)
        ctrl_c(signal.SIGINT, None)
        assert stop() and said.lines == ["stopping after the evaluation in flight (Ctrl-C again to stop at once); "
                                         "resume with: afos resume r"]
        with pytest.raises(KeyboardInterrupt) as stopped:
            ctrl_c(signal.SIGINT, None)
    assert str(stopped.value) == "stopped at once; every finished evaluation is saved; resume with: afos resume r"


def test_sigint_handler_is_restored_on_exit_but_never_over_a_later_choice():
    from afos.run.lock import stop_on_sigint

    original = signal.getsignal(signal.SIGINT)
    with stop_on_sigint(driver.SilentReporter(), "hint") as stop:
        assert signal.getsignal(signal.SIGINT) not in (original, signal.SIG_IGN) and not stop()
    assert signal.getsignal(signal.SIGINT) is original  # a normal exit puts the previous handler back
    try:
        # A Ctrl-C inside the `with` statement's exit leaves the generator suspended; the CLI then ignores
        # SIGINT, and the garbage collector closes the generator later: that must not bring Ctrl-C back.
        cm = stop_on_sigint(driver.SilentReporter(), "hint")
        cm.__enter__()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cm.gen.close()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, original)


def test_warm_start_builds_doubled_functions_as_the_ga_does():
    """sympy writes f + f as 2*f, which no pattern of a + b matches: the builder knows it is add(f, f)."""
    cfg = config.override(config.Config(), search={"init_exprs": ["Max(0, 2*x)", "2*max(x, 0)", "2*x*sigmoid(x)"]})
    s = search.Search(cfg)
    assert [genome.to_text(ind) for ind in s.seed_individuals()] == [
        "relu(add(x, x))", "add(relu(x), relu(x))", "mul(add(x, x), sigmoid(x))"]
