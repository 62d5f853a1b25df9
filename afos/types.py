"""The vocabulary every layer shares: objectives, evaluation statuses and the ``Fitness`` of a function.

Defined once, used everywhere, and free of JAX: the genetic algorithm, the run directory and the command
line read fitness values without loading the training stack.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

# NSGA-II objectives, in order: maximise validation accuracy, minimise complexity.
OBJECTIVES: tuple[str, ...] = ("val_accuracy", "complexity")
WEIGHTS: tuple[float, ...] = (1.0, -1.0)

# A candidate that is rejected by the screen, fails to compile or diverges gets this:
# below any real accuracy and above any real complexity, so it is never on the front.
WORST_FITNESS: tuple[float, ...] = (-1.0, 1e6)

# Status of one evaluation line.
OK = "ok"  # trained and scored
CACHED = "cached"  # an equal function was scored before; its fitness is reused
REJECTED = "rejected"  # screened out before training (non-finite, constant, linear, ...)
FAILED = "failed"  # compile error, NaN/inf loss or divergence during training
# Lines that are not candidates of the search: a standard activation scored under the same protocol,
# a front member re-scored on more seeds (racing), and a function trained longer (successive halving).
ANCHOR = "anchor"
RESCORED = "rescored"
PROMOTED = "promoted"
# A novel child the surrogate pre-screen left untrained (its line records the prediction, no fitness).
SCREENED = "screened"
STATUSES = (OK, CACHED, REJECTED, FAILED, ANCHOR, RESCORED, PROMOTED, SCREENED)
# The lines that score a function again (not an individual of the population).
RESCORINGS = (RESCORED, PROMOTED)


@dataclass(frozen=True)
class Fitness:
    """The measured fitness of one function (shared by every tree that computes it).

    Attributes:
        status: ``OK`` or ``FAILED``.
        val_accuracy: mean validation accuracy over the seeds (None when failed).
        val_loss: mean validation loss (None when failed).
        reason: why it failed, or None.
        seconds: what the measurement cost.
        val_accuracy_std: sample standard deviation across seeds (None for one seed).
        seed_accuracies: per seed, in seed order (empty: one seed, not broken down).
    """

    status: str
    val_accuracy: float | None
    val_loss: float | None
    reason: str | None
    seconds: float
    val_accuracy_std: float | None = None
    seed_accuracies: tuple[float, ...] = ()

    @classmethod
    def failed(cls, reason: str, seconds: float = 0.0) -> Fitness:
        return cls(FAILED, None, None, reason, seconds)

    @property
    def ok(self) -> bool:
        return self.status == OK and self.val_accuracy is not None

    @property
    def accuracies(self) -> tuple[float, ...]:
        """The per-seed accuracies behind this fitness (a one-seed fitness from a backend: its accuracy)."""
        if self.seed_accuracies:
            return self.seed_accuracies
        return () if self.val_accuracy is None else (float(self.val_accuracy),)

    @property
    def seeds(self) -> int:
        """How many seeds the accuracy is the mean of (at least 1)."""
        return max(1, len(self.accuracies))

    def objectives(self, complexity: int, rung: int = 0) -> tuple[float, float]:
        """The NSGA-II objective values of a function of this fitness and ``complexity`` (failures: the worst).

        ``rung``: the successive-halving rung the fitness was measured at (0: the search's own training). A
        higher rung wins whatever the accuracy (``2 * rung + accuracy``): accuracies of different training
        lengths are not compared, the longer training ranks first."""
        if not self.ok or not math.isfinite(self.val_accuracy):
            return WORST_FITNESS
        return (2.0 * rung + float(self.val_accuracy), float(complexity))

    @classmethod
    def mean_of(cls, parts: Sequence[Fitness]) -> Fitness:
        """One fitness from the fitnesses of the same function on several seeds (in seed order).

        The loss is the mean of the parts' losses weighted by their seed counts; any failed part fails it.
        """
        seconds = math.fsum(p.seconds for p in parts)
        failed = [p for p in parts if not p.ok]
        if failed:
            return cls.failed(failed[0].reason, seconds)
        accs = tuple(a for p in parts for a in p.accuracies)
        weights = [p.seeds for p in parts]
        losses = [p.val_loss for p in parts]
        loss = None if any(v is None for v in losses) else \
            math.fsum(w * v for w, v in zip(weights, losses, strict=True)) / sum(weights)
        return cls(OK, math.fsum(accs) / len(accs), loss, None, seconds, _std(accs), accs)

    def extended(self, extra: Fitness) -> Fitness:
        """This fitness with the seeds of a later re-scoring ``extra`` added (the seconds are the re-scoring's)."""
        return dataclasses.replace(Fitness.mean_of([self, extra]), seconds=extra.seconds)


def _std(values: Sequence[float]) -> float | None:
    """The sample standard deviation (None for fewer than two values)."""
    if len(values) < 2:
        return None
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def metric_names(fitness) -> tuple[str, str]:
    """What the two numbers of a line are called under ``fitness`` (``afos.config.FitnessSettings``): accuracy and
    loss, or a user's objective's rank and value."""
    if not fitness.objective:
        return "val_accuracy", "val_loss"
    return ("exp(-val_loss)", "val_loss") if fitness.direction == "min" else ("val_score", "objective")
