"""Planted tasks: objective options, the planted objective (exact and program paths), calibration, recovery."""

import subprocess
import sys
import tomllib

import numpy as np
import pytest

from afos import config
from afos.config import FitnessSettings
from afos.errors import ConfigError
from afos.examples import planted as task
from afos.expr import analyse, parse
from afos.expr.compile import to_jax
from afos.fitness import own
from afos.fitness.batched import Batched
from afos.fitness.evaluator import Sequential
from afos.fitness.interpreter import Shape, encode
from afos.fitness.problem import FitnessProblem
from afos.run import driver
from afos.run.rundir import Run
from afos.study import planted

# A task that trains in milliseconds and still has its target as the best fit.
TINY = {"dim": 2, "teacher_width": 2, "student_width": 6, "students": 2, "train_size": 200, "val_size": 200,
        "test_size": 200, "steps": 150}


def _settings(**options) -> FitnessSettings:
    return planted.with_options(FitnessSettings(objective="planted"), {**TINY, **options})


def _afos(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "afos", *args], capture_output=True, text=True, timeout=timeout)


# --- objective options ------------------------------------------------------------------------------------------


def test_options_are_resolved_typed_and_checked():
    resolved = own.resolve_options("planted", task.objective, {"dim": "3", "target": "tanh(x)"})
    assert resolved == {**task.OPTIONS, "dim": 3, "target": "tanh(x)"}

    def objective(act, seed, settings):
        return 0.5

    objective.options = {"rate": 0.5, "exact": False, "name": "a", "n": 3}
    typed = own.resolve_options("own", objective, {"rate": 1, "exact": "true", "n": "4", "name": "4"})
    assert typed == {"rate": 1.0, "exact": True, "name": "4", "n": 4} and isinstance(typed["rate"], float)
    for given in ({"exact": "yes"}, {"exact": 1}, {"rate": "fast"}, {"n": 2.0}, {"name": 4}):
        with pytest.raises(ConfigError, match=f"option {next(iter(given))} must be"):
            own.resolve_options("own", objective, given)
    for given, message in [({"nope": 1}, "has no option 'nope' \\(its options: target, dim,"),
                           ({"dim": "four"}, "option dim must be an integer, got 'four'"),
                           ({"dim": 2.5}, "option dim must be an integer"),
                           ({"dim": True}, "option dim must be an integer"),
                           ({"dim": 0}, "option dim must be between 1 and 4096, got 0"),
                           ({"target": "__import__('os')"}, "objective 'planted': "),
                           ({"target": "x - x"}, "simplifies to 0, which is not a function of x"),
                           ({"target": "2*x"}, "cannot be an activation: linear")]:
        with pytest.raises(ConfigError, match=message):
            own.resolve_options("planted", task.objective, given)
    with pytest.raises(ConfigError, match="takes no options"):
        own.resolve_options("charlm", lambda act, seed, settings: 0.5, {"steps": 3})


def test_options_without_an_objective_are_refused():
    with pytest.raises(ConfigError, match="options of an objective, and no objective is set"):
        config.override(config.Config(), fitness={"objective_options": {"target": "x"}})


