"""The batched interpreter's programs run as one fused elementwise kernel, forward and backward.

Two runtimes for the same program (``afos.fitness.interpreter.encode``: same instruction set, same
``OPS`` functions, so the same arithmetic as ``afos.expr.compile.to_jax``):

- ``pallas``: a Pallas kernel. The program is a small vector the kernel reads as scalars, so within one
  model every branch is uniform: an instruction costs its own operation, not the instruction set. Under
  ``vmap`` (the population) Pallas adds a grid axis over models; each kernel instance still reads one
  model's program. The backward pass is a second kernel (``jax.custom_vjp``) that recomputes the
  forward values in registers and walks the instructions in reverse: no slot buffer in memory, nothing
  saved between passes but ``x``. ``interpret=True`` off GPU, so the CPU tests check it.
- ``unrolled``: the same two bodies as plain ``jnp`` code, no loop and no buffer: the program's length
  is unrolled, slot reads and writes are switches on the slot index. On one model XLA runs one branch;
  under ``vmap`` every switch is a select over all branches (what ``fori_loop`` + ``lax.switch`` do too),
  but the activation is one straight-line expression XLA can fuse into its neighbours, with no
  ``[length + 2, *x.shape]`` buffer written to memory per instruction.

A program travels packed in one float32 vector (``pack``): opcodes, operand slots, constants, size.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax
from jax.experimental import pallas as pl

from afos.fitness.interpreter import _BACKWARD, _FORWARD, Program, Shape, empty_program

BLOCK = 1024  # elements per kernel instance (a power of two, as Triton asks)


def packed_size(shape: Shape) -> int:
    return 1 << (4 * shape.length).bit_length()  # code, a, b, const, size; a power of two for Triton


def pack(program: Program, shape: Shape) -> np.ndarray:
    """``program`` as one float32 vector: code, a, b, const (``length`` each), then size (small ints are exact)."""
    n = shape.length
    out = np.zeros(packed_size(shape), np.float32)
    for k, field in enumerate((program.code, program.a, program.b, program.const)):
        out[k * n : (k + 1) * n] = np.asarray(field, np.float32)
    out[4 * n] = float(np.asarray(program.size))
    return out


# --- the two bodies: ``read(k)`` is the k-th scalar of the packed program --------------------------


def _pick(values: list, index, uniform: bool) -> jax.Array:
    if uniform:  # one branch runs: the index is the same for the whole kernel instance
        return lax.switch(index, [lambda *v, s=s: v[s] for s in range(len(values))], *values)
    return lax.select_n(jnp.clip(index, 0, len(values) - 1), *values)  # a vmapped switch is this too


def _add_at(values: list, index, d, uniform: bool) -> list:
    if uniform:
        branches = [lambda d, *v, s=s: (*v[:s], v[s] + d, *v[s + 1 :]) for s in range(len(values))]
        return list(lax.switch(index, branches, d, *values))
    # one-hot: a vmapped switch over tuples would select every slot from every branch
    return [v + jnp.where(index == s, d, jnp.zeros_like(d)) for s, v in enumerate(values)]


def _fields(read: Callable, shape: Shape, i: int):
    n = shape.length
    code, a, b = (read(k * n + i).astype(jnp.int32) for k in range(3))
    return code, a, b, read(3 * n + i)


def _slots(read: Callable, x: jax.Array, shape: Shape, uniform: bool) -> list:
    """Every slot's value after the program has run (slots past its size hold what padding computed)."""
    values = [x] * (shape.length + 2)  # slot length is x; the unused slot is read by constants only
    for i in range(shape.length):
        code, a, b, c = _fields(read, shape, i)
        values[i] = lax.switch(code, _FORWARD, _pick(values, a, uniform), _pick(values, b, uniform),
                               c.astype(x.dtype))
    return values


def forward_body(read: Callable, x: jax.Array, shape: Shape, uniform: bool = True) -> jax.Array:
    """The program on ``x``; ``uniform``: slot reads and writes as branches (one program per kernel
    instance), else as selects (what a branch on a batched index becomes anyway)."""
    size = read(4 * shape.length).astype(jnp.int32)
    return _pick(_slots(read, x, shape, uniform), size - 1, uniform)


