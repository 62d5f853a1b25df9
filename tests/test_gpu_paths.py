"""The GPU-path prototypes of benchmarks/gpu_paths agree with the exact activation, values and gradients.

Pallas runs in interpret mode here (no GPU), so CI checks the kernels' arithmetic; their speed is the
GPU run's to measure (docs/PERFORMANCE.md, GPU (pending)). A short program shape keeps the compilation of
the unrolled kernels (every instruction a switch over the whole instruction set) to seconds.
"""

import random
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from afos.expr import ir
from afos.expr.compile import to_jax
from afos.fitness.interpreter import Shape, UnsupportedError, encode
from afos.ga import genome
from afos.ga import space as space_lib

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from gpu_paths import pallas_act  # noqa: E402

SHAPE = Shape(length=4)
X = jnp.linspace(-5.0, 5.0, 1500, dtype=jnp.float32)  # more than one kernel block, not a multiple of it


@pytest.fixture(scope="module")
def programs():
    """Ten random trees of the default space that fit in ``SHAPE`` (no constants), with their packed programs.

    Drawn with the space's own generator, without the screen a search adds (seconds instead of a minute).
    """
    space = space_lib.load("default")
    pset, state, out = genome.make_pset(space), random.getstate(), []
    random.seed(7)  # DEAP draws from the global generator
    try:
        while len(out) < 10:
            try:
                node = ir.lower(genome.to_sympy(genome.generate_tree(space, pset)))
                if node.op != "const":
                    out.append((node, pallas_act.pack(encode(node, SHAPE), SHAPE)))
            except (UnsupportedError, ir.LoweringError):
                continue
    finally:
        random.setstate(state)
    return out


def _exact(nodes):
    values, grads = [], []
    for node in nodes:
        fn = to_jax(node)
        y, vjp = jax.vjp(fn, X)
        values.append(y)
        grads.append(vjp(jnp.ones_like(y))[0])
    return np.stack(values), np.stack(grads)


def _close(a, b, rtol):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-5 * max(1.0, float(np.nanmax(np.abs(b)))), equal_nan=True)


@pytest.mark.parametrize("runtime,batched", [("pallas", True), ("unrolled", False)])
def test_runtime_matches_exact_values_and_gradients(programs, runtime, batched):
    act = pallas_act.RUNTIMES[runtime](SHAPE)

    def value_and_grad(packed):
        y, vjp = jax.vjp(lambda x: act(packed, x), X)
        return y, vjp(jnp.ones_like(y))[0]

    packed = jnp.stack([jnp.asarray(p) for _, p in programs])
    # pallas under vmap: the population's programs as Pallas's batching rule runs them (a grid axis);
    # unrolled one program at a time (its vmapped form compiles for minutes on a CPU)
    run = jax.vmap(value_and_grad) if batched else lambda ps: jax.lax.map(value_and_grad, ps)
    values, grads = jax.jit(run)(packed)
    exact_values, exact_grads = _exact([node for node, _ in programs])
    _close(np.asarray(values), exact_values, 1e-5)
    _close(np.asarray(grads), exact_grads, 1e-4)


def test_packed_act_drives_the_batched_trainer_model(programs):
    (node, _), shape = programs[1], SHAPE
    act = pallas_act.PackedAct(shape, "unrolled")  # the module the benchmark's trainers build their model around
    act.load(encode(node, shape))
    np.testing.assert_allclose(np.asarray(act(X[:64])), np.asarray(to_jax(node)(X[:64])), rtol=1e-5, atol=1e-6)
