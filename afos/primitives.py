"""The one registry of primitives: name -> arity, sympy builder, jnp function, cost.

Everything else in afos looks primitives up here by name. The jnp functions are
overflow-safe: exponentials are clipped, sigmoid/softplus use their stable
forms and divisions use a safe denominator, so values and gradients stay finite
for |x| up to 1e4 (tested in ``tests/test_primitives.py``).

The sympy side uses standard sympy functions where one exists (so that sympy's
automatic simplification can find duplicates) plus two custom functions,
``sigmoid`` and ``softplus``, which keep their stable numerical meaning when an
expression is compiled or exported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import sympy

# exp(70) ~ 2.5e30: finite in float32 even when multiplied by |x| <= 1e4 (mul_exp).
EXP_CLIP = 70.0
# Denominators closer to zero than this are pushed away from it (Swish's x1/(x2+eps)).
DIV_EPS = 1e-6
# Floor for sqrt/log arguments so their gradients stay finite at 0.
TINY = 1e-12

X = sympy.Symbol("x", real=True)


class sigmoid(sympy.Function):  # noqa: N801 - sympy function names are lower case
    """Logistic sigmoid 1 / (1 + exp(-x)), compiled in its stable form."""

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sympy.Rational(1, 2)
        return None

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + sympy.exp(-arg))

    def _eval_evalf(self, prec):
        return self.rewrite(sympy.exp)._eval_evalf(prec)


class softplus(sympy.Function):  # noqa: N801
    """log(1 + exp(x)), compiled in its stable form."""

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sympy.log(2)
        return None

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return sympy.log(1 + sympy.exp(arg))

    def _eval_evalf(self, prec):
        return self.rewrite(sympy.exp)._eval_evalf(prec)


# --- overflow-safe jnp building blocks -------------------------------------------------


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


def safe_div(a, b):
    return a / safe_denominator(b)


@dataclass(frozen=True)
class Primitive:
    """One building block of a candidate activation.

    Attributes:
        name: registry key, also the name used in genome text and the parser.
        arity: 1 (unary) or 2 (binary).
        sympy_fn: builds the sympy expression from the arguments' expressions.
        jnp_fn: the overflow-safe JAX implementation.
        cost: complexity added to a candidate that uses this primitive.
        formula: human-readable definition with arguments ``a`` and ``b``.
    """

    name: str
    arity: int
    sympy_fn: Callable[..., sympy.Expr]
    jnp_fn: Callable[..., jax.Array]
    cost: int
    formula: str


def _p(name, arity, sympy_fn, jnp_fn, cost, formula):
    return Primitive(name, arity, sympy_fn, jnp_fn, cost, formula)


_PRIMITIVES = [
    # unary
    _p("id", 1, lambda a: a, lambda a: a, 0, "a"),
    _p("neg", 1, lambda a: -a, jnp.negative, 1, "-a"),
    _p("abs", 1, sympy.Abs, jnp.abs, 1, "|a|"),
    _p("square", 1, lambda a: a**2, jnp.square, 1, "a^2"),
    _p("cube", 1, lambda a: a**3, lambda a: a * a * a, 1, "a^3"),
    _p("sqrt_abs", 1, lambda a: sympy.sqrt(sympy.Abs(a)), lambda a: safe_sqrt(jnp.abs(a)), 2, "sqrt(|a|)"),
    _p("exp", 1, sympy.exp, safe_exp, 1, "exp(a)"),
    _p("exp_neg", 1, lambda a: sympy.exp(-a), lambda a: safe_exp(-a), 2, "exp(-a)"),
    _p("log1p_abs", 1, lambda a: sympy.log(1 + sympy.Abs(a)), lambda a: jnp.log1p(jnp.abs(a)), 2, "log(1+|a|)"),
    _p("sin", 1, sympy.sin, jnp.sin, 1, "sin(a)"),
    _p("cos", 1, sympy.cos, jnp.cos, 1, "cos(a)"),
    _p("tanh", 1, sympy.tanh, jnp.tanh, 1, "tanh(a)"),
    _p("sigmoid", 1, sigmoid, jax.nn.sigmoid, 1, "1/(1+exp(-a))"),
    _p("erf", 1, sympy.erf, jsp.erf, 1, "erf(a)"),
    _p("atan", 1, sympy.atan, jnp.arctan, 1, "atan(a)"),
    _p("asinh", 1, sympy.asinh, jnp.arcsinh, 1, "asinh(a)"),
    _p("sinh", 1, sympy.sinh, safe_sinh, 1, "sinh(a)"),
    _p("cosh", 1, sympy.cosh, safe_cosh, 1, "cosh(a)"),
    _p("softplus", 1, softplus, jax.nn.softplus, 1, "log(1+exp(a))"),
    _p("relu", 1, lambda a: sympy.Max(a, 0), jax.nn.relu, 1, "max(a,0)"),
    _p("min0", 1, lambda a: sympy.Min(a, 0), lambda a: jnp.minimum(a, 0.0), 1, "min(a,0)"),
    _p("gauss", 1, lambda a: sympy.exp(-(a**2)), lambda a: jnp.exp(-a * a), 2, "exp(-a^2)"),
    _p("x_erf", 1, lambda a: a * sympy.erf(a), lambda a: a * jsp.erf(a), 2, "a*erf(a)"),
    # binary
    _p("add", 2, lambda a, b: a + b, jnp.add, 1, "a+b"),
    _p("sub", 2, lambda a, b: a - b, jnp.subtract, 1, "a-b"),
    _p("mul", 2, lambda a, b: a * b, jnp.multiply, 1, "a*b"),
    _p("div", 2, lambda a, b: a / b, safe_div, 2, "a/b (safe denominator)"),
    _p("max", 2, sympy.Max, jnp.maximum, 1, "max(a,b)"),
    _p("min", 2, sympy.Min, jnp.minimum, 1, "min(a,b)"),
    _p("sigmoid_mul", 2, lambda a, b: sigmoid(a) * b, lambda a, b: jax.nn.sigmoid(a) * b, 2, "sigmoid(a)*b"),
    _p("mul_erf", 2, lambda a, b: a * sympy.erf(b), lambda a, b: a * jsp.erf(b), 2, "a*erf(b)"),
    _p("mul_exp", 2, lambda a, b: a * sympy.exp(b), lambda a, b: a * safe_exp(b), 2, "a*exp(b)"),
    _p("max_relu", 2, lambda a, b: sympy.Max(a, 0, b), lambda a, b: jnp.maximum(jax.nn.relu(a), b), 2,
       "max(max(a,0),b)"),
    _p("rbf", 2, lambda a, b: sympy.exp(-((a - b) ** 2)), lambda a, b: jnp.exp(-jnp.square(a - b)), 3,
       "exp(-(a-b)^2)"),
    _p("laplace", 2, lambda a, b: sympy.exp(-sympy.Abs(a - b)), lambda a, b: jnp.exp(-jnp.abs(a - b)), 3,
       "exp(-|a-b|)"),
]

PRIMITIVES: dict[str, Primitive] = {p.name: p for p in _PRIMITIVES}


def get(name: str) -> Primitive:
    """Returns the primitive called ``name``, or raises a ValueError naming the allowed ones."""
    try:
        return PRIMITIVES[name]
    except KeyError:
        raise ValueError(f"unknown primitive {name!r} (allowed: {', '.join(PRIMITIVES)})") from None


def names(arity: int | None = None) -> list[str]:
    return [p.name for p in _PRIMITIVES if arity is None or p.arity == arity]


# --- sympy heads -> safe jnp: what an expression may contain after simplification ----

def _reduce(fn):
    def apply(*args):
        out = args[0]
        for a in args[1:]:
            out = fn(out, a)
        return out

    return apply


SYMPY_FUNCTIONS: dict[type, Callable[..., jax.Array]] = {
    sympy.exp: safe_exp,
    sympy.log: safe_log,
    sympy.sin: jnp.sin,
    sympy.cos: jnp.cos,
    sympy.tan: jnp.tan,
    sympy.tanh: jnp.tanh,
    sympy.sinh: safe_sinh,
    sympy.cosh: safe_cosh,
    sympy.asinh: jnp.arcsinh,
    sympy.atan: jnp.arctan,
    sympy.erf: jsp.erf,
    sympy.erfc: jsp.erfc,
    sympy.Abs: jnp.abs,
    sympy.sign: jnp.sign,
    sympy.Max: _reduce(jnp.maximum),
    sympy.Min: _reduce(jnp.minimum),
    sigmoid: jax.nn.sigmoid,
    softplus: jax.nn.softplus,
}

# Standard activations by name, as expressions in the safe grammar. They are used
# as anchors and baselines; `swish` is beta = 1.
STANDARD_ACTIVATIONS: dict[str, str] = {
    "relu": "max(x, 0)",
    "leaky_relu": "max(x, 0.01*x)",
    "elu": "max(x, 0) + min(0, exp(x) - 1)",
    "selu": "1.0507009873554805*(max(x, 0) + 1.6732632423543772*min(0, exp(x) - 1))",
    "gelu": "x*(1 + erf(x/sqrt(2)))/2",
    "swish": "x*sigmoid(x)",
    "silu": "x*sigmoid(x)",
    "mish": "x*tanh(softplus(x))",
    "sigmoid": "sigmoid(x)",
    "tanh": "tanh(x)",
    "softplus": "softplus(x)",
}
