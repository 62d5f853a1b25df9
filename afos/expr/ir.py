"""afos's one intermediate form of an expression: what every numeric reader of a candidate reads.

A sympy expression is lowered once, here, into a tree of ``Node``s whose operations have one fixed
numerical meaning (``OPS``). The JAX compiler (``afos.expr.compile``), the batched interpreter
(``afos.fitness.interpreter``), the NumPy evaluator (``afos.expr.numeric``) and the code exporters
(``afos.export``) all read this tree and give each operation the same definition, so "the exported code
computes what afos measured" holds by construction rather than by keeping four lowerings in step.

The meaning of every operation (``a``, ``b`` its operands, ``p`` its parameter):

- ``x``: the input; ``const``: the number ``p`` (as an array shaped like ``x``);
- ``add``, ``mul``, ``max``, ``min``: n-ary, folded left to right: ``((a0 op a1) op a2) ...``;
- unary heads ``exp log sin cos tan tanh sinh cosh asinh atan erf erfc abs sign sigmoid softplus``:
  ``exp`` is ``exp(min(a, EXP_CLIP))``, ``sinh``/``cosh`` clip ``a`` to ``+-EXP_CLIP``, ``log`` is
  ``log(max(a, TINY))``, sigmoid and softplus their stable forms;
- powers: ``ipow`` ``a**p`` for an integer ``p >= 0`` (exact multiplications), ``ipow_inv``
  ``1 / safe_denominator(a**p)`` for an integer ``p >= 1``, ``sqrt`` ``sqrt(max(a, TINY))``, ``rsqrt``
  ``1 / sqrt(max(a, TINY))``, ``rpow`` ``max(a, TINY)**p`` for any other number ``p``, and ``pow``
  ``exp(min(b * log(max(a, TINY)), EXP_CLIP))`` for an exponent that is not a number.

``safe_denominator(b)`` is ``b``, or ``+-DIV_EPS`` (the sign of ``b``, ``+`` for 0) where ``|b| < DIV_EPS``.
The constants are ``afos.expr.primitives.EXP_CLIP``, ``DIV_EPS`` and ``TINY``. Nothing here imports JAX.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from afos.errors import ExpressionError
from afos.expr.primitives import X, sigmoid, softplus

# Operation name -> arity (-1: two or more operands, folded left).
NARY = ("add", "mul", "max", "min")
HEADS: dict[type, str] = {
    sympy.exp: "exp", sympy.log: "log", sympy.sin: "sin", sympy.cos: "cos", sympy.tan: "tan",
    sympy.tanh: "tanh", sympy.sinh: "sinh", sympy.cosh: "cosh", sympy.asinh: "asinh", sympy.atan: "atan",
    sympy.erf: "erf", sympy.erfc: "erfc", sympy.Abs: "abs", sympy.sign: "sign", sigmoid: "sigmoid",
    softplus: "softplus", sympy.Max: "max", sympy.Min: "min",
}
UNARY = tuple(op for op in HEADS.values() if op not in NARY) + ("ipow", "ipow_inv", "sqrt", "rsqrt", "rpow")
OPS: dict[str, int] = {"x": 0, "const": 0, **{op: -1 for op in NARY}, **{op: 1 for op in UNARY}, "pow": 2}
PARAMETRISED = ("const", "ipow", "ipow_inv", "rpow")  # operations whose meaning needs ``param``


class LoweringError(ExpressionError):
    """An expression with a part that has no operation in afos's intermediate form.

    Attributes:
        logged: the reason run logs record for such a candidate (the words of run format 1, which
            searches must keep writing: ``afos.expr.screen.analyse``).
    """

    def __init__(self, message: str, logged: str | None = None):
        super().__init__(message)
        self.logged = logged or message


def _no_operation(expr: sympy.Expr, message: str) -> LoweringError:
    return LoweringError(message, f"no JAX implementation for {getattr(expr.func, '__name__', type(expr).__name__)}")


@dataclass(frozen=True)
class Node:
    """One operation of an expression tree: ``op`` applied to ``args``, with ``param`` where it needs one."""

    op: str
    args: tuple[Node, ...] = ()
    param: float = 0.0

    def walk(self):
        """Every node of the tree, children before their parent (postfix order)."""
        for a in self.args:
            yield from a.walk()
        yield self


def scaled(node: Node, gain: float | None) -> Node:
    """``gain * node`` (a function trained at unit gain, ``afos.expr.gain``); ``node`` itself for no gain."""
    return node if gain is None or gain == 1.0 else Node("mul", (Node("const", (), float(gain)), node))


def _constant(expr: sympy.Expr) -> Node:
    if not expr.is_real or not expr.is_finite:
        raise LoweringError(f"constant {expr} is not a finite real number")
    return Node("const", (), float(expr))


def _power(base: sympy.Expr, exponent: sympy.Expr) -> Node:
    if base == sympy.E:
        return Node("exp", (lower(exponent),))
    a = lower(base)
    if exponent.is_Integer:
        n = int(exponent)
        return Node("ipow", (a,), n) if n >= 0 else Node("ipow_inv", (a,), -n)
    if exponent == sympy.Rational(1, 2):
        return Node("sqrt", (a,))
    if exponent == sympy.Rational(-1, 2):
        return Node("rsqrt", (a,))
    if exponent.is_Number:
        return Node("rpow", (a,), float(exponent))
    return Node("pow", (a, lower(exponent)))


def lower(expr: sympy.Expr) -> Node:
    """The intermediate form of ``expr``, an expression in ``x``.

    Raises:
        LoweringError: another symbol than ``x``, a constant that is not a finite real number (``1/(x-x)``
            is sympy's ``zoo``), or a function afos has no operation for.
    """
    if expr == X:
        return Node("x")
    if expr.is_Symbol:
        raise LoweringError(f"unknown symbol {expr} (the variable is x)")
    if expr.is_Number or expr in (sympy.pi, sympy.E):
        return _constant(expr)
    if not expr.free_symbols and expr.is_Atom:  # zoo, I: not a finite real constant
        raise _no_operation(expr, f"constant {expr} is not a finite real number")
    if expr.is_Add or expr.is_Mul:
        return Node("add" if expr.is_Add else "mul", tuple(lower(a) for a in expr.args))
    if expr.is_Pow:
        return _power(*expr.args)
    op = HEADS.get(expr.func)
    if op is None:
        raise _no_operation(expr, f"no implementation for {getattr(expr.func, '__name__', type(expr).__name__)}")
    if op in NARY:
        return Node(op, tuple(lower(a) for a in expr.args))
    if len(expr.args) != 1:
        raise LoweringError(f"{op} takes one argument, got {len(expr.args)}")
    return Node(op, (lower(expr.args[0]),))
