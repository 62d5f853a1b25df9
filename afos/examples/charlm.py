"""A character-level transformer language model as a user's objective: an activation search beyond images.

``afos search --objective charlm`` (registered under ``afos.objectives``; the import path is
``afos.examples.charlm:objective``) scores an activation by the validation loss (cross-entropy per character,
in nats) of a small decoder-only transformer, with the activation in the MLP of every block, trained for
``settings.epochs x STEPS_PER_EPOCH`` steps of ``settings.batch_size`` windows. The text is the dataset
descriptions that ship with scikit-learn (``sklearn/datasets/descr/*.rst``, about 43k characters, read in
file-name order, no download), cut into contiguous train / validation / test parts (80 / 10 / 10%). Lower is
better (``direction = "min"``); afos ranks it as ``exp(-loss)``, the geometric-mean probability of the next
character. No anchor of an image benchmark says anything about this task: relu, gelu and swish are scored
by the same objective.

It is also the template of an objective of your own: a function of the activation, a seed and the fitness
settings, returning the validation score and, for ``afos validate``, the test score.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx

CONTEXT = 64  # characters a prediction sees
WIDTH, HEADS, LAYERS, HIDDEN = 64, 4, 2, 128
STEPS_PER_EPOCH = 150
EVAL_WINDOWS = 256  # fixed windows of the validation and test parts, scored after training


@functools.cache
def corpus() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(train, validation, test) character codes and the vocabulary size."""
    import sklearn.datasets

    folder = Path(sklearn.datasets.__file__).parent / "descr"
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.rst")))
    vocab = sorted(set(text))
    codes = np.array([vocab.index(c) for c in text], np.int32)
    a, b = int(0.8 * len(codes)), int(0.9 * len(codes))
    return codes[:a], codes[a:b], codes[b:], len(vocab)


class Block(nnx.Module):
    def __init__(self, act, *, rngs: nnx.Rngs):
        self.act = act
        self.norm1, self.norm2 = nnx.LayerNorm(WIDTH, rngs=rngs), nnx.LayerNorm(WIDTH, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(HEADS, WIDTH, decode=False, rngs=rngs)
        self.up, self.down = nnx.Linear(WIDTH, HIDDEN, rngs=rngs), nnx.Linear(HIDDEN, WIDTH, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        x = x + self.attention(self.norm1(x), mask=mask)
        return x + self.down(self.act(self.up(self.norm2(x))))


class CharLM(nnx.Module):
    """A decoder-only transformer over characters, ``act`` in the MLP of each block."""

    def __init__(self, act, vocab: int, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, WIDTH, rngs=rngs)
        self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (CONTEXT, WIDTH)))
        self.blocks = nnx.List([Block(act, rngs=rngs) for _ in range(LAYERS)])
        self.norm = nnx.LayerNorm(WIDTH, rngs=rngs)
        self.out = nnx.Linear(WIDTH, vocab, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = self.embed(tokens) + self.position[: tokens.shape[1]]
        mask = nnx.make_causal_mask(tokens)
        for block in self.blocks:
            x = block(x, mask)
        return self.out(self.norm(x))


def _windows(codes: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = starts[:, None] + np.arange(CONTEXT + 1)
    chunk = codes[idx]
    return chunk[:, :-1], chunk[:, 1:]


def _loss(model: CharLM, x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def objective(act, seed: int, settings) -> dict[str, float]:
    """Trains the language model with ``act`` from ``seed``; returns its validation and test loss (nats/char)."""
    train, val, test, vocab = corpus()
    graphdef, params, rest = nnx.split(CharLM(act, vocab, rngs=nnx.Rngs(seed)), nnx.Param, ...)
    tx = optax.adam(settings.learning_rate)

    def loss_of(params, x, y):
        return _loss(nnx.merge(graphdef, params, rest), x, y)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_of)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state, rng = tx.init(params), np.random.default_rng(seed)
    for _ in range(settings.epochs * STEPS_PER_EPOCH):
        x, y = _windows(train, rng.integers(0, len(train) - CONTEXT - 1, settings.batch_size))
        params, opt_state, loss = step(params, opt_state, x, y)
    if not np.isfinite(float(loss)):
        return {"val": float("nan")}  # diverged: afos records a failed line
    scored, fixed = jax.jit(loss_of), np.random.default_rng(0)  # the same windows for every activation and seed

    def evaluate(codes: np.ndarray) -> float:
        return float(scored(params, *_windows(codes, fixed.integers(0, len(codes) - CONTEXT - 1, EVAL_WINDOWS))))

    return {"val": evaluate(val), "test": evaluate(test)}


objective.direction = "min"  # a loss: afos ranks exp(-loss)
