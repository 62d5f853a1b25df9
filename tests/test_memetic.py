"""The memetic strategy (afos.ga.local) and its neighbourhood (genome.neighbours), without training: a fake
score stands in for the network, so that what the search proposes can be checked exactly."""

import json

import numpy as np
import pytest
import sympy

from afos import config, types
from afos.expr import analyse, parse
from afos.expr.screen import UNDEFINED
from afos.ga import genome, local, space
from afos.ga import strategy as search
from afos.ga.surrogate import Example, Surrogate
from afos.run.rundir import Run

TARGET, SIN = local.sketch(parse("x*sin(x)")), local.sketch(parse("sin(x)"))


def _score(expr: sympy.Expr) -> float:
    """A needle one edit from the best start: 1 for x*sin(x) (up to scale and signs), 0.8 for sin(x), and below
    0.5 for everything else, the closer in shape to x*sin(x) the higher."""
    sk = local.sketch(expr)
    if sk.features is None:
        return 0.0
    if sk.key in (TARGET.key, SIN.key):
        return 1.0 if sk.key == TARGET.key else 0.8
    d = float(local.SymmetricKNN(TARGET.features[None], np.zeros(1)).distances(sk.features[None])[0, 0])
    return 0.5 * float(np.exp(-d / 10.0))


def _search(generations: int, **settings):
    cfg = config.override(config.Config(), search={"population": 16, "seed": 5, "strategy": "memetic",
                                                    "init_exprs": ["sin(x)"], **settings})
    s = search.Search(cfg)
    state, asked = s.init(), []
    for _ in range(generations):
        pop = s.ask(state)
        asked.append([genome.to_text(ind) for ind in pop])
        fits = [types.Fitness(types.OK, _score(s.candidate(ind).expr), 1.0, None, 0.1) for ind in pop]
        state = s.tell(state, pop, fits)
    return s, state, asked


def test_neighbours_are_every_one_edit_tree_within_the_space():
    sp = space.load("default")
    pset = genome.make_pset(sp)
    found = genome.neighbours(sp, pset, genome.from_text("sin(x)", pset))
    texts = {(kind, genome.to_text(t)) for kind, t in found}
    assert ("grow", "mul(sin(x), x)") in texts and ("grow", "mul(x, sin(x))") in texts  # x*sin(x): one edit
    assert ("replace", "cos(x)") in texts and ("simplify", "x") in texts and ("grow", "tanh(sin(x))") in texts
    assert len(texts) == len(found) == len({t for _, t in texts})  # each tree once
    assert all(t.height <= sp.max_height for _, t in found)
    assert [genome.to_text(t) for _, t in found] == [genome.to_text(t) for _, t in
                                                     genome.neighbours(sp, pset, genome.from_text("sin(x)", pset))]
    deep = genome.from_text("add(mul(x, sin(x)), tanh(x))", pset)  # height 3: nothing may grow above it
    assert all(t.height <= sp.max_height for _, t in genome.neighbours(sp, pset, deep))
    assert ("simplify", "add(x, tanh(x))") in {(k, genome.to_text(t)) for k, t in genome.neighbours(sp, pset, deep)}


def test_sketch_keys_the_sign_symmetries_and_sees_scale_as_one_shape():
    keys = {local.sketch(parse(e)).key for e in ("x*sin(x)", "-x*sin(x)", "3*x*sin(x)")}
    assert len(keys) == 1
    assert local.sketch(parse("tanh(x)")).key == local.sketch(parse("-tanh(x)")).key == \
        local.sketch(parse("tanh(-x)")).key
    assert local.sketch(parse("tanh(x)")).key != local.sketch(parse("sigmoid(x)")).key
    for rejected in (sympy.Integer(1), parse("sin(x)")*0 + 2):  # the screen's reasons, as training would give
        assert local.sketch(rejected).reason == analyse(rejected).reason == "constant on [-10, 10]"
    near = local.SymmetricKNN(np.stack([local.sketch(parse("tanh(x)")).features]), np.zeros(1))
    assert near.distances(local.sketch(parse("-tanh(-x)")).features[None])[0, 0] < 1e-6


