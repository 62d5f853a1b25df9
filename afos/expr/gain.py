"""Gain normalisation: compare shapes, not output scales.

A short training rewards a function's gain as much as its shape: ``2*relu`` beats relu on the 1-epoch proxy
of the default search, and ``x*erf(x) + x`` is ``sqrt(2)*gelu(sqrt(2)*x)``. Under ``[fitness] gain = "unit"``
every candidate and every anchor is trained as ``g * f(x)``, with the positive ``g`` that gives it unit
second moment on standard normal inputs, ``E[(g f(z))^2] = 1`` for ``z ~ N(0, 1)``: the reasoning behind
SELU (Klambauer et al. 2017) and the scaled activations of NFNets (Brock et al. 2021, "Characterizing signal
propagation to close the performance gap in unnormalized ResNets"). ``f`` and ``3*f`` are then one function.

``E[f(z)^2]`` is computed once per function in float64 with NumPy (no JAX), on a fixed dense grid of ``z`` with
the normal density as weights (trapezoid rule on [-12, 12]: exact to about 1e-6 also where ``f`` has kinks,
which Gauss-Hermite quadrature converges on slowly), in afos's safe arithmetic (``afos.expr.numeric``).
"""

from __future__ import annotations

import math

import numpy as np

from afos.expr import ir, numeric

GAIN_MODES = ("unit", "none")
PROBE = np.linspace(-12.0, 12.0, 4801)
_WEIGHTS = np.exp(-PROBE**2 / 2) * np.gradient(PROBE)
WEIGHTS = _WEIGHTS / _WEIGHTS.sum()  # the standard normal density, as trapezoid weights summing to 1


def second_moment(node: ir.Node) -> float:
    """``E[f(z)^2]`` for ``z ~ N(0, 1)`` (inf or nan where ``f`` is not finite on the grid)."""
    values, _ = numeric.values_and_derivatives(node, PROBE, np.float64)
    with np.errstate(all="ignore"):
        return float(np.dot(WEIGHTS, values * values))


def unit_gain(node: ir.Node) -> tuple[float | None, str | None]:
    """(g, None) with ``E[(g f(z))^2] = 1``, or (None, the reason no such g exists)."""
    m2 = second_moment(node)
    if not math.isfinite(m2):
        return None, "no finite second moment on N(0, 1) inputs (gain normalisation)"
    if m2 <= 0.0:
        return None, "zero on N(0, 1) inputs (gain normalisation)"
    gain = 1.0 / math.sqrt(m2)
    if not math.isfinite(gain):
        return None, "too small on N(0, 1) inputs to be normalised (gain normalisation)"
    return gain, None
