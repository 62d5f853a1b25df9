"""The memo of a search: every function scored so far, by fingerprint, and the front it makes.

A function is trained once; every later tree that computes it (same fingerprint) reuses its fitness. The
memo keeps, per function, its latest fitness (racing may re-score it on more seeds, successive halving
train it longer), its simplest tree so far and the generation it was first seen in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from afos import types
from afos.ga.front import FrontEntry, pareto_front
from afos.types import Fitness


@dataclass(frozen=True)
class Known:
    """A function that has been scored: its fitness and its simplest tree so far."""

    fitness: Fitness
    complexity: int
    tree: str
    expr: str
    generation: int
    gain: float | None = None  # trained as gain * expr (unit gain), or None
    epochs: int | None = None  # the training length of ``fitness`` (successive halving), or None: the search's
    climbed: tuple[float, ...] = ()  # its accuracy at each lower rung of successive halving, from rung 0

    @property
    def rung(self) -> int:
        """The successive-halving rung its fitness is measured at (0: the search's own training)."""
        return len(self.climbed)

    def objectives(self, complexity: int) -> tuple[float, float]:
        """NSGA-II objective values of a tree of ``complexity`` that computes this function."""
        return self.fitness.objectives(complexity, self.rung)


Memo = dict[str, Known]  # fingerprint -> what is known of that function


def learn(memo: Memo, fingerprint: str, complexity: int, tree: str, expr: str, fit: Fitness, generation: int,
          gain: float | None = None, epochs: int | None = None) -> None:
    """Records a scored function, keeping its simplest tree (with its gain) and the generation it was first
    seen; a function already known keeps its fitness (``fit`` is that fitness, reused)."""
    old = memo.get(fingerprint)
    if old is None:
        memo[fingerprint] = Known(fit, complexity, tree, expr, generation, gain, epochs)
    elif complexity < old.complexity:
        memo[fingerprint] = dataclasses.replace(old, complexity=complexity, tree=tree, expr=expr, gain=gain)


def rescore(memo: Memo, fingerprint: str, fit: Fitness) -> None:
    """Replaces a known function's fitness by a re-scoring on more seeds (the same training length)."""
    memo[fingerprint] = dataclasses.replace(memo[fingerprint], fitness=fit)


def promote(memo: Memo, fingerprint: str, fit: Fitness, epochs: int | None) -> None:
    """Replaces a known function's fitness by its fitness at the next rung (``epochs`` long), keeping the
    accuracy it climbed from."""
    old = memo[fingerprint]
    memo[fingerprint] = dataclasses.replace(old, fitness=fit, epochs=epochs,
                                            climbed=(*old.climbed, float(old.fitness.val_accuracy)))


class Line(Protocol):
    """What the memo needs of a recorded evaluation (``afos.run.records.Evaluation`` has it)."""

    status: str
    fingerprint: str
    complexity: int
    tree: str
    expr: str
    generation: int
    gain: float | None
    epochs: int | None

    @property
    def fitness(self) -> Fitness: ...


def replay(memo: Memo, lines: Iterable[Line]) -> None:
    """Applies recorded evaluations, in the order they were recorded (the log of a run)."""
    for line in lines:
        if line.status == types.RESCORED:
            rescore(memo, line.fingerprint, line.fitness)
        elif line.status == types.PROMOTED:
            promote(memo, line.fingerprint, line.fitness, line.epochs)
        elif line.status not in (types.REJECTED, types.ANCHOR, types.SCREENED):
            learn(memo, line.fingerprint, line.complexity, line.tree, line.expr, line.fitness, line.generation,
                  line.gain, line.epochs)


def front_of(memo: Memo, confirmed: int = 1) -> list[FrontEntry]:
    """The Pareto front of the confirmed functions (scored on at least ``confirmed`` seeds) and the
    challengers that would join it, scored on fewer seeds so far.

    A challenger cannot push a confirmed function off the front before racing has re-scored it on
    ``confirmed`` seeds: until then both are listed (the ``seeds`` column tells them apart). Without
    racing every function is confirmed and this is the plain Pareto front.
    """
    entries = [
        FrontEntry(k.expr, k.fitness.val_accuracy, k.complexity, k.fitness.val_loss, k.generation, fp, k.tree,
                   k.fitness.val_accuracy_std, k.fitness.seeds, k.gain, k.epochs)
        for fp, k in memo.items()
        if k.fitness.status == types.OK
    ]
    front = pareto_front(entries)
    if all(e.seeds >= confirmed for e in front):
        return front
    incumbents = pareto_front(e for e in entries if e.seeds >= confirmed)
    merged = {e.fingerprint: e for e in incumbents + [e for e in front if e.seeds < confirmed]}
    return sorted(merged.values(), key=lambda e: (e.complexity, -e.merit[0], -e.val_accuracy, e.generation,
                                                  e.expression))
