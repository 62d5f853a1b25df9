"""Names for known functions: is ``f`` a standard activation up to input and output scale?

A search that crowns ``x*erf(x) + x`` has found ``sqrt(2)*gelu(sqrt(2)*x)``, and ``Max(0, 2*x)`` is ``2*relu(x)``:
known functions at another scale, not discoveries. ``known_as(expr)`` fits ``f(x) ~ a * s(b * x)`` for every
standard activation ``s`` (``b > 0``; ``a`` by least squares for each ``b``, ``b`` by a log-spaced grid refined
with a bounded scalar search) on a probe of [-6, 6] and names the first ``s`` that fits to a relative RMS error
below ``TOLERANCE``; the scales are written as simple numbers where they are one (``sqrt(2)``, ``1/2``, ``3``).
NumPy only (``afos.expr.numeric``): ``afos show`` and ``afos export`` name functions without JAX.

One function, one spelling: ``canonical(text)`` is the one text form in which afos shows a function (``max(x, 0)``,
``Max(0, x)`` and ``relu(x)`` are all ``Max(0, x)``), and ``label(text)`` puts its known name beside it
(``Max(0, x) (= relu)``, ``Max(0, 2*x) (= 2*relu(x))``). Every table, progress line, verdict, report and export
header shows a function through them; "at another scale" is said only where a scale differs (``Known``).

``affine_fit(f, t)`` asks the wider question a planted task needs (``afos.examples.planted``): is ``f`` the
function ``t`` up to affine maps of input and output, ``f(x) = a * t(b*x + c) + d``? A network absorbs all four
numbers into the weights and biases around the activation, so such an ``f`` is the same activation to it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import sympy

from afos.errors import AfosError
from afos.expr import ir, numeric
from afos.expr.parse import parse, to_text
from afos.expr.primitives import STANDARD_ACTIVATIONS, X

PROBE = np.linspace(-6.0, 6.0, 481)
TOLERANCE = 1e-4  # relative RMS error of the fit: equal up to float rounding and the probe's resolution
# The activations a function is named after, most familiar first (silu is swish's other name).
KNOWN = ("relu", "leaky_relu", "gelu", "swish", "elu", "selu", "mish", "softplus", "sigmoid", "tanh")
_INPUT_SCALES = np.exp(np.linspace(np.log(1 / 16), np.log(16), 97))
_NAMED = (sympy.sqrt(2), sympy.sqrt(3), sympy.pi)


def _values(node: ir.Node, points: np.ndarray = PROBE) -> np.ndarray:
    return numeric.values_and_derivatives(node, points, np.float64)[0]


@functools.cache
def _standard(name: str) -> ir.Node:
    return ir.lower(parse(STANDARD_ACTIVATIONS[name]))


def _homogeneous(node: ir.Node) -> bool:
    """Whether ``s(b*x) = b*s(x)`` for ``b > 0`` (relu, leaky relu): then the input scale is not identifiable."""
    return bool(np.allclose(_values(node, 2 * PROBE), 2 * _values(node), rtol=1e-9, atol=1e-12))


def _fit(f: np.ndarray, node: ir.Node) -> tuple[float, float, float]:
    """(a, b, relative RMS error) of the best ``a * s(b * x)`` for the values ``f`` of a function on PROBE."""
    from scipy.optimize import minimize_scalar  # SciPy only where a function is named, not for `afos check`

    norm = math.sqrt(float(np.mean(f * f)))

    def error(b: float) -> tuple[float, float]:
        s = _values(node, b * PROBE)
        ss = float(np.dot(s, s))
        a = float(np.dot(f, s)) / ss if ss > 0 else 0.0
        return a, math.sqrt(float(np.mean((f - a * s) ** 2))) / norm

    if _homogeneous(node):
        return (*error(1.0)[:1], 1.0, error(1.0)[1])
    errors = [error(b)[1] for b in _INPUT_SCALES]
    k = int(np.argmin(errors))
    lo, hi = _INPUT_SCALES[max(k - 1, 0)], _INPUT_SCALES[min(k + 1, len(_INPUT_SCALES) - 1)]
    best = minimize_scalar(lambda log_b: error(math.exp(log_b))[1], bounds=(math.log(lo), math.log(hi)),
                           method="bounded", options={"xatol": 1e-10})
    b = math.exp(best.x)
    a, err = error(b)
    return a, b, err


def _simple(value: float) -> sympy.Expr:
    """``value`` as a simple number where it is one (2, 1/2, sqrt(2), 3*pi/4, ...), else to 4 significant digits."""
    guess = sympy.nsimplify(value, _NAMED, tolerance=1e-6 * max(1.0, abs(value)), rational=False)
    if abs(float(guess) - value) <= 1e-6 * max(1.0, abs(value)) and len(sympy.sstr(guess)) <= 12:
        return guess
    return sympy.Float(f"{value:.4g}")


@dataclass(frozen=True)
class Known:
    """A standard activation that a function is: ``output * name(input * x)``, the scales as simple numbers."""

    name: str
    output: sympy.Expr
    input: sympy.Expr

    @property
    def formula(self) -> str:
        """``"sqrt(2)*gelu(sqrt(2)*x)"``; ``"gelu(x)"`` at the activation's own scale."""
        return sympy.sstr(self.output * sympy.Function(self.name)(self.input * X))

    @property
    def rescaled(self) -> bool:
        """Whether the input or output scale (or sign) differs from the standard activation's."""
        return self.output != 1 or self.input != 1

    @property
    def said(self) -> str:
        """What the function is called: ``"gelu"`` at its own scale, else the formula."""
        return self.formula if self.rescaled else self.name

    @property
    def described(self) -> str:
        """``said``, with ``(gelu at another input or output scale)`` where the scale differs, and only there."""
        return f"{self.formula} ({self.name} at another input or output scale)" if self.rescaled else self.name


