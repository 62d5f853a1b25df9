"""What is known of a candidate before it is trained: its canonical key, fingerprint and the screen.

The screen rejects functions that cannot be activations (non-finite values or gradients on [-10, 10],
constant, linear, zero gradient); the fingerprint hashes a function's values on fixed points, so that two
expressions computing the same function are trained once. ``analyse`` measures both with JAX, exactly as
every search so far has (fingerprints are stored in run directories and must not move); ``check`` applies
the same screen to values and derivatives computed with NumPy (``afos.expr.numeric``), for the commands
that do not load JAX (``afos export``).

Under unit gain (``afos.expr.gain``) a candidate is the function ``g * f``: the screen and the fingerprint
read ``g * f``, so ``f`` and ``3*f`` share a fingerprint and are trained once, and a function without a
finite positive second moment on N(0, 1) inputs is rejected. Without gain (``gain="none"``, every run of
format 1) nothing of this applies and every number is what it always was.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import sympy

from afos.expr import ir
from afos.expr.gain import unit_gain
from afos.expr.parse import canonical_key, to_text

# Points of the screen ([-10, 10], dense) and of the fingerprint (also beyond).
SCREEN_POINTS = np.linspace(-10.0, 10.0, 401, dtype=np.float32)
FINGERPRINT_POINTS = np.concatenate(
    [np.linspace(-6.0, 6.0, 97), [-1e3, -100.0, -30.0, -12.5, 12.5, 30.0, 100.0, 1e3]]
).astype(np.float32)


@dataclass(frozen=True)
class Candidate:
    """A screened function, as evaluators receive it.

    Attributes:
        expr: the sympy expression.
        text: its text form (``afos.expr.to_text``).
        key: its canonical key (sympy's ``srepr``).
        fingerprint: hash of its values on ``FINGERPRINT_POINTS``: equal functions, equal fingerprint.
        reason: why the screen rejected it, or None.
        gain: the ``g`` it is trained with (``g * f``), or None where gain normalisation is off.
    """

    expr: sympy.Expr
    text: str
    key: str
    fingerprint: str
    reason: str | None
    gain: float | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None

    @property
    def key_hash(self) -> str:
        """A short stable hash of the canonical key, for files."""
        return hashlib.sha1(self.key.encode()).hexdigest()[:16]

    @cached_property
    def node(self) -> ir.Node:
        """The intermediate form of what is trained, ``gain * f`` (``ir.LoweringError`` for a candidate the
        screen could not lower)."""
        return ir.scaled(ir.lower(self.expr), self.gain)


UNDEFINED = "undefined: a part has no finite value (a division by zero, a comparison with infinity)"


def fingerprint(values: np.ndarray) -> str:
    """Hash of the values rounded to 4 significant digits (and |v| < 1e-6 to 0): equal functions, equal hash."""
    values = np.where(np.abs(values) < 1e-6, 0.0, values)
    text = ",".join(f"{v:.3e}" if np.isfinite(v) else str(v) for v in values.tolist())
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def screen(values: np.ndarray, grads: np.ndarray) -> str | None:
    """The reason to reject a function from its values/gradients on [-10, 10], or None."""
    values, grads = np.asarray(values, np.float64), np.asarray(grads, np.float64)
    if not np.all(np.isfinite(values)):
        return "non-finite values on [-10, 10]"
    if not np.all(np.isfinite(grads)):
        return "non-finite gradient on [-10, 10]"
    scale = max(1.0, float(np.max(np.abs(values))))
    if np.ptp(values) <= 1e-6 * scale:
        return "constant on [-10, 10]"
    xs = SCREEN_POINTS.astype(np.float64)
    design = np.stack([xs, np.ones_like(xs)], axis=1)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    if np.max(np.abs(design @ coef - values)) <= 1e-4 * scale:
        return "linear on [-10, 10]"
    if np.max(np.abs(grads)) == 0.0:
        return "zero gradient on [-10, 10]"
    return None


def _jax_values_and_grads(fn, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import jax
    import jax.numpy as jnp

    values, vjp = jax.vjp(fn, jnp.asarray(points))
    (grads,) = vjp(jnp.ones_like(values))
    return np.asarray(values, dtype=np.float64), np.asarray(grads, dtype=np.float64)


def analyse(expr: sympy.Expr, gain: str = "none") -> Candidate:
    """Canonical key, fingerprint and screen of one expression, measured with JAX (no training).

    Args:
        gain: ``"unit"`` to screen and fingerprint ``g * f`` (``afos.expr.gain``), ``"none"`` for ``f``.
    """
    from afos.expr.compile import to_jax

    text, key = to_text(expr), canonical_key(expr)
    if expr is sympy.nan:  # a tree sympy could not build (afos.ga.genome.to_sympy)
        return Candidate(expr, text, key, "undefined:" + key, UNDEFINED)
    try:
        node = ir.lower(expr)
        fn = to_jax(node)
        values, grads = _jax_values_and_grads(fn, SCREEN_POINTS)
        fp_values, _ = _jax_values_and_grads(fn, FINGERPRINT_POINTS)
    except ir.LoweringError as err:
        return Candidate(expr, text, key, "compile-error:" + key[:32], f"compile error: {err.logged}")
    if gain == "none":
        return Candidate(expr, text, key, fingerprint(fp_values), screen(values, grads))
    g, reason = unit_gain(node)
    if reason is not None:
        return Candidate(expr, text, key, fingerprint(fp_values), reason)
    return Candidate(expr, text, key, fingerprint(g * fp_values), screen(g * values, g * grads), g)


def check(expr: sympy.Expr, gain: str = "none") -> str | None:
    """Why the screen rejects ``expr`` (None: it is a usable activation), with NumPy: JAX is not loaded."""
    from afos.expr.numeric import values_and_derivatives

    try:
        node = ir.lower(expr)
    except ir.LoweringError as err:
        return str(err)
    g, reason = unit_gain(node) if gain == "unit" else (1.0, None)
    if reason is not None:
        return reason
    values, slopes = values_and_derivatives(node, SCREEN_POINTS)
    return screen(g * values.astype(np.float64), g * slopes.astype(np.float64))
