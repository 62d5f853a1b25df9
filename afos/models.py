"""Flax (nnx) networks by name. Every model takes the activation as a field, ``act``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
from flax import nnx

Act = Callable[[jax.Array], jax.Array]


class CNNSmall(nnx.Module):
    """The default search network: conv3x3-32, conv3x3-64, maxpool, dense-128, dense-10."""

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs):
        height, width, channels = input_shape
        self.act = act
        self.conv1 = nnx.Conv(channels, 32, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), rngs=rngs)
        self.dense1 = nnx.Linear((height // 2) * (width // 2) * 64, 128, rngs=rngs)
        self.dense2 = nnx.Linear(128, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        return self.dense2(self.act(self.dense1(x)))


class MLP(nnx.Module):
    """A fully connected network with hidden widths ``topology`` and the activation after each."""

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 topology: Sequence[int] = (128, 64)):
        self.act = act
        sizes = [int(nnx_prod(input_shape)), *topology]
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.out = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for layer in self.hidden:
            x = self.act(layer(x))
        return self.out(x)


def nnx_prod(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


MODELS: dict[str, type[nnx.Module]] = {"cnn-small": CNNSmall, "mlp": MLP}


def build(name: str, act: Act, input_shape: Sequence[int], num_classes: int, seed: int, **options) -> nnx.Module:
    """Builds model ``name`` with activation ``act`` and parameters initialised from ``seed``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (available: {', '.join(MODELS)})")
    return MODELS[name](act, input_shape, num_classes, rngs=nnx.Rngs(seed), **options)