@pytest.mark.slow
def test_a_bad_option_is_one_line_before_any_work(tmp_path):
    for option, message in [("nope=1", "objective 'planted' has no option 'nope'"),
                            ("dim=abc", "option dim must be an integer, got 'abc'"),
                            ("target=os.system", "objective 'planted': "),
                            ("target", "--objective-option must be KEY=VALUE, got 'target'")]:
        out = _afos("search", "--objective", "planted", "--objective-option", option, "--run-dir", str(tmp_path / "r"))
        assert out.returncode == 2 and out.stderr.startswith("afos search: error: "), out.stderr
        assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_options_reach_the_objective_are_stored_and_a_run_resumes_with_them(tmp_path):
    conf = tmp_path / "search.toml"
    conf.write_text('[fitness]\nobjective = "planted"\n[fitness.objective_options]\ntarget = "tanh(x)"\ndim = 5\n')
    options = [f"--objective-option={k}={v}" for k, v in {**TINY, "target": "x*sin(x)"}.items()]
    out = _afos("search", "--config", str(conf), *options, "--population", "3", "--generations", "0",
                "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    assert "trains the candidates as programs" in out.stderr  # auto: the objective's one compilation
    stored = tomllib.loads((tmp_path / "r" / "config.toml").read_text())["fitness"]["objective_options"]
    assert stored == {**task.OPTIONS, **TINY, "target": "x*sin(x)"}  # the command line over the file, defaults filled
    run = Run.open(tmp_path / "r")
    assert run.config.fitness.objective_options == stored and run.config.fitness.direction == "min"
    resumed = _afos("resume", str(tmp_path / "r"), "--generations", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert {r.generation for r in Run.open(tmp_path / "r").records()} == {-1, 0, 1}


def test_a_run_without_options_stores_no_options_table(tmp_path, tiny_config):
    assert "objective_options" not in config.dumps(tiny_config.resolved())
    with_options = config.override(tiny_config, fitness={"objective": "planted", "objective_options": {"dim": 2}})
    assert "[fitness.objective_options]" in config.dumps(with_options.resolved())


# --- the planted objective --------------------------------------------------------------------------------------


def test_the_planted_objective_ranks_its_target_first_on_a_tiny_task():
    result = planted.calibrate(_settings(target="x*sin(x)"), seeds=2, randoms=4)
    assert result.target.expression == "x*sin(x)" and len(result.others) == 8  # 4 anchors, 4 random functions
    assert all(result.target.log_mean < other.log_mean for other in result.others)
    assert result.margin > 0 and result.target.mean < 0.01


@pytest.mark.slow
def test_the_program_path_trains_what_the_exact_path_trains():
    """The same arithmetic but for rounding (a few steps: Levenberg-Marquardt's accept-or-reject decisions
    let rounding differences grow over a long training)."""
    settings = _settings(target="x*sin(x)", steps=5)
    texts = ["x*sin(x)", "tanh(x)", "max(x, 0)", "sin(x)*sigmoid(x) + x"]
    candidates = [analyse(parse(t), gain="unit") for t in texts]
    programs = [encode(c.node, Shape()) for c in candidates]
    fast = dict(task.programs(programs, 7, settings))
    for i, c in enumerate(candidates):
        exact = task.objective(to_jax(c.node), 7, settings)
        assert fast[i]["val"] == pytest.approx(exact["val"], rel=1e-3, abs=1e-6), texts[i]
        assert fast[i]["test"] == pytest.approx(exact["test"], rel=1e-3, abs=1e-6), texts[i]


@pytest.mark.slow
def test_the_batched_backend_agrees_with_the_sequential_one_through_the_objective():
    problem = FitnessProblem(_settings(target="max(x, sin(x))", steps=5))
    candidates = [analyse(parse(t), gain="unit") for t in ("max(x, sin(x))", "cos(x)", "x*erf(x)")]
    batched = dict(Batched(problem).evaluate(candidates, [0, 1]))
    exact = dict(Sequential(problem).evaluate(candidates, [0, 1]))
    for i in range(len(candidates)):  # the arithmetic is checked above; here the seeds and their mean
        assert batched[i].val_loss == pytest.approx(exact[i].val_loss, rel=0.05, abs=1e-6)
        assert batched[i].seeds == 2 and batched[i].ok


def test_an_objective_whose_programs_fail_fails_those_lines_only():
    def objective(act, seed, settings):
        return 0.5

    def programs(items, seed, settings):
        yield 0, 0.25
        yield 1, float("nan")
        raise RuntimeError("out of memory")

    objective.programs = programs
    settings = FitnessSettings(objective="own", direction="max")
    problem = FitnessProblem.__new__(FitnessProblem)  # the objective itself, not one named by a path
    problem.objective, problem.factory, problem.settings, problem._dataset, problem._longer = \
        objective, None, settings, None, {}
    candidates = [analyse(parse(t), gain="unit") for t in ("tanh(x)", "sin(x)", "cos(x)", "x*sigmoid(x)")]
    got = dict(Batched(problem).evaluate(candidates, [0]))
    assert got[0].ok and got[0].val_accuracy == 0.25
    assert got[1].reason == "objective returned a non-finite validation score (nan)"
    assert got[2].reason == got[3].reason == "objective raised RuntimeError: out of memory"


def test_a_search_on_the_planted_task_shows_whether_it_recovers_the_target(tmp_path):
    settings = config.override(config.Config(), search={"population": 4, "generations": 0, "init_exprs": [
        "-x*sin(x)", "tanh(x)"]}, fitness={"objective": "planted", "objective_options": {**TINY, "target": "x*sin(x)"}})
    driver.run(settings, tmp_path / "r")
    out = _afos("show", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "recovers the planted target x*sin(x)" in text, text
    line = planted.recovery_line(Run.open(tmp_path / "r").config.fitness, ["tanh(x)", "-x*sin(x)"])
    assert line.startswith("the front's best, tanh(x), does not recover the planted target x*sin(x)")
    assert line.endswith("-x*sin(x), further down the front, recovers it")


@pytest.mark.slow
def test_calibrate_names_the_verdict(tmp_path):
    options = [f"--objective-option={k}={v}" for k, v in TINY.items()]
    out = _afos("calibrate", "x*sin(x)", *options, "--seeds", "2", "--random", "3")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "x*sin(x) is ahead of the closest other function" in text and "seed standard deviations" in text
    bad = _afos("calibrate", "x*sin(x)", "--seeds", "1")
    assert bad.returncode == 2 and "--seeds must be between 2 and" in bad.stderr


def test_the_teacher_is_fixed_by_its_options():
    a = task.task(task._frozen({**task.OPTIONS, **TINY}))
    b = task.task(task._frozen({**task.OPTIONS, **TINY, "teacher_seed": 1}))
    assert a.x_train.shape == (200, 2) and a.y_test.shape == (200,)
    assert abs(float(a.y_train.mean())) < 1e-6 and float(a.y_train.std()) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(a.y_train, b.y_train)
