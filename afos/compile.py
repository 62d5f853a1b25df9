"""sympy expression -> JAX function, through the safe implementations of the registry."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import sympy

from afos.primitives import SYMPY_FUNCTIONS, X, safe_denominator, safe_exp, safe_log, safe_sqrt

Fn = Callable[[jax.Array], jax.Array]


class CompileError(ValueError):
    """An expression with a part afos cannot turn into JAX."""


def _pow(base: Fn, exponent: sympy.Expr) -> Fn:
    if exponent.is_Integer:
        n = int(exponent)
        if n >= 0:
            return lambda x: base(x) ** n  # lax.integer_pow: exact and cheap
        return lambda x: 1.0 / safe_denominator(base(x) ** (-n))
    if exponent == sympy.Rational(1, 2):
        return lambda x: safe_sqrt(base(x))
    if exponent == sympy.Rational(-1, 2):
        return lambda x: 1.0 / safe_sqrt(base(x))
    if exponent.is_Number:
        e = float(exponent)
        return lambda x: jnp.power(jnp.maximum(base(x), 1e-12), e)
    power = _build(exponent)
    return lambda x: safe_exp(power(x) * safe_log(base(x)))


def _build(expr: sympy.Expr) -> Fn:
    if expr == X:
        return lambda x: x
    if expr.is_Number or expr in (sympy.pi, sympy.E):
        if not expr.is_real or not expr.is_finite:
            raise CompileError(f"constant {expr} is not a finite real number")
        c = float(expr)
        return lambda x: jnp.full_like(x, c)
    if expr.is_Add or expr.is_Mul:
        parts = [_build(a) for a in expr.args]
        op = jnp.add if expr.is_Add else jnp.multiply

        def fold(x):
            out = parts[0](x)
            for p in parts[1:]:
                out = op(out, p(x))
            return out

        return fold
    if expr.is_Pow:
        base, exponent = expr.args
        if base == sympy.E:
            inner = _build(exponent)
            return lambda x: safe_exp(inner(x))
        return _pow(_build(base), exponent)
    fn = SYMPY_FUNCTIONS.get(expr.func)
    if fn is None:
        raise CompileError(f"no JAX implementation for {expr.func.__name__}")
    args = [_build(a) for a in expr.args]
    return lambda x: fn(*(a(x) for a in args))


def to_jax(expr: sympy.Expr) -> Fn:
    """An elementwise JAX function of x computing ``expr`` (not jitted: traced by its caller)."""
    free = expr.free_symbols - {X}
    if free:
        raise CompileError(f"unknown symbols {sorted(map(str, free))}")
    return _build(expr)


def compile_activation(expr: sympy.Expr) -> Fn:
    """A jitted, elementwise JAX activation for ``expr``."""
    return jax.jit(to_jax(expr))
