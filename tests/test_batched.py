"""The batched evaluator: same function, same fitness, one compilation, failures as rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy

from afos import config, types
from afos.config import FitnessSettings
from afos.expr import analyse, ir, parse
from afos.expr.compile import to_jax
from afos.expr.primitives import X
from afos.fitness import batched, interpreter, plan
from afos.fitness.batched import Batched
from afos.fitness.evaluator import Sequential
from afos.fitness.problem import FitnessProblem
from afos.run import driver
from afos.run.rundir import Run

# div, pow (integer, negative, fractional, general), max / min folds, constants, the stable heads
EXPRESSIONS = ["x*sigmoid(x)", "x/(1 + abs(x))", "max(x, 0.1*x)", "min(x, tanh(x))", "x**2/(1 + x**2)",
               "abs(x)**1.5", "x**x", "max(x, 0, sin(x))", "x*(1 + erf(x/sqrt(2)))/2", "softplus(x) - log(2)",
               "sqrt(abs(x))/x", "exp(-x**2)*cos(3*x)"]
SHAPE = interpreter.Shape()
# mlp on a digits subset: the same code path as cnn-small, compiled in seconds rather than tens of them
SETTINGS = FitnessSettings(model="mlp", train_size=256, val_size=128, batch_size=32)


@pytest.fixture(scope="module")
def problem():
    return FitnessProblem(SETTINGS)


def test_interpreter_computes_what_compile_computes():
    run = jax.jit(lambda program, x: interpreter.interpret(program, x, SHAPE))
    grad = jax.jit(jax.grad(lambda x, program: jnp.sum(interpreter.interpret(program, x, SHAPE))))
    xs = jnp.linspace(-6.0, 6.0, 997, dtype=jnp.float32)
    for text in EXPRESSIONS:
        expr = parse(text)
        program = interpreter.encode(ir.lower(expr), SHAPE)
        exact = jax.jit(to_jax(expr))
        exact_grad = jax.jit(jax.grad(lambda x, f=to_jax(expr): jnp.sum(f(x))))
        # float32 rounding only (XLA may rewrite an op on a literal constant differently from one on data)
        np.testing.assert_allclose(run(program, xs), exact(xs), rtol=1e-5, atol=1e-5, err_msg=text)
        np.testing.assert_allclose(grad(xs, program), exact_grad(xs), rtol=1e-4, atol=1e-4, err_msg=text)
    assert run._cache_size() == 1 and grad._cache_size() == 1  # programs are data: one compilation


def test_unsupported_or_too_long_expressions_are_refused_with_a_reason():
    with pytest.raises(interpreter.UnsupportedError, match="more than the program length"):
        interpreter.encode(ir.lower(parse("+".join(f"sin({k}*x)" for k in range(1, 8)))), SHAPE)
    with pytest.raises(interpreter.UnsupportedError, match="integer power"):
        interpreter.encode(ir.lower(X**12), SHAPE)


def _rows(evaluator, candidates, seeds=(SETTINGS.seed,)):
    rows = dict(evaluator.evaluate(candidates, seeds))
    assert sorted(rows) == list(range(len(candidates)))
    return [rows[i] for i in range(len(candidates))]


@pytest.mark.slow
def test_batched_gives_the_fitness_of_sequential(problem):
    candidates = [analyse(parse(t)) for t in EXPRESSIONS[:6]]
    exact = _rows(Sequential(problem), candidates)
    for mode in batched.MODES:
        fast = _rows(Batched(problem, mode=mode), candidates)
        for text, e, f in zip(EXPRESSIONS, exact, fast, strict=False):
            assert e.status == f.status == types.OK, text
            # Same init, batches, optimizer and per-op functions: only float32 rounding can differ (an
            # op XLA rewrites on a literal constant, a reduction order under vmap), and 8 Adam steps
            # amplify it at most into a few of the 128 validation digits flipping: 1 point is 1.3 of them.
            assert abs(e.val_accuracy - f.val_accuracy) <= 0.01, (mode, text)
            assert abs(e.val_loss - f.val_loss) <= 0.02 * e.val_loss, (mode, text)


def test_no_recompilation_across_generations(problem):
    evaluator = Batched(problem, mode="loop")
    first = _rows(evaluator, [analyse(parse(t)) for t in EXPRESSIONS[:3]])
    second = _rows(evaluator, [analyse(parse(t)) for t in EXPRESSIONS[3:7]])
    assert all(r.status == types.OK for r in first + second)
    assert evaluator.trainer(SETTINGS.seed).traces == 1  # one trace of the training step for both generations


def test_several_seeds_are_the_mean_of_each_seed_alone(problem):
    candidates = [analyse(parse(t)) for t in EXPRESSIONS[:2]]
    evaluator = Batched(problem, mode="loop")
    both = _rows(evaluator, candidates, (0, 1))
    alone = [_rows(evaluator, candidates, (seed,)) for seed in (0, 1)]
    for i, fit in enumerate(both):
        assert fit.seed_accuracies == (alone[0][i].val_accuracy, alone[1][i].val_accuracy)
        assert fit.val_accuracy == pytest.approx((alone[0][i].val_accuracy + alone[1][i].val_accuracy) / 2)
    assert set(evaluator.trainers) == {(0, None), (1, None)}  # one compiled step per seed, kept


def test_failures_are_rows_not_exceptions(problem):
    candidates = [analyse(parse("sinh(x)**8")), analyse(parse("x*sigmoid(x)")), analyse(sympy.Heaviside(X) * X)]
    rows = _rows(Batched(problem, mode="loop"), candidates)
    assert rows[0].status == types.FAILED and "non-finite" in rows[0].reason
    assert rows[1].status == types.OK
    assert rows[2].status == types.FAILED and "compile error" in rows[2].reason  # no JAX function: exact path


def test_backends_and_auto():
    assert set(plan.BACKENDS) == set(config.BACKENDS) == {"sequential", "batched"}
    digits, fashion = (8, 8, 1), (28, 28, 1)

    def choose(settings, shape, candidates, platform):
        return plan.choose_backend(settings, shape, candidates, platform)[0]

    assert choose(FitnessSettings(), digits, None, "cpu") == "sequential"  # unknown size: never slower
    assert choose(FitnessSettings(), digits, 112, "cpu") == "batched"  # measured 4.3-4.8x faster
    assert choose(FitnessSettings(batch_size=128), fashion, 112, "cpu") == "sequential"  # measured slower
    assert choose(FitnessSettings(), digits, 112, "gpu") == "sequential"  # not measured yet
    with pytest.raises(ValueError, match="unknown backend"):
        plan.local_evaluator("nope", None)


def test_auto_is_decided_once_into_a_plan(problem):
    class Device:
        def __init__(self, platform):
            self.platform = platform

    auto = config.EvaluatorSettings()
    cpu, gpus = [Device("cpu")], [Device("gpu")] * 2
    local = plan.make_plan(auto, problem, 112, cpu)
    assert (local.pool, local.backend, local.places, local.mode) == ("local", "batched", 1, "loop")
    assert plan.make_plan(auto, problem, 8, cpu).backend == "sequential"
    sharded = plan.make_plan(auto, problem, 112, gpus)
    assert (sharded.pool, sharded.places, sharded.backend, sharded.mode) == ("sharded", 2, "sequential", None)
    on_gpus = plan.make_plan(config.EvaluatorSettings(worker_backend="batched"), problem, 112, gpus)
    assert (on_gpus.backend, on_gpus.mode) == ("batched", "vmap")  # the population vmapped on accelerators
    assert plan.make_plan(config.EvaluatorSettings(backend="batched"), problem, 8, cpu).backend == "batched"
    ray = plan.make_plan(config.EvaluatorSettings(backend="ray"), problem, 112, cpu)
    assert (ray.pool, ray.backend) == ("ray", "auto")  # each worker decides on its own machine
    assert "112 candidates" in plan.make_plan(auto, problem, 112, cpu).describe()


def test_search_with_the_batched_backend(tmp_path, tiny_config):
    cfg = config.override(tiny_config, fitness={"model": "mlp"}, evaluator={"backend": "batched"})
    driver.run(cfg, tmp_path / "run")
    run = Run.open(tmp_path / "run")
    records = run.records()
    assert {r.generation for r in records} >= {0, 1} and run.front()
    assert any(r.status == types.OK and r.val_accuracy is not None for r in records)
