"""Walks a sympy expression and writes it as Python code for one array framework.

Every array target (jax, flax, numpy, torch, tensorflow) shares this walker and
differs only in its :class:`Dialect`: how the framework spells each sympy head
and the source of a few safe helper functions. The walker reproduces
``afos.compile`` branch by branch (left folds of sums, products, max and min;
the same five cases of powers; constants as arrays shaped like ``x``), so an
exported function computes what afos measured.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import sympy

from afos.primitives import DIV_EPS, EXP_CLIP, TINY, X


class ExportError(ValueError):
    """An expression, run or format that afos cannot export."""


# The helpers the walker itself calls (powers); every array dialect defines them.
WALKER_HELPERS = ("_safe_exp", "_safe_log", "_safe_sqrt", "_safe_denominator", "_ipow", "_rpow")

# Module constants of every generated array file: the values afos.primitives uses.
CONSTANTS_SOURCE = (
    f"EXP_CLIP = {EXP_CLIP!r}  # exp(70) ~ 2.5e30: finite in float32 even when multiplied by |x| <= 1e4\n"
    f"DIV_EPS = {DIV_EPS!r}  # denominators closer to zero than this are pushed away from it\n"
    f"TINY = {TINY!r}  # floor of sqrt/log arguments, so that their gradients stay finite at 0\n"
)

# Exponentiation by squaring, in the order of XLA's lax.integer_pow (the one afos uses).
IPOW_SOURCE = '''def _ipow(a, n):
    """a**n for an integer n >= 1, by squaring (the multiplications of jax.lax.integer_pow)."""
    acc = None
    while n > 0:
        if n & 1:
            acc = a if acc is None else acc * a
        n >>= 1
        if n > 0:
            a = a * a
    return acc
'''


@dataclass(frozen=True)
class Dialect:
    """How one Python array framework spells afos's safe operations.

    Attributes:
        functions: sympy head -> call template; ``{0}`` is the argument (``{1}`` the second
            one for Max/Min, which are folded left over their arguments like afos does).
        constant: template of an array filled with constant ``{0}``, shaped like ``x``.
        helpers: helper name -> its ``def`` source; only the ones the code calls are emitted.
        imports: (marker, import line): the line is emitted when the code contains the marker.
    """

    functions: Mapping[type, str]
    constant: str
    helpers: Mapping[str, str]
    imports: tuple[tuple[str, str], ...]


def _is_constant(expr: sympy.Expr) -> bool:
    return bool(expr.is_Number) or expr in (sympy.pi, sympy.E)


class _Writer:
    def __init__(self, dialect: Dialect):
        self.d = dialect

    def constant(self, expr: sympy.Expr, inline: bool) -> str:
        if not expr.is_real or not expr.is_finite:
            raise ExportError(f"constant {expr} is not a finite real number")
        c = repr(float(expr))
        # Inline literals only as operands of + and * next to an array; elsewhere an array like afos's full_like.
        return c if inline else self.d.constant.format(c)

    def code(self, expr: sympy.Expr, inline: bool = False) -> str:
        if expr == X:
            return "x"
        if _is_constant(expr):
            return self.constant(expr, inline)
        if expr.is_Add or expr.is_Mul:
            inline_parts = bool(expr.free_symbols)
            op = " + " if expr.is_Add else " * "
            return "(" + op.join(self.code(a, inline_parts) for a in expr.args) + ")"
        if expr.is_Pow:
            return self.power(*expr.args)
        template = self.d.functions.get(expr.func)
        if template is None:
            raise ExportError(f"no implementation for {expr.func.__name__}")
        args = [self.code(a) for a in expr.args]
        if "{1}" not in template:
            if len(args) != 1:
                raise ExportError(f"{expr.func.__name__} with {len(args)} arguments")
            return template.format(args[0])
        out = args[0]
        for a in args[1:]:
            out = template.format(out, a)
        return out

    def power(self, base: sympy.Expr, exponent: sympy.Expr) -> str:
        # The branches of afos.compile._pow, in its order.
        if base == sympy.E:
            return f"_safe_exp({self.code(exponent)})"
        b = self.code(base)
        if exponent.is_Integer:
            n = int(exponent)
            powered = b if abs(n) == 1 else f"_ipow({b}, {abs(n)})"  # _ipow(b, 1) is b itself
            return powered if n >= 0 else f"(1.0 / _safe_denominator({powered}))"
        if exponent == sympy.Rational(1, 2):
            return f"_safe_sqrt({b})"
        if exponent == sympy.Rational(-1, 2):
            return f"(1.0 / _safe_sqrt({b}))"
        if exponent.is_Number:
            return f"_rpow({b}, {float(exponent)!r})"
        return f"_safe_exp(({self.code(exponent)} * _safe_log({b})))"


def expression_code(expr: sympy.Expr, dialect: Dialect) -> str:
    """One Python expression in ``x`` computing ``expr`` with ``dialect``'s safe operations.

    Raises:
        ExportError: the expression has other symbols than x or a head the dialect lacks.
    """
    free = expr.free_symbols - {X}
    if free:
        raise ExportError(f"unknown symbols {sorted(map(str, free))}")
    return _Writer(dialect).code(expr)


def helpers_for(codes: list[str], dialect: Dialect) -> list[str]:
    """Names of the helpers that ``codes`` call, with the helpers those call, in dialect order."""
    needed: set[str] = set()
    pending = list(codes)
    while pending:
        for name in re.findall(r"\b(_[a-z_]+)\(", pending.pop()):
            if name in dialect.helpers and name not in needed:
                needed.add(name)
                pending.append(dialect.helpers[name])
    return [name for name in dialect.helpers if name in needed]


def assemble(doc: str, blocks: list[str], dialect: Dialect, extra_imports: tuple[str, ...] = ()) -> str:
    """A whole module: docstring, imports, constants, the helpers ``blocks`` need, then ``blocks``."""
    helpers = [dialect.helpers[h] for h in helpers_for(blocks, dialect)]
    body = "\n".join([*blocks, *helpers])
    imports = [line for marker, line in dialect.imports if marker in body] + list(extra_imports)
    code = "\n\n\n".join(p.strip("\n") for p in [CONSTANTS_SOURCE, *helpers, *blocks])
    return doc.strip("\n") + "\n\n" + "\n".join(imports) + "\n\n" + code + "\n"


def function_source(name: str, code: str, doc: str, body_prefix: str = "") -> str:
    """``def name(x): return code`` with a one-line docstring; ``body_prefix`` lines run first."""
    return f'def {name}(x):\n    """{doc}"""\n{body_prefix}    return {code}\n'
