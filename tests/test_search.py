import dataclasses
import json
import random

import pytest
from fakes import FakeTraining, fake_describe

from afos import config, types
from afos.cli import main
from afos.errors import RunError
from afos.ga import genome, space
from afos.ga import strategy as search
from afos.ga.memo import front_of
from afos.run import driver
from afos.run.rundir import Run

RUN_FILES = {"config.toml", "evaluations.jsonl", "checkpoint.json", "pareto.csv"}
TIMING = {"seconds"}


def _lines(run_dir):
    return [{k: v for k, v in r.to_json().items() if k not in TIMING} for r in Run.open(run_dir).records()]


def test_end_to_end_tiny_search_writes_the_run_files(tmp_path, tiny_config):
    run_dir = tmp_path / "run"
    state = driver.run(tiny_config, run_dir)
    assert {p.name for p in run_dir.iterdir()} >= RUN_FILES

    run = Run.open(run_dir)
    lines = run.records()
    assert [r.tree for r in run.anchors()] == list(config.DEFAULT_ANCHORS)  # scored first, never in the population
    assert lines[: len(config.DEFAULT_ANCHORS)] == run.anchors()
    records = [r for r in lines if r.status != types.ANCHOR]
    assert len(records) == 2 * 4  # generations 0 and 1, population 4
    assert {r.identity for r in records} == {(g, i) for g in (0, 1) for i in range(4)}
    for r in records:
        assert r.status in (types.OK, types.CACHED, types.REJECTED, types.FAILED)  # no racing here
        assert (r.val_accuracy is None) == (r.status in (types.REJECTED, types.FAILED))
        if r.status == types.OK:
            assert 0.0 <= r.val_accuracy <= 1.0 and r.seconds > 0
        assert r.reason is None or r.status != types.OK
    assert any(r.status == types.OK for r in records)

    front = run.front()
    assert front and front == front_of(state.known)
    accs = [e.val_accuracy for e in front]
    assert accs == sorted(accs) and len(set(e.complexity for e in front)) == len(front)
    scored = {(r.expr, r.val_accuracy) for r in records if r.val_accuracy is not None}
    assert all((e.expression, e.val_accuracy) in scored for e in front)

    ckpt = run.checkpoint()
    assert ckpt["generation"] == 2 and len(ckpt["population"]) == 4
    assert config.load(run_dir / "config.toml") == tiny_config.resolved()


@pytest.mark.slow
def test_same_seed_same_run(tmp_path, tiny_config):
    a, b = tmp_path / "a", tmp_path / "b"
    driver.run(tiny_config, a)
    driver.run(tiny_config, b)
    assert _lines(a) == _lines(b)
    assert (a / "pareto.csv").read_text() == (b / "pareto.csv").read_text()
    assert Run.open(a).checkpoint() == Run.open(b).checkpoint()


def test_refuses_to_overwrite_a_run(tmp_path, tiny_config):
    run_dir = tmp_path / "run"
    driver.run(config.override(tiny_config, search={"generations": 0}), run_dir)
    with pytest.raises(RunError, match="already holds a run: `afos resume"):
        driver.run(tiny_config, run_dir)


FOREIGN = {"pareto.csv": b"name,score\nmine,1\n", "checkpoint.json": b'{"step": 7}', "lock.json": b'{"pid": 1}',
           "notes.txt": b"keep me"}


@pytest.mark.parametrize("how", ["library", "command line"])
def test_refuses_a_directory_that_is_not_empty_and_holds_no_run_and_leaves_it_as_it_was(tmp_path, tiny_config,
                                                                                       monkeypatch, capsys, how):
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    for name, data in FOREIGN.items():
        (run_dir / name).write_bytes(data)
    message = f"{run_dir} is not empty and holds no afos run: choose a new or empty --run-dir"
    if how == "library":
        with pytest.raises(RunError) as err:
            driver.run(tiny_config, run_dir, evaluator=FakeTraining(), describe=fake_describe)
        assert str(err.value) == message
    else:
        monkeypatch.setenv("AFOS_COMPILATION_CACHE", "0")
        code = main(["search", "--run-dir", str(run_dir), "--population", "2", "--generations", "0",
                     "--train-size", "64", "--val-size", "32"])
        assert code == 2 and capsys.readouterr().err.strip().splitlines()[-1] == f"afos search: error: {message}"
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == FOREIGN


