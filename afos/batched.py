"""Population-batched training: one compiled step for every candidate, the activation passed as data.

A candidate's sympy expression is encoded as a fixed-shape *program* (opcodes and constants in
NumPy arrays) and run by an interpreter traced once into the training step. The step is compiled
once per model, input shape, batch size and program shape; every later candidate, in this
generation and the next, reuses it, so the search stops paying a compilation per candidate.

A program is a postfix list of at most ``Shape.length`` instructions (``exp``, ``mul``, ``scale``
by a constant, ``pow3``, ...; ``OPS``) over a buffer of slots: slot ``i`` holds instruction ``i``'s
value, one more slot holds ``x``. The forward pass is a ``fori_loop`` over the program's own
instructions, each a ``lax.switch`` on its opcode (on an unbatched opcode XLA runs one branch); the
backward pass (a ``custom_vjp``) walks the instructions in reverse, each computing the VJP of its
own branch, writing cotangents over the values it no longer needs. An instruction so costs one
branch forward and one backward, whatever the length of the shape; under ``vmap`` (the population
mode for accelerators) switches become selects over every branch.

The interpreter computes what ``afos.compile.to_jax`` computes, with the same safe functions
(``primitives.SYMPY_FUNCTIONS`` and the ``safe_*`` helpers) applied in the same order (n-ary sums,
products, maxima and minima are folded left to right, as ``to_jax`` folds them). What can differ is
rounding where XLA rewrites an operation on a compile-time constant that is data here (``x*2`` into
``x+x``, ...); fitness then agrees with the sequential evaluator up to the chaos of training on
float32 (see ``tests/test_batched.py``).

Two ways to train the encoded population, both mirroring ``afos.train.fit`` (same model built from
``settings.seed``, same batches from ``train.epoch_batches``, same optax Adam, same
``train.evaluate_split`` on validation):

- ``loop`` (CPUs): one candidate after the other through the one compiled step.
- ``vmap`` (accelerators): the population's states stacked and vmapped, an epoch as one ``lax.scan``
  over batches resident on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import sympy
from flax import nnx
from jax import lax
from sympy.core.operations import LatticeOp

from afos import models, train
from afos.data import Dataset, Split
from afos.primitives import SYMPY_FUNCTIONS, X, safe_denominator, safe_exp, safe_log, safe_sqrt
from afos.train import FitnessSettings, TrainResult

MAX_INT_POWER = 8  # x**n and x**-n for 1 <= n <= this have their own opcode (lax.integer_pow needs a static n)


class UnsupportedError(ValueError):
    """An expression the interpreter cannot run in the compiled program shape (the exact path scores it)."""


# --- the instruction set ---------------------------------------------------------------------
# Each entry mirrors the branch of afos.compile._build that produces the same sympy node.

UnaryOp = Callable[[jax.Array, jax.Array], jax.Array]  # (operand, constant of the instruction)
BinaryOp = Callable[[jax.Array, jax.Array], jax.Array]


def _head_op(fn: Callable[..., jax.Array]) -> UnaryOp:
    return lambda a, c: fn(a)


def _int_power(n: int) -> UnaryOp:
    return lambda a, c: a**n  # lax.integer_pow, as in compile._pow


def _inverse_int_power(n: int) -> UnaryOp:
    return lambda a, c: 1.0 / safe_denominator(a**n)


UNARY: dict[str, UnaryOp] = {
    "id": lambda a, c: a,
    "scale": lambda a, c: c * a,  # Mul(c, a): compile folds full_like(x, c) * a
    "shift": lambda a, c: c + a,  # Add(c, a)
    "sqrt": lambda a, c: safe_sqrt(a),  # a**(1/2)
    "rsqrt": lambda a, c: 1.0 / safe_sqrt(a),  # a**(-1/2)
    "pow_const": lambda a, c: jnp.power(jnp.maximum(a, 1e-12), c),  # a**c, c a non-integer number
    **{f"pow{n}": _int_power(n) for n in range(2, MAX_INT_POWER + 1)},
    **{f"pow-{n}": _inverse_int_power(n) for n in range(1, MAX_INT_POWER + 1)},
    **{head.__name__: _head_op(fn) for head, fn in SYMPY_FUNCTIONS.items() if not issubclass(head, LatticeOp)},
}
BINARY: dict[str, BinaryOp] = {
    "left": lambda a, b: a,  # continues a unary chain one level down
    "add": jnp.add,
    "mul": jnp.multiply,
    "pow": lambda a, b: safe_exp(b * safe_log(a)),  # a**b, b not a number
    **{head.__name__: fn for head, fn in SYMPY_FUNCTIONS.items() if issubclass(head, LatticeOp)},
}
UNARY_CODES = {name: i for i, name in enumerate(UNARY)}
BINARY_CODES = {name: i for i, name in enumerate(BINARY)}
_UNARY_BRANCHES = tuple(UNARY.values())
_BINARY_BRANCHES = tuple(BINARY.values())

# --- sympy -> instruction tree ---------------------------------------------------------------


class Node(NamedTuple):
    """One instruction: ``op`` is ``x``, ``const``, a UNARY name (one child) or a BINARY name (two)."""

    op: str
    const: float = 0.0
    children: tuple[Node, ...] = ()


def _const(expr: sympy.Expr) -> Node:
    if not expr.is_real or not expr.is_finite:
        raise UnsupportedError(f"constant {expr} is not a finite real number")
    return Node("const", float(expr))


def _binary(op: str, a: Node, b: Node) -> Node:
    # a constant times / plus a term is one unary instruction (IEEE * and + commute exactly)
    for c, t in ((a, b), (b, a)):
        if c.op == "const" and t.op != "const" and op in ("mul", "add"):
            return Node("scale" if op == "mul" else "shift", c.const, (t,))
    return Node(op, 0.0, (a, b))


def _fold(op: str, args: Sequence[sympy.Expr]) -> Node:
    out = to_nodes(args[0])
    for a in args[1:]:
        out = _binary(op, out, to_nodes(a))
    return out


def _power(base: sympy.Expr, exponent: sympy.Expr) -> Node:
    if base == sympy.E:
        return Node("exp", 0.0, (to_nodes(exponent),))
    if exponent.is_Integer and int(exponent) != 0 and abs(int(exponent)) <= MAX_INT_POWER:
        n = int(exponent)
        return Node(f"pow{n}" if n != 1 else "id", 0.0, (to_nodes(base),))
    if exponent == sympy.Rational(1, 2):
        return Node("sqrt", 0.0, (to_nodes(base),))
    if exponent == sympy.Rational(-1, 2):
        return Node("rsqrt", 0.0, (to_nodes(base),))
    if exponent.is_Integer:
        raise UnsupportedError(f"integer power {exponent} beyond +-{MAX_INT_POWER}")
    if exponent.is_Number:
        return Node("pow_const", float(exponent), (to_nodes(base),))
    return _binary("pow", to_nodes(base), to_nodes(exponent))


def to_nodes(expr: sympy.Expr) -> Node:
    """The instruction tree computing ``expr`` the way ``afos.compile.to_jax`` does.

    Raises:
        UnsupportedError: a head, constant or power the instruction set does not have.
    """
    if expr == X:
        return Node("x")
    if expr.is_Number or expr in (sympy.pi, sympy.E):
        return _const(expr)
    if expr.is_Add or expr.is_Mul:
        return _fold("add" if expr.is_Add else "mul", expr.args)
    if expr.is_Pow:
        return _power(*expr.args)
    name = getattr(expr.func, "__name__", "")
    if expr.func in SYMPY_FUNCTIONS and issubclass(expr.func, LatticeOp):
        return _fold(name, expr.args)
    if expr.func in SYMPY_FUNCTIONS and len(expr.args) == 1:
        return Node(name, 0.0, (to_nodes(expr.args[0]),))
    raise UnsupportedError(f"no instruction for {name or type(expr).__name__} with {len(expr.args)} arguments")


# --- instruction tree -> fixed-length program ------------------------------------------------

OPS: dict[str, Callable[[jax.Array, jax.Array, jax.Array], jax.Array]] = {
    "const": lambda a, b, c: jnp.full_like(a, c),  # compile: jnp.full_like(x, c)
    **{name: (lambda fn: lambda a, b, c: fn(a, c))(fn) for name, fn in UNARY.items()},
    **{name: (lambda fn: lambda a, b, c: fn(a, b))(fn) for name, fn in BINARY.items()},
}
CODES = {name: i for i, name in enumerate(OPS)}


def _vjp_op(fn):
    def grads(a, b, c, g):
        return jax.vjp(lambda a, b: fn(a, b, c), a, b)[1](g)

    return grads


_FORWARD = tuple(OPS.values())
_BACKWARD = tuple(_vjp_op(fn) for fn in OPS.values())


@dataclass(frozen=True)
class Shape:
    """The fixed shape of a program: at most ``length`` instructions."""

    length: int = 12  # covers every one of 208 random candidates of the default space (PERFORMANCE.md)

    @property
    def x_slot(self) -> int:  # where the activation's input sits in the value buffer
        return self.length

    @property
    def unused_slot(self) -> int:  # what instructions without that operand read
        return self.length + 1


class Program(NamedTuple):
    """Instructions in postfix order (value ``i`` is slot ``i``; the last one is the result).

    Arrays (NumPy or JAX); stacked along a leading axis for a population.
    """

    code: np.ndarray  # [length] int32: index into OPS
    a: np.ndarray  # [length] int32: slot of the first operand
    b: np.ndarray  # [length] int32: slot of the second operand
    const: np.ndarray  # [length] float32: the instruction's constant
    size: np.ndarray  # [] int32: instructions used


def empty_program(shape: Shape) -> Program:
    n = shape.length
    return Program(np.zeros(n, np.int32), np.full(n, shape.x_slot, np.int32), np.full(n, shape.x_slot, np.int32),
                   np.zeros(n, np.float32), np.asarray(1, np.int32))  # one instruction: id(x)


def encode(expr: sympy.Expr, shape: Shape) -> Program:
    """The program of ``expr`` in ``shape``.

    Raises:
        UnsupportedError: the expression needs an instruction the set does not have, or more than
            ``shape.length`` instructions.
    """
    rows: list[tuple[int, int, int, float]] = []

    def emit(node: Node) -> int:
        if node.op == "x":
            return shape.x_slot  # x is read from its slot, not copied by an instruction
        slots = [emit(child) for child in node.children] or [shape.unused_slot]
        rows.append((CODES[node.op], slots[0], slots[-1], node.const))  # unary: b is a (see interpret)
        return len(rows) - 1

    if emit(to_nodes(expr)) == shape.x_slot:
        rows.append((CODES["id"], shape.x_slot, shape.x_slot, 0.0))
    if len(rows) > shape.length:
        raise UnsupportedError(f"{len(rows)} instructions, more than the program length {shape.length}")
    program = empty_program(shape)
    for i, (code, a, b, const) in enumerate(rows):
        program.code[i], program.a[i], program.b[i], program.const[i] = code, a, b, const
    return program._replace(size=np.asarray(len(rows), np.int32))


def _slot(buffer: jax.Array, i: jax.Array) -> jax.Array:
    return lax.dynamic_index_in_dim(buffer, i, 0, keepdims=False)


def _add_to_slot(buffer: jax.Array, i: jax.Array, value: jax.Array) -> jax.Array:
    # read and write back one slot (a dynamic update slice, done in place inside a loop; a scatter-add is not)
    return lax.dynamic_update_index_in_dim(buffer, _slot(buffer, i) + value, i, 0)


def _run(program: Program, x: jax.Array, shape: Shape) -> jax.Array:
    """Every slot's value: a [length + 2, *x.shape] buffer (x in its slot, then the instructions)."""
    values = jnp.zeros((shape.length + 2, *x.shape), x.dtype).at[shape.x_slot].set(x)

    def body(i, values):
        a, b = _slot(values, program.a[i]), _slot(values, program.b[i])
        out = lax.switch(program.code[i], _FORWARD, a, b, program.const[i].astype(x.dtype))
        return lax.dynamic_update_index_in_dim(values, out, i, 0)

    return lax.fori_loop(0, program.size, body, values)


