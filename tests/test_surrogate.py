"""The surrogate pre-screen: features without training, the choice it makes, and runs that stay exact."""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sympy
from fakes import FakeTraining, fake_describe

from afos import config, types
from afos.cli import main
from afos.expr import Candidate, X, canonical_key, parse, to_text
from afos.fitness.evaluator import PerSeed
from afos.ga import surrogate
from afos.run import driver, rundir
from afos.run.rundir import Run
from afos.types import Fitness

FIXTURES = Path(__file__).parent / "fixtures"


def describe(e: sympy.Expr) -> Candidate:
    """A screen without JAX: fingerprint = hash of the text, linear and constant functions rejected."""
    text = to_text(e)
    reason = None
    if not e.free_symbols or (e.is_polynomial(X) and sympy.degree(e, X) <= 1):
        reason = "linear or constant"
    return Candidate(e, text, canonical_key(e), hashlib.sha1(text.encode()).hexdigest()[:16], reason)


class ShapeTraining(PerSeed):
    """Accuracy as a smooth function of the shape (what a surrogate of the shape can learn), plus seed noise."""

    trained: list[str]

    def __init__(self):
        self.trained = []

    def evaluate_seed(self, candidates, seed, epochs=None):
        for i, c in enumerate(candidates):
            self.trained.append(c.text)
            f = surrogate.features(c.expr, c.gain)[: surrogate.PROBE_POINTS]
            noise = int(hashlib.sha1(f"{c.text}/{seed}".encode()).hexdigest()[:4], 16) / 65536
            yield i, Fitness(types.OK, float(0.5 + 0.04 * np.tanh(f).mean() + 0.01 * noise), 1.0, None, 0.1)


def _config(**search):
    cfg, _ = config.load_stored(FIXTURES / "fake_v1" / rundir.CONFIG)
    return config.override(cfg, search={"surrogate": "knn", "oversample": 3, "explore": 0.25, **search})


def test_features_are_the_shape_at_the_trained_gain():
    a = surrogate.features(parse("2*x*sigmoid(x)"), 0.5)
    b = surrogate.features(parse("x*sigmoid(x)"), 1.0)
    np.testing.assert_allclose(a, b, atol=1e-6)  # f and 2f at unit gain are one function
    assert a.shape == (2 * surrogate.PROBE_POINTS,)
    c = surrogate.features(parse("exp(exp(x))"), 1.0)
    assert np.isfinite(c).all() and c.max() == surrogate.CLIP  # an explosion reads as "large", not inf


def test_choose_takes_the_best_and_explores_the_rest():
    predicted = [0.1, 0.9, None, 0.8, 0.2, 0.7, 0.3, 0.6]
    picks = surrogate.choose(predicted, 4, 0.25, random.Random(1))
    assert len(picks) == 4 and picks == sorted(picks)
    assert {1, 3, 5} <= set(picks) and 2 not in picks  # the three best, one drawn from the rest
    assert surrogate.choose(predicted, 4, 0.25, random.Random(1)) == picks  # determined by the RNG
    assert surrogate.choose(predicted, 4, 0.0, random.Random(1)) == [1, 3, 5, 7]
    assert surrogate.choose([None, 0.5], 2, 0.5, random.Random(1)) == [0, 1]  # too few predictions: fill


@pytest.mark.parametrize("kind", ["knn", "gp", "forest"])
def test_each_regressor_learns_a_shape_signal(kind):
    exprs = ["x*sigmoid(x)", "tanh(x)", "sin(x)", "Max(0, x)", "x**2", "exp(-x**2)", "atan(x)", "x*tanh(x)",
             "sigmoid(x)", "cos(x)", "x*erf(x)", "Abs(x)"]
    truth = {e: float(np.tanh(surrogate.features(parse(e), 1.0)[:256]).mean()) for e in exprs}
    model = surrogate.Surrogate(kind, [surrogate.Example(e, 1.0, truth[e]) for e in exprs[:9]])
    assert model.ready
    held_out = ["cos(x)", "x*erf(x)", "Abs(x)", "x*sigmoid(x)"]
    predicted = model.predict([(parse(e), 1.0, e) for e in held_out])
    assert len(predicted) == 4 and all(np.isfinite(predicted))
    assert surrogate.Surrogate("knn", [surrogate.Example("tanh(x)", 1.0, 0.5)] * 2).ready is False


def test_a_surrogate_run_trains_population_a_generation_and_records_the_rest_as_screened(tmp_path):
    cfg = _config()
    training = ShapeTraining()
    driver.run(cfg, tmp_path / "run", evaluator=training, describe=describe)
    records = Run.open(tmp_path / "run").records()
    pop = cfg.search.population
    for g in range(1, cfg.search.generations + 1):
        lines = [r for r in records if r.generation == g]
        individuals = [r for r in lines if r.index < pop]
        screened = [r for r in lines if r.status == types.SCREENED]
        assert len(individuals) == pop and all(r.status != types.SCREENED for r in individuals)
        assert screened and all(r.index >= pop and r.predicted is not None and r.val_accuracy is None
                                for r in screened)
        assert all(r.predicted is not None for r in individuals if r.status == types.OK)
    for g in range(1, cfg.search.generations + 1):  # a screened function may be proposed and trained later
        trained = {r.expr for r in records if r.status == types.OK and r.generation == g}
        assert not trained & {r.expr for r in records if r.status == types.SCREENED and r.generation == g}
    scored = {r.expr for r in records if r.status in (types.OK, types.FAILED, types.ANCHOR)}
    only_screened = {r.expr for r in records if r.status == types.SCREENED} - scored
    assert only_screened and not only_screened & set(training.trained)  # what it screened out cost nothing
    assert set(training.trained) <= scored
    # the surrogate prefers what it predicts well: its picks are predicted above what it left
    for g in range(1, cfg.search.generations + 1):
        picked = [r.predicted for r in records if r.generation == g and r.predicted is not None
                  and r.status != types.SCREENED]
        left = [r.predicted for r in records if r.generation == g and r.status == types.SCREENED]
        assert max(picked) >= max(left)
    per_generation = surrogate.rank_correlation(records)
    assert set(per_generation) == set(range(1, cfg.search.generations + 1))


