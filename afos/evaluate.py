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

import jax
import numpy as np

from afos import batched, models, types
from afos.compile import CompileError, to_jax
from afos.data import Dataset
from afos.expr import Analysis
from afos.train import FitnessSettings, TrainResult, train_and_score


@dataclass(frozen=True)
class Fitness:
    """The measured fitness of one function (shared by every tree that computes it)."""

    status: str  # types.OK or types.FAILED
    val_accuracy: float | None
    val_loss: float | None
    reason: str | None
    seconds: float
    val_accuracy_std: float | None = None  # across initialisation seeds (None for one seed)
    seed_accuracies: tuple[float, ...] = ()  # per seed, in seed order (empty: one seed, not broken down)


class Evaluator(Protocol):
    """Scores candidates; yields ``(index, Fitness)`` in any order, one per candidate."""

    def evaluate(self, candidates: Sequence[Analysis]) -> Iterator[tuple[int, Fitness]]: ...


def _fitness(result: TrainResult, seconds: float) -> Fitness:
    if result.diverged:
        return Fitness(types.FAILED, None, None, "non-finite loss during training", seconds)
    return Fitness(types.OK, result.val_accuracy, result.val_loss, None, seconds)


def _score_one(candidate: Analysis, dataset: Dataset, settings: FitnessSettings) -> Fitness:
    start = time.perf_counter()
    try:
        act = to_jax(candidate.expr)
        result = train_and_score(act, dataset, settings)
    except CompileError as err:
        return Fitness(types.FAILED, None, None, f"compile error: {err}", time.perf_counter() - start)
    return _fitness(result, time.perf_counter() - start)


class SequentialEvaluator:
    """The exact reference: compiles and trains one candidate at a time."""

    def __init__(self, dataset: Dataset, settings: FitnessSettings):
        self.dataset = dataset
        self.settings = settings

    def evaluate(self, candidates: Sequence[Analysis]) -> Iterator[tuple[int, Fitness]]:
        for i, candidate in enumerate(candidates):
            yield i, _score_one(candidate, self.dataset, self.settings)


class BatchedEvaluator:
    """The fast path: every candidate through one compiled training step, its activation as data.

    Candidates are encoded as programs for ``afos.batched``'s interpreter and trained by its ``mode``
    (``loop`` on CPUs, ``vmap`` on accelerators; see ``batched.default_mode``). The step is compiled
    on first use and reused for every later candidate and generation. Candidates the interpreter
    cannot run (an unsupported head, a program longer than ``shape.length``, SELU, whose model
    differs) take the exact per-candidate path of ``SequentialEvaluator``.
    """

    def __init__(self, dataset: Dataset, settings: FitnessSettings, mode: str | None = None,
                 shape: batched.Shape = batched.Shape(), chunk: int = 32):
        mode = mode or batched.default_mode()
        if mode not in batched.MODES:
            raise ValueError(f"unknown batched mode {mode!r} (available: {', '.join(batched.MODES)})")
        self.dataset, self.settings, self.mode, self.shape, self.chunk = dataset, settings, mode, shape, chunk
        self._trainer: batched.Trainer | None = None

    @property
    def trainer(self) -> batched.Trainer:
        if self._trainer is None:
            self._trainer = batched.Trainer(self.dataset, self.settings, self.shape)
        return self._trainer

    def _program(self, candidate: Analysis) -> batched.Program | None:
        try:
            program = batched.encode(candidate.expr, self.shape)
            return None if models.is_selu(to_jax(candidate.expr)) else program
        except (batched.UnsupportedError, CompileError):
            return None

    def evaluate(self, candidates: Sequence[Analysis]) -> Iterator[tuple[int, Fitness]]:
        programs = {i: self._program(c) for i, c in enumerate(candidates)}
        for i in (i for i, p in programs.items() if p is None):
            yield i, _score_one(candidates[i], self.dataset, self.settings)
        order = [i for i, p in programs.items() if p is not None]
        if not order:
            return
        options = {"chunk": self.chunk} if self.mode == "vmap" else {}
        start = time.perf_counter()
        for j, result in batched.MODES[self.mode](self.trainer, [programs[i] for i in order], **options):
            now = time.perf_counter()
            yield order[j], _fitness(result, now - start)
            start = now


BACKENDS: dict[str, Callable[[Dataset, FitnessSettings], Evaluator]] = {
    "sequential": SequentialEvaluator,
    "batched": BatchedEvaluator,
}
# ``auto`` on a CPU (measurements in docs/PERFORMANCE.md): the batched backend compiles its step once
# (8-15 s for cnn-small on a 2-core CPU) and then saves 1-1.5 s per candidate on small images (digits,
# batch 32: 2048 pixels per batch, 4.3-4.8x faster than sequential), but its interpreter costs more than
# a compilation on large activations (Fashion-MNIST, batch 128: 100352 pixels per batch, 1.6x slower).
# So: batched for the measured models, from this many candidates per run, up to this batch volume.
AUTO_CPU_MODELS = ("cnn-small", "mlp")
AUTO_CPU_MIN_CANDIDATES = 16
AUTO_CPU_MAX_PIXELS_PER_BATCH = 4096
# Platforms where batched has been measured faster; GPU/TPU: not measured yet (no device was lent).
AUTO_PLATFORMS = ("cpu",)


def auto_backend(settings: FitnessSettings, input_shape: Sequence[int], candidates: int | None = None,
                 platform: str | None = None) -> str:
    """What ``auto`` means for a run scoring ``candidates`` (unknown: sequential, never the slower choice)."""
    if (platform or jax.default_backend()) not in AUTO_PLATFORMS or settings.model not in AUTO_CPU_MODELS:
        return "sequential"
    height, width = models.MODELS[settings.model].input_hw(input_shape)
    small = height * width * settings.batch_size <= AUTO_CPU_MAX_PIXELS_PER_BATCH
    return "batched" if small and candidates is not None and candidates >= AUTO_CPU_MIN_CANDIDATES else "sequential"


def make_evaluator(backend: str, dataset: Dataset, settings: FitnessSettings,
                   candidates: int | None = None) -> Evaluator:
    """The evaluator called ``backend``.

    Args:
        candidates: how many candidates the run will score (population x generations), for ``auto``.
    """
    if backend == "auto":
        backend = auto_backend(settings, dataset.input_shape, candidates)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (available: auto, {', '.join(BACKENDS)})")
    return BACKENDS[backend](dataset, settings)


def fitness_values(fitness: Fitness, complexity: int) -> tuple[float, float]:
    """The NSGA-II objective values of a scored candidate (failures get the worst)."""
    if fitness.status != types.OK or fitness.val_accuracy is None or not np.isfinite(fitness.val_accuracy):
        return types.WORST_FITNESS
    return (float(fitness.val_accuracy), float(complexity))