def interpret(program: Program, x: jax.Array, shape: Shape) -> jax.Array:
    """Runs ``program`` elementwise on ``x``, differentiable in ``x`` (not in the program).

    Forward and backward are loops over the program's own instructions: an instruction costs one
    switch branch forward and one backward, whatever the program length of the shape.
    """
    return _interpreter(shape)(program, x)


def _interpreter(shape: Shape):
    if shape not in _INTERPRETERS:
        _INTERPRETERS[shape] = _make_interpreter(shape)
    return _INTERPRETERS[shape]


_INTERPRETERS: dict[Shape, Callable[[Program, jax.Array], jax.Array]] = {}


def _make_interpreter(shape: Shape) -> Callable[[Program, jax.Array], jax.Array]:
    @jax.custom_vjp
    def run(program: Program, x: jax.Array) -> jax.Array:
        return _slot(_run(program, x, shape), program.size - 1)

    def forward(program, x):
        values = _run(program, x, shape)
        return _slot(values, program.size - 1), (program, values)

    def backward(residuals, g):
        program, values = residuals
        x = _slot(values, shape.x_slot)
        # Cotangents overwrite values in the same buffer: in a tree every value has one reader, so once
        # instruction i (read in reverse order) has used its operands' values, their slots are free.
        # A unary instruction has b == a: db is written first, then da over it.
        buffer = lax.dynamic_update_index_in_dim(values, g, program.size - 1, 0)

        def body(j, carry):
            buffer, dx = carry
            i = program.size - 1 - j
            a_slot, b_slot = program.a[i], program.b[i]
            da, db = lax.switch(program.code[i], _BACKWARD, _slot(buffer, a_slot), _slot(buffer, b_slot),
                                program.const[i].astype(g.dtype), _slot(buffer, i))
            dx = dx + jnp.where(a_slot == shape.x_slot, da, 0.0) + jnp.where(b_slot == shape.x_slot, db, 0.0)
            buffer = lax.dynamic_update_index_in_dim(buffer, db, b_slot, 0)
            buffer = lax.dynamic_update_index_in_dim(buffer, da, a_slot, 0)
            # x (read by many instructions) keeps its slot
            return lax.dynamic_update_index_in_dim(buffer, x, shape.x_slot, 0), dx

        _, dx = lax.fori_loop(0, program.size, body, (buffer, jnp.zeros_like(g)))
        return jax.tree.map(lambda _: None, program), dx

    run.defvjp(forward, backward)
    return run


