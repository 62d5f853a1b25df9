"""Walks afos's intermediate form of an expression and writes it as Python code for one array framework.

Every array target (jax, flax, numpy, torch, tensorflow) shares this walker and differs only in its
:class:`Dialect`: how the framework spells each operation of ``afos.expr.ir`` and the source of a few safe
helper functions. The walker reads the same tree the JAX compiler and the batched interpreter read, with
the meaning ``afos.expr.ir`` gives every operation (left folds of sums, products, max and min; the powers;
constants as arrays shaped like ``x``), so an exported function computes what afos measured.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import sympy

from afos.errors import ExportError
from afos.expr import ir
from afos.expr.primitives import DIV_EPS, EXP_CLIP, TINY

# The helpers the walker itself calls (powers); every array dialect defines them.
WALKER_HELPERS = ("_safe_exp", "_safe_log", "_safe_sqrt", "_safe_denominator", "_ipow", "_rpow")

# Module constants of every generated array file: the values afos.expr.primitives defines.
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
        functions: operation of ``afos.expr.ir`` -> call template; ``{0}`` is the argument (``{1}`` the
            second one for max/min, which are folded left over their arguments like afos does).
        constant: template of an array filled with constant ``{0}``, shaped like ``x``.
        helpers: helper name -> its ``def`` source; only the ones the code calls are emitted.
        imports: (marker, import line): the line is emitted when the code contains the marker.
    """

    functions: Mapping[str, str]
    constant: str
    helpers: Mapping[str, str]
    imports: tuple[tuple[str, str], ...]


def _has_x(node: ir.Node) -> bool:
    return any(n.op == "x" for n in node.walk())


class _Writer:
    def __init__(self, dialect: Dialect):
        self.d = dialect

    def code(self, node: ir.Node, inline: bool = False) -> str:
        if node.op == "x":
            return "x"
        if node.op == "const":
            # Inline literals only as operands of + and * next to an array; elsewhere an array like afos's full_like.
            c = repr(node.param)
            return c if inline else self.d.constant.format(c)
        if node.op in ("add", "mul"):
            inline_parts = _has_x(node)
            op = " + " if node.op == "add" else " * "
            return "(" + op.join(self.code(a, inline_parts) for a in node.args) + ")"
        if node.op in _POWERS:
            return _POWERS[node.op](self, node)
        template = self.d.functions.get(node.op)
        if template is None:
            raise ExportError(f"no implementation for {node.op}")
        args = [self.code(a) for a in node.args]
        if "{1}" not in template:
            return template.format(args[0])
        out = args[0]
        for a in args[1:]:
            out = template.format(out, a)
        return out

    def powered(self, node: ir.Node) -> str:
        b, n = self.code(node.args[0]), int(node.param)
        return b if n == 1 else f"_ipow({b}, {n})"  # _ipow(b, 1) is b itself


# The powers of afos.expr.ir, spelled with the helpers every dialect defines.
_POWERS = {
    "ipow": _Writer.powered,
    "ipow_inv": lambda w, node: f"(1.0 / _safe_denominator({w.powered(node)}))",
    "sqrt": lambda w, node: f"_safe_sqrt({w.code(node.args[0])})",
    "rsqrt": lambda w, node: f"(1.0 / _safe_sqrt({w.code(node.args[0])}))",
    "rpow": lambda w, node: f"_rpow({w.code(node.args[0])}, {node.param!r})",
    "pow": lambda w, node: f"_safe_exp(({w.code(node.args[1])} * _safe_log({w.code(node.args[0])})))",
}


def expression_code(expr: sympy.Expr, dialect: Dialect, gain: float | None = None) -> str:
    """One Python expression in ``x`` computing ``gain * expr`` (``expr`` for no gain) with ``dialect``'s safe
    operations.

    Raises:
        ExportError: the expression has other symbols than x, or a part without an operation in afos's
            intermediate form.
    """
    try:
        node = ir.scaled(ir.lower(expr), gain)
    except ir.LoweringError as err:
        raise ExportError(str(err)) from None
    return _Writer(dialect).code(node)


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
