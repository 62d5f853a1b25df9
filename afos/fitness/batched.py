"""The batched backend: every candidate through one compiled training step, its activation as data.

Candidates are encoded as programs for the interpreter (``afos.fitness.interpreter``); a ``Trainer``
holds the model built around an ``InterpretedAct``, the optimizer and the compiled steps of one seed, and
reuses them for every candidate of every generation, so the search stops paying a compilation per
candidate. Candidates the interpreter cannot run (an unsupported operation, a program longer than
``shape.length``, SELU, whose model differs) take the exact path (``evaluator.score_exactly``).

Two ways to train the encoded population, both the exact path's training (same model built from the seed,
same batch order, same optax Adam, same validation scoring):

- ``loop`` (CPUs): one candidate after the other through the one compiled step and ``train.run_epochs``.
- ``vmap`` (accelerators): the population's states stacked and vmapped, an epoch as one ``lax.scan``
  over batches resident on the device.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from afos.errors import ConfigError
from afos.expr import Candidate
from afos.expr.compile import to_jax
from afos.expr.ir import LoweringError
from afos.fitness import own, train
from afos.fitness.data import Split
from afos.fitness.evaluator import PerSeed, Results, score_exactly, to_fitness
from afos.fitness.interpreter import InterpretedAct, Program, Shape, UnsupportedError, empty_program, encode
from afos.fitness.layers import is_selu
from afos.fitness.problem import FitnessProblem
from afos.fitness.train import TrainResult
from afos.types import Fitness


class Trainer:
    """The model, optimizer and compiled steps shared by every program trained from one seed.

    Attributes:
        traces: how many times the training step was traced (compiled), for tests and benchmarks.
    """

    def __init__(self, problem: FitnessProblem, seed: int, shape: Shape, act: nnx.Module | None = None):
        self.act = InterpretedAct(shape) if act is None else act  # another runtime of the same programs
        # selu=False: SELU candidates take the exact path (their model differs: LeCun init, AlphaDropout)
        self.model = problem.model(self.act, seed, selu=False)
        self.graphdef, _ = nnx.split(self.model)
        self.tx = problem.optimizer()
        self.opt_state = self.tx.init(nnx.state(self.model, nnx.Param))
        self.dataset, self.shape = problem.dataset, shape
        self.traces = 0
        train_step, self.eval_step = train.make_steps(self.graphdef, self.tx)

        @jax.jit
        def counted_step(state, opt_state, x, y):
            self.traces += 1  # runs only while tracing
            return train_step(state, opt_state, x, y)

        self.train_step = counted_step
        self.epochs = problem.batches(seed)  # the batch order of the exact path, drawn once for everyone

    def initial_state(self, program: Program) -> nnx.State:
        self.act.load(program)
        return jax.tree.map(lambda leaf: leaf, nnx.split(self.model)[1])  # fresh Variables: the next load leaves it

    def fit(self, program: Program) -> TrainResult:
        """The exact path's training of the program's activation, through the shared compiled step."""
        return train.run_epochs((self.train_step, self.eval_step), self.initial_state(program), self.opt_state,
                                self.dataset, self.epochs)

    def fit_loop(self, programs: Sequence[Program]) -> Iterator[tuple[int, TrainResult]]:
        for i, program in enumerate(programs):
            yield i, self.fit(program)

    def fit_vmap(self, programs: Sequence[Program], chunk: int = 32) -> Iterator[tuple[int, TrainResult]]:
        """The population ``chunk`` programs at a time: stacked states, vmapped steps, epochs as scans."""
        split = self.dataset.train
        x, y = jnp.asarray(split.x), jnp.asarray(split.y)
        epochs = [jnp.asarray(np.stack(b)) if b else None for b in self.epochs]
        chunk = min(chunk, 1 << (len(programs) - 1).bit_length())  # a power of two: few compiled shapes
        for start in range(0, len(programs), chunk):
            group = list(programs[start : start + chunk])
            real = len(group)
            group += [empty_program(self.shape)] * (chunk - real)  # same shapes for every chunk: no recompiles
            states = jax.tree.map(lambda *a: jnp.stack(a), *[self.initial_state(p) for p in group])
            opts = jax.tree.map(lambda a: jnp.broadcast_to(a, (len(group), *jnp.shape(a))), self.opt_state)
            finite = np.ones(len(group), bool)
            train_loss = np.full(len(group), np.nan)
            for idx in epochs:
                if idx is None:
                    finite[:] = False
                    break
                states, opts, losses = self.vmapped_epoch(states, opts, x, y, idx)
                train_loss = np.asarray(jnp.mean(losses, axis=0), np.float64)
                finite &= np.isfinite(train_loss)
            val_loss, val_acc = self.vmapped_score(states, self.dataset.val)
            for j in range(real):
                ok = finite[j] and np.isfinite(val_loss[j])
                yield start + j, TrainResult(float(val_acc[j]), float(val_loss[j]), float(train_loss[j]), not ok)

    @property
    def vmapped_epoch(self):
        if not hasattr(self, "_vmapped_epoch"):
            self._vmapped_epoch = jax.jit(train.scan_epoch(jax.vmap(self.train_step, in_axes=(0, 0, None, None))))
        return self._vmapped_epoch

    def vmapped_score(self, states: nnx.State, split: Split, batch_size: int = 1024) -> tuple[np.ndarray, ...]:
        """Per-candidate (mean loss, accuracy), in the chunks of ``train.evaluate_split``."""
        if not hasattr(self, "_vmapped_eval"):
            self._vmapped_eval = jax.jit(jax.vmap(self.eval_step, in_axes=(0, None, None)))
        total, correct = 0.0, 0
        for i in range(0, len(split), batch_size):
            loss, c = self._vmapped_eval(states, split.x[i : i + batch_size], split.y[i : i + batch_size])
            total, correct = total + np.asarray(loss, np.float64), correct + np.asarray(c, np.int64)
        return total / len(split), correct / len(split)


MODES: dict[str, Callable[..., Iterator[tuple[int, TrainResult]]]] = {
    "loop": Trainer.fit_loop,
    "vmap": Trainer.fit_vmap,
}


def default_mode(platform: str | None = None) -> str:
    """``vmap`` on accelerators (a switch there runs on the host); ``loop`` on CPUs (vmap was slower there)."""
    return "loop" if (platform or jax.default_backend()) == "cpu" else "vmap"


class Batched(PerSeed):
    """Candidates trained through one compiled step per seed (a ``Trainer``), their activations as data.

    Args:
        problem: what is trained.
        mode: ``loop`` or ``vmap`` (``MODES``); None: ``default_mode()`` of this machine.
        shape: the program shape the step is compiled for.
        chunk: programs per vmapped group (``vmap`` mode).
    """

    def __init__(self, problem: FitnessProblem, mode: str | None = None, shape: Shape = Shape(), chunk: int = 32):
        mode = mode or default_mode()
        if mode not in MODES:
            raise ValueError(f"unknown batched mode {mode!r} (available: {', '.join(MODES)})")
        if problem.objective is not None and not own.takes_programs(problem.objective):
            raise ConfigError(f"the batched backend trains afos's models and objectives that train programs; "
                              f"objective {problem.settings.objective!r} trains its own way: use --backend "
                              "sequential (or auto)")
        self.problem, self.mode, self.shape, self.chunk = problem, mode, shape, chunk
        self.trainers: dict[tuple[int, int | None], Trainer] = {}

    def trainer(self, seed: int, epochs: int | None = None) -> Trainer:
        key = (seed, None if epochs == self.problem.settings.epochs else epochs)
        if key not in self.trainers:  # kept: its step is compiled once and reused for every later candidate
            self.trainers[key] = Trainer(self.problem.with_epochs(epochs), seed, self.shape)
        return self.trainers[key]

    def _program(self, candidate: Candidate) -> Program | None:
        try:
            program = encode(candidate.node, self.shape)
            # SELU changes the zoo's model (not an objective's)
            return None if self.problem.objective is None and is_selu(to_jax(candidate.node)) else program
        except (UnsupportedError, LoweringError):
            return None

    def evaluate_seed(self, candidates: Sequence[Candidate], seed: int, epochs: int | None = None) -> Results:
        programs = {i: self._program(c) for i, c in enumerate(candidates)}
        for i in (i for i, p in programs.items() if p is None):
            yield i, score_exactly(self.problem.with_epochs(epochs), candidates[i], seed)
        order = [i for i, p in programs.items() if p is not None]
        if not order:
            return
        encoded = [programs[i] for i in order]
        if self.problem.objective is not None:  # the objective trains the programs its own way
            results = self.problem.with_epochs(epochs).score_programs(encoded, seed)
        else:
            options = {"chunk": self.chunk} if self.mode == "vmap" else {}
            results = MODES[self.mode](self.trainer(seed, epochs), encoded, **options)
        start = time.perf_counter()
        for j, result in results:
            now = time.perf_counter()
            fit = Fitness.failed(result, now - start) if isinstance(result, str) else to_fitness(result, now - start)
            yield order[j], fit
            start = now