# --- the activation as a module whose program is part of the model's state -----------------


class Code(nnx.Variable):
    """Opcodes and constants of an interpreted activation: state of the model, never trained."""


class InterpretedAct(nnx.Module):
    """An activation that runs the program held in its state (swap the program, keep the compiled step)."""

    def __init__(self, shape: Shape):
        self.shape = shape
        self.program = Code(Program(*map(jnp.asarray, empty_program(shape))))

    def load(self, program: Program) -> None:
        value = Program(*map(jnp.asarray, program))
        if hasattr(self.program, "set_value"):  # flax >= 0.12 (``.value`` is deprecated there)
            self.program.set_value(value)
        else:
            self.program.value = value

    def __call__(self, x: jax.Array) -> jax.Array:
        program = self.program.get_value() if hasattr(self.program, "get_value") else self.program.value
        return interpret(program, x, self.shape)


# --- training the encoded population ------------------------------------------------------------


class Trainer:
    """The model, optimizer and compiled steps shared by every program of one fitness setting.

    Attributes:
        traces: how many times the training step was traced (compiled), for tests and benchmarks.
    """

    def __init__(self, dataset: Dataset, settings: FitnessSettings, shape: Shape):
        options = {"topology": tuple(settings.topology)} if settings.topology else {}
        self.act = InterpretedAct(shape)
        # selu=False: SELU candidates take the exact path (their model differs: LeCun init, AlphaDropout)
        self.model = models.build(settings.model, self.act, dataset.input_shape, dataset.num_classes,
                                  settings.seed, selu=False, **options)
        self.graphdef, _ = nnx.split(self.model)
        self.tx = optax.adam(settings.learning_rate)
        self.opt_state = self.tx.init(nnx.state(self.model, nnx.Param))
        self.dataset, self.settings, self.shape = dataset, settings, shape
        self.traces = 0
        train_step, self.eval_step = train.make_steps(self.graphdef, self.tx)

        @jax.jit
        def counted_step(state, opt_state, x, y):
            self.traces += 1  # runs only while tracing
            return train_step(state, opt_state, x, y)

        self.train_step = counted_step
        rng = np.random.default_rng(settings.seed)  # the batch order of fit, drawn once for everyone
        self.epochs = [train.epoch_batches(len(dataset.train), settings.batch_size, rng)
                       for _ in range(settings.epochs)]

    def initial_state(self, program: Program) -> nnx.State:
        self.act.load(program)
        return jax.tree.map(lambda leaf: leaf, nnx.split(self.model)[1])  # fresh Variables: the next load leaves it

    def fit(self, program: Program) -> TrainResult:
        """``train.fit`` of the program's activation, through the shared compiled step."""
        state, opt_state, split = self.initial_state(program), self.opt_state, self.dataset.train
        train_loss = float("nan")
        for batches in self.epochs:
            losses = []
            for idx in batches:
                state, opt_state, loss = self.train_step(state, opt_state, split.x[idx], split.y[idx])
                losses.append(loss)
            train_loss = float(jnp.mean(jnp.stack(losses))) if losses else float("nan")
            if not np.isfinite(train_loss):
                break
        val_loss, val_acc = train.evaluate_split(self.eval_step, state, self.dataset.val)
        return TrainResult(val_acc, val_loss, train_loss, not (np.isfinite(train_loss) and np.isfinite(val_loss)))

    def fit_loop(self, programs: Sequence[Program]) -> Iterator[tuple[int, TrainResult]]:
        for i, program in enumerate(programs):
            yield i, self.fit(program)

    def fit_vmap(self, programs: Sequence[Program], chunk: int = 32) -> Iterator[tuple[int, TrainResult]]:
        """The population ``chunk`` programs at a time: stacked states, vmapped steps, epochs as scans."""
        split = self.dataset.train
        x, y = jnp.asarray(split.x), jnp.asarray(split.y)
        epochs = [jnp.asarray(np.stack(b)) if b else None for b in self.epochs]
        chunk = min(chunk, 1 << (len(programs) - 1).bit_length())  # a power of two: few compiled shapes
        for start in range(0, len(programs), chunk):
            group = list(programs[start : start + chunk])
            real = len(group)
            group += [empty_program(self.shape)] * (chunk - real)  # same shapes for every chunk: no recompiles
            states = jax.tree.map(lambda *a: jnp.stack(a), *[self.initial_state(p) for p in group])
            opts = jax.tree.map(lambda a: jnp.broadcast_to(a, (len(group), *jnp.shape(a))), self.opt_state)
            finite = np.ones(len(group), bool)
            train_loss = np.full(len(group), np.nan)
            for idx in epochs:
                if idx is None:
                    finite[:] = False
                    break
                states, opts, losses = self.vmapped_epoch(states, opts, x, y, idx)
                train_loss = np.asarray(jnp.mean(losses, axis=0), np.float64)
                finite &= np.isfinite(train_loss)
            val_loss, val_acc = self.vmapped_score(states, self.dataset.val)
            for j in range(real):
                ok = finite[j] and np.isfinite(val_loss[j])
                yield start + j, TrainResult(float(val_acc[j]), float(val_loss[j]), float(train_loss[j]), not ok)

    @property
    def vmapped_epoch(self):
        if not hasattr(self, "_vmapped_epoch"):
            step = jax.vmap(self.train_step, in_axes=(0, 0, None, None))

            @jax.jit
            def epoch(states, opts, x, y, idx):
                def body(carry, batch):
                    states, opts, loss = step(*carry, x[batch], y[batch])
                    return (states, opts), loss

                (states, opts), losses = lax.scan(body, (states, opts), idx)
                return states, opts, losses

            self._vmapped_epoch = epoch
        return self._vmapped_epoch

    def vmapped_score(self, states: nnx.State, split: Split, batch_size: int = 1024) -> tuple[np.ndarray, ...]:
        """Per-candidate (mean loss, accuracy), in the chunks of ``train.evaluate_split``."""
        if not hasattr(self, "_vmapped_eval"):
            self._vmapped_eval = jax.jit(jax.vmap(self.eval_step, in_axes=(0, None, None)))
        total, correct = 0.0, 0
        for i in range(0, len(split), batch_size):
            loss, c = self._vmapped_eval(states, split.x[i : i + batch_size], split.y[i : i + batch_size])
            total, correct = total + np.asarray(loss, np.float64), correct + np.asarray(c, np.int64)
        return total / len(split), correct / len(split)


MODES: dict[str, Callable[..., Iterator[tuple[int, TrainResult]]]] = {
    "loop": Trainer.fit_loop,
    "vmap": Trainer.fit_vmap,
}


def default_mode() -> str:
    """``vmap`` on accelerators (a switch there runs on the host); ``loop`` on CPUs (vmap was slower there)."""
    return "loop" if jax.default_backend() == "cpu" else "vmap"

