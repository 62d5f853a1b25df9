"""How well can a surrogate rank functions before training them? Measured on the logs of finished runs.

Two measurements per regressor of ``afos.ga.surrogate`` (knn, gp, forest), on the functions the runs trained
(their first training, at the search's own length; failures count as accuracy 0, as the surrogate learns them):

  pooled   10-fold cross validation over every distinct function of the given runs (AQuaSurF's offline
           setting): Spearman rho between prediction and measured accuracy (over all, and over the upper half
           of the measured accuracies alone: telling failures from working functions is the easy part), and
           the share of the true top 10% that the predicted top third holds.
  online   what a running search has: for each run and generation g >= 1, the regressor fitted on the run's
           anchors and generations < g predicts generation g's trained functions; Spearman rho per generation,
           averaged over runs (a generation with fewer than 5 trained functions is skipped).

  python benchmarks/surrogate_fit.py runs/sq-digits/runs/* --out docs/surrogate_fit_digits.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.model_selection import KFold

from afos import types
from afos.expr import parse
from afos.ga import surrogate
from afos.run.rundir import Run

KINDS = ("knn", "gp", "forest")


def trained(run: Run) -> list[tuple[int, surrogate.Example]]:
    """(generation, example) of every function the run trained, first training only; anchors at -1."""
    out, seen = [], set()
    for line in run.records():
        if line.status in (types.OK, types.FAILED, types.ANCHOR) and line.fingerprint not in seen:
            if line.epochs not in (None, run.config.fitness.epochs):
                continue
            seen.add(line.fingerprint)
            out.append((line.generation, surrogate.Example(line.expr, line.gain, surrogate.target(line.fitness))))
    return out


def distinct(runs: list[Run]) -> list[surrogate.Example]:
    """Every function the runs' generations trained, once (by expression and gain), in the order first met."""
    out: dict = {}
    for run in runs:
        for g, e in trained(run):
            if g >= 0:
                out.setdefault((e.expr, e.gain), e)
    return list(out.values())


def _predict(kind: str, train: list[surrogate.Example], test: list[surrogate.Example], cache: dict) -> np.ndarray:
    model = surrogate.Surrogate(kind, train, cache)
    return np.array(model.predict([(parse(e.expr), e.gain, e.expr) for e in test]))


def pooled(examples: list[surrogate.Example], kind: str, cache: dict) -> dict:
    truth = np.array([e.value for e in examples])
    predicted = np.zeros(len(examples))
    for train, test in KFold(10, shuffle=True, random_state=0).split(examples):
        predicted[test] = _predict(kind, [examples[i] for i in train], [examples[i] for i in test], cache)
    top = set(np.argsort(-truth)[: max(1, len(truth) // 10)])
    third = set(np.argsort(-predicted)[: len(truth) // 3])
    upper = truth >= np.median(truth)  # where a search decides: among the functions that train at all
    return {"n": len(examples), "spearman": float(spearmanr(predicted, truth).statistic),
            "spearman_upper_half": float(spearmanr(predicted[upper], truth[upper]).statistic),
            "top10_in_predicted_third": len(top & third) / len(top),
            "best_in_predicted_third": int(np.argmax(truth)) in third}


def online(runs: list[Run], kind: str, cache: dict) -> dict[int, list[float]]:
    per_generation = defaultdict(list)
    for run in runs:
        lines = trained(run)
        for g in sorted({g for g, _ in lines if g >= 1}):
            train = [e for h, e in lines if h < g]
            test = [e for h, e in lines if h == g]
            if len(test) < 5 or len(train) < surrogate.MIN_FIT:
                continue
            predicted = _predict(kind, train, test, cache)
            rho = spearmanr(predicted, [e.value for e in test]).statistic
            if np.isfinite(rho):
                per_generation[g].append(float(rho))
    return dict(per_generation)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    runs = [Run.open(path) for path in args.runs]
    examples = distinct(runs)
    cache: dict = {}
    results = {"runs": [str(r.path) for r in runs]}
    print(f"{len(runs)} runs, {len(examples)} distinct trained functions")
    print("| surrogate | pooled Spearman (10-fold) | the same, upper half only | true top 10% in predicted top "
          "third | best in it | online Spearman per generation (mean over runs) |")
    print("|---|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        fit = pooled(examples, kind, cache)
        per_generation = online(runs, kind, cache)
        results[kind] = {"pooled": fit, "online": per_generation}
        gens = ", ".join(f"g{g} {np.mean(v):+.2f}" for g, v in sorted(per_generation.items()))
        print(f"| {kind} | {fit['spearman']:+.2f} | {fit['spearman_upper_half']:+.2f} | "
              f"{fit['top10_in_predicted_third']:.0%} | "
              f"{'yes' if fit['best_in_predicted_third'] else 'no'} | {gens} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
