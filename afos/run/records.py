"""The records of a run directory as types: one line of ``evaluations.jsonl``, the rows of ``pareto.csv``.

``Evaluation`` is one line of the log, read and written only through ``from_json`` / ``to_json`` (the
fields and their JSON form are the run format; ``afos.run.rundir`` has its version). Every reader of a
run uses these attributes instead of string keys.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from afos import types
from afos.expr import Candidate
from afos.ga.front import FrontEntry
from afos.types import Fitness

ANCHOR_GENERATION = -1  # the generation of anchor lines (status types.ANCHOR)


@dataclass(frozen=True)
class Evaluation:
    """One line of ``evaluations.jsonl``: an individual of a generation, an anchor or a re-scoring.

    Attributes:
        generation: the generation (``ANCHOR_GENERATION`` for anchors).
        index: the individual's place in its generation (re-scorings follow the individuals; anchors count
            from 0 in configured order).
        tree: the genome text (an anchor: its name).
        expr, key, fingerprint: the function's text, the hash of its canonical key, and its fingerprint.
        complexity: of the tree (an anchor: the number of nodes of its expression).
        status: one of ``types.STATUSES``.
        reason: why it was rejected or failed, else None.
        val_accuracy, val_loss, val_accuracy_std, seeds, seed_accuracies: the fitness (``fitness``).
        seconds: what this line cost (0 for lines that reuse a fitness).
        gain: the ``g`` the function was trained with (``g * f``, unit gain), or None: gain normalisation off
            (a run of format 1 has no such field).
        epochs: the training length of this line's fitness, in runs with successive halving
            (``protocol.rungs``); None (no field) in runs without: every fitness is ``fitness.epochs`` long.
        predicted: the surrogate's prediction of the accuracy (``search.surrogate``), on the lines of the
            children it ranked; None (no field) elsewhere. A ``screened`` line has it and no fitness.
    """

    generation: int
    index: int
    tree: str
    expr: str
    key: str
    fingerprint: str
    complexity: int
    status: str
    reason: str | None
    val_accuracy: float | None
    val_loss: float | None
    val_accuracy_std: float | None
    seeds: int
    seed_accuracies: tuple[float, ...]
    seconds: float
    gain: float | None = None
    epochs: int | None = None
    predicted: float | None = None

    @classmethod
    def of(cls, generation: int, index: int, tree: str, complexity: int, candidate: Candidate, status: str,
           fit: Fitness | None, seconds: float, epochs: int | None = None,
           predicted: float | None = None) -> Evaluation:
        """The line of ``candidate`` (as ``tree`` of ``complexity``) with ``fit`` (None: rejected) of a training
        of ``epochs`` epochs (None: a run without successive halving). A ``fit`` of status ``cached`` (a fitness
        memory's, ``afos.fitness.pools.Remembering``) with an accuracy is recorded as scored, like ``ok``."""
        scored = fit is not None and (fit.status == types.OK or
                                      (fit.status == types.CACHED and fit.val_accuracy is not None))
        return cls(
            generation, index, tree, candidate.text, candidate.key_hash, candidate.fingerprint, complexity, status,
            fit.reason if fit else candidate.reason,
            fit.val_accuracy if fit else None, fit.val_loss if fit else None, fit.val_accuracy_std if fit else None,
            fit.seeds if scored else 0, fit.accuracies if scored else (), round(seconds, 4), candidate.gain, epochs,
            predicted)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        """A line as read from the log (lines of older runs may lack the multi-seed fields)."""
        values = {f.name: data.get(f.name) for f in fields(cls)}
        values["seed_accuracies"] = tuple(data.get("seed_accuracies") or ())
        values["seeds"] = data.get("seeds", 1)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["seed_accuracies"] = list(self.seed_accuracies)
        for name in ("gain", "epochs", "predicted"):  # lines of runs without these settings: as before them
            if out[name] is None:
                del out[name]
        return out

    @property
    def identity(self) -> tuple[int, int]:
        """(generation, index): the one line a run holds for it."""
        return self.generation, self.index

    @property
    def fitness(self) -> Fitness:
        """The fitness this line records (a line without an accuracy is a failure)."""
        status = types.OK if self.val_accuracy is not None else types.FAILED
        return Fitness(status, self.val_accuracy, self.val_loss, self.reason, self.seconds, self.val_accuracy_std,
                       self.seed_accuracies)

    @property
    def scored(self) -> bool:
        return self.val_accuracy is not None


# --- pareto.csv -------------------------------------------------------------------------------------

PARETO_COLUMNS = ("expression", "val_accuracy", "complexity", "val_loss", "generation", "fingerprint", "tree",
                  "val_accuracy_std", "seeds")
# After the others, only where they have values: gain normalisation (format 1 has none), successive halving.
OPTIONAL_PARETO_COLUMNS = ("gain", "epochs")


def pareto_csv(front: Sequence[FrontEntry]) -> str:
    columns = PARETO_COLUMNS + tuple(c for c in OPTIONAL_PARETO_COLUMNS
                                     if any(getattr(e, c) is not None for e in front))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for e in front:
        writer.writerow(["" if getattr(e, c) is None else getattr(e, c) for c in columns])
    return buf.getvalue()


def _number(text: str | None, kind=float):
    return kind(text) if text else None


def front_from_csv(text: str) -> list[FrontEntry]:
    return [
        FrontEntry(r["expression"], float(r["val_accuracy"]), int(r["complexity"]), _number(r["val_loss"]),
                   int(r["generation"]), r["fingerprint"], r["tree"], _number(r.get("val_accuracy_std")),
                   int(r.get("seeds") or 1), _number(r.get("gain")), _number(r.get("epochs"), int))
        for r in csv.DictReader(text.splitlines())
    ]


# --- validation.csv -------------------------------------------------------------------------------------

VALIDATION_COLUMNS = ("activation", "source", "expression", "model", "dataset", "seeds", "epochs", "n",
                      "test_accuracy_mean", "test_accuracy_std", "diff_vs_relu", "diff_ci_low", "diff_ci_high",
                      "wilcoxon_p", "wilcoxon_p_holm", "verdict")  # the last two: not in files of earlier afos


def validation_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, VALIDATION_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})
    return buf.getvalue()


def validation_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(text.splitlines()))


VALIDATION_HEADERS = ("test accuracy", "vs relu (95% CI)", "Wilcoxon p after Holm", "uncorrected p")


def format_validation_row(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """The cells of ``VALIDATION_HEADERS`` for a judged validation.csv row (``afos.study.verdict.judge`` adds the
    Holm-corrected p-value, the one its verdict uses): test accuracy 'mean ± std', the difference to relu with
    its 95% CI, the Wilcoxon p-value after Holm and uncorrected."""
    def num(key: str, fmt: str = "+.4f") -> str:
        value = row.get(key)
        if value is None or value == "" or not math.isfinite(float(value)):
            return "?"
        return format(float(value), fmt)

    acc = f"{num('test_accuracy_mean', '.4f')} ± {num('test_accuracy_std', '.4f')}"
    if row["activation"] == "relu":
        return acc, "(baseline)", "", ""
    return (acc, f"{num('diff_vs_relu')} [{num('diff_ci_low')}, {num('diff_ci_high')}]",
            num("wilcoxon_p_holm", ".3g"), num("wilcoxon_p", ".3g"))
