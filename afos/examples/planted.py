"""A planted activation: a regression task whose best activation is known, to measure whether a search finds it.

``afos search --objective planted --objective-option target="x*sin(x)"`` (registered under ``afos.objectives``;
the import path is ``afos.examples.planted:objective``). A fixed teacher network, one hidden layer of
``teacher_width`` units on ``dim`` standard normal inputs, computes its output with the planted function
``target`` at unit gain (``afos.expr.gain``); its weights and every split of the data are drawn from
``teacher_seed``, and its output is standardised on the training split. Students of the same shape but wider
(``student_width`` units, LeCun-normal weights, zero biases) take the candidate activation as their hidden
activation and regress the teacher's output: ``students`` restarts from the seed, each ``steps x
settings.epochs`` steps of Levenberg-Marquardt on the whole training split. The score is the validation mean
squared error of the restart with the lowest one (lower is better, ``direction = "min"``), and its test error
is the test score. A student with the target can represent the teacher exactly, so the target is the
best activation wherever training finds that solution and no other function fits as well: ``calibrate``
measures both for a target (its score against the anchors and random functions of a space, over seeds), and
only a target that wins there by a clear margin makes a task whose answer is known (``benchmarks/planted.py``).

Candidates differ only in their elementwise activation, so a generation trains through one compiled program
(``objective.programs``): each candidate is an interpreter program (``afos.fitness.interpreter``), data for a
training step compiled once per program shape, while ``objective(act, seed, settings)`` compiles the same
training around any activation (the exact path; a compilation per candidate). Both do the same arithmetic.
The objective options (``OPTIONS``) are checked when a run starts (``check_options``) and stored with it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# The task's settings and their defaults: a narrow teacher and a wider student, one hidden layer each, a few
# hundred samples. Chosen by calibration (docs/SEARCH.md): two hidden layers or a wide teacher make the target
# too rough to learn from this little data, and then it is not the best fit.
OPTIONS: dict[str, Any] = {
    "target": "x*sin(x)",
    "dim": 4,
    "teacher_width": 3,
    "student_width": 12,
    "students": 8,
    "train_size": 500,
    "val_size": 1000,
    "test_size": 1000,
    "steps": 60,
    "teacher_seed": 0,
}
MAX_PARAMETERS = 4096  # of a student: its normal equations are solved at every step
MAX_JACOBIAN = 2**26  # entries of a student's Jacobian (256 MiB of float32)
_DATA_ONLY = ("target", "teacher_seed")  # options that change the data, not the compiled training
# Bounds past which an option is a typo that would hang a run (the limits of afos.config.LIMITS' kind).
_BOUNDS = {"dim": 4096, "teacher_width": 4096, "student_width": 4096, "students": 256, "train_size": 10**7,
           "val_size": 10**7, "test_size": 10**7, "steps": 10**7}


def check_options(options: Mapping[str, Any]) -> None:
    """Raises ValueError naming the first option the task cannot use (afos calls it before any work)."""
    for key, bound in _BOUNDS.items():
        if not 1 <= options[key] <= bound:
            raise ValueError(f"option {key} must be between 1 and {bound}, got {options[key]}")
    parameters = (options["dim"] + 2) * options["student_width"] + 1
    if parameters > MAX_PARAMETERS or parameters * options["train_size"] > MAX_JACOBIAN:
        raise ValueError(f"a student of {parameters} parameters on {options['train_size']} samples is beyond "
                         f"Levenberg-Marquardt's reach here (at most {MAX_PARAMETERS} parameters and "
                         f"{MAX_JACOBIAN} Jacobian entries)")
    if options["teacher_seed"] < 0:
        raise ValueError(f"option teacher_seed must be at least 0, got {options['teacher_seed']}")
    teacher_activation(options["target"])


@functools.cache
def teacher_activation(text: str) -> tuple[Any, float]:
    """The target's intermediate form and its unit gain; ValueError where it cannot be a planted activation."""
    import sympy

    from afos.expr import check, ir, parse
    from afos.expr.gain import unit_gain

    expr = parse(text)  # the safe parser: an ExpressionError (a ValueError) names the problem
    if not expr.free_symbols or expr.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        raise ValueError(f"target {text!r} simplifies to {sympy.sstr(expr)}, which is not a function of x")
    node = ir.lower(expr)
    reason = check(expr, gain="unit")
    gain, _ = unit_gain(node)
    if reason is not None:
        raise ValueError(f"target {text!r} cannot be an activation: {reason}")
    return node, gain


