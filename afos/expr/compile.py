"""The intermediate form -> a JAX function, with the overflow-safe operations of ``afos.expr.ir``.

``JAX_OPS`` is the JAX definition of every operation; the batched interpreter runs the same functions
(``afos.fitness.interpreter``), so a candidate trains the same whichever backend scores it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import sympy

from afos.expr import ir
from afos.expr.primitives import DIV_EPS, EXP_CLIP, TINY

Fn = Callable[[jax.Array], jax.Array]


def safe_exp(x):
    return jnp.exp(jnp.minimum(x, EXP_CLIP))


def safe_sinh(x):
    return jnp.sinh(jnp.clip(x, -EXP_CLIP, EXP_CLIP))


def safe_cosh(x):
    return jnp.cosh(jnp.clip(x, -EXP_CLIP, EXP_CLIP))


def safe_sqrt(x):
    return jnp.sqrt(jnp.maximum(x, TINY))


def safe_log(x):
    return jnp.log(jnp.maximum(x, TINY))


def safe_denominator(b):
    # jnp.where picks the branch, so the gradient only flows through a finite one.
    small = jnp.abs(b) < DIV_EPS
    return jnp.where(small, jnp.where(b < 0, -DIV_EPS, DIV_EPS), b)


# Operation -> JAX function of its operands (and, for PARAMETRISED operations, of ``param`` last).
JAX_OPS: dict[str, Callable[..., jax.Array]] = {
    "add": jnp.add,
    "mul": jnp.multiply,
    "max": jnp.maximum,
    "min": jnp.minimum,
    "exp": safe_exp,
    "log": safe_log,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "tan": jnp.tan,
    "tanh": jnp.tanh,
    "sinh": safe_sinh,
    "cosh": safe_cosh,
    "asinh": jnp.arcsinh,
    "atan": jnp.arctan,
    "erf": jsp.erf,
    "erfc": jsp.erfc,
    "abs": jnp.abs,
    "sign": jnp.sign,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "sqrt": safe_sqrt,
    "rsqrt": lambda a: 1.0 / safe_sqrt(a),
    "ipow": lambda a, n: a ** int(n),  # lax.integer_pow: exact and cheap (n must be static)
    "ipow_inv": lambda a, n: 1.0 / safe_denominator(a ** int(n)),
    "rpow": lambda a, c: jnp.power(jnp.maximum(a, TINY), c),
    "pow": lambda a, b: safe_exp(b * safe_log(a)),
}


def _build(node: ir.Node) -> Fn:
    if node.op == "x":
        return lambda x: x
    if node.op == "const":
        c = node.param
        return lambda x: jnp.full_like(x, c)
    fn = JAX_OPS[node.op]
    parts = [_build(a) for a in node.args]
    if node.op in ir.NARY:
        def fold(x):
            out = parts[0](x)
            for p in parts[1:]:
                out = fn(out, p(x))
            return out

        return fold
    if node.op in ir.PARAMETRISED:
        (part,), param = parts, node.param
        return lambda x: fn(part(x), param)
    return lambda x: fn(*(p(x) for p in parts))


def to_jax(expr: sympy.Expr | ir.Node) -> Fn:
    """An elementwise JAX function of x computing ``expr`` (not jitted: traced by its caller).

    Raises:
        ir.LoweringError: ``expr`` has a part without an operation in the intermediate form.
    """
    return _build(expr if isinstance(expr, ir.Node) else ir.lower(expr))


def compile_activation(expr: sympy.Expr) -> Fn:
    """A jitted, elementwise JAX activation for ``expr``."""
    return jax.jit(to_jax(expr))
