import json
import random

import pytest

from afos import archive, config, driver, genome, search, space, types

RUN_FILES = {"config.toml", "evaluations.jsonl", "checkpoint.json", "pareto.csv"}
TIMING = {"seconds"}


def _lines(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in archive.read_jsonl(run_dir / archive.EVALUATIONS)]


def test_end_to_end_tiny_search_writes_the_run_files(tmp_path, tiny_config):
    run_dir = tmp_path / "run"
    state = driver.run(tiny_config, run_dir)
    assert {p.name for p in run_dir.iterdir()} >= RUN_FILES

    lines = archive.read_jsonl(run_dir / archive.EVALUATIONS)
    anchors = archive.anchors_from_records(lines)
    assert [r["tree"] for r in anchors] == list(config.DEFAULT_ANCHORS)  # scored first, never in the population
    records = [r for r in lines if r["status"] != types.ANCHOR]
    assert len(records) == 2 * 4  # generations 0 and 1, population 4
    assert {(r["generation"], r["index"]) for r in records} == {(g, i) for g in (0, 1) for i in range(4)}
    for r in records:
        assert r["status"] in (types.OK, types.CACHED, types.REJECTED, types.FAILED)  # no racing here
        assert (r["val_accuracy"] is None) == (r["status"] in (types.REJECTED, types.FAILED))
        if r["status"] == types.OK:
            assert 0.0 <= r["val_accuracy"] <= 1.0 and r["seconds"] > 0
        assert r["reason"] is None or r["status"] != types.OK
    assert any(r["status"] == types.OK for r in records)

    front = archive.read_pareto_csv(run_dir)
    assert front and front == driver.front_of(state)
    accs = [e.val_accuracy for e in front]
    assert accs == sorted(accs) and len(set(e.complexity for e in front)) == len(front)
    scored = {(r["expr"], r["val_accuracy"]) for r in records if r["val_accuracy"] is not None}
    assert all((e.expression, e.val_accuracy) in scored for e in front)

    ckpt = archive.read_checkpoint(run_dir)
    assert ckpt["generation"] == 2 and len(ckpt["population"]) == 4
    assert config.load(run_dir / "config.toml") == tiny_config.resolved()


def test_same_seed_same_run(tmp_path, tiny_config):
    a, b = tmp_path / "a", tmp_path / "b"
    driver.run(tiny_config, a)
    driver.run(tiny_config, b)
    assert _lines(a) == _lines(b)
    assert (a / "pareto.csv").read_text() == (b / "pareto.csv").read_text()
    assert json.loads((a / "checkpoint.json").read_text()) == json.loads((b / "checkpoint.json").read_text())


def test_refuses_to_overwrite_a_run(tmp_path, tiny_config):
    run_dir = tmp_path / "run"
    driver.run(config.override(tiny_config, search={"generations": 0}), run_dir)
    with pytest.raises(archive.RunDirError, match="already holds a run: `afos resume"):
        driver.run(tiny_config, run_dir)


@pytest.mark.parametrize("name", ["default", "afos", "swish"])
def test_ask_gives_novel_valid_individuals_in_every_space(name):
    cfg = config.override(config.Config(), search={"space": name, "population": 12, "seed": 1})
    s = search.Search(cfg)
    state = s.init()
    pop = s.ask(state)
    assert len(pop) == 12
    prints = [s.analysis(ind).fingerprint for ind in pop]
    assert len(set(prints)) == 12
    assert all(s.analysis(ind).accepted for ind in pop)
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


def test_tell_keeps_the_nondominated(tiny_config):
    s = search.Search(tiny_config)
    state = s.init()
    pop = s.ask(state)
    for i, ind in enumerate(pop):
        ind.fitness.values = (0.5 + 0.1 * i, 10.0)  # the last one dominates all others
    state = s.tell(state, pop)
    children = s.ask(state)
    for ind in children:
        ind.fitness.values = types.WORST_FITNESS
    state = s.tell(state, children)
    assert [ind.fitness.values for ind in state.population][0] == (0.8, 10.0)
    assert types.WORST_FITNESS not in [ind.fitness.values for ind in state.population]


def test_rng_state_round_trips_through_json():
    rng = random.Random(5)
    rng.random()
    clone = search.rng_from_json(json.loads(json.dumps(search.rng_to_json(rng))))
    assert [rng.random() for _ in range(5)] == [clone.random() for _ in range(5)]
