"""Gain normalisation: every function is trained as g * f with E[(g f(z))^2] = 1, so shapes compete, not gains."""

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate

from afos import config, types
from afos.expr import analyse, check, ir, parse
from afos.expr.gain import second_moment, unit_gain
from afos.fitness.evaluator import PerSeed
from afos.run import driver, rundir
from afos.run.rundir import Run
from afos.study import bench
from afos.types import Fitness

FIXTURES = Path(__file__).parent / "fixtures"


def _moment_by_scipy(fn) -> float:
    return integrate.quad(lambda z: fn(z) ** 2 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -40, 40,
                          points=[0.0], limit=400)[0]


@pytest.mark.parametrize("text, fn", [
    ("max(x, 0)", lambda z: max(z, 0.0)),
    ("x", lambda z: z),
    ("tanh(x)", math.tanh),
    ("x*erf(x) + x", lambda z: z * math.erf(z) + z),
    ("abs(x) - 0.5", lambda z: abs(z) - 0.5),
    ("x*sigmoid(x)", lambda z: z / (1 + math.exp(-z))),
])
def test_the_second_moment_is_that_of_the_standard_normal(text, fn):
    m2 = second_moment(ir.lower(parse(text)))
    assert m2 == pytest.approx(_moment_by_scipy(fn), rel=1e-5)
    gain, reason = unit_gain(ir.lower(parse(text)))
    assert reason is None and gain == pytest.approx(1 / math.sqrt(m2))


def test_functions_without_a_finite_positive_moment_are_rejected_with_a_reason():
    assert unit_gain(ir.lower(parse("max(x - 20, 0)")))[1] == "zero on N(0, 1) inputs (gain normalisation)"
    assert "gain normalisation" in check(parse("max(x - 20, 0)"), gain="unit")
    assert analyse(parse("max(x - 20, 0)"), gain="unit").reason == "zero on N(0, 1) inputs (gain normalisation)"
    infinite = ir.Node("ipow", (ir.lower(parse("exp(x)")),), 64)  # exp(12)**64 overflows float64
    assert unit_gain(infinite)[1] == "no finite second moment on N(0, 1) inputs (gain normalisation)"


@pytest.mark.parametrize("text", ["x*sigmoid(x)", "max(x, 0)", "tanh(x)", "x*erf(x) + x"])
def test_f_and_a_positive_multiple_of_f_are_one_function_at_unit_gain(text):
    f, double = analyse(parse(text), gain="unit"), analyse(parse(f"2*({text})"), gain="unit")
    assert f.fingerprint == double.fingerprint and f.accepted and double.accepted
    assert double.gain == pytest.approx(f.gain / 2)
    assert analyse(parse(f"-({text})"), gain="unit").fingerprint != f.fingerprint  # the scale is positive
    plain = analyse(parse(text)), analyse(parse(f"2*({text})"))
    assert plain[0].fingerprint != plain[1].fingerprint and plain[0].gain is None  # without gain: two functions


def test_the_screen_reads_the_normalised_function():
    assert analyse(parse("1e-9*x**2")).reason == "constant on [-10, 10]"  # as small as rounding
    tiny = analyse(parse("1e-9*x**2"), gain="unit")
    assert tiny.accepted and tiny.gain == pytest.approx(1e9 / math.sqrt(3), rel=1e-6)  # E[z^4] = 3


class Recording(PerSeed):
    """Trains nothing; records what each candidate would train: its intermediate form (g * f)."""

    def __init__(self):
        self.nodes = {}

    def evaluate_seed(self, candidates, seed, epochs=None):
        for i, c in enumerate(candidates):
            self.nodes[c.text] = (c.node, c.gain)
            acc = 0.5 + 0.4 * (hash(c.text) % 1000) / 1000
            yield i, Fitness(types.OK, acc, 1.0, None, 0.01)


