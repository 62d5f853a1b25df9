"""A surrogate pre-screen: predict a function's fitness before training it, and train only the promising.

After AQuaSurF (Bingham and Miikkulainen, NeurIPS 2023): a function is described without training by its
outputs on fixed N(0, 1) points, here with its derivatives, both at the gain it is trained with (``g * f``,
unit gain), and a regressor learnt from the functions the run has scored predicts the accuracy of new ones.
Each generation the strategy proposes ``oversample x population`` novel children; the surrogate ranks them;
the best ``population`` minus an exploration share are trained, the share is drawn at random from the rest
(so a surrogate that is wrong about a region still sees it measured), and the others are recorded as
``screened`` lines with their predictions (``afos.run.driver``). Everything here is deterministic given the
memo: a resumed run refits the same regressor and makes the same choices.

Regressors (``search.surrogate``): ``knn`` (distance-weighted k nearest neighbours, AQuaSurF's choice),
``gp`` (a Gaussian process with an RBF kernel and a noise term) and ``forest`` (a random forest with a fixed
seed), all from scikit-learn; ``benchmarks/surrogate_fit.py`` measures their rank correlation on finished
runs (docs/SEARCH.md). No JAX: the features come from ``afos.expr.numeric``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import sympy

from afos import types
from afos.config import SURROGATES
from afos.errors import ExpressionError
from afos.expr import ir, numeric, parse

PROBE_POINTS = 256
MIN_FIT = 6  # scored functions a surrogate needs before its ranking is used (fewer: the plain GA's choice)
CLIP = 10.0  # features beyond it say only "large": keeps one exploding function from dominating distances

_PROBE = np.sort(np.random.default_rng(20231210).standard_normal(PROBE_POINTS)).astype(np.float32)


def features(expr: sympy.Expr, gain: float | None) -> np.ndarray:
    """Outputs and derivatives of ``gain * expr`` on the fixed probe, clipped to [-CLIP, CLIP] (non-finite:
    0 for a NaN, the bound for an infinity); zeros where the function has no intermediate form."""
    try:
        values, slopes = numeric.values_and_derivatives(ir.lower(expr), _PROBE)
    except ir.LoweringError:
        return np.zeros(2 * PROBE_POINTS, np.float32)
    g = np.float32(1.0 if gain is None else gain)
    out = np.concatenate([g * values, g * slopes]).astype(np.float64)
    return np.clip(np.nan_to_num(out, nan=0.0, posinf=CLIP, neginf=-CLIP), -CLIP, CLIP)


def target(fit: types.Fitness, climbed: Sequence[float] = ()) -> float:
    """What the surrogate learns of a scored function: its accuracy at the search's own training length
    (rung 0 of successive halving), and 0 for a failure (below every accuracy, as the GA ranks it)."""
    if climbed:
        return float(climbed[0])
    return float(fit.val_accuracy) if fit.ok else 0.0


def _regressor(kind: str, n: int):
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
    from sklearn.neighbors import KNeighborsRegressor

    if kind == "knn":
        return KNeighborsRegressor(n_neighbors=min(5, n), weights="distance")
    if kind == "gp":
        kernel = ConstantKernel(1.0) * RBF(length_scale=10.0) + WhiteKernel(1e-2)
        return GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=0)
    if kind == "forest":
        return RandomForestRegressor(n_estimators=100, min_samples_leaf=2, random_state=0, n_jobs=1)
    raise ValueError(f"unknown surrogate {kind!r} (known: {', '.join(SURROGATES)})")


@dataclass(frozen=True)
class Example:
    """A scored function the surrogate learns from: its expression text, gain and target."""

    expr: str
    gain: float | None
    value: float


class Surrogate:
    """A regressor of ``kind`` fitted on ``examples``; ``predict`` ranks candidates (higher: better).

    Features are cached by expression text and gain (the same function is described once per process).
    """

    def __init__(self, kind: str, examples: Sequence[Example], cache: dict | None = None):
        self.kind, self.cache = kind, {} if cache is None else cache
        examples = [e for e in examples if self._parses(e.expr)]  # x**18, trained, is beyond what a user types
        self.n = len(examples)
        self.model = None
        if self.ready:
            from sklearn.exceptions import ConvergenceWarning  # scikit-learn only where a regressor is fitted

            x = np.stack([self._features(parse(e.expr), e.gain, e.expr) for e in examples])
            with warnings.catch_warnings():  # a kernel parameter at its bound is the optimizer's note, not a user's
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.model = _regressor(kind, self.n).fit(x, np.array([e.value for e in examples]))

    @staticmethod
    def _parses(text: str) -> bool:
        try:
            parse(text)
        except ExpressionError:
            return False
        return True

    @property
    def ready(self) -> bool:
        return self.kind != "none" and self.n >= MIN_FIT

    def _features(self, expr: sympy.Expr, gain: float | None, text: str) -> np.ndarray:
        key = (text, gain)
        if key not in self.cache:
            self.cache[key] = features(expr, gain)
        return self.cache[key]

    def predict(self, items: Sequence[tuple[sympy.Expr, float | None, str]]) -> list[float]:
        """The predicted accuracy of each (expression, gain, text)."""
        if not items:
            return []
        x = np.stack([self._features(*item) for item in items])
        return [round(float(v), 6) for v in self.model.predict(x)]


def choose(predicted: Sequence[float | None], n: int, explore: float, rng) -> list[int]:
    """The indices (in pool order) of the ``n`` children to train: the best predicted, but
    ``round(explore * n)`` of the places drawn at random (``rng``) from the rest; children without a
    prediction (not novel) come last."""
    scored = sorted((i for i, p in enumerate(predicted) if p is not None), key=lambda i: (-predicted[i], i))
    unscored = [i for i, p in enumerate(predicted) if p is None]
    n_explore = round(explore * n)
    best, rest = scored[: n - n_explore], scored[n - n_explore:]
    chosen = best + rng.sample(rest, min(n_explore, len(rest)))
    chosen += unscored[: n - len(chosen)]
    return sorted(chosen)


def rank_correlation(lines: Iterable) -> dict[int, tuple[float, int, int]]:
    """Per generation: the Spearman correlation of the surrogate's predictions with what training measured
    (over the trained lines that carry a prediction), the number of such lines and of ``screened`` ones.
    ``lines`` are the log's (``afos.run.records.Evaluation``); generations without predictions are left out."""
    from scipy.stats import spearmanr

    pairs: dict[int, list[tuple[float, float]]] = {}
    screened: dict[int, int] = {}
    for line in lines:
        if getattr(line, "predicted", None) is None:
            continue
        if line.status == types.SCREENED:
            screened[line.generation] = screened.get(line.generation, 0) + 1
        elif line.status in (types.OK, types.CACHED) and line.val_accuracy is not None:  # a memory's: measured
            pairs.setdefault(line.generation, []).append((line.predicted, line.val_accuracy))
    out = {}
    for g in sorted(set(pairs) | set(screened)):
        got = pairs.get(g, [])
        rho = float(spearmanr(*zip(*got)).statistic) if len(got) >= 3 else math.nan
        out[g] = (rho, len(got), screened.get(g, 0))
    return out
