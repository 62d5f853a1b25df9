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
from pathlib import Path
from typing import Any

from afos import types
from afos.errors import RunError, read_text
from afos.expr import Candidate
from afos.ga.front import FrontEntry
from afos.run.files import read_jsonl
from afos.types import Fitness

ANCHOR_GENERATION = -1  # the generation of anchor lines (status types.ANCHOR)
_NUMBERS = ("generation", "index", "complexity", "val_accuracy", "val_loss", "val_accuracy_std", "seeds", "seconds",
            "gain", "epochs", "predicted")  # the numbers of a line, each checked by types.value_problem


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
        accuracies = data.get("seed_accuracies") or []
        if not isinstance(accuracies, list):
            raise ValueError(f"seed_accuracies is {type(accuracies).__name__}, not a list")
        values["seed_accuracies"] = tuple(accuracies)
        values["seeds"] = data.get("seeds", 1)
        return cls(**values)

    def problem(self, fitness: Any = None) -> str | None:
        """Why this line, as read from a log, holds what afos does not write (None: nothing): a text field that
        is not text, a value out of its range (``types.value_problem``; ``fitness``: the run's settings)."""
        for name in ("tree", "expr", "key", "fingerprint", "status"):
            if not isinstance(getattr(self, name), str):
                return f"{name} {getattr(self, name)!r} is not text"
        if self.reason is not None and not isinstance(self.reason, str):
            return f"reason {self.reason!r} is not text"
        values = [(name, getattr(self, name)) for name in _NUMBERS] + [("seed_accuracies", a)
                                                                        for a in self.seed_accuracies]
        return next((why for name, value in values if (why := types.value_problem(name, value, fitness))), None)

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


_FRONT_NUMBERS = {"val_accuracy": float, "complexity": int, "val_loss": float, "generation": int,
                  "val_accuracy_std": float, "seeds": int, "gain": float, "epochs": int}
_FRONT_NEEDS = ("val_accuracy", "complexity", "generation")  # every row has them; the others may be empty


def read_front(path: Path, fitness: Any = None) -> list[FrontEntry]:
    """The rows of the ``pareto.csv`` at ``path`` (none: []), checked (``front_from_csv``)."""
    return front_from_csv(read_text(path, RunError), fitness) if path.exists() else []


def front_from_csv(text: str, fitness: Any = None) -> list[FrontEntry]:
    """The rows of ``pareto.csv``; ValueError (naming the line and the value) where a row holds what afos does
    not write (``types.value_problem``; ``fitness``: the run's settings), KeyError where a column is missing."""
    reader, front = csv.DictReader(text.splitlines()), []
    for row in reader:
        try:
            front.append(_front_entry(row, fitness))
        except ValueError as err:
            raise ValueError(f"line {reader.line_num}: {err}") from None
    return front


def _front_entry(row: dict[str, str | None], fitness: Any) -> FrontEntry:
    texts = [row["expression"], row["fingerprint"], row["tree"]]
    if any(t is None for t in texts):
        raise ValueError("the row is short")
    numbers = {name: _cell(row, name, kind, fitness, name in _FRONT_NEEDS) for name, kind in _FRONT_NUMBERS.items()}
    return FrontEntry(texts[0], numbers["val_accuracy"], numbers["complexity"], numbers["val_loss"],
                      numbers["generation"], texts[1], texts[2], numbers["val_accuracy_std"],
                      1 if numbers["seeds"] is None else numbers["seeds"],
                      numbers["gain"], numbers["epochs"])


def _cell(row: dict[str, str | None], name: str, kind: type, fitness: Any = None,
          needed: bool = False) -> float | int | None:
    """The cell ``name`` of a CSV row as a number of ``kind``, checked (``types.value_problem``; ``fitness``: the
    run's settings); an empty or absent cell is None, or a ValueError where it is ``needed``."""
    text = row.get(name)
    if not text:
        if needed:
            raise ValueError(f"{name} is empty")
        return None
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name} {text[:40]!r} is not {'an integer' if kind is int else 'a number'}") from None
    why = types.value_problem(name, value, fitness)
    if why:
        raise ValueError(why)
    return value