def test_a_search_trains_every_candidate_and_anchor_at_unit_gain_and_records_it(tmp_path):
    cfg = config.override(config.Config(), search={"population": 6, "generations": 1, "seed": 2},
                          fitness={"train_size": 64, "val_size": 32}, protocol={"anchors": ["relu", "gelu"]})
    assert cfg.fitness.gain == "unit"  # the default
    training = Recording()
    driver.run(cfg, tmp_path / "run", evaluator=training)
    run = Run.open(tmp_path / "run")
    assert run.format == 2 and run.config.fitness.gain == "unit"
    relu = training.nodes["Max(0, x)"]
    assert relu[1] == pytest.approx(math.sqrt(2)) and relu[0] == ir.scaled(ir.lower(parse("max(x, 0)")), relu[1])
    for line in run.records():
        if line.status != types.REJECTED:
            assert line.gain == pytest.approx(unit_gain(ir.lower(parse(line.expr)))[0])
    assert "gain" in (run.path / rundir.PARETO).read_text().splitlines()[0]
    assert all(e.gain is not None for e in run.front())


def test_a_run_started_before_gain_normalisation_resumes_without_it_and_says_so(tmp_path):
    from test_run import FakeTraining, fake_describe

    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "fake_v1", run_dir)
    run = Run.open(run_dir)
    assert run.format == 1 and run.config.fitness.gain == "none"
    messages = []

    class Listening(driver.SilentReporter):
        def message(self, text):
            messages.append(text)

    before = (run_dir / rundir.EVALUATIONS).read_text()
    driver.resume(run_dir, generations=4, reporter=Listening(), evaluator=FakeTraining(), describe=fake_describe)
    assert any("started before gain normalisation" in m and "gain = none" in m for m in messages)
    new = (run_dir / rundir.EVALUATIONS).read_text()[len(before):]
    assert new and '"gain"' not in new  # its new lines are format 1 lines
    assert Run.open(run_dir).format == 1  # config.toml is never rewritten


def test_a_real_run_at_unit_gain_default_screens_with_it(tmp_path):
    """Without a given screen the driver screens with the run's gain mode (here on real, tiny training)."""
    cfg = config.override(config.Config(), search={"population": 2, "generations": 0, "seed": 1,
                                                   "init_exprs": ["2*max(x, 0)"]},
                          fitness={"model": "mlp", "train_size": 64, "val_size": 32}, protocol={"anchors": ["relu"]})
    driver.run(cfg, tmp_path / "run")
    lines = Run.open(tmp_path / "run").records()
    anchor, first = lines[0], lines[1]
    assert first.expr == "2*Max(0, x)" and first.gain == pytest.approx(math.sqrt(2) / 2)
    assert first.fingerprint == anchor.fingerprint  # 2*relu is relu at unit gain
    assert anchor.gain == pytest.approx(math.sqrt(2))
    assert first.status == types.OK  # an anchor is no candidate: the search trains its own relu


def test_benchmark_cells_at_unit_gain_have_their_own_keys_and_record_the_gain(tmp_path):
    base = {"activations": "relu,tanh", "models": ["mlp"], "seeds": 1, "epochs": 1, "train_size": 64,
            "val_size": 32, "test_size": 32}
    plain, unit = bench.make_spec(base), bench.make_spec(base | {"gain": "unit"})
    assert plain.training.gain == "none"  # a benchmark compares the functions as they are by default
    plain_keys, unit_keys = {c.key for c in bench.cells(plain)}, {c.key for c in bench.cells(unit)}
    assert not plain_keys & unit_keys
    legacy = bench.cell_key("max(x, 0)", bench.cells(plain)[0].settings, 32)
    assert legacy in plain_keys  # a benchmark without gain keeps the keys cells always had
    from afos.study import runner

    records = runner.run(unit, tmp_path / "b")
    gains = {r["activation"]: r["gain"] for r in records}
    assert gains["relu"] == pytest.approx(math.sqrt(2)) and gains["tanh"] == pytest.approx(1.5925374, rel=1e-6)
    with pytest.raises(bench.BenchError, match="cannot be trained at unit gain: zero on N"):
        bench.make_spec(base | {"gain": "unit", "activations": "relu,max(x - 20, 0)"})
    with pytest.raises(bench.BenchError, match="gain must be one of unit, none"):
        bench.make_spec(base | {"gain": "half"})


def test_gain_settings_are_checked():
    with pytest.raises(config.ConfigError, match="fitness.gain must be one of unit, none, got 'half'"):
        config.override(config.Config(), fitness={"gain": "half"})
    assert np.isclose(unit_gain(ir.lower(parse("selu(x)")))[0], 1.0, atol=1e-6)  # SELU is normalised already