def test_without_a_surrogate_nothing_changes(tmp_path):
    """search.surrogate = none is what every run did before it existed: the fixture's bytes."""
    cfg, _ = config.load_stored(FIXTURES / "fake_v1" / rundir.CONFIG)
    assert cfg.search.surrogate == "none"
    from test_run import _same_files

    driver.run(cfg, tmp_path / "run", evaluator=FakeTraining(), describe=fake_describe)
    _same_files(tmp_path / "run", FIXTURES / "fake_v1")


# A search with the surrogate on and the shape training, SIGKILLing itself after KILL_AT trainings.
KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, os.environ["TESTS"])
    import test_surrogate as t
    from afos.run import driver
    class Killing(t.ShapeTraining):
        def evaluate_seed(self, candidates, seed, epochs=None):
            for out in super().evaluate_seed(candidates, seed, epochs):
                if len(self.trained) == int(os.environ["KILL_AT"]):
                    os.kill(os.getpid(), signal.SIGKILL)
                yield out
    run_dir = sys.argv[1]
    if os.path.exists(os.path.join(run_dir, "config.toml")):
        driver.resume(run_dir, evaluator=Killing(), describe=t.describe)
    else:
        driver.run(t._config(), run_dir, evaluator=Killing(), describe=t.describe)
""")


def _lines(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in Run.open(run_dir).records()]


@pytest.mark.slow
def test_kill_9_anywhere_then_resume_equals_the_uninterrupted_run(tmp_path):
    baseline = tmp_path / "baseline"
    driver.run(_config(), baseline, evaluator=ShapeTraining(), describe=describe)
    total = sum(r.status in (types.OK, types.ANCHOR) for r in Run.open(baseline).records())
    env = {**os.environ, "TESTS": str(Path(__file__).parent)}
    rng = random.Random(3)
    for trial, kill_at in enumerate(sorted(rng.sample(range(2, total), 1))):
        run_dir = tmp_path / f"trial{trial}"
        proc = subprocess.run([sys.executable, "-c", KILLER, str(run_dir)], env={**env, "KILL_AT": str(kill_at)},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        proc = subprocess.run([sys.executable, "-c", KILLER, str(run_dir)], env={**env, "KILL_AT": "0"},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert _lines(run_dir) == _lines(baseline)
        assert (run_dir / rundir.PARETO).read_text() == (baseline / rundir.PARETO).read_text()
        assert json.loads((run_dir / rundir.CHECKPOINT).read_text()) == json.loads(
            (baseline / rundir.CHECKPOINT).read_text())


def test_show_and_report_give_the_rank_correlation_per_generation(tmp_path, capsys):
    driver.run(_config(), tmp_path / "run", evaluator=ShapeTraining(), describe=describe)
    assert main(["show", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "Surrogate pre-screen" in out and "Spearman rho" in out
    counts = Counter(r.status for r in Run.open(tmp_path / "run").records())
    assert counts[types.SCREENED] > 0
    assert main(["report", str(tmp_path / "run")]) == 0
    assert "Surrogate pre-screen" in (tmp_path / "run" / "report.md").read_text()
    shutil.rmtree(tmp_path / "run")


def test_a_fitness_memory_warms_the_surrogate_and_a_resume_keeps_what_it_knew_then(tmp_path):
    """A second run of the protocol ranks its very first generation with what the memory holds, kept in its run
    directory (surrogate_prior.jsonl), so that a resume without the memory makes the same choices."""
    memory = str(tmp_path / "memory.sqlite")
    driver.run(config.override(_config(), evaluator={"memory": memory}), tmp_path / "first",
               evaluator=ShapeTraining(), describe=describe)
    shutil.copy(memory, tmp_path / "copy.sqlite")  # the memory as the second run finds it
    second = config.override(_config(seed=11), evaluator={"memory": memory})
    driver.run(second, tmp_path / "second", evaluator=ShapeTraining(), describe=describe)
    prior = Run.open(tmp_path / "second").prior()
    assert len(prior) >= surrogate.MIN_FIT
    records = Run.open(tmp_path / "second").records()
    assert any(r.generation == 0 and r.status == types.SCREENED for r in records)  # ranked from the start
    # the same run stopped after its first generation, then resumed with the memory gone: the same choices
    # and values (what the memory answered later is trained instead: ok where the other says cached)
    again = tmp_path / "again"
    driver.run(config.override(second, search={"generations": 0}, evaluator={"memory": str(tmp_path / "copy.sqlite")}),
               again, evaluator=ShapeTraining(), describe=describe)
    (tmp_path / "copy.sqlite").unlink()
    driver.resume(again, generations=second.search.generations, evaluator=ShapeTraining(), describe=describe,
                  config=config.override(second, evaluator={"memory": ""}))

    def choices(run_dir):
        return [(r.generation, r.index, r.tree, r.status == types.SCREENED, r.val_accuracy, r.predicted)
                for r in Run.open(run_dir).records()]

    assert choices(again) == choices(tmp_path / "second")
