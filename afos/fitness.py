"""Noise-aware fitness: the mean over initialisation seeds, for any evaluator backend.

A fitness value measured on one seed is one draw of a noisy quantity: the gaps between good activations
are of the size of the seed-to-seed spread. ``SeededEvaluator`` scores candidates on several seeds (one
backend evaluator per seed, built by ``make_evaluator`` with ``FitnessSettings.seed`` replaced) and
returns their mean with the standard deviation and the per-seed accuracies; ``combine`` adds the seeds
of a re-scoring to a fitness measured before (racing).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Protocol

from afos import types
from afos.data import Dataset
from afos.evaluate import Evaluator, Fitness, make_evaluator
from afos.expr import Analysis
from afos.train import FitnessSettings


def search_seeds(settings: FitnessSettings, max_seeds: int) -> list[int]:
    """The initialisation seeds a search may use: ``settings.seed``, ``settings.seed + 1``, ..."""
    return [settings.seed + i for i in range(max_seeds)]


def accuracies(fit: Fitness) -> tuple[float, ...]:
    """The per-seed accuracies behind a fitness (a one-seed fitness from a backend: its accuracy)."""
    if fit.seed_accuracies:
        return fit.seed_accuracies
    return () if fit.val_accuracy is None else (float(fit.val_accuracy),)


def seeds_of(fit: Fitness) -> int:
    return max(1, len(accuracies(fit)))


def _std(values: Sequence[float]) -> float | None:
    """The sample standard deviation (None for fewer than two values)."""
    if len(values) < 2:
        return None
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def from_seeds(parts: Sequence[Fitness]) -> Fitness:
    """One fitness from the fitnesses of the same function on several seeds (in seed order)."""
    seconds = math.fsum(p.seconds for p in parts)
    failed = [p for p in parts if p.status != types.OK or p.val_accuracy is None]
    if failed:
        return Fitness(types.FAILED, None, None, failed[0].reason, seconds)
    accs = tuple(a for p in parts for a in accuracies(p))
    weights = [seeds_of(p) for p in parts]
    losses = [p.val_loss for p in parts]
    loss = None if any(v is None for v in losses) else \
        math.fsum(w * v for w, v in zip(weights, losses, strict=True)) / sum(weights)
    return Fitness(types.OK, math.fsum(accs) / len(accs), loss, None, seconds, _std(accs), accs)


def combine(old: Fitness, new: Fitness) -> Fitness:
    """``old`` with the seeds of a later re-scoring ``new`` added (the seconds are the re-scoring's)."""
    merged = from_seeds([old, new])
    return dataclasses.replace(merged, seconds=new.seconds)


class Scorer(Protocol):
    """Scores candidates on given seeds: ``SeededEvaluator`` here, or the pools of ``afos.distributed``."""

    def evaluate(self, candidates: Sequence[Analysis], seeds: Sequence[int]) -> Iterator[tuple[int, Fitness]]: ...

    def close(self) -> None: ...


class SeededEvaluator:
    """Scores candidates on the given seeds with one backend evaluator per seed and yields their mean.

    With one seed the backend's results stream through (as soon as each is known); with several, a
    candidate is yielded when its last seed is scored.
    """

    def __init__(self, backend: str, dataset: Dataset, settings: FitnessSettings, candidates: int | None = None):
        self.backend, self.dataset, self.settings, self.candidates = backend, dataset, settings, candidates
        self._evaluators: dict[int, Evaluator] = {}

    def for_seed(self, seed: int) -> Evaluator:
        if seed not in self._evaluators:  # kept: a backend may compile or cache per instance
            settings = dataclasses.replace(self.settings, seed=seed)
            self._evaluators[seed] = make_evaluator(self.backend, self.dataset, settings, self.candidates)
        return self._evaluators[seed]

    def evaluate(self, candidates: Sequence[Analysis], seeds: Sequence[int]) -> Iterator[tuple[int, Fitness]]:
        """``(index, Fitness)`` per candidate: the mean over ``seeds``."""
        if not candidates:
            return
        parts: list[list[Fitness]] = [[] for _ in candidates]
        for seed in seeds:
            for i, fit in self.for_seed(seed).evaluate(candidates):
                parts[i].append(fit)
                if len(parts[i]) == len(seeds):
                    yield i, from_seeds(parts[i])

    def close(self) -> None:
        pass


class MultiSeedEvaluator:
    """An ``Evaluator`` over a fixed list of seeds (what the search uses for new candidates)."""

    def __init__(self, seeded: Scorer, seeds: Sequence[int]):
        self.seeded, self.seeds = seeded, list(seeds)

    def evaluate(self, candidates: Sequence[Analysis]) -> Iterator[tuple[int, Fitness]]:
        return self.seeded.evaluate(candidates, self.seeds)
