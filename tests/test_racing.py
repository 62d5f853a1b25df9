"""Noise-aware fitness: means over seeds, racing of front members, anchors, and exact resume of all three."""

import contextlib
import hashlib
import math

import numpy as np
import pytest

from afos import archive, config, driver, evaluate, fitness, search, types

LUCKY = "tanh(x)"  # scores 0.99 on the search's first seed and 0.2 on every other: a lucky draw
INIT = ["tanh(x)", "x*sigmoid(x)", "max(x, 0)", "x**2"]


class FakeEvaluator:
    """A backend that trains nothing: accuracy from the expression and the seed, so tests run in milliseconds."""

    calls: list[tuple[str, int]] = []

    def __init__(self, dataset, settings):
        self.settings = settings

    def evaluate(self, candidates):
        for i, a in enumerate(candidates):
            FakeEvaluator.calls.append((a.text, self.settings.seed))
            if a.text == LUCKY:
                acc = 0.99 if self.settings.seed == 0 else 0.2
            else:
                h = int(hashlib.sha1(f"{a.text}/{self.settings.seed}".encode()).hexdigest()[:8], 16)
                acc = 0.4 + 0.1 * (h % 1000) / 1000
            yield i, evaluate.Fitness(types.OK, acc, 1.0 - acc, None, 0.001)


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(evaluate.BACKENDS, "fake", FakeEvaluator)
    FakeEvaluator.calls = []
    return FakeEvaluator


def _config(race_seeds=4, fitness_seeds=1, generations=1, budget=2.0):
    return config.override(
        config.Config(),
        search={"population": 4, "generations": generations, "seed": 0, "init_exprs": INIT},
        fitness={"train_size": 64, "val_size": 32, "seed": 0},
        evaluator={"backend": "fake"},
        protocol={"fitness_seeds": fitness_seeds, "race_seeds": race_seeds, "race_budget": budget,
                  "anchors": ["relu", "gelu"]},
    )


def _lines(run_dir):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in archive.read_jsonl(run_dir / archive.EVALUATIONS)]


def test_mean_and_std_over_seeds_match_numpy():
    parts = [evaluate.Fitness(types.OK, a, 1 - a, None, 0.5) for a in (0.8, 0.9, 0.7)]
    fit = fitness.from_seeds(parts)
    assert fit.seed_accuracies == (0.8, 0.9, 0.7)
    assert fit.val_accuracy == pytest.approx(np.mean([0.8, 0.9, 0.7]))
    assert fit.val_accuracy_std == pytest.approx(np.std([0.8, 0.9, 0.7], ddof=1))
    more = fitness.combine(fit, evaluate.Fitness(types.OK, 0.6, 0.4, None, 0.1))
    assert more.seed_accuracies == (0.8, 0.9, 0.7, 0.6) and more.val_accuracy == pytest.approx(0.75)
    assert more.val_loss == pytest.approx(0.25)
    failed = fitness.from_seeds([parts[0], evaluate.Fitness(types.FAILED, None, None, "nan loss", 0.1)])
    assert failed.status == types.FAILED and failed.reason == "nan loss"


def test_fitness_seeds_average_over_k_backend_evaluators(tmp_path, fake):
    driver.run(_config(race_seeds=0, fitness_seeds=3, generations=0), tmp_path / "run")
    lines = _lines(tmp_path / "run")
    trained = [r for r in lines if r["status"] == types.OK]
    assert trained and all(r["seeds"] == 3 and len(r["seed_accuracies"]) == 3 for r in trained)
    for r in trained:
        assert r["val_accuracy"] == pytest.approx(np.mean(r["seed_accuracies"]))
        assert r["val_accuracy_std"] == pytest.approx(np.std(r["seed_accuracies"], ddof=1))
        assert {s for text, s in fake.calls if text == r["expr"]} == {0, 1, 2}


