"""The user's own model and objective, named by an installed package or an import path (``afos.plugins``).

A factory is called as ``factory(act, input_shape, num_classes, *, rngs, **options)`` and returns a Flax nnx
Module (or a linen Module, bridged here) whose call maps a batch of inputs to logits. Dropout and batch norm
follow the zoo's convention: ``deterministic`` and ``use_running_average`` attributes are switched by the
training loop.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from afos import plugins
from afos.config import describe_type
from afos.errors import AfosError, ConfigError, ModelError, ObjectiveExitError, first_line


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


Score = tuple[float, float]  # (rank in [0, 1], higher is better; the objective's own value)
MISSING: Score = (math.nan, math.nan)  # a test score the objective gave as NaN or inf: recorded as missing


class ObjectiveFailedError(Exception):
    """A user's objective that raised or returned what afos cannot rank: a failed line, never a crash."""


def objective(name: str) -> Callable[..., Any]:
    """A user's objective: registered under ``afos.objectives`` or named ``package.module:function``."""
    found = plugins.resolve("objective", name)
    if found is None:
        raise ConfigError(f"unknown objective {name!r} ({plugins.describe_forms('objective')})")
    return found


def resolve_options(name: str, function: Callable[..., Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The options an objective is called with: what it declares (its attribute ``options``, name -> default)
    with ``given`` over it, each of the declared type (text from the command line converted), then checked by
    its ``check_options(options)`` where it has one (a ``ValueError`` there names the problem).

    Raises:
        ConfigError: an option the objective does not declare, a value of the wrong type, or one it refuses.
    """
    declared = dict(getattr(function, "options", None) or {})
    for key in given:
        if key not in declared:
            known = f"its options: {', '.join(declared)}" if declared else "it takes no options"
            raise ConfigError(f"objective {name!r} has no option {key!r} ({known})")
    out = declared | {key: _typed(name, key, value, declared[key]) for key, value in given.items()}
    check = getattr(function, "check_options", None)
    if check is not None:
        try:
            check(out)
        except (ValueError, AfosError) as err:
            raise ConfigError(f"objective {name!r}: {first_line(err)}") from None
    return out


def _typed(name: str, key: str, value: Any, default: Any) -> Any:
    """``value`` of option ``key`` as the type of its ``default`` (text from the command line converted)."""
    kind, out = type(default), value
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        try:
            out = {"true": True, "false": False}[text] if kind is bool else kind(text)
        except (KeyError, ValueError):
            out = None
    elif kind is float and isinstance(value, int) and not isinstance(value, bool):
        out = float(value)
    if not isinstance(out, kind) or isinstance(out, bool) != (kind is bool):
        raise ConfigError(f"objective {name!r}: option {key} must be {describe_type(default)}, got {value!r}")
    return out


def with_direction(settings: Any, function: Callable[..., Any]) -> Any:
    """``settings`` with the objective's direction decided: as given, else the function's ``direction``
    attribute, else "max"."""
    if settings.direction:
        return settings
    declared = getattr(function, "direction", "max")
    if declared not in ("max", "min"):
        raise ConfigError(f"objective {settings.objective!r} declares direction {declared!r}, not max or min")
    return dataclasses.replace(settings, direction=declared)


def call_objective(function: Callable[..., Any], act: Callable, seed: int, settings: Any) -> tuple[Score, Score | None]:
    """``function(act, seed, settings)`` -> its (validation, test) scores, each ranked (higher is better, in
    [0, 1]) and raw; the test score is None where the objective gives none, and ``MISSING`` where it gives a
    NaN or infinite one (the validation score stands: a benchmark records the test score as missing).

    An objective returns its validation score, or ``(val, test)``, or ``{"val": ..., "test": ...}``. With
    ``settings.direction = "max"`` a score lies in [0, 1] (an accuracy, an F1, an AUC) and ranks as it is;
    with ``"min"`` it is a loss >= 0 and ranks as ``exp(-loss)`` (for a cross-entropy in nats: the geometric
    mean likelihood, 1 / perplexity). Bounded ranks keep every rule of the search (failures below every
    score, a longer rung above every shorter one) true for any objective.

    A score is a real number: an int or a float, a NumPy real scalar or a 0-d array of a real type (a JAX
    scalar); a bool or a string is not one (``True`` is no score of 1.0, ``"0.7"`` no 0.7).

    Raises:
        ObjectiveFailedError: the objective raised, or returned something else, or a value out of range.
        ObjectiveExitError: the objective called ``sys.exit``: afos stops, with the status it asked for.
    """
    try:
        out = function(act, seed, settings)
    except SystemExit as exit_:
        raise ObjectiveExitError.of(settings.objective, exit_) from None
    except Exception as err:  # noqa: BLE001 - the user's code: any failure becomes a failed line
        raise ObjectiveFailedError(f"objective raised {type(err).__name__}: {first_line(err)}") from None
    return _scores(out, settings)


def takes_programs(function: Callable[..., Any] | None) -> bool:
    """Whether an objective also trains interpreter programs (``function.programs``: the batched backend)."""
    return callable(getattr(function, "programs", None))


def call_programs(function: Callable[..., Any], programs: Sequence[Any], seed: int,
                  settings: Any) -> Iterator[tuple[int, tuple[Score, Score | None] | ObjectiveFailedError]]:
    """``function.programs(programs, seed, settings)``, an objective's training of many activations at once
    (each an ``afos.fitness.interpreter.Program``): yields, per program, its (validation, test) scores as
    ``call_objective`` ranks them, or the ``ObjectiveFailedError`` that fails its line (the objective raised,
    returned what afos cannot rank, or gave no score for it)."""
    seen: set[int] = set()
    try:
        for i, out in function.programs(programs, seed, settings):
            if i in seen or not 0 <= i < len(programs):
                continue
            seen.add(i)
            try:
                yield i, _scores(out, settings)
            except ObjectiveFailedError as err:
                yield i, err
    except SystemExit as exit_:
        raise ObjectiveExitError.of(settings.objective, exit_) from None
    except Exception as err:  # noqa: BLE001 - the user's code: the programs it did not score fail with it
        failure = ObjectiveFailedError(f"objective raised {type(err).__name__}: {first_line(err)}")
    else:
        failure = ObjectiveFailedError("objective gave no score for this program")
    for i in range(len(programs)):
        if i not in seen:
            yield i, failure


def _scores(out: Any, settings: Any) -> tuple[Score, Score | None]:
    """An objective's return value as (validation, test) scores (see ``call_objective``)."""
    if isinstance(out, dict):
        if "val" not in out:
            raise ObjectiveFailedError(f"objective returned a dict without 'val' (keys: {sorted(out)})")
        val, test = out["val"], out.get("test")
    elif isinstance(out, tuple | list) and len(out) == 2:
        val, test = out
    else:
        val, test = out, None
    name, direction = settings.objective, settings.direction
    return _score(val, name, direction, "validation"), (None if test is None else _test_score(test, name, direction))


def _test_score(value: Any, name: str, direction: str) -> Score:
    """A test score as ``_score`` ranks it, ``MISSING`` where it is NaN or infinite: a network that diverged on
    the test split still has its validation score."""
    raw = _real(value)
    if raw is not None and not math.isfinite(raw):
        return MISSING
    return _score(value, name, direction, "test")


def _real(value: Any) -> float | None:
    """``value`` as a float if it is a real number (see ``call_objective``), else None."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    dtype = getattr(value, "dtype", None)
    if getattr(value, "shape", None) == () and dtype is not None and (
            jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        return float(value)
    return None


def _shown(value: Any) -> str:
    """A short one-line ``repr`` of what an objective returned."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 40 else text[:37] + "..."


def _score(value: Any, name: str, direction: str, what: str) -> tuple[float, float]:
    raw = _real(value)
    if raw is None:
        raise ObjectiveFailedError(f"objective {name!r} returned {_shown(value)} (a {type(value).__name__}) as "
                                   f"its {what} score, not a real number")
    if not math.isfinite(raw):
        raise ObjectiveFailedError(f"objective returned a non-finite {what} score ({raw})")
    if direction == "max":
        if not 0.0 <= raw <= 1.0:
            raise ObjectiveFailedError(f"objective returned the {what} score {raw:g}, outside [0, 1] (a score "
                                       "to maximise is ranked with accuracies; a loss wants direction = 'min')")
        return raw, raw
    if raw < 0:
        raise ObjectiveFailedError(f"objective returned the {what} loss {raw:g} < 0 (direction 'min' ranks a "
                                   "loss as exp(-loss))")
    return math.exp(-raw), raw
