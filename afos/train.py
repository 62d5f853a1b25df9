"""Short training of one network: pure, jitted steps and the loop that scores a candidate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from afos import models
from afos.data import Dataset, Split
from afos.models import Act


@dataclass(frozen=True)
class FitnessSettings:
    """Everything that changes what a fitness value means (part of the cache key)."""

    dataset: str = "digits"
    model: str = "cnn-small"
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3
    val_fraction: float = 0.2
    train_size: int = 0
    val_size: int = 0
    seed: int = 0  # initialisation and batch order of every fitness evaluation


@dataclass(frozen=True)
class TrainResult:
    val_accuracy: float
    val_loss: float
    train_loss: float
    diverged: bool


def make_steps(graphdef: nnx.GraphDef, tx: optax.GradientTransformation):
    """Pure ``train_step(params, opt_state, x, y)`` and ``eval_step(params, x, y)`` for one model."""

    def loss_fn(params, x, y):
        logits = nnx.merge(graphdef, params)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    @jax.jit
    def train_step(params, opt_state, x, y):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def eval_step(params, x, y):
        loss, logits = loss_fn(params, x, y)
        correct = jnp.sum(jnp.argmax(logits, -1) == y)
        return loss * y.shape[0], correct

    return train_step, eval_step


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of index batches (last partial batch dropped), shuffled by ``rng``."""
    perm = rng.permutation(n)
    return [perm[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


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


def fit(act: Act, dataset: Dataset, settings: FitnessSettings, on_epoch: EpochHook | None = None) -> TrainResult:
    """Trains ``settings.model`` with activation ``act`` for ``settings.epochs`` and scores it on validation.

    ``on_epoch`` is called after every epoch (for learning curves); the search passes none.
    """
    model = models.build(settings.model, act, dataset.input_shape, dataset.num_classes, settings.seed)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(settings.learning_rate)
    opt_state = tx.init(params)
    train_step, eval_step = make_steps(graphdef, tx)
    train = dataset.train
    rng = np.random.default_rng(settings.seed)
    train_loss = float("nan")
    for epoch in range(settings.epochs):
        losses = []
        for idx in epoch_batches(len(train), settings.batch_size, rng):
            params, opt_state, loss = train_step(params, opt_state, train.x[idx], train.y[idx])
            losses.append(loss)
        train_loss = float(jnp.mean(jnp.stack(losses))) if losses else float("nan")
        if on_epoch is not None:
            on_epoch(epoch, train_loss, lambda split, p=params: evaluate_split(eval_step, p, split))
        if not np.isfinite(train_loss):
            break  # diverged: later epochs cannot bring it back
    val_loss, val_acc = evaluate_split(eval_step, params, dataset.val)
    diverged = not (np.isfinite(train_loss) and np.isfinite(val_loss))
    return TrainResult(val_acc, val_loss, train_loss, diverged)


def train_and_score(act: Act, dataset: Dataset, settings: FitnessSettings) -> TrainResult:
    """The fitness of one activation: short training, then validation accuracy."""
    return fit(act, dataset, settings)