@dataclass(frozen=True)
class Task:
    """The teacher's data: inputs and standardised outputs of the three splits (float32)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def options_of(settings: Any) -> dict[str, Any]:
    """The options a training runs with: the stored ones over ``OPTIONS`` (a run stores all of them)."""
    return OPTIONS | dict(getattr(settings, "objective_options", None) or {})


def _frozen(options: Mapping[str, Any]) -> tuple:
    return tuple(sorted(options.items()))


@functools.cache
def task(frozen: tuple) -> Task:
    """The teacher of ``options`` (as ``_frozen`` gives them) and its data, computed once per process (NumPy,
    float64: the teacher's function is computed as afos's NumPy evaluator defines it, ``afos.expr.numeric``)."""
    from afos.expr import numeric

    o = dict(frozen)
    node, gain = teacher_activation(o["target"])
    rng = np.random.default_rng(o["teacher_seed"])
    weights = rng.standard_normal((o["dim"], o["teacher_width"])) / math.sqrt(o["dim"])
    readout = rng.standard_normal(o["teacher_width"]) / math.sqrt(o["teacher_width"])
    sizes = (o["train_size"], o["val_size"], o["test_size"])
    x = rng.standard_normal((sum(sizes), o["dim"]))
    hidden, _ = numeric.values_and_derivatives(node, x @ weights, np.float64)
    y = (gain * hidden) @ readout
    y = (y - y[: sizes[0]].mean()) / max(float(y[: sizes[0]].std()), 1e-12)
    cut = np.cumsum(sizes)[:-1]
    xs, ys = np.split(x.astype(np.float32), cut), np.split(y.astype(np.float32), cut)
    return Task(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2])


def _students(act: Callable, key, data: tuple, o: dict[str, Any], steps: int):
    """Trains ``o["students"]`` students with ``act`` from ``key``: (validation MSE, test MSE) of each.

    Each is fitted by Levenberg-Marquardt (damped Gauss-Newton, the classic solver of small least-squares
    problems): the Jacobian of the student's outputs in its parameters is built from ``act`` and its slope,
    the damped normal equations are solved, and a step is kept where it lowers the training error (the damping
    then divides by 3, else multiplies by 4). Where the target can represent the teacher it reaches an error
    near float32's floor in a few dozen steps, where a first-order optimizer stops orders of magnitude above
    it: the difference between the target and its rivals is large and the seed noise small (docs/SEARCH.md).
    """
    import jax
    import jax.numpy as jnp

    x_train, y_train, x_val, y_val, x_test, y_test = data
    dim, width, n = o["dim"], o["student_width"], x_train.shape[0]
    slope = jax.grad(lambda z: jnp.sum(act(z)))  # elementwise: the derivative at every point

    def unpack(t):
        return (t[: dim * width].reshape(dim, width), t[dim * width: (dim + 1) * width],
                t[(dim + 1) * width: (dim + 2) * width], t[-1])

    def mse(t, x, y):
        w, b, v, c = unpack(t)
        return jnp.mean((act(x @ w + b) @ v + c - y) ** 2)

    def step(_, carry):
        t, damping, error = carry
        w, b, v, c = unpack(t)
        z = x_train @ w + b
        a, g = act(z), slope(z) * v
        jacobian = jnp.concatenate([(x_train[:, :, None] * g[:, None, :]).reshape(n, dim * width), g, a,
                                    jnp.ones((n, 1), a.dtype)], axis=1)
        normal = jacobian.T @ jacobian
        damped = normal + damping * (jnp.diag(jnp.diag(normal)) + 1e-6 * jnp.eye(normal.shape[0], dtype=a.dtype))
        trial = t + jnp.linalg.solve(damped, -jacobian.T @ (a @ v + c - y_train))
        new = mse(trial, x_train, y_train)
        better = jnp.isfinite(new) & (new < error)
        return (jnp.where(better, trial, t), jnp.where(better, damping / 3, jnp.minimum(damping * 4, 1e8)),
                jnp.where(better, new, error))

    def one(k):
        kw, kv = jax.random.split(k)
        t = jnp.concatenate([(jax.random.normal(kw, (dim, width)) / math.sqrt(dim)).ravel(), jnp.zeros(width),
                             jax.random.normal(kv, (width,)) / math.sqrt(width), jnp.zeros(1)])
        t, _, _ = jax.lax.fori_loop(0, steps, step, (t, jnp.asarray(1e-2, t.dtype), mse(t, x_train, y_train)))
        return mse(t, x_val, y_val), mse(t, x_test, y_test)

    return jax.vmap(one)(jax.random.split(key, o["students"]))


def _best(val: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """The restart chosen on validation (a non-finite one never); NaN where every restart diverged."""
    val = np.where(np.isfinite(val), val, np.inf)
    i = int(np.argmin(val))
    if not np.isfinite(val[i]):
        return {"val": float("nan")}
    return {"val": float(val[i]), "test": float(test[i])}


def _data(o: dict[str, Any]) -> tuple:
    t = task(_frozen(o))
    return t.x_train, t.y_train, t.x_val, t.y_val, t.x_test, t.y_test


def objective(act, seed: int, settings) -> dict[str, float]:
    """The students' best validation MSE with ``act`` from ``seed``, and its test MSE (compiled for ``act``)."""
    import jax

    o = options_of(settings)
    steps = o["steps"] * settings.epochs
    val, test = jax.jit(lambda key, data: _students(act, key, data, o, steps))(jax.random.key(seed), _data(o))
    return _best(np.asarray(val), np.asarray(test))


@functools.cache
def _program_trainer(frozen: tuple, steps: int, length: int):
    """The training of every program of one shape, compiled once (the program and the data are arguments:
    ``frozen`` holds the options that shape the training, not the target or the teacher's seed)."""
    import jax

    from afos.fitness.interpreter import Shape, interpret

    o, shape = dict(frozen), Shape(length)

    @jax.jit
    def train(program, key, data):
        return _students(lambda z: interpret(program, z, shape), key, data, o, steps)

    return train


def programs(items: Sequence[Any], seed: int, settings) -> Iterator[tuple[int, dict[str, float]]]:
    """``objective`` for each interpreter program of ``items`` (``afos.fitness.interpreter.Program``), through
    one compiled training: yields (index, scores) as each is known."""
    import jax

    o = options_of(settings)
    data, key = _data(o), jax.random.key(seed)
    for i, program in enumerate(items):
        train = _program_trainer(_frozen({k: v for k, v in o.items() if k not in _DATA_ONLY}),
                                 o["steps"] * settings.epochs, len(program.code))
        val, test = train(program, key, data)
        yield i, _best(np.asarray(val), np.asarray(test))


objective.direction = "min"  # a mean squared error: afos ranks exp(-mse)
objective.options = OPTIONS
objective.check_options = check_options
objective.programs = programs
