"""The memetic strategy's proposals: a large pool of children, sketched cheaply and ranked by a surrogate.

A genetic search proposes children blindly: crossover and mutation of tournament winners. A planted target is
often one edit away from the best function found so far (``x*sin(x)`` from ``sin(x)``), and blind variation
rarely makes that edit (docs/SEARCH.md measures it). The memetic strategy (``search.strategy = "memetic"``)
therefore draws, each generation after the first, a pool of

- every one-edit neighbour of the run's best functions (``genome.neighbours``: a local search around them),
- children of the genetic operators (NSGA-II tournaments, crossover, mutation), and
- fresh random trees (so that the pool can leave a region the run has exhausted),

sketches every child in NumPy (``sketch``: no JAX, about a millisecond: its screen, its function's key up to
the network's sign symmetries, its features), and trains ``population`` of them, filled by ``QUOTAS``: part
drawn uniformly from the best two functions' neighbourhoods, the rest ranked by a k-nearest-neighbour surrogate
on the functions' shapes (``SymmetricKNN``).

Two functions that differ by a sign of input or output, ``f(x)``, ``-f(x)``, ``f(-x)``, ``-f(-x)``, make the same
networks up to the signs of the weights around the activation, which afos initialises symmetrically: the same
distribution of trainings. ``key`` is shared by the four (the smallest of their fingerprints), so such a child
is not novel, and the surrogate's distance is the smallest over the four (``SymmetricKNN``). Everything here is
deterministic given the state: a resumed run draws and ranks the same pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import sympy

from afos.errors import ExpressionError
from afos.expr import ir, numeric
from afos.expr.screen import FINGERPRINT_POINTS, SCREEN_POINTS, fingerprint, screen

CLIP = 10.0  # feature values beyond it say only "large"
MEAN_WEIGHT = 4.0  # of a function's mean among its features: a shift of 1 counts as 1/4 of a whole new shape
# Points of the features: the quantiles of N(0, 1) (where a unit-gain activation's inputs lie), symmetric
# about 0, so that f(-x) is the reversed vector.
PROBE = np.array([NormalDist().inv_cdf((i + 0.5) / 128) for i in range(128)], np.float32)
_KEY_POINTS = np.sort(FINGERPRINT_POINTS)  # symmetric about 0 too
_POINTS = np.concatenate([SCREEN_POINTS, _KEY_POINTS, PROBE])
_CUTS = np.cumsum([len(SCREEN_POINTS), len(_KEY_POINTS)])


@dataclass(frozen=True)
class Sketch:
    """What a child's function is, computed with NumPy: why the screen rejects it (None: it is usable), its key
    up to output scale and sign symmetries, and its features (``shape_features``)."""

    reason: str | None
    key: str = ""
    features: np.ndarray | None = None


def sketch(expr: sympy.Expr) -> Sketch:
    """The sketch of ``expr``. Its scale is set by its spread on ``PROBE`` (a stand-in for unit gain, which
    the features and the key do not need: both are the same for ``f`` and ``3*f``)."""
    try:
        node = ir.lower(expr)
    except ExpressionError as err:
        return Sketch(f"compile error: {err}")
    values, slopes = numeric.values_and_derivatives(node, _POINTS)
    on_screen, on_key, on_probe = np.split(values, _CUTS)
    with np.errstate(all="ignore"):
        scale = np.float32(1.0 / max(float(np.sqrt(np.mean(np.square(on_probe, dtype=np.float64)))), 1e-30))
    if not np.isfinite(scale):
        return Sketch("not finite on N(0, 1) inputs")
    reason = screen(scale * on_screen, scale * np.split(slopes, _CUTS)[0])
    if reason is not None:
        return Sketch(reason)
    on_key = scale * on_key
    key = min(fingerprint(v) for v in (on_key, -on_key, on_key[::-1], -on_key[::-1]))
    return Sketch(None, key, shape_features(scale * on_probe, scale * np.split(slopes, _CUTS)[2]))


def shape_features(values: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """A function's shape on ``PROBE``: its values standardised (mean 0, spread 1) and its slopes on the same
    scale, each clipped to ``CLIP``, then its mean (the one number standardising removes, weighted
    ``MEAN_WEIGHT``): two functions that differ by an output scale are one shape, by a shift nearly one."""
    v, s = (np.nan_to_num(np.asarray(a, np.float64), nan=0.0, posinf=CLIP, neginf=-CLIP) for a in (values, slopes))
    v, s = np.clip(v, -CLIP, CLIP), np.clip(s, -CLIP, CLIP)
    spread = max(float(np.std(v)), 1e-6)
    shape = np.clip(np.concatenate([(v - v.mean()) / spread, s / spread]), -CLIP, CLIP)
    return np.append(shape, MEAN_WEIGHT * v.mean())


def variants(features: np.ndarray) -> np.ndarray:
    """The features of f(x), -f(x), f(-x) and -f(-x) (the derivative of f(-x) is -f'(-x)), stacked:
    ``[4, *features.shape]`` for one or many functions (the last axis)."""
    n = len(PROBE)
    v, s, mean = features[..., :n], features[..., n: 2 * n], features[..., 2 * n:]
    flipped = np.concatenate([v[..., ::-1], -s[..., ::-1], mean], axis=-1)
    return np.stack([features, -features, flipped, -flipped])


class SymmetricKNN:
    """A distance-weighted k-nearest-neighbour regressor whose distance is the smallest over the sign
    symmetries of the training function (``variants``): a function and its mirror images are one point."""

    def __init__(self, x: np.ndarray, y: np.ndarray, k: int = 5):
        self.x, self.y, self.k = variants(np.asarray(x, np.float64)), np.asarray(y, np.float64), k

    def distances(self, query: np.ndarray) -> np.ndarray:
        """[queries, training points]: the smallest Euclidean distance over the four variants."""
        q = np.asarray(query, np.float64)
        sq = np.sum(q * q, axis=1)[:, None]
        best = None
        for x in self.x:
            d = sq + np.sum(x * x, axis=1)[None, :] - 2.0 * q @ x.T
            best = d if best is None else np.minimum(best, d)
        return np.sqrt(np.maximum(best, 0.0))

    def typical_distance(self) -> float:
        """The median distance between two of the training functions."""
        d = self.distances(self.x[0])
        upper = d[np.triu_indices(len(d), 1)]
        return float(np.median(upper)) if len(upper) else 1.0

    def predict(self, query: np.ndarray) -> np.ndarray:
        d = self.distances(query)
        k = min(self.k, d.shape[1])
        nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
        dist = np.take_along_axis(d, nearest, axis=1)
        exact = dist <= 1e-12
        weights = np.where(exact.any(axis=1, keepdims=True), exact.astype(float), 1.0 / np.maximum(dist, 1e-12))
        return np.sum(weights * self.y[nearest], axis=1) / np.sum(weights, axis=1)


NEAR = 0.1  # a child this close to a scored or chosen function (x the typical distance) is a near copy


def percentiles(values: Sequence[float]) -> np.ndarray:
    """Each value's rank among ``values`` in [0, 1] (ties share their mean rank): what the surrogate learns, so
    that a ranking does not depend on the scale of an objective (an accuracy, ``exp(-loss)``)."""
    from scipy.stats import rankdata

    v = np.asarray(values, np.float64)
    return (rankdata(v) - 1) / max(len(v) - 1, 1)


def select(features: np.ndarray, predicted: np.ndarray, kinds: Sequence[str], model: SymmetricKNN, n: int,
           rng) -> list[int]:
    """The indices of the ``n`` children to train, in pool order, filled by ``QUOTAS`` in turn: each takes
    its share of ``n`` from the children of its kinds, either the best predicted (``surrogate``: greedily, each
    no near copy, within ``NEAR`` of the typical distance between scored functions, of a scored function or of
    one chosen before it) or drawn at random (``uniform``, ``rng``); what is left, by the surrogate, near copies last:
    ``min(n, len(features))`` in all."""
    scale = model.typical_distance()
    near_scored = model.distances(features).min(axis=1) < NEAR * scale
    order = [int(i) for i in np.argsort(-predicted, kind="stable") if not near_scored[i]]
    chosen: list[int] = []

    def near_chosen(i: int) -> bool:
        return bool(chosen) and model_of(features[chosen]).distances(features[i: i + 1]).min() < NEAR * scale

    def fill(candidates: list[int], until: int, mode: str, near: bool = True) -> None:
        if mode == "uniform":
            candidates = rng.sample(candidates, len(candidates))
        for i in candidates:
            if len(chosen) >= until:
                return
            if i not in chosen and not (near and near_chosen(i)):
                chosen.append(i)

    for kinds_of, share, mode in QUOTAS:
        fill([i for i in order if kinds[i].split(":")[0] in kinds_of or kinds[i] in kinds_of],
             min(n, len(chosen) + round(share * n)), mode)
    fill(order, n, "surrogate")
    fill([int(i) for i in np.argsort(-predicted, kind="stable")], n, "surrogate", near=False)  # a pool of near copies
    return sorted(chosen)


def model_of(features: np.ndarray) -> SymmetricKNN:
    return SymmetricKNN(features, np.zeros(len(features)))


NEIGHBOURS = ("simplify", "replace", "grow")
# How ``select`` fills a generation: (kinds, share of the population, how). The simplest neighbours of the elite
# by the surrogate; then neighbours of the best function and of the runner-up drawn uniformly (the surrogate ranks
# a planted target far down its best function's neighbourhood: docs/SEARCH.md); the rest by the surrogate over the
# whole pool (neighbours, genetic children, random trees). Measured against other shares in docs/SEARCH.md.
QUOTAS = ((("simplify",), 1 / 8, "surrogate"),
          (tuple(f"{k}:0" for k in NEIGHBOURS), 3 / 8, "uniform"),
          (tuple(f"{k}:1" for k in NEIGHBOURS), 1 / 8, "uniform"))
