"""Export to JAX: an elementwise ``activation(x)`` in jax.numpy, the same operations afos compiles."""

from __future__ import annotations

from collections.abc import Sequence

from afos.export.codegen import IPOW_SOURCE, Dialect, assemble, expression_code, function_source
from afos.export.items import Item, docstring, names

DIALECT = Dialect(
    functions={
        "exp": "_safe_exp({0})",
        "log": "_safe_log({0})",
        "sin": "jnp.sin({0})",
        "cos": "jnp.cos({0})",
        "tan": "jnp.tan({0})",
        "tanh": "jnp.tanh({0})",
        "sinh": "_safe_sinh({0})",
        "cosh": "_safe_cosh({0})",
        "asinh": "jnp.arcsinh({0})",
        "atan": "jnp.arctan({0})",
        "erf": "jax.scipy.special.erf({0})",
        "erfc": "jax.scipy.special.erfc({0})",
        "abs": "jnp.abs({0})",
        "sign": "jnp.sign({0})",
        "max": "jnp.maximum({0}, {1})",
        "min": "jnp.minimum({0}, {1})",
        "sigmoid": "jax.nn.sigmoid({0})",
        "softplus": "jax.nn.softplus({0})",
    },
    constant="jnp.full_like(x, {0})",
    helpers={
        "_safe_exp": "def _safe_exp(a):\n    return jnp.exp(jnp.minimum(a, EXP_CLIP))\n",
        "_safe_sinh": "def _safe_sinh(a):\n    return jnp.sinh(jnp.clip(a, -EXP_CLIP, EXP_CLIP))\n",
        "_safe_cosh": "def _safe_cosh(a):\n    return jnp.cosh(jnp.clip(a, -EXP_CLIP, EXP_CLIP))\n",
        "_safe_sqrt": "def _safe_sqrt(a):\n    return jnp.sqrt(jnp.maximum(a, TINY))\n",
        "_safe_log": "def _safe_log(a):\n    return jnp.log(jnp.maximum(a, TINY))\n",
        "_safe_denominator": (
            "def _safe_denominator(b):\n"
            "    # jnp.where picks the branch, so the gradient only flows through a finite one.\n"
            "    return jnp.where(jnp.abs(b) < DIV_EPS, jnp.where(b < 0, -DIV_EPS, DIV_EPS), b)\n"
        ),
        "_ipow": IPOW_SOURCE,
        "_rpow": "def _rpow(a, e):\n    return jnp.power(jnp.maximum(a, TINY), e)\n",
    },
    imports=(("jax.", "import jax"), ("jax.scipy", "import jax.scipy.special"), ("jnp.", "import jax.numpy as jnp")),
)


def function_sources(items: Sequence[Item]) -> list[str]:
    """The ``def activation(x)`` of each item in JAX (shared with the Flax exporter)."""
    return [function_source(fn, expression_code(it.expr, DIALECT, it.gain),
                            f"{it.formula}, elementwise (jit, grad, vmap work).")
            for it, (fn, _) in zip(items, names(items), strict=True)]


def render(items: Sequence[Item]) -> str:
    return assemble(docstring(items, "JAX"), function_sources(items), DIALECT)