@functools.cache
def _as_written() -> dict[str, str]:
    """The text form of each standard activation -> its name (swish before silu, its other name)."""
    return {to_text(parse(STANDARD_ACTIVATIONS[name])): name for name in reversed(KNOWN)}


def known(expr: sympy.Expr) -> Known | None:
    """The standard activation ``expr`` is up to input and output scale, or None. A standard activation as afos
    writes it (an anchor) is named without a fit: a run's anchors cost ``afos show`` nothing."""
    name = _as_written().get(to_text(expr))
    if name is not None:
        return Known(name, sympy.Integer(1), sympy.Integer(1))
    try:
        f = _values(ir.lower(expr))
    except AfosError:
        return None
    if not np.all(np.isfinite(f)) or float(np.mean(f * f)) == 0.0:
        return None
    for name in KNOWN:
        a, b, err = _fit(f, _standard(name))
        if err <= TOLERANCE and abs(a) > 0:
            return Known(name, _simple(a), _simple(b))
    return None


def known_as(expr: sympy.Expr) -> str | None:
    """``"sqrt(2)*gelu(sqrt(2)*x)"`` where ``expr`` is a standard activation up to input and output scale
    (``"gelu(x)"`` where it is one as it is), else None."""
    found = known(expr)
    return None if found is None else found.formula


@functools.lru_cache(maxsize=4096)
def canonical(expression: str) -> str:
    """The one way afos writes a function: the text form (``afos.expr.to_text``) of ``expression`` parsed, so that
    ``max(x, 0)``, ``Max(0, x)`` and ``relu(x)`` are all ``Max(0, x)``; text that does not parse stays as it is.

    Only for showing: files keep the text they were written with (a validation row's expression is matched
    against the front's, and a benchmark cell's key is made of it)."""
    try:
        return to_text(parse(expression))
    except AfosError:
        return expression


@functools.lru_cache(maxsize=4096)
def label(expression: str) -> str:
    """How afos shows a function: its ``canonical`` text, followed by `` (= its known name)`` where it has one
    (``Max(0, x) (= relu)``, ``Max(0, 2*x) (= 2*relu(x))``) and the text is not that name already (``tanh(x)``)."""
    text = canonical(expression)
    try:
        found = known(parse(text))
    except AfosError:
        return text
    return text if found is None or found.formula == text else f"{text} (= {found.said})"


# --- equality up to affine maps of input and output ------------------------------------------------------------

AFFINE_PROBE = np.linspace(-4.0, 4.0, 321)  # where a unit-gain activation's inputs lie (N(0, 1) pre-activations)
AFFINE_TOLERANCE = 1e-4  # relative RMS error of the best a * t(b*x + c) + d: equal but for rounding (as TOLERANCE)
# The input maps considered: |b| in [1/4, 4], |c| <= 4. A smaller |b| would zoom into a part of t small enough
# to look like any smooth function (cos(b*x) is a parabola as b -> 0): a degenerate limit, not an equality.
_AFFINE_SCALES = np.exp(np.linspace(np.log(0.25), np.log(4.0), 41))
_AFFINE_SHIFTS = np.linspace(-4.0, 4.0, 41)


