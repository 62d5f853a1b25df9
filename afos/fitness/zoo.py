"""Flax (nnx) networks by name. Every model takes the activation as a field, ``act``.

The models are built from ``afos.fitness.layers`` (its docstring has the contract every model keeps:
``min_input``, ``kernel_init`` and SELU). ``MODELS`` is the registry; ``build`` makes one from a seed, of the zoo
or of the user (a factory registered under the entry-point group ``afos.models`` or named
``package.module:factory``: ``afos.plugins``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from afos.errors import ModelError
from afos.fitness import own
from afos.fitness.layers import GLOROT_UNIFORM, HE_NORMAL, Act, Layers, Model, is_selu, prod


def _pool(x: jax.Array, window: int = 2, stride: int = 2, padding: str = "VALID") -> jax.Array:
    return nnx.max_pool(x, (window, window), strides=(stride, stride), padding=padding)


def _flatten(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


class CNNSmall(Model):
    """The default search network: conv3x3-32, conv3x3-64, maxpool, dense-128, dense-10."""

    min_input = 2

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 selu: bool = False):
        (height, width), channels = self.input_hw(input_shape), self.channels(input_shape)
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
    """A fully connected network with hidden widths ``topology`` and the activation after each; it takes any input
    (images or flat features) and flattens it."""

    images = False

    def __init__(self, act: Act, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 selu: bool = False, topology: Sequence[int] = (128, 64)):
        if not topology or any(int(w) < 1 for w in topology):
            raise ModelError(f"mlp topology must be one or more positive widths, got {list(topology)}")
        make = self.layers(rngs, selu)
        self.act = act
        sizes = [prod(input_shape), *(int(w) for w in topology)]
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
        (h, w), channels = self.input_hw(input_shape), self.channels(input_shape)
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
        (h, w), channels = self.input_hw(input_shape), self.channels(input_shape)
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
        (h, w), channels = self.input_hw(input_shape), self.channels(input_shape)
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
        self.stem = make.conv(self.channels(input_shape), self.stages[0], use_bias=False)
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
        (h, w), cin = self.input_hw(input_shape), self.channels(input_shape)
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
        self.stem = make.conv(self.channels(input_shape), cin, use_bias=False)
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
        (h, w), cin = self.input_hw(input_shape), self.channels(input_shape)
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
        (h, w), channels = self.input_hw(input_shape), self.channels(input_shape)
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
    factory = MODELS[name].__init__ if name in MODELS else own.factory(name, MODELS)
    params = inspect.signature(factory).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "rngs")


def check(name: str, options=()) -> None:
    """A ModelError unless ``name`` is a model (of the zoo or the user's) that takes every option in ``options``."""
    if name not in MODELS:
        own.factory(name, MODELS)
    unknown = sorted(set(options) - set(options_of(name)))
    if unknown:
        raise ModelError(f"model {name!r} has no option {unknown[0]!r} (options: {', '.join(options_of(name))})")


def check_input(name: str, input_shape: Sequence[int], dataset: str) -> None:
    """A ModelError unless model ``name`` takes examples of ``input_shape`` from ``dataset``: an image model of
    the zoo needs images (``layers.Model.images``); the mlp and a user's model take what they are given."""
    if name in MODELS and not MODELS[name].takes(input_shape):
        shape = ", ".join(["n", *(str(int(d)) for d in input_shape)]) + ("," if not input_shape else "")
        raise ModelError(f"model {name!r} needs image inputs (n, h, w[, c]); dataset {dataset!r} gives ({shape})")


def needs_images(name: str) -> bool:
    """Whether model ``name`` is an image model of the zoo (a user's model takes what it is given)."""
    return name in MODELS and MODELS[name].images


def build(name: str, act: Act, input_shape: Sequence[int], num_classes: int, seed: int, **options) -> nnx.Module:
    """Builds model ``name`` with activation ``act`` and parameters initialised from ``seed``.

    A user's model is built by ``afos.fitness.own.build``.

    Args:
        options: model options (``topology`` for ``mlp``; ``selu`` for every model of the zoo, which
            defaults to whether ``act`` computes SELU).
    """
    if name not in MODELS:
        options.pop("selu", None)
        return own.build(name, own.factory(name, MODELS), act, input_shape, num_classes, seed, **options)
    check(name, options)
    if options.get("selu") is None:
        options["selu"] = is_selu(act)
    return MODELS[name](act, input_shape, num_classes, rngs=nnx.Rngs(seed, dropout=seed + 1), **options)