def backward_body(read: Callable, x: jax.Array, g: jax.Array, shape: Shape, uniform: bool = True) -> jax.Array:
    """d(program)/dx times ``g``: the forward values recomputed, then the instructions in reverse."""
    size = read(4 * shape.length).astype(jnp.int32)
    values = _slots(read, x, shape, uniform)
    zero = jnp.zeros_like(g)
    cts = _add_at([zero] * len(values), size - 1, g, uniform)
    for i in reversed(range(shape.length)):
        code, a, b, c = _fields(read, shape, i)
        active = i < size  # padding past the size must not turn a zero cotangent into 0 * inf
        da, db = lax.switch(code, _BACKWARD, _pick(values, a, uniform), _pick(values, b, uniform),
                            c.astype(g.dtype), cts[i])
        cts = _add_at(cts, a, jnp.where(active, da, zero), uniform)
        cts = _add_at(cts, b, jnp.where(active, db, zero), uniform)
    return cts[shape.x_slot]


# --- Pallas: one kernel per pass ------------------------------------------------------------------


def _on_blocks(kernel: Callable, packed: jax.Array, arrays: tuple[jax.Array, ...], interpret: bool) -> jax.Array:
    """``kernel(program_ref, *array_refs, out_ref)`` over ``BLOCK``-sized pieces of the flattened arrays."""
    shape, dtype = arrays[0].shape, arrays[0].dtype
    n = arrays[0].size
    padded = n + (-n) % BLOCK
    flat = [jnp.pad(a.reshape(-1), (0, padded - n)) for a in arrays]
    block = pl.BlockSpec((BLOCK,), lambda i: (i,))
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((padded,), dtype),
        grid=(padded // BLOCK,),
        in_specs=[pl.BlockSpec(packed.shape, lambda i: (0,))] + [block] * len(flat),
        out_specs=block,
        interpret=interpret,
    )(packed, *flat)
    return out[:n].reshape(shape)


def make_pallas(shape: Shape, interpret: bool | None = None) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``act(packed, x)``: the packed program on ``x`` as Pallas kernels, differentiable in ``x``."""
    if interpret is None:
        interpret = jax.default_backend() != "gpu"

    def forward_kernel(p_ref, x_ref, o_ref):
        o_ref[...] = forward_body(lambda k: p_ref[k], x_ref[...], shape)

    def backward_kernel(p_ref, x_ref, g_ref, o_ref):
        o_ref[...] = backward_body(lambda k: p_ref[k], x_ref[...], g_ref[...], shape)

    @jax.custom_vjp
    def act(packed, x):
        return _on_blocks(forward_kernel, packed, (x,), interpret)

    def fwd(packed, x):
        return act(packed, x), (packed, x)

    def bwd(res, g):
        packed, x = res
        return jnp.zeros_like(packed), _on_blocks(backward_kernel, packed, (x, g), interpret)

    act.defvjp(fwd, bwd)
    return act


def make_unrolled(shape: Shape) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``act(packed, x)``: the same bodies as straight-line ``jnp`` code (no kernel, no loop, no buffer)."""

    @jax.custom_vjp
    def act(packed, x):
        return forward_body(lambda k: packed[k], x, shape, uniform=False)

    def fwd(packed, x):
        return act(packed, x), (packed, x)

    def bwd(res, g):
        packed, x = res
        return jnp.zeros_like(packed), backward_body(lambda k: packed[k], x, g, shape, uniform=False)

    act.defvjp(fwd, bwd)
    return act


RUNTIMES: dict[str, Callable[[Shape], Callable]] = {"pallas": make_pallas, "unrolled": make_unrolled}


class Packed(nnx.Variable):
    """A packed program: state of the model, never trained."""


class PackedAct(nnx.Module):
    """An activation running the packed program in its state with one of ``RUNTIMES``.

    Has ``InterpretedAct``'s ``load(program)``, so ``afos.fitness.batched.Trainer`` drives it unchanged.
    """

    def __init__(self, shape: Shape, runtime: str):
        self.shape, self.runtime = shape, runtime
        self.program = Packed(jnp.asarray(pack(empty_program(shape), shape)))

    def load(self, program: Program) -> None:
        self.program.set_value(jnp.asarray(pack(program, self.shape)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return _runtime(self.runtime, self.shape)(self.program.get_value(), x)


_CACHE: dict[tuple[str, Shape], Callable] = {}


def _runtime(runtime: str, shape: Shape) -> Callable:
    if (runtime, shape) not in _CACHE:
        _CACHE[runtime, shape] = RUNTIMES[runtime](shape)
    return _CACHE[runtime, shape]
