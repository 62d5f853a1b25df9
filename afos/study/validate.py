"""Held-out confirmation: does the front of a search really beat the standard activations?

``validate(run_dir)`` retrains the top functions of a run's front and its anchors (relu always among them)
with fresh seeds that the search never used and longer training, scores them on the test split that the
search never touched, and writes ``validation.csv`` into the run directory: per activation and model the
mean and standard deviation of the test accuracy, the paired difference to relu with a t confidence
interval, a Wilcoxon signed-rank p-value, its Holm correction over the front and the verdict
(``afos.study.verdict``). The training runs are a benchmark in
``RUN_DIR/validation/`` (``afos.study.runner``), so an interrupted validation resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from scipy import stats as sps

from afos.config import Config, check_limits, search_seeds
from afos.errors import AfosWarning, ConfigError, RunError
from afos.expr import STANDARD_ACTIVATIONS
from afos.fitness import compile_cache
from afos.fitness.problem import FitnessProblem
from afos.run import start
from afos.run.rundir import Run
from afos.study import bench, runner, verdict

BASELINE = "relu"
CONFIDENCE = 0.95


def used_seeds(config: Config) -> set[int]:
    """Every seed a search with ``config`` may use: the data split and every initialisation seed."""
    return {config.fitness.seed, *search_seeds(config.fitness, config.protocol.max_seeds)}


def validation_seeds(config: Config, n: int) -> list[int]:
    """``n`` fresh seeds: from ``bench.FIRST_SEED`` on, and above every seed the search used."""
    used = used_seeds(config)
    start = max(bench.FIRST_SEED, max(used) + 1)
    seeds = list(range(start, start + n))
    if used & set(seeds):  # by construction never; the guarantee is worth an explicit check
        raise RunError(f"validation seeds {sorted(used & set(seeds))} were used by the search")
    return seeds


def _activations(run: Run, top: int) -> list[bench.Activation]:
    acts = [bench.Activation(f"front#{i + 1}", e.expression, f"front rank {i + 1}")
            for i, e in enumerate(run.top(top))]
    anchors = [BASELINE, *(a for a in run.config.protocol.anchors if a != BASELINE)]
    return acts + [bench.Activation(name, STANDARD_ACTIVATIONS[name], "anchor") for name in anchors]


def validation_spec(run: Run, top: int | None = None, seeds: int | None = None, epochs: int | None = None,
                    models: Sequence[str] | None = None) -> bench.BenchSpec:
    """The benchmark that validates ``run`` (defaults from its ``[protocol]``; its data and training settings)."""
    p, f = run.config.protocol, run.config.fitness
    top, seeds, epochs = top or p.validate_top, seeds or p.validate_seeds, epochs or p.validate_epochs
    if min(top, seeds, epochs) < 1:
        raise ConfigError("--top, --seeds and --epochs must be at least 1")
    check_limits("protocol", SimpleNamespace(validate_top=top, validate_seeds=seeds,
                                                        validate_epochs=epochs))  # before any seed is built
    if models:
        model_specs = tuple(bench.parse_model(m) for m in models)
    else:
        options = tuple(FitnessProblem.model_options(f).items())
        model_specs = (bench.ModelSpec(f.model, f.model, options),)
    training = dataclasses.replace(bench.TRAINING_DEFAULTS, **{k: getattr(f, k) for k in bench.TRAINING})
    return bench.BenchSpec(
        activations=tuple(_activations(run, top)), models=model_specs, datasets=(f.dataset,),
        seeds=tuple(validation_seeds(run.config, seeds)), training=dataclasses.replace(training, epochs=epochs),
        metric="test_accuracy", baseline=BASELINE, name=f"validation of {run.path.name}",
        description="front and anchors retrained on fresh seeds, scored on the held-out test split")


def paired_difference(values: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """Mean paired difference, its two-sided t confidence interval and the Wilcoxon signed-rank p-value."""
    diffs = np.asarray(values, float) - np.asarray(baseline, float)
    n = len(diffs)
    mean = float(diffs.mean()) if n else math.nan
    if n < 2:
        return {"diff_vs_relu": mean, "diff_ci_low": math.nan, "diff_ci_high": math.nan, "wilcoxon_p": math.nan}
    half = float(sps.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * diffs.std(ddof=1) / math.sqrt(n))
    p = float(sps.wilcoxon(diffs).pvalue) if np.any(diffs != 0) else 1.0  # identical runs: no evidence at all
    return {"diff_vs_relu": mean, "diff_ci_low": mean - half, "diff_ci_high": mean + half, "wilcoxon_p": p}


def _final(record: dict[str, Any]) -> float:
    value = record.get("final", {}).get("test_accuracy")
    return math.nan if value is None else float(value)


def summarise(spec: bench.BenchSpec, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per activation and model (``records.VALIDATION_COLUMNS``); differences paired by seed with relu."""
    rows = []
    for model in spec.models:
        for dataset in spec.datasets:
            cell = {(r["activation"], r["seed"]): _final(r) for r in records
                    if r["model"] == model.label and r["dataset"] == dataset}
            base = {s: cell.get((BASELINE, s), math.nan) for s in spec.seeds}
            for act in spec.activations:
                own = {s: cell.get((act.label, s), math.nan) for s in spec.seeds}
                paired = [s for s in spec.seeds if math.isfinite(own[s]) and math.isfinite(base[s])]
                scored = np.array([v for v in own.values() if math.isfinite(v)])
                rows.append({
                    "activation": act.label, "source": act.source, "expression": act.expression,
                    "model": model.label, "dataset": dataset, "seeds": " ".join(map(str, spec.seeds)),
                    "epochs": spec.epochs, "n": len(paired),
                    "test_accuracy_mean": float(scored.mean()) if len(scored) else math.nan,
                    "test_accuracy_std": float(scored.std(ddof=1)) if len(scored) > 1 else math.nan,
                    **paired_difference([own[s] for s in paired], [base[s] for s in paired]),
                })
    return verdict.judge(rows)


def consent(run: Run, models: Sequence[str] | None = None, trust_run: bool = False,
            given: Mapping[str, str] | None = None) -> list[str]:
    """Imports the user's code that validating ``run`` trains with, where the user consents
    (``run.start.consent``; ``models`` given replace the run's model); returns what was imported."""
    return start.consent(run, trust_run, given, skip=("model",) if models else ())


def validate(run_dir: str | Path | Run, top: int | None = None, seeds: int | None = None,
             epochs: int | None = None, models: Sequence[str] | None = None,
             reporter: runner.BenchReporter | None = None, trust_run: bool = False,
             given: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Retrains the top of the front and the anchors on fresh seeds, scores them on the test split and
    writes ``validation.csv``; returns its rows. The user's code the run names is imported only with
    ``trust_run`` or where ``given`` (kind -> name) names it again (``consent``)."""
    run = run_dir if isinstance(run_dir, Run) else Run.open(run_dir)
    start.reopen(run, lambda text: warnings.warn(text, AfosWarning, stacklevel=2), trust_run, given,
                 skip=("model",) if models else ())
    compile_cache.enable(run.config.evaluator.compilation_cache)
    spec = validation_spec(run, top, seeds, epochs, models)
    records = runner.run(spec, run.validation_dir, reporter)
    rows = summarise(spec, records)
    run.write_validation(rows)
    return rows