def test_a_search_goes_into_an_empty_directory_and_not_into_a_file(tmp_path, tiny_config):
    empty = tmp_path / "empty"
    empty.mkdir()
    driver.run(tiny_config, empty, evaluator=FakeTraining(), describe=fake_describe)
    assert Run.open(empty).records()
    (tmp_path / "file").write_text("mine")
    with pytest.raises(RunError, match="file is not a directory: choose another --run-dir$"):
        driver.run(tiny_config, tmp_path / "file", evaluator=FakeTraining(), describe=fake_describe)
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.parametrize("name", ["default", "afos", "swish"])
def test_ask_gives_novel_valid_individuals_in_every_space(name):
    cfg = config.override(config.Config(), search={"space": name, "population": 12, "seed": 1})
    s = search.Search(cfg)
    state = s.init()
    pop = s.ask(state)
    assert len(pop) == 12
    prints = [s.candidate(ind).fingerprint for ind in pop]
    assert len(set(prints)) == 12
    assert all(s.candidate(ind).accepted for ind in pop)
    shapes = s.space.template_slots()
    for ind in pop:
        if s.space.representation == "template":
            assert [("x" if n.arity == 0 else "U" if n.arity == 1 else "B") for n in ind] in shapes
        else:
            assert ind.height <= s.space.max_height


@pytest.mark.parametrize("name", ["default", "afos"])
def test_variation_respects_the_representation(name):
    sp = space.load(name)
    pset = genome.make_pset(sp)
    gen, mutate, cross = genome.OPERATORS[sp.representation]
    random.seed(0)
    for _ in range(200):
        a, b = gen(sp, pset), gen(sp, pset)
        shapes = [[n.arity for n in t] for t in (a, b)]
        a, b = cross(sp, a, b)
        a = mutate(sp, pset, a)
        if sp.representation == "tree":
            assert a.height <= sp.max_height and b.height <= sp.max_height
        else:
            assert [n.arity for n in b] in shapes


def test_tell_learns_the_fitnesses_it_is_given_and_keeps_the_nondominated(tiny_config):
    s = search.Search(tiny_config)
    state = s.init()
    pop = s.ask(state)
    fits = [types.Fitness(types.OK, 0.5 + 0.1 * i, 1.0, None, 0.1) for i in range(len(pop))]
    state = s.tell(state, pop, fits)
    assert {s.candidate(ind).fingerprint for ind in pop} == set(state.known)
    assert [ind.fitness.values[0] for ind in pop] == [0.5 + 0.1 * i for i in range(len(pop))]
    children = s.ask(state)
    assert not {s.candidate(c).fingerprint for c in children} & set(state.known)  # novel functions preferred
    state = s.tell(state, children, [None] * len(children))  # every child rejected by the screen
    assert all(ind.fitness.values == types.WORST_FITNESS for ind in children)
    assert types.WORST_FITNESS not in [ind.fitness.values for ind in state.population]
    assert max(ind.fitness.values[0] for ind in state.population) == pytest.approx(0.8)
    fp = s.candidate(pop[0]).fingerprint
    rescored = {fp: dataclasses.replace(state.known[fp], fitness=types.Fitness(types.OK, 0.99, 1.0, None, 0.1))}
    state = s.tell(state, [], [], rescored)  # racing re-scored a parent: its objectives follow
    assert state.known[s.candidate(pop[0]).fingerprint].fitness.val_accuracy == 0.99
    assert any(ind.fitness.values[0] == 0.99 for ind in state.population)


def test_checkpoint_round_trips_through_json_with_its_rng(tiny_config):
    s = search.Search(tiny_config)
    state = s.init()
    pop = s.ask(state)
    state = s.tell(state, pop, [types.Fitness(types.OK, 0.5, 1.0, None, 0.1)] * len(pop))
    again = s.restore(json.loads(json.dumps(s.save(state))))
    assert s.save(again) == s.save(state)
    again.known = dict(state.known)  # a run replays it from its log (test_resume)
    assert [s.candidate(c).text for c in s.ask(again)] == [s.candidate(c).text for c in s.ask(state)]


def test_the_strategy_loads_no_training_stack():
    import subprocess
    import sys

    code = """
import sys
from afos import config
from afos.expr import Candidate, check, to_text
from afos.ga import genome, memo, racing, strategy
assert not [m for m in ("jax", "flax", "optax") if m in sys.modules], "importing the GA loads the training stack"
describe = lambda e: Candidate(e, to_text(e), to_text(e), to_text(e), check(e))  # a screen without JAX
s = strategy.Search(config.Config(), describe)
print(len(s.ask(s.init())), sorted(m for m in ("jax", "flax", "optax") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "16 []"


def test_the_random_strategy_draws_every_generation_afresh(tiny_config, monkeypatch):
    cfg = config.override(tiny_config, search={"strategy": "random"})
    s = search.Search(cfg)
    state = s.init()
    pop = s.ask(state)
    state = s.tell(state, pop, [types.Fitness(types.OK, 0.5, 1.0, None, 0.1)] * len(pop))

    def no_variation(ranked):
        raise AssertionError("random search varies no parent")

    monkeypatch.setattr(s, "_vary", no_variation)
    children = s.ask(state)
    assert len(children) == len(pop) and not {s.candidate(c).fingerprint for c in children} & set(state.known)
    with pytest.raises(config.ConfigError, match="search.strategy must be one of ga, random"):
        config.override(cfg, search={"strategy": "bayes"})
