"""Flax (nnx) networks by name. Every model takes the activation as a field, ``act``.

Every model is built as ``Model(act, input_shape, num_classes, *, rngs, selu=False, **options)``
and declares two class attributes:

- ``min_input``: the smallest image side its layers accept. Smaller images (8x8 digits into an
  AlexNet) are resized up inside the model with ``jax.image.resize``, so any dataset fits any model.
- ``kernel_init``: the initialiser of its conv and dense kernels (the one of the paper or example it
  reproduces: Glorot-uniform for the Keras examples, He-normal for ResNet, Flax's LeCun-normal otherwise).

SELU: ``build`` sets ``selu=True`` when the activation computes SELU (checked numerically on a
probe grid, so a searched expression equal to SELU counts too). A SELU model uses LeCun-normal
kernels and ``AlphaDropout`` instead of ``Dropout`` (Klambauer et al., 2017, "Self-Normalizing
Neural Networks"), which keep activations at zero mean and unit variance.
"""

from __future__ import annotations

import inspect
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
        receptive = nnx_prod(shape[:-2])
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        size = nnx_prod(shape)
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


class Model(nnx.Module):
    """Base of the zoo: the input-size contract and the layer factory."""

    min_input: ClassVar[int] = 1
    kernel_init: ClassVar[Initializer] = LECUN_NORMAL

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
        """``x`` resized (bilinear) to at least ``min_input`` per side; shapes are static, so no cost otherwise."""
        h, w = self.input_hw(x.shape[1:3])
        if (h, w) == tuple(x.shape[1:3]):
            return x
        return jax.image.resize(x, (x.shape[0], h, w, x.shape[3]), "bilinear")


def _pool(x: jax.Array, window: int = 2, stride: int = 2, padding: str = "VALID") -> jax.Array:
    return nnx.max_pool(x, (window, window), strides=(stride, stride), padding=padding)


