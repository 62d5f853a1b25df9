"""Is a signal-propagation feature of the real network at initialisation worth its cost to a surrogate?

For a sample of the functions finished runs trained, the network of the run (its model and data) is built
with the function (at the gain it was trained with) and, on one batch of training images, the per-example
gradients of the loss at initialisation give the spectrum of the gradient covariance (the empirical Fisher
information's nonzero eigenvalues, AQuaSurF's second feature): log eigenvalues, largest first, normalised
by the largest, plus the log of the trace. The script prints what it costs per function on this machine
(one compilation per function: the exact path) and the 10-fold Spearman rho of a k-NN surrogate on the probe
features alone, on the spectrum alone, and on both (each block standardised).

  python benchmarks/init_features.py runs/sq-digits/runs/ga-unit-s* --sample 120 --out docs/init_features.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from scipy.stats import spearmanr
from sklearn.model_selection import KFold
from sklearn.neighbors import KNeighborsRegressor
from surrogate_fit import distinct  # the same functions, read the same way

from afos.expr import parse
from afos.expr.compile import to_jax
from afos.fitness.problem import FitnessProblem
from afos.ga import surrogate
from afos.run.rundir import Run

BATCH = 32


def spectrum(problem: FitnessProblem, expr: str, gain: float | None, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log eigenvalues of the per-example gradient Gram matrix at initialisation (seed 0), largest first,
    minus the largest, then log trace; zeros and a flag where they are not finite."""
    f, g = to_jax(parse(expr)), 1.0 if gain is None else gain
    model = problem.model(lambda v: g * f(v), seed=0)
    model.set_attributes(deterministic=True, use_running_average=True, raise_if_not_found=False)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p, xi, yi):
        logits = nnx.merge(graphdef, p, rest)(xi[None])
        return optax.softmax_cross_entropy_with_integer_labels(logits, yi[None]).mean()

    @jax.jit
    def gram(p, xs, ys):
        grads = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(p, xs, ys)
        flat = jnp.concatenate([leaf.reshape(xs.shape[0], -1) for leaf in jax.tree.leaves(grads)], axis=1)
        return flat @ flat.T

    eig = np.sort(np.linalg.eigvalsh(np.asarray(gram(params, x, y), np.float64)))[::-1]
    if not np.all(np.isfinite(eig)) or eig[0] <= 0:
        return np.zeros(BATCH + 2)
    logs = np.log(np.maximum(eig, eig[0] * 1e-12))
    return np.concatenate([logs - logs[0], [np.log(eig.sum())], [1.0]])


def cv_spearman(x: np.ndarray, truth: np.ndarray) -> float:
    predicted = np.zeros(len(truth))
    for train, test in KFold(10, shuffle=True, random_state=0).split(x):
        model = KNeighborsRegressor(n_neighbors=5, weights="distance").fit(x[train], truth[train])
        predicted[test] = model.predict(x[test])
    return float(spearmanr(predicted, truth).statistic)


def _standardised(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / (x.std(0) + 1e-9) / np.sqrt(x.shape[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--sample", type=int, default=120)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    runs = [Run.open(path) for path in args.runs]
    examples = sorted(distinct(runs), key=lambda e: e.expr)
    chosen = random.Random(0).sample(examples, min(args.sample, len(examples)))
    problem = FitnessProblem(runs[0].config.fitness)
    ds = problem.dataset
    x, y = np.asarray(ds.train.x[:BATCH]), np.asarray(ds.train.y[:BATCH])
    probe, spec, truth, seconds = [], [], [], []
    for e in chosen:
        start = time.perf_counter()
        spec.append(spectrum(problem, e.expr, e.gain, x, y))
        seconds.append(time.perf_counter() - start)
        probe.append(surrogate.features(parse(e.expr), e.gain))
        truth.append(e.value)
    probe, spec, truth = np.array(probe), np.array(spec), np.array(truth)
    result = {
        "functions": len(chosen), "model": problem.settings.model, "dataset": problem.settings.dataset,
        "seconds_per_function_median": float(np.median(seconds)), "seconds_total": float(np.sum(seconds)),
        "spearman_probe": cv_spearman(probe, truth), "spearman_spectrum": cv_spearman(spec, truth),
        "spearman_both": cv_spearman(np.hstack([_standardised(probe), _standardised(spec)]), truth),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
