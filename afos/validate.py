"""Held-out confirmation: does the front of a search really beat the standard activations?

``validate(run_dir)`` retrains the top functions of a run's front and its anchors (relu always among them)
with fresh seeds that the search never used and longer training, scores them on the test split that the
search never touched, and writes ``validation.csv`` into the run directory: per activation and model the
mean and standard deviation of the test accuracy, the paired difference to relu with a t confidence
interval, and a Wilcoxon signed-rank p-value. The training runs are a benchmark in
``RUN_DIR/validation/`` (``afos.bench``), so an interrupted validation resumes where it stopped.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from afos import archive, bench
from afos import config as config_lib
from afos.config import Config
from afos.fitness import search_seeds
from afos.primitives import STANDARD_ACTIVATIONS

BASELINE = "relu"
CONFIDENCE = 0.95
COLUMNS = ("activation", "source", "expression", "model", "dataset", "seeds", "epochs", "n",
           "test_accuracy_mean", "test_accuracy_std", "diff_vs_relu", "diff_ci_low", "diff_ci_high", "wilcoxon_p")


class ValidationError(ValueError):
    """A run that cannot be validated as asked; the message names the problem."""


def used_seeds(config: Config) -> set[int]:
    """Every seed a search with ``config`` may use: the data split and every initialisation seed."""
    return {config.fitness.seed, *search_seeds(config.fitness, config.protocol.max_seeds)}


def validation_seeds(config: Config, n: int) -> list[int]:
    """``n`` fresh seeds: from ``bench.FIRST_SEED`` on, and above every seed the search used."""
    used = used_seeds(config)
    start = max(bench.FIRST_SEED, max(used) + 1)
    seeds = list(range(start, start + n))
    if used & set(seeds):  # by construction never; the guarantee is worth an explicit check
        raise ValidationError(f"validation seeds {sorted(used & set(seeds))} were used by the search")
    return seeds


def _activations(run_dir: Path, config: Config, top: int) -> list[bench.Activation]:
    front = archive.read_pareto_csv(run_dir) or archive.front_from_records(
        archive.read_jsonl(run_dir / archive.EVALUATIONS))
    if not front:
        raise ValidationError(f"{run_dir}: the run has no scored function yet")
    ranked = sorted(front, key=lambda e: (-e.val_accuracy, e.complexity, e.expression))[:top]
    acts = [bench.Activation(f"front#{i + 1}", e.expression, f"front rank {i + 1}") for i, e in enumerate(ranked)]
    anchors = [BASELINE, *(a for a in config.protocol.anchors if a != BASELINE)]
    return acts + [bench.Activation(name, STANDARD_ACTIVATIONS[name], "anchor") for name in anchors]


def validation_spec(run_dir: str | Path, top: int | None = None, seeds: int | None = None,
                    epochs: int | None = None, models: Sequence[str] | None = None) -> bench.BenchSpec:
    """The benchmark that validates ``run_dir`` (defaults from the run's ``[protocol]`` settings)."""
    run_dir = Path(run_dir)
    if not (run_dir / archive.CONFIG).is_file():
        raise ValidationError(f"{run_dir} is not an afos run directory (no {archive.CONFIG})")
    config = config_lib.load(run_dir / archive.CONFIG)
    p, f = config.protocol, config.fitness
    top, seeds, epochs = top or p.validate_top, seeds or p.validate_seeds, epochs or p.validate_epochs
    if min(top, seeds, epochs) < 1:
        raise ValidationError("--top, --seeds and --epochs must be at least 1")
    if models:
        model_specs = tuple(bench.parse_model(m) for m in models)
    else:
        options = (("topology", tuple(f.topology)),) if f.topology else ()
        model_specs = (bench.ModelSpec(f.model, f.model, options),)
    return bench.BenchSpec(
        activations=tuple(_activations(run_dir, config, top)), models=model_specs, datasets=(f.dataset,),
        seeds=tuple(validation_seeds(config, seeds)), epochs=epochs, batch_size=f.batch_size,
        learning_rate=f.learning_rate, val_fraction=f.val_fraction, train_size=f.train_size, val_size=f.val_size,
        metric="test_accuracy", baseline=BASELINE, name=f"validation of {run_dir.name}",
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
    """One row per activation and model (see ``COLUMNS``); differences paired by seed with relu."""
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
    return rows


def write_csv(run_dir: Path, rows: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})
    archive.write_text_atomic(run_dir / archive.VALIDATION, buf.getvalue())
    return run_dir / archive.VALIDATION


def validate(run_dir: str | Path, top: int | None = None, seeds: int | None = None, epochs: int | None = None,
             models: Sequence[str] | None = None, reporter: bench.Reporter | None = None) -> list[dict[str, Any]]:
    """Retrains the top of the front and the anchors on fresh seeds, scores them on the test split and
    writes ``validation.csv``; returns its rows."""
    run_dir = Path(run_dir)
    spec = validation_spec(run_dir, top, seeds, epochs, models)
    records = bench.run(spec, run_dir / archive.VALIDATION_DIR, reporter)
    rows = summarise(spec, records)
    write_csv(run_dir, rows)
    return rows

