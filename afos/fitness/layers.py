"""The building blocks of afos's networks: initialisers, SELU's dropout, the layer factory, the model base.

Every model of the zoo (``afos.fitness.zoo``) is built as ``Model(act, input_shape, num_classes, *, rngs,
selu=False, **options)`` and declares three class attributes:

- ``min_input``: the smallest image side its layers accept. Smaller images (8x8 digits into an
  AlexNet) are resized up inside the model with ``jax.image.resize``, so any image dataset fits any model.
- ``kernel_init``: the initialiser of its conv and dense kernels (the one of the paper or example it
  reproduces: Glorot-uniform for the Keras examples, He-normal for ResNet, Flax's LeCun-normal otherwise).
- ``images``: whether its layers need images, ``(h, w)`` or ``(h, w, c)`` per example (a grey image without
  its channel axis is given one). The mlp takes any input, flat features ``(n, features)`` included, and
  flattens it; an image model is refused other inputs before any work (``zoo.check_input``).

SELU: a model is built with ``selu=True`` when the activation computes SELU (checked numerically on a
probe grid, so a searched expression equal to SELU counts too). A SELU model uses LeCun-normal
kernels and ``AlphaDropout`` instead of ``Dropout`` (Klambauer et al., 2017, "Self-Normalizing
Neural Networks"), which keep activations at zero mean and unit variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Act = Callable[[jax.Array], jax.Array]
Initializer = Callable[..., jax.Array]


_CHUNK = 1 << 16  # random numbers per compiled draw


@jax.jit
def _draw(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A chunk of standard normals truncated to [-2, 2] and a chunk of uniforms in [-1, 1]."""
    normal_key, uniform_key = jax.random.split(key)
    return (jax.random.truncated_normal(normal_key, -2.0, 2.0, (_CHUNK,)),
            jax.random.uniform(uniform_key, (_CHUNK,), minval=-1.0, maxval=1.0))


def variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
    """``jax.nn.initializers.variance_scaling`` (same fans, same distributions), compiled once for all shapes.

    JAX compiles a random draw per shape (about half a second each on a CPU), which made building a
    model take seconds; here fixed-size chunks are drawn and cut to shape.
    """

    traced = jax.nn.initializers.variance_scaling(scale, mode, distribution)  # inside jit / eval_shape

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        if isinstance(key, jax.core.Tracer):
            return traced(key, shape, dtype)
        shape = tuple(int(d) for d in shape)
        receptive = prod(shape[:-2])
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        size = prod(shape)
        which = 0 if distribution == "truncated_normal" else 1
        chunks = [np.asarray(_draw(jax.random.fold_in(key, i))[which]) for i in range(-(-size // _CHUNK))]
        values = np.concatenate(chunks)[:size].reshape(shape)
        if which == 0:  # 0.8796...: the standard deviation of a standard normal truncated to [-2, 2]
            values = values * (np.sqrt(scale / fan) / 0.87962566103423978)
        else:
            values = values * np.sqrt(3.0 * scale / fan)
        return jnp.asarray(values, dtype)

    return init


LECUN_NORMAL = variance_scaling(1.0, "fan_in", "truncated_normal")
GLOROT_UNIFORM = variance_scaling(1.0, "fan_avg", "uniform")
HE_NORMAL = variance_scaling(2.0, "fan_in", "truncated_normal")
_SELU_PROBE = np.linspace(-4.0, 4.0, 33, dtype=np.float32)


def is_selu(act: Act) -> bool:
    """Whether ``act`` computes SELU (compared with ``jax.nn.selu`` on a grid of points)."""
    try:
        values = np.asarray(act(jnp.asarray(_SELU_PROBE)), dtype=np.float64)
    except (TypeError, ValueError, ArithmeticError):
        return False
    return values.shape == _SELU_PROBE.shape and bool(np.allclose(values, jax.nn.selu(_SELU_PROBE), atol=1e-5))


class AlphaDropout(nnx.Module):
    """Dropout that keeps SELU's zero mean and unit variance (Klambauer et al., 2017, eq. 10-11).

    Dropped units are set to SELU's negative saturation value ``-lambda*alpha`` instead of 0, then
    an affine map ``a*x + b`` restores the mean and variance. ``deterministic`` switches it off
    (``Module.eval()`` sets it, like ``nnx.Dropout``'s).
    """

    SATURATION = -1.7580993408473766  # -lambda * alpha of SELU

    def __init__(self, rate: float, *, deterministic: bool = False, rngs: nnx.Rngs):
        self.rate = rate
        self.deterministic = deterministic
        self.rngs = rngs["dropout"].fork()

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        a = (keep * (1.0 + self.rate * self.SATURATION**2)) ** -0.5
        b = -a * self.SATURATION * self.rate
        mask = jax.random.bernoulli(self.rngs(), keep, x.shape)
        return a * jnp.where(mask, x, self.SATURATION) + b


class Layers:
    """Builds one model's layers with the kernel initialiser and dropout its activation calls for."""

    def __init__(self, rngs: nnx.Rngs, kernel_init: Initializer, selu: bool):
        self.rngs = rngs
        self.kernel_init = LECUN_NORMAL if selu else kernel_init
        self.selu = selu

    def conv(self, cin: int, cout: int, kernel: int = 3, **kwargs) -> nnx.Conv:
        return nnx.Conv(cin, cout, (kernel, kernel), kernel_init=self.kernel_init, rngs=self.rngs, **kwargs)

    def dense(self, din: int, dout: int) -> nnx.Linear:
        return nnx.Linear(din, dout, kernel_init=self.kernel_init, rngs=self.rngs)

    def dropout(self, rate: float) -> nnx.Module:
        return AlphaDropout(rate, rngs=self.rngs) if self.selu else nnx.Dropout(rate, rngs=self.rngs)

    def norm(self, features: int) -> nnx.BatchNorm:
        # momentum 0.9 (not Flax's 0.99): fitness training is a few dozen steps, running stats must keep up
        return nnx.BatchNorm(features, momentum=0.9, rngs=self.rngs)


def is_image(input_shape: Sequence[int]) -> bool:
    """Whether one example of ``input_shape`` is an image: ``(h, w)`` or ``(h, w, c)``."""
    return len(input_shape) in (2, 3)


class Model(nnx.Module):
    """Base of the zoo: the input contract and the layer factory."""

    min_input: ClassVar[int] = 1
    kernel_init: ClassVar[Initializer] = LECUN_NORMAL
    images: ClassVar[bool] = True

    @classmethod
    def takes(cls, input_shape: Sequence[int]) -> bool:
        """Whether the model's layers take examples of ``input_shape``."""
        return is_image(input_shape) or not cls.images

    @classmethod
    def input_size(cls, input_shape: Sequence[int]) -> int:
        """The values per example and channel its first layer sees: an image's pixels (``input_hw``), or the
        features of any other input."""
        if not is_image(input_shape):
            return prod(input_shape)
        height, width = cls.input_hw(input_shape)
        return height * width

    @staticmethod
    def channels(input_shape: Sequence[int]) -> int:
        """An image's channels: one for ``(h, w)``."""
        return int(input_shape[2]) if len(input_shape) == 3 else 1

    @classmethod
    def input_hw(cls, input_shape: Sequence[int]) -> tuple[int, int]:
        """The (height, width) the model's layers see: the input's, grown to ``min_input`` if smaller."""
        h, w = int(input_shape[0]), int(input_shape[1])
        scale = cls.min_input / min(h, w)
        return (h, w) if scale <= 1 else (math.ceil(h * scale), math.ceil(w * scale))

    @classmethod
    def layers(cls, rngs: nnx.Rngs, selu: bool) -> Layers:
        return Layers(rngs, cls.kernel_init, selu)

    def fit_input(self, x: jax.Array) -> jax.Array:
        """``x`` resized (bilinear) to at least ``min_input`` per side, a channel axis given to ``(n, h, w)``;
        shapes are static, so no cost otherwise."""
        if x.ndim == 3:
            x = x[..., None]
        h, w = self.input_hw(x.shape[1:3])
        if (h, w) == tuple(x.shape[1:3]):
            return x
        return jax.image.resize(x, (x.shape[0], h, w, x.shape[3]), "bilinear")


def prod(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out
