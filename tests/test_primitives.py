import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy

from afos import primitives
from afos.primitives import PRIMITIVES, X

RNG = np.random.default_rng(0)
POINTS = np.concatenate([RNG.uniform(-5, 5, 12), [-60.0, -15.0, 15.0, 60.0, -1e4, 1e4]])
LARGE = np.array([-1e4, -3e3, -100.0, -50.0, 50.0, 100.0, 3e3, 1e4], np.float32)
Y = sympy.Symbol("y", real=True)


def _exact(expr, **values):
    """Value of a sympy expression at a point, or None where it is not a finite float32."""
    v = expr.evalf(30, subs={sympy.Symbol(k, real=True): sympy.Float(val, 30) for k, val in values.items()})
    try:
        f = float(v)
    except (TypeError, OverflowError):
        return None
    return f if np.isfinite(f) and abs(f) < 1e30 else None


def _args(p):
    return (X,) if p.arity == 1 else (X, Y)


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_sympy_and_jnp_agree_in_value_and_gradient(name):
    p = PRIMITIVES[name]
    expr = p.sympy_fn(*_args(p))
    partial = [sympy.diff(expr, s) for s in _args(p)]
    grad_fn = jax.grad(lambda *a: p.jnp_fn(*a), argnums=tuple(range(p.arity)))
    checked = 0
    for a in POINTS:
        b = RNG.uniform(-3, 3)
        point = {"x": a, "y": b}
        args = (jnp.float32(a), jnp.float32(b))[: p.arity]
        want = _exact(expr, **point)
        if want is None or (name == "div" and abs(b) < 1e-3):
            continue
        got = float(p.jnp_fn(*args))
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5), (name, a, b)
        grads = grad_fn(*args)
        for d, g in zip(partial, grads):
            want_g = _exact(d, **point)
            if want_g is not None and abs(want_g) < 1e12:
                assert float(g) == pytest.approx(want_g, rel=1e-3, abs=1e-4), (name, a, b)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_values_and_gradients_finite_for_large_inputs(name):
    p = PRIMITIVES[name]
    xs = jnp.asarray(LARGE)
    args = (xs, xs[::-1])[: p.arity]
    values = p.jnp_fn(*args)
    grads = jax.vmap(jax.grad(lambda *a: p.jnp_fn(*a), argnums=tuple(range(p.arity))))(*args)
    assert np.all(np.isfinite(np.asarray(values)))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))


def test_stable_forms_beat_naive_ones():
    # The naive forms overflow where the registry's do not: that is why they exist.
    big = jnp.float32(1e4)
    assert float(PRIMITIVES["softplus"].jnp_fn(big)) == pytest.approx(1e4)
    assert float(PRIMITIVES["sigmoid"].jnp_fn(-big)) == 0.0
    assert not np.isfinite(float(jnp.log1p(jnp.exp(big))))
    assert float(PRIMITIVES["div"].jnp_fn(jnp.float32(1.0), jnp.float32(0.0))) == pytest.approx(1e6)


def test_get_unknown_names_the_allowed():
    with pytest.raises(ValueError, match="unknown primitive 'nope'.*allowed: id, neg"):
        primitives.get("nope")


def test_every_sympy_head_has_a_jnp_implementation():
    heads = set()
    for p in PRIMITIVES.values():
        expr = p.sympy_fn(*_args(p))
        heads |= {type(e) for e in sympy.preorder_traversal(expr) if isinstance(e, sympy.Function)}
    missing = {h.__name__ for h in heads} - {h.__name__ for h in primitives.SYMPY_FUNCTIONS}
    assert not missing
