"""The intermediate form evaluated with NumPy: values and derivatives without JAX.

For the commands that must stay light (``afos export``, ``afos show``, reports): they screen and plot
functions without loading JAX. Every operation has the meaning ``afos.expr.ir`` gives it, in float32 like
afos's training, and its derivative follows JAX's conventions where a function has a kink or a tie
(``|a|`` has slope +1 at 0, ``max``/``min`` split the derivative evenly between equal operands), so the
screen reaches the decision that the JAX screen of a search reaches (``tests/test_expr.py`` compares them).
Derivatives are carried forward through the tree (forward-mode differentiation in one variable).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from afos.expr import ir
from afos.expr.primitives import DIV_EPS, EXP_CLIP, TINY

Pair = tuple[np.ndarray, np.ndarray]  # (values, derivatives with respect to x)
SQRT_PI = np.float32(np.sqrt(np.pi))


def _lower_tie(a: np.ndarray, bound: float) -> np.ndarray:
    """d min(a, bound) / da: 1 below the bound, 1/2 at it, 0 above (JAX's balanced rule)."""
    return np.where(a < bound, 1.0, np.where(a == bound, 0.5, 0.0)).astype(a.dtype)


def _clip_min(a: Pair, bound: float) -> Pair:
    return np.minimum(a[0], np.float32(bound)), a[1] * _lower_tie(a[0], bound)


def _clip_max(a: Pair, bound: float) -> Pair:
    return np.maximum(a[0], np.float32(bound)), a[1] * _lower_tie(-a[0], -bound)


def _chain(a: Pair, value: np.ndarray, slope: np.ndarray) -> Pair:
    return value, slope * a[1]


def _exp(a: Pair) -> Pair:
    m = _clip_min(a, EXP_CLIP)
    v = np.exp(m[0])
    return v, v * m[1]


def _log(a: Pair) -> Pair:
    m = _clip_max(a, TINY)
    return np.log(m[0]), m[1] / m[0]


def _sqrt(a: Pair) -> Pair:
    m = _clip_max(a, TINY)
    v = np.sqrt(m[0])
    return v, m[1] * np.float32(0.5) / v


def _clipped(fn, slope) -> Callable[[Pair], Pair]:
    def apply(a: Pair) -> Pair:
        m = _clip_max(_clip_min(a, EXP_CLIP), -EXP_CLIP)
        return fn(m[0]), slope(m[0]) * m[1]

    return apply


def _sigmoid(a: Pair) -> Pair:
    z = np.exp(-np.abs(a[0]))
    v = np.where(a[0] >= 0, 1 / (1 + z), z / (1 + z)).astype(a[0].dtype)
    return v, v * (1 - v) * a[1]


def _softplus(a: Pair) -> Pair:
    s = _sigmoid(a)[0]
    return np.logaddexp(a[0], np.float32(0.0)), s * a[1]


def _erf(sign: float) -> Callable[[Pair], Pair]:
    from scipy import special

    fn = special.erf if sign > 0 else special.erfc

    def apply(a: Pair) -> Pair:
        return _chain(a, fn(a[0]).astype(a[0].dtype), np.float32(sign * 2) / SQRT_PI * np.exp(-a[0] * a[0]))

    return apply


def _denominator(p: Pair) -> Pair:
    small = np.abs(p[0]) < DIV_EPS
    value = np.where(small, np.where(p[0] < 0, -DIV_EPS, DIV_EPS), p[0]).astype(p[0].dtype)
    return value, np.where(small, 0.0, p[1]).astype(p[0].dtype)


def _reciprocal(a: Pair) -> Pair:
    return 1 / a[0], -a[1] / (a[0] * a[0])


def _ipow(a: Pair, n: float) -> Pair:
    n = int(n)
    if n == 0:
        return np.ones_like(a[0]), np.zeros_like(a[0])
    return a[0] ** n, np.float32(n) * a[0] ** (n - 1) * a[1]


def _rpow(a: Pair, c: float) -> Pair:
    m, c = _clip_max(a, TINY), np.float32(c)
    return m[0] ** c, c * m[0] ** (c - 1) * m[1]


def _mul(a: Pair, b: Pair) -> Pair:
    return a[0] * b[0], a[1] * b[0] + a[0] * b[1]


def _extremum(pick: Callable, first: Callable) -> Callable[[Pair, Pair], Pair]:
    def apply(a: Pair, b: Pair) -> Pair:
        wins, tie = first(a[0], b[0]), a[0] == b[0]
        slope = np.where(tie, (a[1] + b[1]) / 2, np.where(wins, a[1], b[1]))
        return pick(a[0], b[0]), slope.astype(a[0].dtype)

    return apply


UNARY: dict[str, Callable[[Pair], Pair]] = {
    "exp": _exp,
    "log": _log,
    "sin": lambda a: _chain(a, np.sin(a[0]), np.cos(a[0])),
    "cos": lambda a: _chain(a, np.cos(a[0]), -np.sin(a[0])),
    "tan": lambda a: _chain(a, np.tan(a[0]), 1 + np.tan(a[0]) ** 2),
    "tanh": lambda a: _chain(a, np.tanh(a[0]), 1 - np.tanh(a[0]) ** 2),
    "sinh": _clipped(np.sinh, np.cosh),
    "cosh": _clipped(np.cosh, np.sinh),
    "asinh": lambda a: _chain(a, np.arcsinh(a[0]), 1 / np.sqrt(a[0] * a[0] + 1)),
    "atan": lambda a: _chain(a, np.arctan(a[0]), 1 / (1 + a[0] * a[0])),
    "erf": lambda a: _erf(1.0)(a),
    "erfc": lambda a: _erf(-1.0)(a),
    "abs": lambda a: (np.abs(a[0]), np.where(a[0] >= 0, a[1], -a[1])),
    "sign": lambda a: (np.sign(a[0]), np.zeros_like(a[0])),
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "sqrt": _sqrt,
    "rsqrt": lambda a: _reciprocal(_sqrt(a)),
}
PARAMETRISED: dict[str, Callable[[Pair, float], Pair]] = {
    "ipow": _ipow,
    "ipow_inv": lambda a, n: _reciprocal(_denominator(_ipow(a, n))),
    "rpow": _rpow,
}
BINARY: dict[str, Callable[[Pair, Pair], Pair]] = {
    "add": lambda a, b: (a[0] + b[0], a[1] + b[1]),
    "mul": _mul,
    "max": _extremum(np.maximum, np.greater),
    "min": _extremum(np.minimum, np.less),
    "pow": lambda a, b: _exp(_mul(b, _log(a))),
}


def _eval(node: ir.Node, x: np.ndarray) -> Pair:
    if node.op == "x":
        return x, np.ones_like(x)
    if node.op == "const":
        return np.full_like(x, node.param), np.zeros_like(x)
    parts = [_eval(a, x) for a in node.args]
    if node.op in BINARY:
        out = parts[0]
        for p in parts[1:]:
            out = BINARY[node.op](out, p)
        return out
    if node.op in PARAMETRISED:
        return PARAMETRISED[node.op](parts[0], node.param)
    return UNARY[node.op](parts[0])


def values_and_derivatives(node: ir.Node, points: np.ndarray, dtype=np.float32) -> Pair:
    """The function of ``node`` and its derivative at ``points``, in float32 like afos's training (or ``dtype``);
    overflow gives inf, not a warning."""
    x = np.asarray(points, dtype)
    with np.errstate(all="ignore"):
        return _eval(node, x)
