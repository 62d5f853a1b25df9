"""The candidate designs of a fast GPU fitness path, each an afos evaluator (or a timed function) over the
same fitness problem, so that ``fitness_throughput.py --designs`` times them on the same candidates and seeds.

  sequential  afos's exact reference: compile and train one candidate at a time (Python loop over steps)
  batched     afos's batched backend (interpreter: fori_loop + lax.switch; vmap mode on accelerators)
  pallas      the batched backend's trainer with the activation as Pallas kernels (``pallas_act``)
  unrolled    the same with the unrolled straight-line activation (``pallas_act``: no loop, no buffer)
  pipelined   exact per-candidate programs, epoch as one lax.scan, compiled in a thread pool while the
              candidates compiled before them train (compilation overlapped with training)
  floor       relu models through one compiled step (the training work alone)

A design name may end in ``@PRECISION`` (``highest``, ``bfloat16``, ...): it then runs under
``jax.default_matmul_precision``, convolutions and matrix products included (bf16 inputs, f32 accumulation
for ``bfloat16``). The persistent compilation cache is the ``cache`` design of the driver: ``sequential``
run twice in fresh processes over one cache folder (``fitness_throughput.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from afos.expr import Candidate
from afos.expr.compile import to_jax
from afos.expr.ir import LoweringError
from afos.fitness import train
from afos.fitness.batched import Batched, Trainer
from afos.fitness.evaluator import PerSeed, Results, Sequential, score_exactly, to_fitness
from afos.fitness.interpreter import Shape
from afos.fitness.problem import FitnessProblem
from afos.fitness.train import TrainResult
from gpu_paths.pallas_act import PackedAct


class KernelBatched(Batched):
    """The batched backend with a ``pallas_act`` runtime as the activation (``loop`` or ``vmap`` mode)."""

    def __init__(self, problem: FitnessProblem, runtime: str, mode: str | None = None, shape: Shape = Shape()):
        super().__init__(problem, mode=mode, shape=shape)
        self.runtime = runtime

    def trainer(self, seed: int, epochs: int | None = None) -> Trainer:
        key = (seed, None if epochs == self.problem.settings.epochs else epochs)
        if key not in self.trainers:
            act = PackedAct(self.shape, self.runtime)
            self.trainers[key] = Trainer(self.problem.with_epochs(epochs), seed, self.shape, act)
        return self.trainers[key]


class Pipelined(PerSeed):
    """Exact programs per candidate, compiled ``workers`` at a time in threads ahead of the training.

    Each candidate's epoch is one ``lax.scan`` of the exact training step (the yardstick's
    ``separate_scan``), so training is a few device calls, and its compilation (threads: XLA releases the
    GIL) overlaps with the training of the candidates before it.
    """

    def __init__(self, problem: FitnessProblem, workers: int = 16):
        self.problem, self.workers = problem, workers

    def _compiled(self, candidate: Candidate, seed: int):
        act = to_jax(candidate.node)
        model = self.problem.model(act, seed)
        graphdef, state = nnx.split(model)
        tx = self.problem.optimizer()
        opt = tx.init(nnx.state(model, nnx.Param))
        step, eval_step = train.make_steps(graphdef, tx)

        epoch = train.scan_epoch(step)
        split = self.problem.dataset.train
        x, y = jnp.asarray(split.x), jnp.asarray(split.y)
        idx = [jnp.asarray(np.stack(b)) for b in self.problem.batches(seed)]
        compiled = jax.jit(epoch).lower(state, opt, x, y, idx[0]).compile()
        train.evaluate_split(eval_step, state, self.problem.dataset.val)  # compiles the evaluation too
        return compiled, eval_step, state, opt, x, y, idx

    def _train(self, built) -> TrainResult:
        compiled, eval_step, state, opt, x, y, idx = built
        train_loss = float("nan")
        for epoch in idx:
            state, opt, losses = compiled(state, opt, x, y, epoch)
            train_loss = float(jnp.mean(losses))
            if not np.isfinite(train_loss):
                break
        val_loss, val_acc = train.evaluate_split(eval_step, state, self.problem.dataset.val)
        return TrainResult(val_acc, val_loss, train_loss, not (np.isfinite(train_loss) and np.isfinite(val_loss)))

    def evaluate_seed(self, candidates: Sequence[Candidate], seed: int, epochs: int | None = None) -> Results:
        del epochs  # one training length: the problem's
        with ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(self._compiled, c, seed) for c in candidates]
            for i, future in enumerate(futures):  # in order: candidate i trains while later ones compile
                start = time.perf_counter()
                try:
                    built = future.result()
                except LoweringError:
                    yield i, score_exactly(self.problem, candidates[i], seed)
                    continue
                yield i, to_fitness(self._train(built), time.perf_counter() - start)


DESIGNS: dict[str, Callable[[FitnessProblem, str | None], object]] = {
    "sequential": lambda problem, mode: Sequential(problem),
    "batched": lambda problem, mode: Batched(problem, mode=mode),
    "pallas": lambda problem, mode: KernelBatched(problem, "pallas", mode=mode),
    "unrolled": lambda problem, mode: KernelBatched(problem, "unrolled", mode=mode),
    "pipelined": lambda problem, mode: Pipelined(problem, workers=int(os.environ.get("WORKERS", 16))),
}


def split_name(design: str) -> tuple[str, str | None]:
    """``batched@bfloat16`` -> (``batched``, ``bfloat16``); ``pallas`` -> (``pallas``, None)."""
    name, _, precision = design.partition("@")
    return name, precision or None
