"""The one evaluator protocol, and the exact backend.

An evaluator scores screened candidates on given seeds: ``evaluate(candidates, seeds, epochs=None)`` yields
``(index, Fitness)`` once per candidate, in any order, as soon as each is known (the driver appends it to
the run's log before the next one arrives); the fitness is the mean over the seeds, each a training
of ``epochs`` epochs (None: the problem's own; a longer training is a higher rung of successive
halving). ``close`` releases
what it holds. Backends implement it (``Sequential`` here, ``Batched`` in ``afos.fitness.batched``);
sharding over devices, Ray and replaying a run's log are wrappers that keep it (``afos.fitness.pools``,
``afos.fitness.cluster``). Failures (no intermediate form, a NaN/inf loss) are fitnesses with status
``failed`` and a reason, never exceptions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Protocol

from afos.expr import Candidate
from afos.expr.ir import LoweringError
from afos.fitness.own import ObjectiveFailedError
from afos.fitness.problem import FitnessProblem
from afos.fitness.train import TrainResult
from afos.types import OK, Fitness

Results = Iterator[tuple[int, Fitness]]


class Evaluator(Protocol):
    """Scores candidates on seeds; yields ``(index, Fitness)`` in any order, one per candidate."""

    def evaluate(self, candidates: Sequence[Candidate], seeds: Sequence[int], epochs: int | None = None) -> Results:
        ...

    def close(self) -> None: ...


def to_fitness(result: TrainResult, seconds: float) -> Fitness:
    """The fitness of one training on one seed."""
    if result.diverged:
        return Fitness.failed("non-finite loss during training", seconds)
    return Fitness(OK, result.val_accuracy, result.val_loss, None, seconds)


def run(evaluator: Evaluator, candidates: Sequence[Candidate], seeds: Sequence[int],
        epochs: int | None = None) -> Results:
    """``evaluator.evaluate``, given ``epochs`` only where there is one: an evaluator written before successive
    halving (``evaluate(candidates, seeds)``) still serves every run without rungs."""
    if epochs is None:
        return evaluator.evaluate(candidates, seeds)
    return evaluator.evaluate(candidates, seeds, epochs)


class PerSeed:
    """A backend that trains one seed at a time: subclasses implement ``evaluate_seed``.

    With one seed the results stream through as each is known; with several, a candidate is yielded
    when its last seed is scored, with the mean over its seeds (``Fitness.mean_of``, in seed order).
    """

    def evaluate_seed(self, candidates: Sequence[Candidate], seed: int, epochs: int | None = None) -> Results:
        raise NotImplementedError

    def evaluate(self, candidates: Sequence[Candidate], seeds: Sequence[int], epochs: int | None = None) -> Results:
        if not candidates:
            return
        parts: list[list[Fitness]] = [[] for _ in candidates]
        for seed in seeds:
            scored = self.evaluate_seed(candidates, seed) if epochs is None else \
                self.evaluate_seed(candidates, seed, epochs)  # a subclass without epochs serves runs without rungs
            for i, fit in scored:
                parts[i].append(fit)
                if len(parts[i]) == len(seeds):
                    yield i, Fitness.mean_of(parts[i])

    def close(self) -> None:
        pass


def score_exactly(problem: FitnessProblem, candidate: Candidate, seed: int) -> Fitness:
    """Compiles ``candidate`` to JAX and trains it: the exact reference every backend agrees with."""
    from afos.expr.compile import to_jax

    start = time.perf_counter()
    try:
        act = to_jax(candidate.node)
    except LoweringError as err:
        return Fitness.failed(f"compile error: {err.logged}", time.perf_counter() - start)
    try:
        result = problem.score(act, seed)
    except ObjectiveFailedError as err:  # the user's objective: its failure is a line with the reason
        return Fitness.failed(str(err), time.perf_counter() - start)
    return to_fitness(result, time.perf_counter() - start)


class Sequential(PerSeed):
    """The exact reference: compiles and trains one candidate at a time (a compilation per candidate)."""

    def __init__(self, problem: FitnessProblem):
        self.problem = problem

    def evaluate_seed(self, candidates: Sequence[Candidate], seed: int, epochs: int | None = None) -> Results:
        problem = self.problem.with_epochs(epochs)
        for i, candidate in enumerate(candidates):
            yield i, score_exactly(problem, candidate, seed)