# --- checkpoint.json ------------------------------------------------------------------------------------


def checkpoint_problem(data: dict[str, Any]) -> str | None:
    """Why a checkpoint holds what ``Search.save`` never writes (None: nothing): its generation, and each
    individual's tree (text) and fitness (its two NSGA-II objective values, ``types.value_problem``)."""
    population = data.get("population")
    if not isinstance(population, list):
        return "its population is not a list"
    for i, item in enumerate(population):
        fitness = item.get("fitness") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(item.get("tree"), str) or not isinstance(fitness, list) \
                or len(fitness) != len(types.WEIGHTS):
            return f"individual {i} is not a tree and {len(types.WEIGHTS)} fitness values"
        if why := next((w for v in fitness if (w := types.value_problem("fitness", v))), None):
            return f"individual {i}: {why}"
    return types.value_problem("generation", data.get("generation"))


# --- surrogate_prior.jsonl ------------------------------------------------------------------------------


def read_prior(path: Path) -> list[dict[str, Any]]:
    """The rows of a run's ``surrogate_prior.jsonl`` at ``path`` (none: []); RunError naming the file where a row
    holds what ``FitnessMemory.prior`` never writes: the run could not go on as it started."""
    rows = read_jsonl(path)
    for number, row in enumerate(rows, start=1):
        if why := _prior_problem(row):
            raise RunError(f"{path}: row {number} holds a value afos never writes ({why}); the surrogate cannot be "
                           "warmed as the run started")
    return rows


def _prior_problem(row: Any) -> str | None:
    """Why a row of ``surrogate_prior.jsonl`` is not one ``FitnessMemory.prior`` writes (None: it is)."""
    if not isinstance(row, dict) or set(row) != {"expr", "gain", "value", "fingerprint"}:
        return "not an object of expr, gain, value, fingerprint"
    if not isinstance(row["expr"], str) or not isinstance(row["fingerprint"], str):
        return "its expr or fingerprint is not text"
    why = types.ACCURACY.problem(row["value"])  # a surrogate's target: an accuracy, 0 for a failure
    return types.value_problem("gain", row["gain"]) or (why and f"value {row['value']!r} {why}")


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


_VALIDATION_NUMBERS = {"epochs": int, "n": int, "test_accuracy_mean": float, "test_accuracy_std": float,
                       "diff_vs_relu": float, "diff_ci_low": float, "diff_ci_high": float, "wilcoxon_p": float,
                       "wilcoxon_p_holm": float}  # each may be empty: NaN is written as ""


def read_validation(path: Path) -> list[dict[str, str]]:
    """The rows of the ``validation.csv`` at ``path`` (none: []); RunError naming the file and the line where a row
    lacks a column or holds a value afos never writes there (``types.value_problem``)."""
    try:
        return validation_rows(read_text(path, RunError)) if path.exists() else []
    except ValueError as err:
        raise RunError(f"{path}: damaged ({err}); `afos validate` writes it again") from None


def validation_rows(text: str) -> list[dict[str, str]]:
    """The rows of a ``validation.csv``, checked (ValueError naming the line: ``read_validation``)."""
    reader, rows = csv.DictReader(text.splitlines()), []
    for row in reader:
        try:
            missing = [c for c in VALIDATION_COLUMNS[:-2] if row.get(c) is None]  # the last two: newer files only
            if missing:
                raise ValueError(f"{missing[0]} is missing")
            for name, kind in _VALIDATION_NUMBERS.items():
                _cell(row, name, kind)
        except ValueError as err:
            raise ValueError(f"line {reader.line_num}: {err}") from None
        rows.append(row)
    return rows


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