def test_racing_rescores_a_lucky_draw_before_it_can_displace_the_incumbents(tmp_path, fake):
    # Without racing the lucky draw tops the front on one seed.
    driver.run(_config(race_seeds=0, generations=0), tmp_path / "plain")
    plain = archive.read_pareto_csv(tmp_path / "plain")
    assert max(plain, key=lambda e: e.val_accuracy).expression == LUCKY

    run_dir = tmp_path / "raced"
    driver.run(_config(race_seeds=4, generations=0, budget=4.0), run_dir)
    rescored = [r for r in _lines(run_dir) if r["status"] == types.RESCORED]
    lucky = [r for r in rescored if r["expr"] == LUCKY]
    assert [r["seeds"] for r in lucky] == [2, 4]  # doubling: more evaluations before it can stay
    assert lucky[-1]["val_accuracy"] == pytest.approx((0.99 + 3 * 0.2) / 4)
    assert rescored[0]["expr"] == LUCKY  # the most accurate unconfirmed member goes first
    assert all(r["index"] >= 4 for r in rescored)  # identities after the generation's individuals
    front = archive.read_pareto_csv(run_dir)
    assert LUCKY not in [e.expression for e in front]
    assert all(e.seeds == 4 for e in front)  # the budget (16 trainings) confirmed the whole front
    assert front == archive.front_from_records(archive.read_jsonl(run_dir / archive.EVALUATIONS))


def test_an_unconfirmed_challenger_does_not_push_a_confirmed_incumbent_off_the_front():
    def known(acc, complexity, seeds):
        accs = (acc,) * seeds
        fit = fitness.from_seeds([evaluate.Fitness(types.OK, a, 0.5, None, 0.1) for a in accs])
        return search.Known(fit, complexity, f"t{complexity}", f"e{complexity}", 0)

    state = search.SearchState(1, [], None, {"incumbent": known(0.80, 5, 4), "lucky": known(0.90, 3, 1)})
    assert [e.fingerprint for e in driver.front_of(state)] == ["lucky"]  # plain Pareto front
    assert [(e.fingerprint, e.seeds) for e in driver.front_of(state, 4)] == [("lucky", 1), ("incumbent", 4)]
    assert driver._next_challenger(state, 4) == "lucky"
    state.known["lucky"] = known(0.90, 3, 4)  # confirmed by racing: now it may displace the incumbent
    assert [e.fingerprint for e in driver.front_of(state, 4)] == ["lucky"]
    assert driver._next_challenger(state, 4) is None


def test_racing_stays_within_its_budget(tmp_path, fake):
    driver.run(_config(race_seeds=4, generations=0, budget=0.25), tmp_path / "run")  # 1 training per generation
    rescored = [r for r in _lines(tmp_path / "run") if r["status"] == types.RESCORED]
    assert [(r["expr"], r["seeds"]) for r in rescored] == [(LUCKY, 2)]


def test_anchors_are_scored_on_the_confirmed_protocol_and_never_enter_the_population(tmp_path, fake):
    run_dir = tmp_path / "run"
    state = driver.run(_config(race_seeds=4, generations=1), run_dir)
    anchors = archive.anchors_from_records(archive.read_jsonl(run_dir / archive.EVALUATIONS))
    assert [(r["tree"], r["generation"], r["seeds"]) for r in anchors] == [("relu", -1, 4), ("gelu", -1, 4)]
    relu_fp = anchors[0]["fingerprint"]
    assert relu_fp not in state.known or state.known[relu_fp].generation >= 0  # known only if the search found it
    gelu_fp = anchors[1]["fingerprint"]
    assert gelu_fp not in state.known
    assert "gelu" not in str([e.expression for e in archive.read_pareto_csv(run_dir)])


