"""The one registry of primitives: name -> arity, sympy builder, complexity cost.

Everything else in afos looks primitives up here by name. A primitive is defined by its sympy form:
a candidate is a sympy expression, lowered once to afos's intermediate form (``afos.expr.ir``), which
the JAX compiler, the batched interpreter, the NumPy evaluator and the exporters read. Their numerics
are overflow-safe with the constants below: exponentials clipped, sigmoid/softplus in their stable forms,
denominators kept away from zero, so values and gradients stay finite for |x| up to 1e4
(``tests/test_primitives.py``).

The sympy side uses standard sympy functions where one exists (so that sympy's automatic simplification
can find duplicates) plus two custom functions, ``sigmoid`` and ``softplus``, which keep their stable
numerical meaning when an expression is compiled or exported. Nothing here imports JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy

from afos.errors import ExpressionError

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


@dataclass(frozen=True)
class Primitive:
    """One building block of a candidate activation.

    Attributes:
        name: registry key, also the name used in genome text and the parser.
        arity: 1 (unary) or 2 (binary).
        sympy_fn: builds the sympy expression from the arguments' expressions (its numerics follow from
            that form: ``afos.expr.ir``).
        cost: complexity added to a candidate that uses this primitive.
        formula: human-readable definition with arguments ``a`` and ``b``.
    """

    name: str
    arity: int
    sympy_fn: Callable[..., sympy.Expr]
    cost: int
    formula: str


def _p(name, arity, sympy_fn, cost, formula):
    return Primitive(name, arity, sympy_fn, cost, formula)


_PRIMITIVES = [
    # unary
    _p("id", 1, lambda a: a, 0, "a"),
    _p("neg", 1, lambda a: -a, 1, "-a"),
    _p("abs", 1, sympy.Abs, 1, "|a|"),
    _p("square", 1, lambda a: a**2, 1, "a^2"),
    _p("cube", 1, lambda a: a**3, 1, "a^3"),
    _p("sqrt_abs", 1, lambda a: sympy.sqrt(sympy.Abs(a)), 2, "sqrt(|a|)"),
    _p("exp", 1, sympy.exp, 1, "exp(a)"),
    _p("exp_neg", 1, lambda a: sympy.exp(-a), 2, "exp(-a)"),
    _p("log1p_abs", 1, lambda a: sympy.log(1 + sympy.Abs(a)), 2, "log(1+|a|)"),
    _p("sin", 1, sympy.sin, 1, "sin(a)"),
    _p("cos", 1, sympy.cos, 1, "cos(a)"),
    _p("tanh", 1, sympy.tanh, 1, "tanh(a)"),
    _p("sigmoid", 1, sigmoid, 1, "1/(1+exp(-a))"),
    _p("erf", 1, sympy.erf, 1, "erf(a)"),
    _p("atan", 1, sympy.atan, 1, "atan(a)"),
    _p("asinh", 1, sympy.asinh, 1, "asinh(a)"),
    _p("sinh", 1, sympy.sinh, 1, "sinh(a)"),
    _p("cosh", 1, sympy.cosh, 1, "cosh(a)"),
    _p("softplus", 1, softplus, 1, "log(1+exp(a))"),
    _p("relu", 1, lambda a: sympy.Max(a, 0), 1, "max(a,0)"),
    _p("min0", 1, lambda a: sympy.Min(a, 0), 1, "min(a,0)"),
    _p("gauss", 1, lambda a: sympy.exp(-(a**2)), 2, "exp(-a^2)"),
    _p("x_erf", 1, lambda a: a * sympy.erf(a), 2, "a*erf(a)"),
    # binary
    _p("add", 2, lambda a, b: a + b, 1, "a+b"),
    _p("sub", 2, lambda a, b: a - b, 1, "a-b"),
    _p("mul", 2, lambda a, b: a * b, 1, "a*b"),
    _p("div", 2, lambda a, b: a / b, 2, "a/b (safe denominator)"),
    _p("max", 2, sympy.Max, 1, "max(a,b)"),
    _p("min", 2, sympy.Min, 1, "min(a,b)"),
    _p("sigmoid_mul", 2, lambda a, b: sigmoid(a) * b, 2, "sigmoid(a)*b"),
    _p("mul_erf", 2, lambda a, b: a * sympy.erf(b), 2, "a*erf(b)"),
    _p("mul_exp", 2, lambda a, b: a * sympy.exp(b), 2, "a*exp(b)"),
    _p("max_relu", 2, lambda a, b: sympy.Max(a, 0, b), 2, "max(max(a,0),b)"),
    _p("rbf", 2, lambda a, b: sympy.exp(-((a - b) ** 2)), 3, "exp(-(a-b)^2)"),
    _p("laplace", 2, lambda a, b: sympy.exp(-sympy.Abs(a - b)), 3, "exp(-|a-b|)"),
]

PRIMITIVES: dict[str, Primitive] = {p.name: p for p in _PRIMITIVES}


def get(name: str) -> Primitive:
    """Returns the primitive called ``name``, or raises an ExpressionError naming the allowed ones."""
    try:
        return PRIMITIVES[name]
    except KeyError:
        raise ExpressionError(f"unknown primitive {name!r} (allowed: {', '.join(PRIMITIVES)})") from None


def names(arity: int | None = None) -> list[str]:
    return [p.name for p in _PRIMITIVES if arity is None or p.arity == arity]


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
