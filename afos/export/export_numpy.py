"""Export to NumPy: ``activation(x)`` on arrays, in the dtype of ``x`` (erf/erfc come from SciPy)."""

from __future__ import annotations

from collections.abc import Sequence

from afos.export.codegen import IPOW_SOURCE, Dialect, assemble, expression_code, function_source
from afos.export.items import Item, docstring, names

DIALECT = Dialect(
    functions={
        "exp": "_safe_exp({0})",
        "log": "_safe_log({0})",
        "sin": "np.sin({0})",
        "cos": "np.cos({0})",
        "tan": "np.tan({0})",
        "tanh": "np.tanh({0})",
        "sinh": "_safe_sinh({0})",
        "cosh": "_safe_cosh({0})",
        "asinh": "np.arcsinh({0})",
        "atan": "np.arctan({0})",
        "erf": "scipy.special.erf({0})",
        "erfc": "scipy.special.erfc({0})",
        "abs": "np.abs({0})",
        "sign": "np.sign({0})",
        "max": "np.maximum({0}, {1})",
        "min": "np.minimum({0}, {1})",
        "sigmoid": "_sigmoid({0})",
        "softplus": "np.logaddexp({0}, 0.0)",
    },
    constant="np.full_like(x, {0})",
    helpers={
        "_safe_exp": "def _safe_exp(a):\n    return np.exp(np.minimum(a, EXP_CLIP))\n",
        "_safe_sinh": "def _safe_sinh(a):\n    return np.sinh(np.clip(a, -EXP_CLIP, EXP_CLIP))\n",
        "_safe_cosh": "def _safe_cosh(a):\n    return np.cosh(np.clip(a, -EXP_CLIP, EXP_CLIP))\n",
        "_safe_sqrt": "def _safe_sqrt(a):\n    return np.sqrt(np.maximum(a, TINY))\n",
        "_safe_log": "def _safe_log(a):\n    return np.log(np.maximum(a, TINY))\n",
        "_safe_denominator": (
            "def _safe_denominator(b):\n"
            "    eps = np.full_like(b, DIV_EPS)\n"
            "    return np.where(np.abs(b) < DIV_EPS, np.where(b < 0, -eps, eps), b)\n"
        ),
        "_ipow": IPOW_SOURCE,
        "_rpow": "def _rpow(a, e):\n    return np.power(np.maximum(a, TINY), e)\n",
        "_sigmoid": (
            "def _sigmoid(a):\n"
            "    z = np.exp(-np.abs(a))  # never overflows\n"
            "    return np.where(a >= 0, 1.0 / (1.0 + z), z / (1.0 + z))\n"
        ),
    },
    imports=(("np.", "import numpy as np"), ("scipy.special", "import scipy.special")),
)

# Powers may overflow to inf exactly where afos's do; that is a value, not a warning.
_BODY_PREFIX = '    x = np.asarray(x)\n    with np.errstate(over="ignore", under="ignore"):\n    '


def render(items: Sequence[Item]) -> str:
    blocks = []
    for it, (fn, _) in zip(items, names(items), strict=True):
        code = expression_code(it.expr, DIALECT, it.gain)
        blocks.append(function_source(fn, code, f"{it.formula}, elementwise on an array (values only).", _BODY_PREFIX))
    return assemble(docstring(items, "NumPy"), blocks, DIALECT)
