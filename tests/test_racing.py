"""Noise-aware fitness: means over seeds, racing of front members, anchors, and exact resume of all three."""

import hashlib
import math

import numpy as np
import pytest

from afos import config, types
from afos.fitness.evaluator import PerSeed
from afos.ga import racing
from afos.ga.memo import Known, front_of
from afos.run import driver, rundir
from afos.run.rundir import Run
from afos.types import Fitness

LUCKY = "tanh(x)"  # scores 0.99 on the search's first seed and 0.2 on every other: a lucky draw
INIT = ["tanh(x)", "x*sigmoid(x)", "max(x, 0)", "x**2"]


class FakeEvaluator(PerSeed):
    """A backend that trains nothing: accuracy from the expression and the seed, so tests run in milliseconds."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    def evaluate_seed(self, candidates, seed, epochs=None):
        for i, a in enumerate(candidates):
            self.calls.append((a.text, seed))
            if a.text == LUCKY:
                acc = 0.99 if seed == 0 else 0.2
            else:
                h = int(hashlib.sha1(f"{a.text}/{seed}".encode()).hexdigest()[:8], 16)
                acc = 0.4 + 0.1 * (h % 1000) / 1000
            yield i, Fitness(types.OK, acc, 1.0 - acc, None, 0.001)


@pytest.fixture
def fake():
    return FakeEvaluator()


def _config(race_seeds=4, fitness_seeds=1, generations=1, budget=2.0):
    return config.override(
        config.Config(),
        search={"population": 4, "generations": generations, "seed": 0, "init_exprs": INIT},
        fitness={"train_size": 64, "val_size": 32, "seed": 0},
        protocol={"fitness_seeds": fitness_seeds, "race_seeds": race_seeds, "race_budget": budget,
                  "anchors": ["relu", "gelu"]},
    )


def _lines(run_dir):
    return [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in Run.open(run_dir).records()]


def test_mean_and_std_over_seeds_match_numpy():
    parts = [Fitness(types.OK, a, 1 - a, None, 0.5) for a in (0.8, 0.9, 0.7)]
    fit = Fitness.mean_of(parts)
    assert fit.seed_accuracies == (0.8, 0.9, 0.7)
    assert fit.val_accuracy == pytest.approx(np.mean([0.8, 0.9, 0.7]))
    assert fit.val_accuracy_std == pytest.approx(np.std([0.8, 0.9, 0.7], ddof=1))
    more = fit.extended(Fitness(types.OK, 0.6, 0.4, None, 0.1))
    assert more.seed_accuracies == (0.8, 0.9, 0.7, 0.6) and more.val_accuracy == pytest.approx(0.75)
    assert more.val_loss == pytest.approx(0.25)
    failed = Fitness.mean_of([parts[0], Fitness(types.FAILED, None, None, "nan loss", 0.1)])
    assert failed.status == types.FAILED and failed.reason == "nan loss"


def test_fitness_seeds_average_over_k_backend_evaluators(tmp_path, fake):
    driver.run(_config(race_seeds=0, fitness_seeds=3, generations=0), tmp_path / "run", evaluator=fake)
    lines = _lines(tmp_path / "run")
    trained = [r for r in lines if r["status"] == types.OK]
    assert trained and all(r["seeds"] == 3 and len(r["seed_accuracies"]) == 3 for r in trained)
    for r in trained:
        assert r["val_accuracy"] == pytest.approx(np.mean(r["seed_accuracies"]))
        assert r["val_accuracy_std"] == pytest.approx(np.std(r["seed_accuracies"], ddof=1))
        assert {s for text, s in fake.calls if text == r["expr"]} == {0, 1, 2}


def test_racing_rescores_a_lucky_draw_before_it_can_displace_the_incumbents(tmp_path, fake):
    # Without racing the lucky draw tops the front on one seed.
    driver.run(_config(race_seeds=0, generations=0), tmp_path / "plain", evaluator=fake)
    plain = Run.open(tmp_path / "plain").front()
    assert max(plain, key=lambda e: e.val_accuracy).expression == LUCKY

    run_dir = tmp_path / "raced"
    driver.run(_config(race_seeds=4, generations=0, budget=4.0), run_dir, evaluator=fake)
    rescored = [r for r in _lines(run_dir) if r["status"] == types.RESCORED]
    lucky = [r for r in rescored if r["expr"] == LUCKY]
    assert [r["seeds"] for r in lucky] == [2, 4]  # doubling: more evaluations before it can stay
    assert lucky[-1]["val_accuracy"] == pytest.approx((0.99 + 3 * 0.2) / 4)
    assert rescored[0]["expr"] == LUCKY  # the most accurate unconfirmed member goes first
    assert all(r["index"] >= 4 for r in rescored)  # identities after the generation's individuals
    run = Run.open(run_dir)
    front = run.front()
    assert LUCKY not in [e.expression for e in front]
    assert all(e.seeds == 4 for e in front)  # the budget (16 trainings) confirmed the whole front
    assert front == run.recomputed_front()


def test_an_unconfirmed_challenger_does_not_push_a_confirmed_incumbent_off_the_front():
    def known(acc, complexity, seeds):
        accs = (acc,) * seeds
        fit = Fitness.mean_of([Fitness(types.OK, a, 0.5, None, 0.1) for a in accs])
        return Known(fit, complexity, f"t{complexity}", f"e{complexity}", 0)

    memo = {"incumbent": known(0.80, 5, 4), "lucky": known(0.90, 3, 1)}
    assert [e.fingerprint for e in front_of(memo)] == ["lucky"]  # plain Pareto front
    assert [(e.fingerprint, e.seeds) for e in front_of(memo, 4)] == [("lucky", 1), ("incumbent", 4)]
    assert racing.next_challenger(memo, 4) == "lucky"
    memo["lucky"] = known(0.90, 3, 4)  # confirmed by racing: now it may displace the incumbent
    assert [e.fingerprint for e in front_of(memo, 4)] == ["lucky"]
    assert racing.next_challenger(memo, 4) is None


def test_racing_stays_within_its_budget(tmp_path, fake):
    driver.run(_config(race_seeds=4, generations=0, budget=0.25), tmp_path / "run", evaluator=fake)  # 1 training
    rescored = [r for r in _lines(tmp_path / "run") if r["status"] == types.RESCORED]
    assert [(r["expr"], r["seeds"]) for r in rescored] == [(LUCKY, 2)]


def test_anchors_are_scored_on_the_confirmed_protocol_and_never_enter_the_population(tmp_path, fake):
    run_dir = tmp_path / "run"
    state = driver.run(_config(race_seeds=4, generations=1), run_dir, evaluator=fake)
    anchors = Run.open(run_dir).anchors()
    assert [(r.tree, r.generation, r.seeds) for r in anchors] == [("relu", -1, 4), ("gelu", -1, 4)]
    relu_fp = anchors[0].fingerprint
    assert relu_fp not in state.known or state.known[relu_fp].generation >= 0  # known only if the search found it
    gelu_fp = anchors[1].fingerprint
    assert gelu_fp not in state.known
    assert "gelu" not in str([e.expression for e in Run.open(run_dir).front()])


def test_interrupted_anywhere_with_racing_then_resumed_equals_the_uninterrupted_run(tmp_path, fake, stop_after):
    cfg = _config(race_seeds=4, fitness_seeds=1, generations=2, budget=1.0)
    baseline = tmp_path / "baseline"
    driver.run(cfg, baseline, evaluator=fake)
    lines = _lines(baseline)
    statuses = {r["status"] for r in lines}
    assert {types.ANCHOR, types.RESCORED, types.OK} <= statuses
    inside_race = [k for k, r in enumerate(lines) if r["status"] == types.RESCORED]
    for cut in sorted({1, 2, 3, *inside_race, len(lines) - 1}):
        run_dir = tmp_path / f"cut{cut}"
        with stop_after(cut), pytest.raises(driver.SearchInterruptedError):
            driver.run(cfg, run_dir, evaluator=fake)
        assert len(_lines(run_dir)) == cut
        driver.resume(run_dir, evaluator=fake)
        assert _lines(run_dir) == lines, f"interrupted after line {cut}"
        assert (run_dir / rundir.PARETO).read_text() == (baseline / rundir.PARETO).read_text()
        assert Run.open(run_dir).checkpoint() == Run.open(baseline).checkpoint()


def test_truncated_jsonl_inside_a_rescoring_is_redone_exactly(tmp_path, fake):
    cfg = _config(race_seeds=4, generations=1, budget=1.0)
    baseline = tmp_path / "baseline"
    driver.run(cfg, baseline, evaluator=fake)
    lines = Run.open(baseline).records()
    last_race = max(k for k, r in enumerate(lines) if r.status == types.RESCORED)
    run_dir = tmp_path / "cut"
    import shutil

    shutil.copytree(baseline, run_dir)
    text = (run_dir / rundir.EVALUATIONS).read_text().split("\n")
    # keep the lines before the last re-scoring and half of it; roll the checkpoint back to its generation
    (run_dir / rundir.EVALUATIONS).write_text("\n".join(text[:last_race]) + "\n" + text[last_race][:20])
    gen = lines[last_race].generation
    ckpt = Run.open(baseline).checkpoint()
    assert ckpt["generation"] == 2 and gen == 1
    (run_dir / rundir.CHECKPOINT).unlink()
    (run_dir / rundir.PREVIOUS_CHECKPOINT).rename(run_dir / rundir.CHECKPOINT)
    with pytest.warns(UserWarning, match="truncated last line"):
        driver.resume(run_dir, evaluator=fake)
    assert _lines(run_dir) == _lines(baseline)
    assert Run.open(run_dir).checkpoint() == ckpt
    assert not math.isnan(lines[last_race].val_accuracy)


def test_command_line_and_config_set_the_protocol():
    from afos.cli.commands import config_from_args
    from afos.cli.parser import build_parser

    args = build_parser().parse_args(["search", "--fitness-seeds", "3", "--race-seeds", "6", "--validate"])
    cfg = config_from_args(args, config.Config())
    assert (cfg.protocol.fitness_seeds, cfg.protocol.race_seeds, cfg.protocol.max_seeds) == (3, 6, 6)
    assert config.from_dict(cfg.to_dict()).protocol == cfg.protocol  # stored in config.toml and read back
    with pytest.raises(config.ConfigError, match="protocol.anchors: unknown activation 'nope'"):
        config.override(config.Config(), protocol={"anchors": ["relu", "nope"]})
    with pytest.raises(config.ConfigError, match="protocol.fitness_seeds must be at least 1"):
        config.override(config.Config(), protocol={"fitness_seeds": 0})


def test_a_failed_rescoring_is_not_trained_again_on_resume(tmp_path, stop_after):
    class FailsOnItsSecondSeed(FakeEvaluator):
        def evaluate_seed(self, candidates, seed, epochs=None):
            for i, fit in super().evaluate_seed(candidates, seed):
                lucky = candidates[i].text == LUCKY and seed == 1
                yield i, Fitness.failed("non-finite loss during training", 0.001) if lucky else fit

    cfg = _config(race_seeds=4, generations=0, budget=4.0)
    baseline = tmp_path / "baseline"
    driver.run(cfg, baseline, evaluator=FailsOnItsSecondSeed())
    lines = _lines(baseline)
    failed = [k for k, r in enumerate(lines) if r["status"] == types.RESCORED and r["val_accuracy"] is None]
    assert failed and lines[failed[0]]["expr"] == LUCKY  # racing found the lucky draw's failure
    run_dir = tmp_path / "cut"
    with stop_after(failed[0] + 1), pytest.raises(driver.SearchInterruptedError):
        driver.run(cfg, run_dir, evaluator=FailsOnItsSecondSeed())
    again = FailsOnItsSecondSeed()
    driver.resume(run_dir, evaluator=again)
    assert _lines(run_dir) == lines
    assert (LUCKY, 1) not in again.calls  # the failed re-scoring was answered from the log
