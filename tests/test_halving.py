"""Successive halving over training length: who climbs, what the run records, and exact resume."""

import hashlib

import pytest

from afos import config, types
from afos.cli.display import anchor_verdict
from afos.errors import ConfigError
from afos.fitness.evaluator import PerSeed
from afos.ga import halving
from afos.ga.front import ranked
from afos.ga.memo import Known
from afos.run import driver, rundir
from afos.run.rundir import Run
from afos.types import Fitness

SPRINTER = "tanh(x)"  # the best after one epoch, poor after more: a one-epoch proxy would crown it
INIT = ["tanh(x)", "x*sigmoid(x)", "max(x, 0)", "x**2", "sin(x)", "x*erf(x)"]


class ByLength(PerSeed):
    """Trains nothing: accuracy from the expression, the seed and the training length."""

    def __init__(self):
        self.calls: list[tuple[str, int, int | None]] = []

    def evaluate_seed(self, candidates, seed, epochs=None):
        for i, c in enumerate(candidates):
            self.calls.append((c.text, seed, epochs))
            long = epochs is not None and epochs > 1
            h = int(hashlib.sha1(f"{c.text}/{seed}/{epochs}".encode()).hexdigest()[:8], 16) % 1000 / 1000
            acc = (0.5 if long else 0.99) if c.text == SPRINTER else (0.6 if long else 0.4) + 0.1 * h
            yield i, Fitness(types.OK, acc, 1.0 - acc, None, 0.001)


def _config(rungs=(3, 9), generations=2, race_seeds=0):
    return config.override(
        config.Config(),
        search={"population": 6, "generations": generations, "seed": 0, "init_exprs": INIT},
        fitness={"train_size": 64, "val_size": 32, "seed": 0, "epochs": 1},
        protocol={"rungs": list(rungs), "race_seeds": race_seeds, "race_budget": 1.0, "anchors": ["relu", "gelu"]},
    )


def _lines(run_dir):
    return [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in Run.open(run_dir).records()]


def _known(acc: float | None, complexity: int = 3) -> Known:
    fit = Fitness.failed("nan") if acc is None else Fitness(types.OK, acc, 1 - acc, None, 0.0)
    return Known(fit, complexity, f"t{acc}", f"e{acc}", 0, None, 1)


def test_the_best_third_of_every_rung_climbs_once_lowest_rung_first():
    memo = {f"f{i}": _known(i / 10) for i in range(1, 10)} | {"broken": _known(None)}
    at_rung_1 = {"f9": 0.61, "f8": 0.62, "f7": 0.70}  # longer training reorders them
    trained = []

    def promote(fp, known, epochs):
        trained.append((fp, epochs))
        acc = at_rung_1.get(fp, 0.5) if epochs == 3 else 0.8
        return Fitness(types.OK, acc, 1 - acc, None, 0.0)

    cfg = _config()
    updates = halving.halve(memo, cfg, promote)
    # 10 completed rung 0 (the failed one too): the best 3 climb; of those 3 at rung 1 the best 1 climbs again
    assert trained == [("f9", 3), ("f8", 3), ("f7", 3), ("f7", 9)]
    assert memo["f7"].rung == 0  # the memo given is not changed
    assert updates["f7"].climbed == (0.7, 0.70) and updates["f7"].epochs == 9 and updates["f7"].rung == 2
    assert updates["f9"].climbed == (0.9,) and updates["f9"].fitness.val_accuracy == 0.61
    memo |= updates
    assert halving.halve(memo, cfg, promote) == {}  # nobody climbs twice
    memo["new"] = _known(0.95)  # a new best at rung 0: 11 completed it, the best 3 now include it
    assert list(halving.halve(memo, cfg, promote)) == ["new"] and trained[-1] == ("new", 3)
    ties = {"b": _known(0.5, complexity=4), "a": _known(0.5, complexity=4), "c": _known(0.5, complexity=2)}
    assert halving.next_promotion(ties, 2, 3) == ("c", 1)  # ties: the simpler, then the fingerprint
    del ties["c"]
    ties["z"] = _known(0.1)
    assert halving.next_promotion(ties, 2, 3) == ("a", 1)


def test_a_search_with_rungs_ranks_on_the_longest_training_and_records_every_length(tmp_path):
    fake, run_dir = ByLength(), tmp_path / "run"
    driver.run(_config(), run_dir, evaluator=fake)
    run = Run.open(run_dir)
    anchors = run.anchors()
    assert [(a.index, a.tree, a.epochs) for a in anchors] == [
        (0, "relu", 1), (1, "gelu", 1), (2, "relu", 3), (3, "gelu", 3), (4, "relu", 9), (5, "gelu", 9)]
    lines = run.records()
    assert all(r.epochs in (1, 3, 9) for r in lines if r.status != types.REJECTED)
    promoted = [r for r in lines if r.status == types.PROMOTED]
    assert {r.epochs for r in promoted} == {3, 9}
    assert all(r.index >= 6 for r in promoted)  # after the generation's individuals
    longer = {(text, epochs) for text, _, epochs in fake.calls if epochs != 1}
    assert longer == {(r.expr, r.epochs) for r in promoted} | {(a.expr, a.epochs) for a in anchors if a.epochs != 1}
    sprinter = next(r for r in lines if r.expr == SPRINTER and r.status == types.OK)
    assert sprinter.val_accuracy == 0.99  # the most accurate after one epoch ...
    best = ranked(run.front())[0]
    assert best.epochs == 9 and best.expression != SPRINTER  # ... is not the best after nine
    assert run.front() == run.recomputed_front()  # pareto.csv keeps the training lengths
    verdict = anchor_verdict(run.front(), anchors)
    assert "after 9 epochs" in verdict
    at_9 = max((a for a in anchors if a.epochs == 9), key=lambda a: a.val_accuracy)
    assert f"the best anchor {at_9.tree} ({at_9.val_accuracy:.4f})" in verdict


