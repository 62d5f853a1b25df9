"""The user's own model: a factory named by an installed package or an import path (``afos.plugins``).

A factory is called as ``factory(act, input_shape, num_classes, *, rngs, **options)`` and returns a Flax nnx
Module (or a linen Module, bridged here) whose call maps a batch of inputs to logits. Dropout and batch norm
follow the zoo's convention: ``deterministic`` and ``use_running_average`` attributes are switched by the
training loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
from flax import nnx

from afos import plugins
from afos.errors import ModelError


def factory(name: str, builtin: Sequence[str] = ()) -> Callable[..., Any]:
    """A user's model factory: registered by an installed package (``afos.models``) or ``package.module:factory``."""
    found = plugins.resolve("model", name)
    if found is None:
        raise ModelError(f"unknown model {name!r} (available: {', '.join(builtin)}; "
                         f"{plugins.describe_forms('model')})")
    try:
        params = inspect.signature(found).parameters
    except (TypeError, ValueError):
        return found  # a builtin or extension: its call tells
    if "rngs" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise ModelError(f"model {name!r} must take the keyword argument rngs (an nnx.Rngs that seeds its "
                         "parameters): factory(act, input_shape, num_classes, *, rngs)")
    return found



def build(name: str, factory: Callable[..., Any], act: Callable, input_shape: Sequence[int], num_classes: int,
          seed: int, **options) -> nnx.Module:
    """``factory(act, input_shape, num_classes, rngs=nnx.Rngs(seed, dropout=seed + 1), **options)`` as an nnx Module
    (the zoo's seeding, so a user's model is seeded as afos's own are)."""
    rngs = nnx.Rngs(seed, dropout=seed + 1)
    try:
        model = factory(act, tuple(input_shape), num_classes, rngs=rngs, **options)
    except TypeError as err:
        raise ModelError(f"model {name!r} cannot be called as factory(act, input_shape, num_classes, *, rngs"
                         f"{''.join(f', {k}' for k in options)}): {err}") from None
    return as_module(name, model, input_shape, rngs)


def as_module(name: str, model: Any, input_shape: Sequence[int], rngs: nnx.Rngs) -> nnx.Module:
    """What a user's factory returned, as an nnx Module: linen modules are bridged and initialised on a batch
    of one; anything else is a ModelError."""
    if isinstance(model, nnx.Module):
        return model
    from flax import linen

    if isinstance(model, linen.Module):
        bridged = nnx.bridge.ToNNX(model, rngs=rngs)
        nnx.bridge.lazy_init(bridged, jnp.zeros((1, *input_shape), jnp.float32))
        return bridged
    raise ModelError(f"model {name!r} returned an object of type {type(model).__name__}, not a Flax nnx (or "
                     "linen) Module")
