"""What a user's objective returns and does: only real numbers are scores, a NaN test score is a missing test
score (the validation score stands), and `sys.exit(N)` stops afos with one line and exit status N, its
finished work saved and resumable."""

import math
import re
import sys
from fractions import Fraction
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest

from afos.cli import main
from afos.errors import ObjectiveExitError
from afos.fitness import own
from afos.run.rundir import Run
from afos.study.runner import read_results

OBJECTIVES = '''
import math
import os
import sys

import numpy as np

CALLS = [0]


def score(act, seed, settings):  # instant and deterministic; the test score is NaN on odd seeds
    CALLS[0] += 1
    if CALLS[0] == int(os.environ.get("OBJS_EXIT_AT", "0")):
        sys.exit(3)
    x = np.linspace(-3, 3, 61, dtype=np.float32)
    value = 0.5 + 0.4 * float(np.mean(np.tanh(np.asarray(act(x))) ** 2)) - 0.01 * (seed % 3)
    return {"val": value, "test": math.nan if seed % 2 else value - 0.01}


def gives_true(act, seed, settings):
    return True


def gives_text(act, seed, settings):
    return "0.7"
'''
TINY = ["--population", "2", "--generations", "1", "--fitness-seeds", "1"]


@pytest.fixture
def objs(user_code):
    user_code("objs", OBJECTIVES)


def _call(value, direction="max"):
    return own.call_objective(lambda act, seed, settings: value, None, 0,
                              SimpleNamespace(objective="m:f", direction=direction))


@pytest.mark.parametrize(("value", "shown", "what"), [
    (True, "True (a bool)", "validation"), (np.bool_(False), "np.False_ (a bool)", "validation"),
    ("0.7", "'0.7' (a str)", "validation"), (b"1", "b'1' (a bytes)", "validation"),
    (np.array([0.5]), "array([0.5]) (a ndarray)", "validation"), ({"val": 0.5, "test": True}, "True (a bool)", "test"),
    ((0.5, "0.5"), "'0.5' (a str)", "test"),
])
def test_only_a_real_number_is_a_score(value, shown, what):
    with pytest.raises(own.ObjectiveFailedError, match=f"^objective 'm:f' returned {re.escape(shown)} as its {what} "
                                                       "score, not a real number$"):
        _call(value)


@pytest.mark.parametrize("value", [1, 0, 0.25, np.float32(0.25), np.int64(1), np.array(0.75), jnp.float32(0.5),
                                   jnp.bfloat16(0.5), Fraction(1, 4)])
def test_ints_floats_and_numpy_or_jax_real_scalars_are_scores(value):
    (rank, raw), test = _call(value)
    assert rank == raw == pytest.approx(float(value)) and isinstance(rank, float) and test is None


def test_a_nan_or_infinite_test_score_is_missing_and_the_validation_score_stands():
    assert _call({"val": 0.6, "test": math.nan}) == ((0.6, 0.6), own.MISSING)
    assert _call((0.6, np.float32("inf"))) == ((0.6, 0.6), own.MISSING)
    (rank, raw), test = _call({"val": 0.5, "test": math.inf}, direction="min")
    assert (rank, raw) == (pytest.approx(math.exp(-0.5)), 0.5) and test is own.MISSING
    with pytest.raises(own.ObjectiveFailedError, match="non-finite validation score"):
        _call({"val": math.nan, "test": 0.5})  # a NaN validation score still fails the line


@pytest.mark.parametrize(("name", "reason"), [
    ("gives_true", "objective 'objs:gives_true' returned True (a bool) as its validation score, not a real number"),
    ("gives_text", "objective 'objs:gives_text' returned '0.7' (a str) as its validation score, not a real number"),
])
def test_a_search_fails_the_lines_of_an_objective_that_returns_no_number(tmp_path, objs, name, reason):
    assert main(["search", "--objective", f"objs:{name}", "--run-dir", str(tmp_path / "run"), *TINY]) == 0
    lines = Run.open(tmp_path / "run").records()
    assert lines and all(r.val_accuracy is None for r in lines)
    assert {r.reason for r in lines if r.status in ("anchor", "failed")} == {reason}


