"""The batched evaluator: same function, same fitness, one compilation, failures as rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy

from afos import batched, config, driver, types
from afos import data as data_lib
from afos.archive import EVALUATIONS, read_jsonl
from afos.compile import to_jax
from afos.evaluate import BACKENDS, BatchedEvaluator, SequentialEvaluator, auto_backend, make_evaluator
from afos.expr import analyse, parse
from afos.primitives import X
from afos.train import FitnessSettings

# div, pow (integer, negative, fractional, general), max / min folds, constants, the stable heads
EXPRESSIONS = ["x*sigmoid(x)", "x/(1 + abs(x))", "max(x, 0.1*x)", "min(x, tanh(x))", "x**2/(1 + x**2)",
               "abs(x)**1.5", "x**x", "max(x, 0, sin(x))", "x*(1 + erf(x/sqrt(2)))/2", "softplus(x) - log(2)",
               "sqrt(abs(x))/x", "exp(-x**2)*cos(3*x)"]
SHAPE = batched.Shape()
# mlp on a digits subset: the same code path as cnn-small, compiled in seconds rather than tens of them
SETTINGS = FitnessSettings(model="mlp", train_size=256, val_size=128, batch_size=32)


@pytest.fixture(scope="module")
def dataset():
    return data_lib.load("digits", SETTINGS.seed, SETTINGS.val_fraction, SETTINGS.train_size, SETTINGS.val_size)


def test_interpreter_computes_what_compile_computes():
    run = jax.jit(lambda program, x: batched.interpret(program, x, SHAPE))
    grad = jax.jit(jax.grad(lambda x, program: jnp.sum(batched.interpret(program, x, SHAPE))))
    xs = jnp.linspace(-6.0, 6.0, 997, dtype=jnp.float32)
    for text in EXPRESSIONS:
        expr = parse(text)
        program = batched.encode(expr, SHAPE)
        exact = jax.jit(to_jax(expr))
        exact_grad = jax.jit(jax.grad(lambda x, f=to_jax(expr): jnp.sum(f(x))))
        # float32 rounding only (XLA may rewrite an op on a literal constant differently from one on data)
        np.testing.assert_allclose(run(program, xs), exact(xs), rtol=1e-5, atol=1e-5, err_msg=text)
        np.testing.assert_allclose(grad(xs, program), exact_grad(xs), rtol=1e-4, atol=1e-4, err_msg=text)
    assert run._cache_size() == 1 and grad._cache_size() == 1  # programs are data: one compilation


def test_unsupported_or_too_long_expressions_are_refused_with_a_reason():
    with pytest.raises(batched.UnsupportedError, match="more than the program length"):
        batched.encode(parse("+".join(f"sin({k}*x)" for k in range(1, 8))), SHAPE)
    with pytest.raises(batched.UnsupportedError, match="integer power"):
        batched.encode(X**12, SHAPE)


def _rows(evaluator, candidates):
    rows = dict(evaluator.evaluate(candidates))
    assert sorted(rows) == list(range(len(candidates)))
    return [rows[i] for i in range(len(candidates))]


def test_batched_gives_the_fitness_of_sequential(dataset):
    candidates = [analyse(parse(t)) for t in EXPRESSIONS[:6]]
    exact = _rows(SequentialEvaluator(dataset, SETTINGS), candidates)
    for mode in batched.MODES:
        fast = _rows(BatchedEvaluator(dataset, SETTINGS, mode=mode), candidates)
        for text, e, f in zip(EXPRESSIONS, exact, fast, strict=False):
            assert e.status == f.status == types.OK, text
            # Same init, batches, optimizer and per-op functions: only float32 rounding can differ (an
            # op XLA rewrites on a literal constant, a reduction order under vmap), and 8 Adam steps
            # amplify it at most into a few of the 128 validation digits flipping: 1 point is 1.3 of them.
            assert abs(e.val_accuracy - f.val_accuracy) <= 0.01, (mode, text)
            assert abs(e.val_loss - f.val_loss) <= 0.02 * e.val_loss, (mode, text)


def test_no_recompilation_across_generations(dataset):
    evaluator = BatchedEvaluator(dataset, SETTINGS, mode="loop")
    first = _rows(evaluator, [analyse(parse(t)) for t in EXPRESSIONS[:3]])
    second = _rows(evaluator, [analyse(parse(t)) for t in EXPRESSIONS[3:7]])
    assert all(r.status == types.OK for r in first + second)
    assert evaluator.trainer.traces == 1  # one trace of the training step for both generations


def test_failures_are_rows_not_exceptions(dataset):
    candidates = [analyse(parse("sinh(x)**8")), analyse(parse("x*sigmoid(x)")), analyse(sympy.Heaviside(X) * X)]
    rows = _rows(BatchedEvaluator(dataset, SETTINGS, mode="loop"), candidates)
    assert rows[0].status == types.FAILED and "non-finite" in rows[0].reason
    assert rows[1].status == types.OK
    assert rows[2].status == types.FAILED and "compile error" in rows[2].reason  # no JAX function: exact path


def test_backends_and_auto():
    assert set(BACKENDS) >= {"sequential", "batched"}
    digits, fashion = (8, 8, 1), (28, 28, 1)
    assert auto_backend(FitnessSettings(), digits, None, "cpu") == "sequential"  # unknown size: never slower
    assert auto_backend(FitnessSettings(), digits, 112, "cpu") == "batched"  # measured 4.3-4.8x faster
    assert auto_backend(FitnessSettings(batch_size=128), fashion, 112, "cpu") == "sequential"  # measured slower
    assert auto_backend(FitnessSettings(), digits, 112, "gpu") == "sequential"  # not measured yet
    with pytest.raises(ValueError, match="unknown backend"):
        make_evaluator("nope", None, SETTINGS)


def test_search_with_the_batched_backend(tmp_path, tiny_config):
    cfg = config.override(tiny_config, fitness={"model": "mlp"}, evaluator={"backend": "batched"})
    state = driver.run(cfg, tmp_path / "run")
    records = read_jsonl(tmp_path / "run" / EVALUATIONS)
    assert {r["generation"] for r in records} >= {0, 1} and driver.front_of(state)
    assert any(r["status"] == types.OK and r["val_accuracy"] is not None for r in records)
