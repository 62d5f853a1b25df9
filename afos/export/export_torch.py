"""Export to PyTorch: ``activation(x)`` of torch ops only (autograd works) and an ``nn.Module``."""

from __future__ import annotations

from collections.abc import Sequence

from afos.export.codegen import IPOW_SOURCE, Dialect, assemble, expression_code, function_source
from afos.export.items import Item, docstring, names

DIALECT = Dialect(
    functions={
        "exp": "_safe_exp({0})",
        "log": "_safe_log({0})",
        "sin": "torch.sin({0})",
        "cos": "torch.cos({0})",
        "tan": "torch.tan({0})",
        "tanh": "torch.tanh({0})",
        "sinh": "_safe_sinh({0})",
        "cosh": "_safe_cosh({0})",
        "asinh": "torch.asinh({0})",
        "atan": "torch.atan({0})",
        "erf": "torch.erf({0})",
        "erfc": "torch.erfc({0})",
        "abs": "_abs({0})",
        "sign": "torch.sign({0})",
        # Like jnp.maximum/minimum, torch splits the gradient evenly at ties.
        "max": "torch.maximum({0}, {1})",
        "min": "torch.minimum({0}, {1})",
        "sigmoid": "torch.sigmoid({0})",
        "softplus": "torch.nn.functional.softplus({0})",
    },
    constant="torch.full_like(x, {0})",
    # torch.clamp passes the whole gradient at its bounds; jnp.minimum/maximum (what afos measured)
    # split it at ties, and so do torch.minimum/maximum against a full tensor.
    helpers={
        "_abs": (
            "def _abs(a):\n"
            "    # |a| with gradient +1 at a = 0, as jnp.abs has (torch.abs has 0 there).\n"
            "    return torch.where(a >= 0, a, -a)\n"
        ),
        "_full": "def _full(a, c):\n    return torch.full_like(a, c)\n",
        "_clip": "def _clip(a):\n    return torch.minimum(torch.maximum(a, _full(a, -EXP_CLIP)), _full(a, EXP_CLIP))\n",
        "_safe_exp": "def _safe_exp(a):\n    return torch.exp(torch.minimum(a, _full(a, EXP_CLIP)))\n",
        "_safe_sinh": "def _safe_sinh(a):\n    return torch.sinh(_clip(a))\n",
        "_safe_cosh": "def _safe_cosh(a):\n    return torch.cosh(_clip(a))\n",
        "_safe_sqrt": "def _safe_sqrt(a):\n    return torch.sqrt(torch.maximum(a, _full(a, TINY)))\n",
        "_safe_log": "def _safe_log(a):\n    return torch.log(torch.maximum(a, _full(a, TINY)))\n",
        "_safe_denominator": (
            "def _safe_denominator(b):\n"
            "    # torch.where picks the branch, so the gradient only flows through a finite one.\n"
            "    eps = torch.full_like(b, DIV_EPS)\n"
            "    return torch.where(torch.abs(b) < DIV_EPS, torch.where(b < 0, -eps, eps), b)\n"
        ),
        "_ipow": IPOW_SOURCE,
        "_rpow": "def _rpow(a, e):\n    return torch.pow(torch.maximum(a, _full(a, TINY)), e)\n",
    },
    imports=(("torch", "import torch"),),
)

_MODULE = '''class {cls}(torch.nn.Module):
    """{text} as a torch.nn.Module without parameters."""

    def forward(self, x):
        return {fn}(x)
'''


def render(items: Sequence[Item]) -> str:
    blocks = []
    for it, (fn, cls) in zip(items, names(items), strict=True):
        code = expression_code(it.expr, DIALECT, it.gain)
        blocks.append(function_source(fn, code, f"{it.formula}, elementwise on a tensor (autograd works)."))
        blocks.append(_MODULE.format(cls=cls, fn=fn, text=it.formula))
    return assemble(docstring(items, "PyTorch"), blocks, DIALECT)