def test_nan_test_scores_are_missing_through_search_validate_show_and_export(tmp_path, objs, capsys):
    run_dir = tmp_path / "run"
    assert main(["search", "--objective", "objs:score", "--run-dir", str(run_dir), *TINY]) == 0
    run = Run.open(run_dir)
    assert {r.status for r in run.records()} <= {"ok", "anchor", "rejected", "cached"}
    assert all(r.val_accuracy is not None for r in run.records() if r.status != "rejected")
    assert main(["validate", str(run_dir), "--top", "1", "--seeds", "4", "--epochs", "1", "--trust-run"]) == 0
    odd = [r for r in read_results(run_dir / "validation")[1] if r["seed"] % 2]
    assert odd and all(r["final"]["test_accuracy"] is None and r["final"]["val_accuracy"] > 0 for r in odd)
    relu = next(r for r in run.validation() if r["activation"] == "relu")
    import objs

    act = next(e for e in run.records() if e.tree == "relu")
    even = [objs.score(lambda x, g=act.gain: np.maximum(x, 0) * g, s, None)["test"] for s in (1000, 1002)]
    assert float(relu["test_accuracy_mean"]) == pytest.approx(np.mean(even), rel=1e-5)
    capsys.readouterr()
    assert main(["show", str(run_dir)]) == 0
    assert "relu" in capsys.readouterr().out
    assert main(["export", str(run_dir), "--format", "numpy"]) == 0


def test_an_objective_that_calls_sys_exit_stops_afos_with_its_status_and_the_run_resumes(tmp_path, objs, capsys,
                                                                                          monkeypatch):
    baseline, run_dir = tmp_path / "baseline", tmp_path / "run"
    assert main(["search", "--objective", "objs:score", "--run-dir", str(baseline), *TINY]) == 0
    sys.modules.pop("objs")
    monkeypatch.setenv("OBJS_EXIT_AT", "6")  # the fourth anchor and the first individual are done
    capsys.readouterr()
    assert main(["search", "--objective", "objs:score", "--run-dir", str(run_dir), *TINY]) == 3
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == [f"afos search: error: the objective 'objs:score' called sys.exit(3): the search stopped in "
                      f"generation 0; every finished evaluation is saved; resume with: afos resume {run_dir} --trust "
                      "objs:score"]
    assert len(Run.open(run_dir).records()) == 5
    monkeypatch.delenv("OBJS_EXIT_AT")
    assert main(["resume", str(run_dir), "--trust", "objs:score"]) == 0  # the hint, as it is

    def lines(path):
        return [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in Run.open(path).records()]

    assert lines(run_dir) == lines(baseline)


def test_sys_exit_in_validate_keeps_its_status_and_the_finished_cells(tmp_path, objs, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    assert main(["search", "--objective", "objs:score", "--run-dir", str(run_dir), *TINY]) == 0
    sys.modules.pop("objs")
    monkeypatch.setenv("OBJS_EXIT_AT", "3")
    capsys.readouterr()
    assert main(["validate", str(run_dir), "--top", "1", "--seeds", "2", "--epochs", "1", "--trust-run"]) == 3
    err = capsys.readouterr().err
    assert (f"afos validate: error: the objective 'objs:score' called sys.exit(3): every finished cell is saved in "
            f"{run_dir / 'validation'}; the same command goes on from there") in err
    assert len((run_dir / "validation" / "results.jsonl").read_text().splitlines()) == 2
    monkeypatch.delenv("OBJS_EXIT_AT")
    assert main(["validate", str(run_dir), "--top", "1", "--seeds", "2", "--epochs", "1", "--trust-run"]) == 0


@pytest.mark.parametrize(("code", "called", "status"), [
    (3, "sys.exit(3)", 3), (None, "sys.exit()", 0), ("bad data", "sys.exit('bad data')", 1)])
def test_the_exit_says_what_the_objective_called(code, called, status):
    def quits(act, seed, settings):
        sys.exit(code)

    with pytest.raises(ObjectiveExitError, match=f"^the objective 'm:f' called {re.escape(called)}$") as err:
        own.call_objective(quits, None, 0, SimpleNamespace(objective="m:f", direction="max"))
    assert err.value.status == status
