"""The Pareto front of accuracy against complexity, and the one ranking of its entries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FrontEntry:
    """One function on the front (a row of ``pareto.csv``)."""

    expression: str
    val_accuracy: float
    complexity: int
    val_loss: float | None
    generation: int
    fingerprint: str
    tree: str
    val_accuracy_std: float | None = None  # across the seeds below (None for one seed)
    seeds: int = 1  # initialisation seeds the accuracy is the mean of
    gain: float | None = None  # trained as gain * expression (unit gain), or None: no gain normalisation
    epochs: int | None = None  # the training length of the accuracy (successive halving), or None: the search's

    @property
    def merit(self) -> tuple[int, float]:
        """(training length, accuracy): what "more accurate" means on the front. Accuracies of different
        training lengths are not compared: the longer training ranks first (successive halving)."""
        return self.epochs or 0, self.val_accuracy


def pareto_front(entries: Iterable[FrontEntry]) -> list[FrontEntry]:
    """Non-dominated entries (max ``merit``, min complexity), simplest first; one per function."""
    best: dict[str, FrontEntry] = {}
    for e in entries:
        old = best.get(e.fingerprint)
        if old is None or (e.complexity, e.generation) < (old.complexity, old.generation):
            best[e.fingerprint] = e
    ordered = sorted(best.values(), key=lambda e: (e.complexity, _descending(e.merit), e.generation, e.expression))
    front, top = [], (-1, float("-inf"))
    for e in ordered:
        if e.merit > top:
            front.append(e)
            top = e.merit
    return front


def ranked(front: Iterable[FrontEntry]) -> list[FrontEntry]:
    """Most accurate first (at the longest training, ``merit``); ties go to the simpler function, then to the
    expression's text.

    The one order in which afos names "the best" functions of a run: export, validate, warm starts,
    benchmarks of a run and reports all use it.
    """
    return sorted(front, key=lambda e: (_descending(e.merit), e.complexity, e.expression))


def _descending(merit: tuple[int, float]) -> tuple[int, float]:
    return -merit[0], -merit[1]
