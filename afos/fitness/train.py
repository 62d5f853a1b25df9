"""Short training of one network: pure, jitted steps, the batch order, and the one training loop.

Every training afos runs goes through ``run_epochs``: a candidate's fitness on the exact path, the
batched backend's candidates one after the other (one compiled step, many activations), and every cell
of a benchmark (with a per-epoch hook for learning curves).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from afos.fitness.data import Dataset, Split


@dataclass(frozen=True)
class TrainResult:
    val_accuracy: float
    val_loss: float
    train_loss: float
    diverged: bool


def _with_mode(graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State, training: bool) -> nnx.Module:
    """The model in training mode (dropout on, batch statistics) or evaluation mode (running averages)."""
    model = nnx.merge(graphdef, params, rest)
    model.set_attributes(deterministic=not training, use_running_average=not training, raise_if_not_found=False)
    return model


def make_steps(graphdef: nnx.GraphDef, tx: optax.GradientTransformation):
    """Pure ``train_step(state, opt_state, x, y)`` and ``eval_step(state, x, y)`` for one model.

    ``state`` is the model's state: its parameters alone (``nnx.split(model, nnx.Param)``, enough for
    models without dropout or batch norm) or all of it (``nnx.split(model)``: parameters, batch
    statistics and the dropout RNG, which advances every step). The optimizer only ever sees the
    parameters: ``opt_state = tx.init(nnx.state(model, nnx.Param))``. ``train_step`` returns the new
    state (same structure), ``opt_state`` and the mean loss; ``eval_step`` returns the summed loss and
    the number of correct predictions, in evaluation mode.
    """

    def loss_fn(params, rest, x, y, training):
        # fresh Variables at this trace level: dropout advances its RNG count inside the gradient trace
        rest = jax.tree.map(lambda leaf: leaf, rest)
        model = _with_mode(graphdef, params, rest, training)
        logits = model(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (logits, nnx.state(model, nnx.Not(nnx.Param)))

    @jax.jit
    def train_step(state, opt_state, x, y):
        params, rest = nnx.split_state(state, nnx.Param, ...)
        (loss, (_, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, x, y, True)
        updates, opt_state = tx.update(grads, opt_state, params)
        return nnx.merge_state(optax.apply_updates(params, updates), rest), opt_state, loss

    @jax.jit
    def eval_step(state, x, y):
        params, rest = nnx.split_state(state, nnx.Param, ...)
        loss, (logits, _) = loss_fn(params, rest, x, y, False)
        correct = jnp.sum(jnp.argmax(logits, -1) == y)
        return loss * y.shape[0], correct

    return train_step, eval_step


def scan_epoch(step: Callable) -> Callable:
    """An epoch as one ``lax.scan`` of ``step(state, opt_state, x, y) -> (state, opt_state, loss)`` over the
    index batches ``idx`` (a model's step, or a population's vmapped one): ``epoch(state, opt_state, x, y,
    idx) -> (state, opt_state, losses)``, to be jitted by the caller."""

    def epoch(state, opt_state, x, y, idx):
        def body(carry, batch):
            s, o, loss = step(*carry, x[batch], y[batch])
            return (s, o), loss

        (state, opt_state), losses = jax.lax.scan(body, (state, opt_state), idx)
        return state, opt_state, losses

    return epoch


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of index batches (last partial batch dropped), shuffled by ``rng``."""
    perm = rng.permutation(n)
    return [perm[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def batch_order(n: int, batch_size: int, epochs: int, seed: int) -> list[list[np.ndarray]]:
    """The index batches of every epoch of a training seeded by ``seed`` (drawn in epoch order)."""
    rng = np.random.default_rng(seed)
    return [epoch_batches(n, batch_size, rng) for _ in range(epochs)]


def evaluate_split(eval_step, params, split: Split, batch_size: int = 1024) -> tuple[float, float]:
    """(mean loss, accuracy) of ``params`` on ``split``."""
    total_loss, correct = 0.0, 0
    for i in range(0, len(split), batch_size):
        loss, c = eval_step(params, split.x[i : i + batch_size], split.y[i : i + batch_size])
        total_loss += float(loss)
        correct += int(c)
    return total_loss / len(split), correct / len(split)


# on_epoch(epoch, mean train loss, evaluate) where evaluate(split) -> (loss, accuracy)
EpochHook = Callable[[int, float, Callable[[Split], tuple[float, float]]], None]


def run_epochs(steps, state, opt_state, dataset: Dataset, epochs: Sequence[Sequence[np.ndarray]],
               on_epoch: EpochHook | None = None) -> TrainResult:
    """Trains ``state`` on the training split, batch by batch, and scores it on the validation split.

    Args:
        steps: ``(train_step, eval_step)`` from ``make_steps``.
        epochs: the index batches of every epoch (``batch_order``).
        on_epoch: called after every epoch (learning curves); a search passes none.

    A training whose loss stops being finite is stopped there (later epochs cannot bring it back) and
    reported as diverged.
    """
    train_step, eval_step = steps
    train = dataset.train
    train_loss = float("nan")
    for epoch, batches in enumerate(epochs):
        losses = []
        for idx in batches:
            state, opt_state, loss = train_step(state, opt_state, train.x[idx], train.y[idx])
            losses.append(loss)
        train_loss = float(jnp.mean(jnp.stack(losses))) if losses else float("nan")
        if on_epoch is not None:
            on_epoch(epoch, train_loss, lambda split, s=state: evaluate_split(eval_step, s, split))
        if not np.isfinite(train_loss):
            break
    val_loss, val_acc = evaluate_split(eval_step, state, dataset.val)
    return TrainResult(val_acc, val_loss, train_loss, not (np.isfinite(train_loss) and np.isfinite(val_loss)))
