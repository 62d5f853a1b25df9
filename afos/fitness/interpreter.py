"""The interpreter of the batched backend: an activation as data, run inside one compiled training step.

A candidate's intermediate form (``afos.expr.ir``) is encoded as a fixed-shape *program* (opcodes and
constants in NumPy arrays) that an interpreter traced once into the training step runs, so one compiled
step trains every candidate. An instruction computes one operation of the intermediate form with its
JAX definition (``afos.expr.compile.JAX_OPS``), in the order ``afos.expr.compile.to_jax`` applies them;
the only additions are ``scale``/``shift`` (a constant times / plus a term, one instruction instead of
two: IEEE ``*`` and ``+`` commute exactly) and one opcode per small integer power (``lax.integer_pow``
needs a static exponent). What can differ from the compiled function is rounding where XLA rewrites an
operation on a compile-time constant that is data here (``x*2`` into ``x+x``, ...).

A program is a postfix list of at most ``Shape.length`` instructions over a buffer of slots: slot ``i``
holds instruction ``i``'s value, one more slot holds ``x``. The forward pass is a ``fori_loop`` over the
program's own instructions, each a ``lax.switch`` on its opcode (on an unbatched opcode XLA runs one
branch); the backward pass (a ``custom_vjp``) walks the instructions in reverse, each computing the VJP
of its own branch, writing cotangents over the values it no longer needs. An instruction so costs one
branch forward and one backward, whatever the length of the shape; under ``vmap`` (the population mode
for accelerators) switches become selects over every branch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from afos.expr import ir
from afos.expr.compile import JAX_OPS

MAX_INT_POWER = 8  # a**n and 1/a**n for 1 <= n <= this have their own opcode (lax.integer_pow needs a static n)


class UnsupportedError(ValueError):
    """An expression the interpreter cannot run in the compiled program shape (the exact path scores it)."""


# --- the instruction set: (a, b, c) -> value, for operands a and b (b is a for unary ones), constant c ----


def _unary(fn: Callable) -> Callable:
    return lambda a, b, c: fn(a)


def _binary(fn: Callable) -> Callable:
    return lambda a, b, c: fn(a, b)


def _power(op: str, n: int) -> Callable:
    return lambda a, b, c: JAX_OPS[op](a, n)


OPS: dict[str, Callable[[jax.Array, jax.Array, jax.Array], jax.Array]] = {
    "const": lambda a, b, c: jnp.full_like(a, c),  # compile: jnp.full_like(x, c)
    "id": lambda a, b, c: a,
    "scale": lambda a, b, c: c * a,  # mul(c, a): compile folds full_like(x, c) * a
    "shift": lambda a, b, c: c + a,  # add(c, a)
    "rpow": lambda a, b, c: JAX_OPS["rpow"](a, c),
    **{f"ipow{n}": _power("ipow", n) for n in range(2, MAX_INT_POWER + 1)},
    **{f"ipow_inv{n}": _power("ipow_inv", n) for n in range(1, MAX_INT_POWER + 1)},
    **{op: _unary(JAX_OPS[op]) for op in ir.UNARY if op not in ("ipow", "ipow_inv", "rpow")},
    **{op: _binary(JAX_OPS[op]) for op in (*ir.NARY, "pow")},
}
CODES = {name: i for i, name in enumerate(OPS)}


def _vjp_op(fn):
    def grads(a, b, c, g):
        return jax.vjp(lambda a, b: fn(a, b, c), a, b)[1](g)

    return grads


_FORWARD = tuple(OPS.values())
_BACKWARD = tuple(_vjp_op(fn) for fn in OPS.values())

# --- intermediate form -> instruction tree ---------------------------------------------------


class Instr(NamedTuple):
    """One instruction: ``op`` is ``x`` or a key of ``OPS``, with a constant and its operands."""

    op: str
    const: float = 0.0
    children: tuple[Instr, ...] = ()


def _pair(op: str, a: Instr, b: Instr) -> Instr:
    # a constant times / plus a term is one unary instruction (IEEE * and + commute exactly)
    for c, t in ((a, b), (b, a)):
        if c.op == "const" and t.op != "const" and op in ("mul", "add"):
            return Instr("scale" if op == "mul" else "shift", c.const, (t,))
    return Instr(op, 0.0, (a, b))


def _instructions(node: ir.Node) -> Instr:
    """The instruction tree computing ``node`` the way ``afos.expr.compile.to_jax`` does."""
    if node.op == "x":
        return Instr("x")
    if node.op == "const":
        return Instr("const", node.param)
    args = [_instructions(a) for a in node.args]
    if node.op in ir.NARY or node.op == "pow":
        out = args[0]
        for a in args[1:]:
            out = _pair(node.op, out, a)
        return out
    if node.op in ("ipow", "ipow_inv"):
        n = int(node.param)
        if node.op == "ipow" and n == 1:
            return Instr("id", 0.0, tuple(args))
        if not 1 <= n <= MAX_INT_POWER or (node.op == "ipow" and n < 2):
            sign = "-" if node.op == "ipow_inv" else ""
            raise UnsupportedError(f"integer power {sign}{n} beyond +-{MAX_INT_POWER}")
        return Instr(f"{node.op}{n}", 0.0, tuple(args))
    return Instr(node.op, node.param, tuple(args))


# --- instruction tree -> fixed-length program ------------------------------------------------


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


def encode(node: ir.Node, shape: Shape) -> Program:
    """The program of an expression (its intermediate form) in ``shape``.

    Raises:
        UnsupportedError: the expression needs an instruction the set does not have, or more than
            ``shape.length`` instructions.
    """
    rows: list[tuple[int, int, int, float]] = []

    def emit(instr: Instr) -> int:
        if instr.op == "x":
            return shape.x_slot  # x is read from its slot, not copied by an instruction
        slots = [emit(child) for child in instr.children] or [shape.unused_slot]
        rows.append((CODES[instr.op], slots[0], slots[-1], instr.const))  # unary: b is a (see interpret)
        return len(rows) - 1

    if emit(_instructions(node)) == shape.x_slot:
        rows.append((CODES["id"], shape.x_slot, shape.x_slot, 0.0))
    if len(rows) > shape.length:
        raise UnsupportedError(f"{len(rows)} instructions, more than the program length {shape.length}")
    program = empty_program(shape)
    for i, (code, a, b, const) in enumerate(rows):
        program.code[i], program.a[i], program.b[i], program.const[i] = code, a, b, const
    return program._replace(size=np.asarray(len(rows), np.int32))


def _slot(buffer: jax.Array, i: jax.Array) -> jax.Array:
    return lax.dynamic_index_in_dim(buffer, i, 0, keepdims=False)


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