def _flatten(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


class CNNSmall(Model):
    """The default search network: conv3x3-32, conv3x3-64, maxpool, dense-128, dense-10."""

    min_input = 2

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 selu: bool = False):
        (height, width), channels = self.input_hw(input_shape), input_shape[2]
        make = self.layers(rngs, selu)
        self.act = act
        self.conv1 = make.conv(channels, 32)
        self.conv2 = make.conv(32, 64)
        self.dense1 = make.dense((height // 2) * (width // 2) * 64, 128)
        self.dense2 = make.dense(128, num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.act(self.conv1(self.fit_input(x)))
        x = _pool(self.act(self.conv2(x)))
        return self.dense2(self.act(self.dense1(_flatten(x))))


class MLP(Model):
    """A fully connected network with hidden widths ``topology`` and the activation after each."""

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 selu: bool = False, topology: Sequence[int] = (128, 64)):
        if not topology or any(int(w) < 1 for w in topology):
            raise ValueError(f"mlp topology must be one or more positive widths, got {list(topology)}")
        make = self.layers(rngs, selu)
        self.act = act
        sizes = [nnx_prod(input_shape), *(int(w) for w in topology)]
        self.hidden = nnx.List([make.dense(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        self.out = make.dense(sizes[-1], num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = _flatten(x)
        for layer in self.hidden:
            x = self.act(layer(x))
        return self.out(x)


class MnistCNN(Model):
    """The Keras MNIST CNN: conv32-conv64 (valid), maxpool, dropout 0.25, dense-128, dropout 0.5."""

    min_input = 6
    kernel_init = GLOROT_UNIFORM

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 selu: bool = False):
        (h, w), channels = self.input_hw(input_shape), input_shape[2]
        make = self.layers(rngs, selu)
        self.act = act
        self.conv1 = make.conv(channels, 32, padding="VALID")
        self.conv2 = make.conv(32, 64, padding="VALID")
        self.drop1 = make.dropout(0.25)
        self.dense1 = make.dense(((h - 4) // 2) * ((w - 4) // 2) * 64, 128)
        self.drop2 = make.dropout(0.5)
        self.out = make.dense(128, num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.act(self.conv1(self.fit_input(x)))
        x = self.drop1(_pool(self.act(self.conv2(x))))
        x = self.drop2(self.act(self.dense1(_flatten(x))))
        return self.out(x)


class KerasCifar10CNN(Model):
    """The Keras ``cifar10_cnn`` example: (conv32 same, conv32 valid, pool, drop 0.25) then the same with
    64 filters, dense-512, dropout 0.5."""

    min_input = 10
    kernel_init = GLOROT_UNIFORM

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 selu: bool = False):
        (h, w), channels = self.input_hw(input_shape), input_shape[2]
        make = self.layers(rngs, selu)
        self.act = act
        self.convs = nnx.List([make.conv(channels, 32), make.conv(32, 32, padding="VALID"),
                               make.conv(32, 64), make.conv(64, 64, padding="VALID")])
        self.drops = nnx.List([make.dropout(0.25), make.dropout(0.25)])
        self.dense = make.dense(((h - 2) // 2 - 2) // 2 * (((w - 2) // 2 - 2) // 2) * 64, 512)
        self.drop = make.dropout(0.5)
        self.out = make.dense(512, num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.fit_input(x)
        for block in range(2):
            x = self.act(self.convs[2 * block + 1](self.act(self.convs[2 * block](x))))
            x = self.drops[block](_pool(x))
        return self.out(self.drop(self.act(self.dense(_flatten(x)))))


class AfosVGG(Model):
    """The AFOS fitness network: blocks of conv3x3 then a 1x1 conv ("dense" per pixel), each followed by
    the activation, then maxpool and dropout 0.2; widths 32/64/128; a dense classifier."""

    min_input = 8
    widths = (32, 64, 128)

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 selu: bool = False):
        (h, w), channels = self.input_hw(input_shape), input_shape[2]
        make = self.layers(rngs, selu)
        self.act = act
        ins = (channels, *self.widths[:-1])
        self.convs = nnx.List([make.conv(a, b) for a, b in zip(ins, self.widths)])
        self.dense = nnx.List([make.conv(b, b, kernel=1) for b in self.widths])
        self.drops = nnx.List([make.dropout(0.2) for _ in self.widths])
        n = len(self.widths)
        self.out = make.dense((h >> n) * (w >> n) * self.widths[-1], num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.fit_input(x)
        for conv, dense, drop in zip(self.convs, self.dense, self.drops):
            x = drop(_pool(self.act(dense(self.act(conv(x))))))
        return self.out(_flatten(x))


class BasicBlock(nnx.Module):
    """ResNet basic block: conv-BN-act-conv-BN plus the shortcut (a 1x1 conv-BN when the shape changes)."""

    def __init__(self, act: Act, cin: int, cout: int, stride: int, make: Layers):
        self.act = act
        self.conv1 = make.conv(cin, cout, strides=stride, use_bias=False)
        self.bn1 = make.norm(cout)
        self.conv2 = make.conv(cout, cout, use_bias=False)
        self.bn2 = make.norm(cout)
        projection = stride != 1 or cin != cout
        self.proj = make.conv(cin, cout, kernel=1, strides=stride, use_bias=False) if projection else None
        self.proj_bn = make.norm(cout) if projection else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        shortcut = x if self.proj is None else self.proj_bn(self.proj(x))
        return self.act(y + shortcut)


class ResNet20(Model):
    """CIFAR ResNet-20 (He et al., 2016, sec. 4.2): conv16, 3 stages x 3 basic blocks of 16/32/64
    filters (stride 2 between stages), global average pooling, dense. Projection shortcuts."""

    kernel_init = HE_NORMAL
    stages = (16, 32, 64)
    blocks_per_stage = 3

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 selu: bool = False):
        make = self.layers(rngs, selu)
        self.act = act
        self.stem = make.conv(input_shape[2], self.stages[0], use_bias=False)
        self.stem_bn = make.norm(self.stages[0])
        blocks, cin = [], self.stages[0]
        for i, cout in enumerate(self.stages):
            for j in range(self.blocks_per_stage):
                blocks.append(BasicBlock(act, cin, cout, 2 if i > 0 and j == 0 else 1, make))
                cin = cout
        self.blocks = nnx.List(blocks)
        self.out = make.dense(cin, num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.act(self.stem_bn(self.stem(self.fit_input(x))))
        for block in self.blocks:
            x = block(x)
        return self.out(x.mean(axis=(1, 2)))


class VGGSmall(Model):
    """A small VGG: three blocks of two conv3x3 (32/64/128) and a maxpool, dense-256, dropout 0.5."""

    min_input = 8
    widths = (32, 64, 128)

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 selu: bool = False):
        (h, w), cin = self.input_hw(input_shape), input_shape[2]
        make = self.layers(rngs, selu)
        self.act = act
        convs = []
        for width in self.widths:
            convs += [make.conv(cin, width), make.conv(width, width)]
            cin = width
        self.convs = nnx.List(convs)
        n = len(self.widths)
        self.dense = make.dense((h >> n) * (w >> n) * cin, 256)
        self.drop = make.dropout(0.5)
        self.out = make.dense(256, num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.fit_input(x)
        for i in range(0, len(self.convs), 2):
            x = _pool(self.act(self.convs[i + 1](self.act(self.convs[i](x)))))
        return self.out(self.drop(self.act(self.dense(_flatten(x)))))


class MobileNetSmall(Model):
    """A small MobileNet (Howard et al., 2017): conv3x3-32, then depthwise-separable blocks (depthwise
    3x3 conv via ``feature_group_count``, BN, act, pointwise 1x1 conv, BN, act), global pooling, dense."""

    blocks = ((64, 1), (128, 2), (128, 1), (256, 2))  # (pointwise width, depthwise stride)

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 selu: bool = False):
        make = self.layers(rngs, selu)
        self.act = act
        cin = 32
        self.stem = make.conv(input_shape[2], cin, use_bias=False)
        self.stem_bn = make.norm(cin)
        depthwise, pointwise, norms = [], [], []
        for cout, stride in self.blocks:
            depthwise.append(make.conv(cin, cin, strides=stride, feature_group_count=cin, use_bias=False))
            pointwise.append(make.conv(cin, cout, kernel=1, use_bias=False))
            norms += [make.norm(cin), make.norm(cout)]
            cin = cout
        self.depthwise, self.pointwise, self.norms = nnx.List(depthwise), nnx.List(pointwise), nnx.List(norms)
        self.out = make.dense(cin, num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.act(self.stem_bn(self.stem(self.fit_input(x))))
        for i, (dw, pw) in enumerate(zip(self.depthwise, self.pointwise)):
            x = self.act(self.norms[2 * i](dw(x)))
            x = self.act(self.norms[2 * i + 1](pw(x)))
        return self.out(x.mean(axis=(1, 2)))


class AlexNetSmall(Model):
    """A small AlexNet: conv5x5-32, pool, conv5x5-64, pool, conv3x3 96/96/64, pool (overlapping 3x3
    stride-2 max pooling as in AlexNet), dense 256-128 with dropout 0.5."""

    min_input = 16  # three overlapping 3x3/2 poolings need 16 pixels to leave one
    widths = (32, 64, 96, 96, 64)
    kernels = (5, 5, 3, 3, 3)
    pool_after = (0, 1, 4)

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 selu: bool = False):
        (h, w), cin = self.input_hw(input_shape), input_shape[2]
        make = self.layers(rngs, selu)
        self.act = act
        self.convs = nnx.List([make.conv(a, b, kernel=k) for a, b, k in
                               zip((cin, *self.widths[:-1]), self.widths, self.kernels)])
        for _ in self.pool_after:
            h, w = (h - 3) // 2 + 1, (w - 3) // 2 + 1
        self.dense1 = make.dense(h * w * self.widths[-1], 256)
        self.dense2 = make.dense(256, 128)
        self.drops = nnx.List([make.dropout(0.5), make.dropout(0.5)])
        self.out = make.dense(128, num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.fit_input(x)
        for i, conv in enumerate(self.convs):
            x = self.act(conv(x))
            if i in self.pool_after:
                x = _pool(x, window=3, stride=2)
        x = self.drops[0](self.act(self.dense1(_flatten(x))))
        x = self.drops[1](self.act(self.dense2(x)))
        return self.out(x)


class EncoderLayer(nnx.Module):
    """Pre-norm transformer encoder layer; the activation sits in the MLP."""

    def __init__(self, act: Act, dim: int, heads: int, mlp_ratio: int, make: Layers):
        self.act = act
        self.norm1 = nnx.LayerNorm(dim, rngs=make.rngs)
        self.attn = nnx.MultiHeadAttention(heads, dim, kernel_init=make.kernel_init, decode=False, rngs=make.rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=make.rngs)
        self.mlp1 = make.dense(dim, dim * mlp_ratio)
        self.mlp2 = make.dense(dim * mlp_ratio, dim)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.norm1(x), decode=False)
        return x + self.mlp2(self.act(self.mlp1(self.norm2(x))))


class CCTSmall(Model):
    """A compact convolutional transformer (Hassani et al., 2021, "Escaping the Big Data Paradigm with
    Compact Transformers"): a conv3x3 + maxpool tokenizer, learnable positional embedding, two encoder
    layers (dim 64, 2 heads, MLP ratio 2), sequence pooling (attention-weighted mean of tokens), dense."""

    dim, heads, layers_count, mlp_ratio = 64, 2, 2, 2

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 selu: bool = False):
        (h, w), channels = self.input_hw(input_shape), input_shape[2]
        make = self.layers(rngs, selu)
        self.act = act
        self.tokenizer = make.conv(channels, self.dim, use_bias=False)
        tokens = math.ceil(h / 2) * math.ceil(w / 2)
        self.pos = nnx.Param(0.02 * jax.random.truncated_normal(rngs.params(), -2.0, 2.0, (1, tokens, self.dim)))
        self.encoder = nnx.List([EncoderLayer(act, self.dim, self.heads, self.mlp_ratio, make)
                                 for _ in range(self.layers_count)])
        self.norm = nnx.LayerNorm(self.dim, rngs=rngs)
        self.attention_pool = make.dense(self.dim, 1)
        self.out = make.dense(self.dim, num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = _pool(self.act(self.tokenizer(self.fit_input(x))), window=3, stride=2, padding="SAME")
        x = x.reshape(x.shape[0], -1, self.dim) + self.pos[...]
        for layer in self.encoder:
            x = layer(x)
        x = self.norm(x)
        weights = jax.nn.softmax(self.attention_pool(x), axis=1)  # (batch, tokens, 1)
        return self.out(jnp.sum(weights * x, axis=1))


def nnx_prod(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


MODELS: dict[str, type[Model]] = {
    "cnn-small": CNNSmall,
    "mlp": MLP,
    "mnist-cnn": MnistCNN,
    "keras-cifar10-cnn": KerasCifar10CNN,
    "afos-vgg": AfosVGG,
    "resnet20": ResNet20,
    "vgg-small": VGGSmall,
    "mobilenet-small": MobileNetSmall,
    "alexnet-small": AlexNetSmall,
    "cct-small": CCTSmall,
}


def options_of(name: str) -> tuple[str, ...]:
    """The keyword options model ``name`` accepts besides the activation, shape and classes."""
    params = inspect.signature(MODELS[name].__init__).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "rngs")


def build(name: str, act: Act, input_shape: Sequence[int], num_classes: int, seed: int, **options) -> nnx.Module:
    """Builds model ``name`` with activation ``act`` and parameters initialised from ``seed``.

    Args:
        options: model options (``topology`` for ``mlp``; ``selu`` for every model, which defaults to
            whether ``act`` computes SELU).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (available: {', '.join(MODELS)})")
    unknown = sorted(set(options) - set(options_of(name)))
    if unknown:
        raise ValueError(f"model {name!r} has no option {unknown[0]!r} (options: {', '.join(options_of(name))})")
    if options.get("selu") is None:
        options["selu"] = is_selu(act)
    return MODELS[name](act, input_shape, num_classes, rngs=nnx.Rngs(seed, dropout=seed + 1), **options)