@dataclass(frozen=True)
class AffineFit:
    """The best ``a * t(b*x + c) + d`` for a function ``f`` on ``AFFINE_PROBE``, and its relative RMS error (the
    RMS of the residual over the standard deviation of ``f``; 1 where ``t`` explains nothing of ``f``)."""

    a: float
    b: float
    c: float
    d: float
    error: float

    @property
    def equal(self) -> bool:
        return self.error <= AFFINE_TOLERANCE


def _correlations(f: np.ndarray, node: ir.Node, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``f`` with ``t(b_i * x + c_i)`` over the probe, for every pair (b_i, c_i)."""
    s = _values(node, b[:, None] * AFFINE_PROBE + c[:, None])
    s = np.where(np.isfinite(s), s, np.nan)
    fc = f - f.mean()
    sc = s - s.mean(axis=1, keepdims=True)
    with np.errstate(all="ignore"):
        r = (sc @ fc) / np.sqrt(np.sum(sc * sc, axis=1) * float(fc @ fc))
    return np.where(np.isfinite(r), r, 0.0)


def affine_fit(f_expr: sympy.Expr, t_expr: sympy.Expr) -> AffineFit:
    """The ``a * t(b*x + c) + d`` closest to ``f`` (least squares on ``AFFINE_PROBE``): ``a`` and ``d`` exactly
    for each input map, the input map ``(b, c)`` by a grid over ``|b|`` in [1/4, 4] (both signs) and ``c`` in
    [-4, 4], refined by Nelder-Mead from the best grid points. Raises ``AfosError`` for a function afos cannot
    compute."""
    from scipy.optimize import minimize

    f = _values(ir.lower(f_expr), AFFINE_PROBE)
    node = ir.lower(t_expr)
    if not np.all(np.isfinite(f)) or np.ptp(f) == 0.0:
        return AffineFit(0.0, 1.0, 0.0, float(np.nan_to_num(f.mean())), 1.0)
    bs = np.concatenate([_AFFINE_SCALES, -_AFFINE_SCALES])
    grid_b, grid_c = (g.ravel() for g in np.meshgrid(bs, _AFFINE_SHIFTS, indexing="ij"))
    r = np.abs(_correlations(f, node, grid_b, grid_c))
    lo, hi = math.log(_AFFINE_SCALES[0]), math.log(_AFFINE_SCALES[-1])

    def loss(v: np.ndarray, sign: float) -> float:
        b = sign * math.exp(min(max(v[0], lo), hi))
        c = min(max(v[1], _AFFINE_SHIFTS[0]), _AFFINE_SHIFTS[-1])
        return 1.0 - abs(float(_correlations(f, node, np.array([b]), np.array([c]))[0]))

    best = (1.0 - float(r.max()), float(grid_b[np.argmax(r)]), float(grid_c[np.argmax(r)]))
    for i in np.argsort(-r)[:3]:
        sign = math.copysign(1.0, grid_b[i])
        start = np.array([math.log(abs(grid_b[i])), grid_c[i]])
        out = minimize(loss, start, args=(sign,), method="Nelder-Mead",
                       options={"xatol": 1e-9, "fatol": 1e-15, "maxiter": 2000})
        if out.fun < best[0]:
            best = (float(out.fun), sign * math.exp(min(max(out.x[0], lo), hi)),
                    min(max(float(out.x[1]), _AFFINE_SHIFTS[0]), _AFFINE_SHIFTS[-1]))
    _, b, c = best
    s = _values(node, b * AFFINE_PROBE + c)
    design = np.stack([s, np.ones_like(s)], axis=1)
    (a, d), *_ = np.linalg.lstsq(design, f, rcond=None)
    error = math.sqrt(float(np.mean((f - a * s - d) ** 2))) / float(np.std(f))
    return AffineFit(float(a), b, c, float(d), error)


def recovers(f_expr: sympy.Expr, t_expr: sympy.Expr) -> bool:
    """Whether ``f`` is ``t`` up to affine maps of input and output (``affine_fit``); False for a function afos
    cannot compute."""
    try:
        return affine_fit(f_expr, t_expr).equal
    except AfosError:
        return False