@pytest.mark.slow
def test_memetic_search_finds_the_one_edit_improvement_and_is_deterministic():
    s, state, asked = _search(18)  # sin(x) has under 100 neighbours, 6 of each generation drawn among them
    scores = {k.expr: k.fitness.val_accuracy for k in state.known.values()}
    assert max(scores.values()) == 1.0, sorted(scores.items(), key=lambda kv: -kv[1])[:3]
    assert _search(18)[2] == asked  # the same pool, ranked and drawn the same way
    for gen in asked:
        assert len(gen) == 16 and len({s.candidate(genome.from_text(t, s.pset)).fingerprint for t in gen}) == 16


def test_memetic_resumes_from_its_checkpoint_with_the_same_proposals():
    s, state, _ = _search(3)
    saved = json.loads(json.dumps(s.save(state)))

    def proposals(searcher):
        restored = searcher.restore(saved)
        restored.known = dict(state.known)  # a run replays it from its log (test_resume kills whole runs)
        return [genome.to_text(i) for i in searcher.ask(restored)]

    assert proposals(search.Search(s.config)) == proposals(s)  # a new process: no cached sketch or candidate


def test_a_tree_sympy_cannot_build_is_a_rejected_candidate():
    sp = space.load("default")
    pset = genome.make_pset(sp)
    tree = genome.from_text("min(x, div(exp_neg(x), sub(x, x)))", pset)  # sympy: Min(x, zoo) raises
    expr = genome.to_sympy(tree)
    assert expr is sympy.nan
    cand = analyse(expr)
    assert cand.reason == UNDEFINED and cand.fingerprint.startswith("undefined:")
    assert local.sketch(expr).reason is not None


def test_the_surrogate_sets_aside_a_trained_function_the_parser_refuses():
    examples = [Example(e, None, v) for e, v in [("x**18", 0.1)] + [(f"tanh({k}*x)", 0.1 * k) for k in range(1, 9)]]
    model = Surrogate("knn", examples)
    assert model.n == 8 and model.ready


def test_stored_runs_without_a_strategy_keep_the_genetic_one(tmp_path):
    from pathlib import Path

    stored, _ = config.load_stored(Path(__file__).parent / "fixtures" / "fake_v1" / "config.toml")
    assert stored.search.strategy == "ga" and stored.search.surrogate == "none"
    path = tmp_path / "user.toml"
    path.write_text('[search]\nstrategy = "memetic"\n')
    assert config.load(path).search.strategy == "memetic"
    written = tmp_path / "config.toml"
    written.write_text(config.dumps(config.load(path).resolved()))
    assert config.load_stored(written)[0].search.strategy == "memetic"  # a stored setting is kept as stored


def test_select_fills_every_place_even_from_a_pool_of_near_copies():
    import random

    shape = local.sketch(parse("tanh(x)")).features
    features = np.stack([shape + 1e-9 * k for k in range(6)])  # one function six times, as far as shape goes
    model = local.SymmetricKNN(np.stack([local.sketch(parse("sin(x)")).features,
                                         local.sketch(parse("x*sigmoid(x)")).features]), np.array([0.0, 1.0]))
    kinds = ["replace:0", "grow:0", "simplify:1", "vary", "random", "grow:1"]
    chosen = local.select(features, model.predict(features), kinds, model, 4, random.Random(0))
    assert len(chosen) == len(set(chosen)) == 4
    assert local.select(features, model.predict(features), kinds, model, 6, random.Random(0)) == list(range(6))


PLANTED = ["--objective", "planted", "--objective-option", "steps=4", "--objective-option", "students=2",
           "--objective-option", "train_size=64", "--objective-option", "val_size=64",
           "--objective-option", "test_size=64", "--population", "6", "--generations", "2", "--seed", "2",
           "--strategy", "memetic"]


@pytest.mark.slow
def test_a_memetic_run_killed_and_resumed_equals_the_uninterrupted_one(tmp_path):
    """kill -9 at a random moment of a memetic search (the planted task: fast), then resume."""
    import signal

    from test_resume import _afos, _assert_same_run, _finish, _lines, _wait_for_lines

    baseline = tmp_path / "baseline"
    proc = _afos("search", "--run-dir", str(baseline), *PLANTED)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert any(r.predicted is not None for r in Run.open(baseline).records())  # the shape surrogate ranked
    run_dir = tmp_path / "killed"
    proc = _afos("search", "--run-dir", str(run_dir), *PLANTED)
    _wait_for_lines(run_dir, 15, proc)  # in generation 1, the first the memetic strategy proposes
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and len(_lines(run_dir)) < len(_lines(baseline))
    _finish(run_dir)
    _assert_same_run(run_dir, baseline)
