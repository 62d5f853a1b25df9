"""Fitness evaluation: the ``Evaluator`` protocol and its backends.

An evaluator turns screened candidates into fitness rows. It yields each result
as soon as it is known, so the driver can append it to ``evaluations.jsonl``
before the next one starts. Failures (compile errors, NaN/inf losses) are rows
with status ``failed`` and a reason, never exceptions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from afos import types
from afos.compile import CompileError, to_jax
from afos.data import Dataset
from afos.expr import Analysis
from afos.train import FitnessSettings, train_and_score


@dataclass(frozen=True)
class Fitness:
    """The measured fitness of one function (shared by every tree that computes it)."""

    status: str  # types.OK or types.FAILED
    val_accuracy: float | None
    val_loss: float | None
    reason: str | None
    seconds: float


class Evaluator(Protocol):
    """Scores candidates; yields ``(index, Fitness)`` in any order, one per candidate."""

    def evaluate(self, candidates: Sequence[Analysis]) -> Iterator[tuple[int, Fitness]]: ...


def _score_one(candidate: Analysis, dataset: Dataset, settings: FitnessSettings) -> Fitness:
    start = time.perf_counter()
    try:
        act = to_jax(candidate.expr)
        result = train_and_score(act, dataset, settings)
    except CompileError as err:
        return Fitness(types.FAILED, None, None, f"compile error: {err}", time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if result.diverged:
        return Fitness(types.FAILED, None, None, "non-finite loss during training", seconds)
    return Fitness(types.OK, result.val_accuracy, result.val_loss, None, seconds)


class SequentialEvaluator:
    """The exact reference: compiles and trains one candidate at a time."""

    def __init__(self, dataset: Dataset, settings: FitnessSettings):
        self.dataset = dataset
        self.settings = settings

    def evaluate(self, candidates: Sequence[Analysis]) -> Iterator[tuple[int, Fitness]]:
        for i, candidate in enumerate(candidates):
            yield i, _score_one(candidate, self.dataset, self.settings)


BACKENDS: dict[str, Callable[[Dataset, FitnessSettings], Evaluator]] = {
    "sequential": SequentialEvaluator,
}


def make_evaluator(backend: str, dataset: Dataset, settings: FitnessSettings) -> Evaluator:
    if backend == "auto":
        backend = "sequential"
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (available: auto, {', '.join(BACKENDS)})")
    return BACKENDS[backend](dataset, settings)


def fitness_values(fitness: Fitness, complexity: int) -> tuple[float, float]:
    """The NSGA-II objective values of a scored candidate (failures get the worst)."""
    if fitness.status != types.OK or fitness.val_accuracy is None or not np.isfinite(fitness.val_accuracy):
        return types.WORST_FITNESS
    return (float(fitness.val_accuracy), float(complexity))
