"""The vocabulary every layer shares: objectives, evaluation statuses and the ``Fitness`` of a function.

Defined once, used everywhere, and free of JAX: the genetic algorithm, the run directory and the command
line read fitness values without loading the training stack.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


# --- values read back from a file -----------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """The values afos writes for one field: numbers of ``kind`` (``int``, or ``float``, which takes an int too)
    from ``low`` to ``high``, ``low`` itself excluded where ``above``. A bool is no number, nor is text; NaN and
    the infinities are never written (a failure has no value: None)."""

    kind: type
    low: float = -math.inf
    high: float = math.inf
    above: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not in the range, in words after it (None: it is)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = {bool: "a bool", str: "text", type(None): "null"}.get(type(value), type(value).__name__)
            return f"is {kind}, not a number"
        if self.kind is int and not isinstance(value, int):
            return "is not an integer"
        if isinstance(value, float) and not math.isfinite(value):
            return "is not a finite number"
        if value < self.low or value > self.high or (self.above and value == self.low):
            if self.high == math.inf:
                return f"is {'not above' if self.above else 'below'} {self.low:g}"
            return f"is outside [{self.low:g}, {self.high:g}]"
        return None


ACCURACY = Range(float, 0.0, 1.0)
# Every value a fitness memory, a line of the log or a row of the front may hold, by field name. The accuracy
# is an accuracy, or a user's objective's score ranked into [0, 1] (``afos.fitness.own``); the loss is a
# cross-entropy, or an objective's loss (direction min), both >= 0, or its score (direction max: in [0, 1]).
VALUES: dict[str, Range] = {
    "val_accuracy": ACCURACY,
    "seed_accuracies": ACCURACY,  # each
    "val_accuracy_std": ACCURACY,
    "val_loss": Range(float, 0.0),
    "seconds": Range(float, 0.0),
    "predicted": Range(float),  # a surrogate's regression: any real number
    "gain": Range(float, 0.0, above=True),
    "generation": Range(int, -1),  # -1: the anchors
    "index": Range(int, 0),
    "complexity": Range(int, 0),
    "seeds": Range(int, 0),  # 0: a line without a fitness
    "epochs": Range(int, 1),
    "fitness": Range(float),  # each NSGA-II objective value of a checkpoint's individual (WORST_FITNESS: failed)
    # validation.csv (afos validate): test accuracies, their differences to relu, p-values, the seeds' count
    "test_accuracy_mean": ACCURACY,
    "test_accuracy_std": ACCURACY,
    "diff_vs_relu": Range(float, -1.0, 1.0),
    "diff_ci_low": Range(float, -1.0, 1.0),
    "diff_ci_high": Range(float, -1.0, 1.0),
    "wilcoxon_p": Range(float, 0.0, 1.0),
    "wilcoxon_p_holm": Range(float, 0.0, 1.0),
    "n": Range(int, 0),
}
MAY_BE_NONE = ("val_accuracy", "val_loss", "val_accuracy_std", "gain", "epochs", "predicted")


def value_problem(name: str, value: Any, fitness: Any = None) -> str | None:
    """Why ``value``, read from a file as the field ``name`` (of ``VALUES``), is not a value afos writes there:
    one phrase naming the field and the value (None: it is one). The one judge of a value read back from the
    fitness memory, the log and ``pareto.csv``.

    Args:
        name: the field.
        value: as read (a JSON value, or a number parsed from a CSV cell).
        fitness: the run's fitness settings (``afos.config.FitnessSettings``), whose objective's direction
            decides the loss's range; None: the widest range of any direction.
    """
    if value is None and name in MAY_BE_NONE:
        return None
    rule = VALUES[name]
    if name == "val_loss" and fitness is not None and fitness.objective and fitness.direction == "max":
        rule = ACCURACY  # the objective's score itself
    why = rule.problem(value)
    if why is None:
        return None
    shown = repr(value)
    return f"{name} {shown if len(shown) <= 40 else shown[:37] + '...'} {why}"


def fitness_problem(fit: Fitness, fitness: Any = None) -> str | None:
    """Why ``fit``, a measurement read back from a file (a fitness memory's), is not one afos writes (None: it
    is one): status ok with an accuracy or failed without one, a text or no reason, every value in its range
    (``value_problem``; ``fitness``: the settings it was measured under)."""
    if fit.status not in (OK, FAILED):
        return f"status {fit.status!r} is not {OK!r} or {FAILED!r}"
    if (fit.status == OK) != (fit.val_accuracy is not None):
        return f"a fitness of status {fit.status} {'without' if fit.status == OK else 'with'} val_accuracy"
    if fit.reason is not None and not isinstance(fit.reason, str):
        return f"reason {fit.reason!r} is not text"
    if not isinstance(fit.seed_accuracies, tuple):
        return f"seed_accuracies {fit.seed_accuracies!r} is not a list"
    values = [("val_accuracy", fit.val_accuracy), ("val_loss", fit.val_loss), ("seconds", fit.seconds),
              ("val_accuracy_std", fit.val_accuracy_std)] + [("seed_accuracies", a) for a in fit.seed_accuracies]
    return next((why for name, value in values if (why := value_problem(name, value, fitness))), None)


def metric_names(fitness) -> tuple[str, str]:
    """What the two numbers of a line are called under ``fitness`` (``afos.config.FitnessSettings``): accuracy and
    loss, or a user's objective's rank and value."""
    if not fitness.objective:
        return "val_accuracy", "val_loss"
    return ("exp(-val_loss)", "val_loss") if fitness.direction == "min" else ("val_score", "objective")