def test_without_rungs_lines_record_no_training_length(tmp_path):
    run_dir = tmp_path / "run"
    driver.run(_config(rungs=(), generations=1), run_dir, evaluator=ByLength())
    lines = _lines(run_dir)
    assert lines and all("epochs" not in r for r in lines)
    assert types.PROMOTED not in {r["status"] for r in lines}
    assert "epochs" not in (run_dir / rundir.PARETO).read_text().splitlines()[0]


@pytest.mark.slow
def test_interrupted_anywhere_with_rungs_and_racing_then_resumed_equals_the_uninterrupted_run(tmp_path,
                                                                                               stop_after):
    cfg = _config(race_seeds=2)
    baseline = tmp_path / "baseline"
    driver.run(cfg, baseline, evaluator=ByLength())
    lines = _lines(baseline)
    assert {types.PROMOTED, types.RESCORED} <= {r["status"] for r in lines}
    again = [k for k, r in enumerate(lines) if r["status"] in types.RESCORINGS]
    for cut in sorted({3, *again, *(k + 1 for k in again)} - {len(lines)}):
        run_dir = tmp_path / f"cut{cut}"
        with stop_after(cut), pytest.raises(driver.SearchInterruptedError):
            driver.run(cfg, run_dir, evaluator=ByLength())
        assert len(_lines(run_dir)) == cut
        resumed = ByLength()
        driver.resume(run_dir, evaluator=resumed)
        assert _lines(run_dir) == lines, f"interrupted after line {cut}"
        assert (run_dir / rundir.PARETO).read_text() == (baseline / rundir.PARETO).read_text()
        assert Run.open(run_dir).checkpoint() == Run.open(baseline).checkpoint()
        done = {(r["expr"], 0, r["epochs"]) for r in lines[:cut] if r["status"] == types.PROMOTED}
        assert not done & set(resumed.calls)  # a recorded promotion is answered from the log


def test_rungs_are_set_on_the_command_line_and_checked():
    from afos.cli.commands import config_from_args
    from afos.cli.parser import build_parser

    cfg = config_from_args(build_parser().parse_args(["search", "--rungs", "3,9"]), config.Config())
    assert cfg.protocol.rungs == (3, 9) and cfg.protocol.halving == 3
    assert config.from_dict(cfg.to_dict()).protocol == cfg.protocol  # stored in config.toml and read back
    with pytest.raises(ConfigError, match="--rungs must be comma-separated positive epochs"):
        config_from_args(build_parser().parse_args(["search", "--rungs", "3,x"]), config.Config())
    for bad in ([1], [9, 3], [3, 3]):
        with pytest.raises(ConfigError, match="protocol.rungs must be increasing epochs, each longer than fitness"):
            config.override(config.Config(), fitness={"epochs": 1}, protocol={"rungs": bad})
    with pytest.raises(ConfigError, match="protocol.halving must be at least 2"):
        config.override(config.Config(), protocol={"halving": 1})


@pytest.mark.slow
def test_a_longer_rung_trains_exactly_as_a_problem_of_that_many_epochs(tiny_config):
    import dataclasses

    from afos.expr import analyse, parse
    from afos.fitness.batched import Batched
    from afos.fitness.evaluator import Sequential
    from afos.fitness.problem import FitnessProblem

    problem = FitnessProblem(dataclasses.replace(tiny_config.fitness, epochs=1))
    longer = FitnessProblem(dataclasses.replace(tiny_config.fitness, epochs=2), problem.dataset)
    c = analyse(parse("x*sigmoid(x)"))
    ((_, one),) = Sequential(problem).evaluate([c], [0])
    ((_, two),) = Sequential(problem).evaluate([c], [0], epochs=2)
    ((_, direct),) = Sequential(longer).evaluate([c], [0])
    assert two.val_accuracy == direct.val_accuracy and two.val_loss == direct.val_loss
    assert two.val_loss != one.val_loss
    batched = Batched(problem, mode="loop")
    ((_, b2),) = batched.evaluate([c], [0], epochs=2)
    assert b2.val_loss == pytest.approx(direct.val_loss, rel=1e-4)
    assert set(batched.trainers) == {(0, 2)}


def test_an_evaluator_written_before_rungs_still_serves_a_run_without_them(tmp_path):
    class TwoArguments(ByLength):  # the protocol before successive halving: evaluate(candidates, seeds)
        def evaluate(self, candidates, seeds):
            return super().evaluate(candidates, seeds)

    class PerSeedTwoArguments(PerSeed):
        def evaluate_seed(self, candidates, seed):
            return ByLength().evaluate_seed(candidates, seed)

    for evaluator in (TwoArguments(), PerSeedTwoArguments()):
        run_dir = tmp_path / type(evaluator).__name__
        driver.run(_config(rungs=(), generations=1, race_seeds=2), run_dir, evaluator=evaluator)
        assert len(Run.open(run_dir).front()) >= 1
    with pytest.raises(TypeError):  # a run with rungs needs the training length
        driver.run(_config(generations=0), tmp_path / "rungs", evaluator=TwoArguments())
