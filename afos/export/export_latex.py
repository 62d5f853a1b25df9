"""Export to LaTeX: ``sympy.latex`` with sigma(x) for the sigmoid and softplus as an operator name."""

from __future__ import annotations

from collections.abc import Sequence

import sympy
from sympy.printing.latex import LatexPrinter

from afos.export.items import Item, header, names


class _Printer(LatexPrinter):
    def _named(self, name: str, expr: sympy.Expr, exp: str | None) -> str:
        out = rf"{name}\left({self._print(expr.args[0])}\right)"
        return out if exp is None else f"{out}^{{{exp}}}"

    def _print_sigmoid(self, expr: sympy.Expr, exp: str | None = None) -> str:
        return self._named(r"\sigma", expr, exp)

    def _print_softplus(self, expr: sympy.Expr, exp: str | None = None) -> str:
        return self._named(r"\operatorname{softplus}", expr, exp)


def latex(expr: sympy.Expr) -> str:
    """The LaTeX of one expression (sigmoid as \\sigma, softplus as \\operatorname{softplus})."""
    return _Printer().doprint(expr)


def formula(item: Item) -> str:
    """The LaTeX of what an item computes: its expression, times its gain (4 significant digits) if it has one."""
    body = latex(item.expr)
    return body if item.gain is None else rf"{item.gain:.4g} \cdot \left({body}\right)"


def render(items: Sequence[Item]) -> str:
    """LaTeX with a ``%`` comment header; several items become ``name(x) = ...`` lines."""
    if len(items) == 1:
        body = [formula(items[0])]
    else:
        fns = [fn.replace("_", r"\_") for fn, _ in names(items)]
        body = [rf"\mathrm{{{fn}}}(x) = {formula(it)}" for it, fn in zip(items, fns, strict=True)]
    return header(items, "LaTeX", prefix="% ", note="") + "\n".join(body) + "\n"