@contextlib.contextmanager
def _stop_after(n_lines):
    """Replaces Ctrl-C by a stop requested once ``n_lines`` lines have been written."""
    written = [0]
    original = archive.append_jsonl

    def counting(path, record):
        original(path, record)
        written[0] += 1

    @contextlib.contextmanager
    def stop(reporter, hint):
        yield lambda: written[0] >= n_lines

    mp = pytest.MonkeyPatch()
    mp.setattr(archive, "append_jsonl", counting)
    mp.setattr(driver, "stop_on_sigint", stop)
    try:
        yield
    finally:
        mp.undo()


def test_interrupted_anywhere_with_racing_then_resumed_equals_the_uninterrupted_run(tmp_path, fake):
    cfg = _config(race_seeds=4, fitness_seeds=1, generations=2, budget=1.0)
    baseline = tmp_path / "baseline"
    driver.run(cfg, baseline)
    lines = _lines(baseline)
    statuses = {r["status"] for r in lines}
    assert {types.ANCHOR, types.RESCORED, types.OK} <= statuses
    inside_race = [k for k, r in enumerate(lines) if r["status"] == types.RESCORED]
    for cut in sorted({1, 2, 3, *inside_race, len(lines) - 1}):
        run_dir = tmp_path / f"cut{cut}"
        with _stop_after(cut), pytest.raises(driver.SearchInterruptedError):
            driver.run(cfg, run_dir)
        assert len(_lines(run_dir)) == cut
        driver.resume(run_dir)
        assert _lines(run_dir) == lines, f"interrupted after line {cut}"
        assert (run_dir / archive.PARETO).read_text() == (baseline / archive.PARETO).read_text()
        assert archive.read_checkpoint(run_dir) == archive.read_checkpoint(baseline)


def test_truncated_jsonl_inside_a_rescoring_is_redone_exactly(tmp_path, fake):
    cfg = _config(race_seeds=4, generations=1, budget=1.0)
    baseline = tmp_path / "baseline"
    driver.run(cfg, baseline)
    lines = archive.read_jsonl(baseline / archive.EVALUATIONS)
    last_race = max(k for k, r in enumerate(lines) if r["status"] == types.RESCORED)
    run_dir = tmp_path / "cut"
    import shutil

    shutil.copytree(baseline, run_dir)
    text = (run_dir / archive.EVALUATIONS).read_text().split("\n")
    # keep the lines before the last re-scoring and half of it; roll the checkpoint back to its generation
    (run_dir / archive.EVALUATIONS).write_text("\n".join(text[:last_race]) + "\n" + text[last_race][:20])
    gen = lines[last_race]["generation"]
    ckpt = archive.read_checkpoint(baseline)
    assert ckpt["generation"] == 2 and gen == 1
    (run_dir / archive.CHECKPOINT).unlink()
    (run_dir / archive.PREVIOUS_CHECKPOINT).rename(run_dir / archive.CHECKPOINT)
    with pytest.warns(UserWarning, match="truncated last line"):
        driver.resume(run_dir)
    assert _lines(run_dir) == _lines(baseline)
    assert archive.read_checkpoint(run_dir) == ckpt
    assert not math.isnan(lines[last_race]["val_accuracy"])


def test_command_line_and_config_set_the_protocol():
    from afos.cli import _config_from_args, build_parser

    args = build_parser().parse_args(["search", "--fitness-seeds", "3", "--race-seeds", "6", "--validate"])
    cfg = _config_from_args(args, config.Config())
    assert (cfg.protocol.fitness_seeds, cfg.protocol.race_seeds, cfg.protocol.max_seeds) == (3, 6, 6)
    assert config.from_dict(cfg.to_dict()).protocol == cfg.protocol  # stored in config.toml and read back
    with pytest.raises(config.ConfigError, match="protocol.anchors: unknown activation 'nope'"):
        config.override(config.Config(), protocol={"anchors": ["relu", "nope"]})
    with pytest.raises(config.ConfigError, match="protocol.fitness_seeds must be at least 1"):
        config.override(config.Config(), protocol={"fitness_seeds": 0})
