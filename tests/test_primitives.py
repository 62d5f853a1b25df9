"""The registry's primitives, as afos computes them (sympy form -> intermediate form -> JAX): exact where
sympy is, finite where the naive form overflows, and every operation defined by every reader of the form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy

from afos.expr import ir, numeric, primitives
from afos.expr.compile import JAX_OPS, to_jax
from afos.expr.primitives import PRIMITIVES, X

RNG = np.random.default_rng(0)
POINTS = np.concatenate([RNG.uniform(-5, 5, 12), [-60.0, -15.0, 15.0, 60.0, -1e4, 1e4]])
LARGE = np.array([-1e4, -3e3, -100.0, -50.0, 50.0, 100.0, 3e3, 1e4], np.float32)


def _exact(expr, x):
    """Value of a sympy expression in x at a point, or None where it is not a finite float32."""
    v = expr.evalf(30, subs={X: sympy.Float(float(x), 30)})
    try:
        f = float(v)
    except (TypeError, OverflowError):
        return None
    return f if np.isfinite(f) and abs(f) < 1e30 else None


def _partials(p, a: float, b: float):
    """(expression in x, point) per argument: each partial derivative of a primitive as a function of x."""
    if p.arity == 1:
        return [(p.sympy_fn(X), a)]
    return [(p.sympy_fn(X, sympy.Float(b)), a), (p.sympy_fn(sympy.Float(a), X), b)]


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_compiled_primitives_agree_with_sympy_in_value_and_gradient(name):
    p = PRIMITIVES[name]
    checked = 0
    for a in POINTS:
        a, b = float(np.float32(a)), float(np.float32(RNG.uniform(-3, 3)))
        if name == "div" and abs(b) < 1e-3:
            continue
        for expr, at in _partials(p, a, b):
            want = _exact(expr, at)
            if want is None or not expr.has(X):
                continue
            fn = to_jax(expr)
            got = float(fn(jnp.float32(at)))
            assert got == pytest.approx(want, rel=1e-4, abs=1e-5), (name, a, b)
            want_g = _exact(sympy.diff(expr, X), at)
            if want_g is not None and abs(want_g) < 1e12:
                assert float(jax.grad(fn)(jnp.float32(at))) == pytest.approx(want_g, rel=1e-3, abs=1e-4), (name, a, b)
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_values_and_gradients_finite_for_large_inputs(name):
    p = PRIMITIVES[name]
    expr = p.sympy_fn(X) if p.arity == 1 else p.sympy_fn(X, -X)
    fn = to_jax(expr)
    xs = jnp.asarray(LARGE)
    values, grads = fn(xs), jax.vmap(jax.grad(fn))(xs)
    assert np.all(np.isfinite(np.asarray(values))) and np.all(np.isfinite(np.asarray(grads)))


def test_stable_forms_beat_naive_ones():
    # The naive forms overflow where afos's do not: that is why they exist.
    big = jnp.float32(1e4)
    assert float(to_jax(PRIMITIVES["softplus"].sympy_fn(X))(big)) == pytest.approx(1e4)
    assert float(to_jax(PRIMITIVES["sigmoid"].sympy_fn(X))(-big)) == 0.0
    assert not np.isfinite(float(jnp.log1p(jnp.exp(big))))
    assert float(to_jax(PRIMITIVES["div"].sympy_fn(sympy.Integer(1), X))(jnp.float32(0.0))) == pytest.approx(1e6)


def test_get_unknown_names_the_allowed():
    with pytest.raises(ValueError, match="unknown primitive 'nope'.*allowed: id, neg"):
        primitives.get("nope")


def test_every_head_of_every_primitive_has_an_operation_and_every_operation_a_definition():
    heads = set()
    for p in PRIMITIVES.values():
        expr = p.sympy_fn(*(X, sympy.Symbol("y", real=True))[: p.arity])
        heads |= {type(e) for e in sympy.preorder_traversal(expr) if isinstance(e, sympy.Function)}
    assert heads <= set(ir.HEADS)
    operations = set(ir.OPS) - {"x", "const"}
    assert set(JAX_OPS) == operations
    assert set(numeric.UNARY) | set(numeric.PARAMETRISED) | set(numeric.BINARY) == operations
