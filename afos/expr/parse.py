"""Text <-> sympy: the safe parser, the text form written to files and the canonical key.

The parser is the only way text from a user or a file becomes an expression. It
walks Python's ``ast`` of the text against a whitelist (registry names, ``x``,
numbers, + - * / ** ^) and builds sympy objects itself: nothing is evaluated,
and ``eval``/``sympify`` never see the text.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

import numpy as np
import sympy

from afos.errors import ExpressionError
from afos.expr import primitives
from afos.expr.primitives import STANDARD_ACTIVATIONS, X

MAX_TEXT_LENGTH = 2000
MAX_DEPTH = 48
MAX_EXPONENT = 16
# Bound on numbers (and on rational denominators) in parsed text, literal or folded.
MAX_CONSTANT = 1e12

def to_text(expr: sympy.Expr) -> str:
    """The text form written to files; `parse` reads it back to the same expression."""
    return sympy.sstr(expr, order="lex")


def canonical_key(expr: sympy.Expr) -> str:
    return sympy.srepr(expr)


# --- safe parser ---------------------------------------------------------------------


def _nary_max(*args):
    return sympy.Max(*args)


def _nary_min(*args):
    return sympy.Min(*args)


def _standard(name: str) -> Callable[[sympy.Expr], sympy.Expr]:
    def build(arg):
        return parse(STANDARD_ACTIVATIONS[name]).subs(X, arg)

    return build


def _functions() -> dict[str, tuple[Callable, tuple[int, int]]]:
    """Name -> (sympy builder, (min args, max args)) accepted by the parser."""
    table: dict[str, tuple[Callable, tuple[int, int]]] = {}
    for name in STANDARD_ACTIVATIONS:
        table[name] = (_standard(name), (1, 1))
    for p in primitives.PRIMITIVES.values():
        table[p.name] = (p.sympy_fn, (p.arity, p.arity))
    unary_sympy = {
        "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos,
        "tan": sympy.tan, "tanh": sympy.tanh, "sinh": sympy.sinh, "cosh": sympy.cosh,
        "asinh": sympy.asinh, "atan": sympy.atan, "erf": sympy.erf, "erfc": sympy.erfc,
        "Abs": sympy.Abs, "abs": sympy.Abs, "sign": sympy.sign,
        "sigmoid": primitives.sigmoid, "softplus": primitives.softplus,
    }
    for name, fn in unary_sympy.items():
        table[name] = (fn, (1, 1))
    for name in ("Max", "max"):
        table[name] = (_nary_max, (2, 8))
    for name in ("Min", "min"):
        table[name] = (_nary_min, (2, 8))
    return table


_FUNCTIONS = _functions()
_CONSTANTS = {"x": X, "pi": sympy.pi, "E": sympy.E}
_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: None,  # checked exponent, below
}


class _Builder:
    """Builds sympy from a whitelisted ``ast``; every rejection names the offending position."""

    def __init__(self, text: str):
        self.text = text
        self.lead = len(text) - len(text.lstrip())  # characters stripped before ast.parse sees the text
        self.lines = text.strip().splitlines() or [""]
        # Users write x^2 for x**2 and mean it to bind tighter than + (Python's ^ binds looser).
        self.source = text.strip().replace("^", "**")

    def where(self, lineno: int | None, col: int | None, in_bytes: bool = True) -> str:
        """`` at column C`` (or `` at line L, column C``) in characters of the original text."""
        if lineno is None or col is None or not 1 <= lineno <= len(self.lines):
            return ""
        line = self.lines[lineno - 1]
        if in_bytes:  # ast node offsets count UTF-8 bytes; users count characters
            col = len(line.replace("^", "**").encode()[:col].decode(errors="ignore"))
        col = _written_column(line, col)
        if lineno == 1:
            return f" at column {col + self.lead + 1}"
        return f" at line {lineno}, column {col + 1}"

    def fail(self, node: ast.AST | None, message: str) -> ExpressionError:
        where = self.where(getattr(node, "lineno", None), getattr(node, "col_offset", None))
        return ExpressionError(f"bad expression {_shown(self.text)}{where}: {message}")

    def number(self, node: ast.AST, value: sympy.Expr) -> sympy.Expr:
        """Keeps numbers small, so that folding constants (``(9**16)**16``) cannot exhaust memory or time."""
        if value.is_Number:
            parts = (value.p, value.q) if value.is_Rational else (value,)
            if any(abs(v) > MAX_CONSTANT for v in parts):
                raise self.fail(node, f"constant is larger than {MAX_CONSTANT:g} (or has a denominator that is)")
        return value

    def build(self, node: ast.AST, depth: int = 0) -> sympy.Expr:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise self.fail(node, f"only numbers are allowed as constants, not {_shown(node.value)}")
            if isinstance(node.value, float) and not np.isfinite(node.value):
                raise self.fail(node, "constant is not finite")
            value = sympy.Integer(node.value) if isinstance(node.value, int) else sympy.Float(node.value)
            return self.number(node, value)
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            raise self.fail(node, f"unknown name {_shown(node.id)} (the variable is x)")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self.build(node.operand, depth + 1)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left = self.build(node.left, depth + 1)
            right = self.build(node.right, depth + 1)
            if isinstance(node.op, ast.Pow):
                if right.is_Number and abs(right) > MAX_EXPONENT:
                    raise self.fail(node.right, f"exponent {right} is larger than {MAX_EXPONENT}")
                return self.number(node, left**right)
            return self.number(node, _BINOPS[type(node.op)](left, right))
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        if isinstance(node, ast.UnaryOp | ast.BinOp | ast.BoolOp):
            raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")
        raise self.fail(node, f"{type(node).__name__} is not allowed")

    def call(self, node: ast.Call, depth: int) -> sympy.Expr:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, "only calls of named functions are allowed")
        name = node.func.id
        if name not in _FUNCTIONS:
            raise self.fail(node, f"unknown function {_shown(name)}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, f"{name}() takes plain positional arguments")
        fn, (lo, hi) = _FUNCTIONS[name]
        if not lo <= len(node.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.fail(node, f"{name}() takes {want} argument(s), got {len(node.args)}")
        return fn(*(self.build(a, depth + 1) for a in node.args))


def _written_column(line: str, col: int) -> int:
    """Column ``col`` of ``line`` as the parser saw it (each ^ as **) -> the column as written."""
    written = seen = 0
    while written < len(line) and seen < col:
        seen += 2 if line[written] == "^" else 1
        written += 1
    return written


def _shown(value: object, limit: int = 60) -> str:
    """``repr`` of a piece of user text, cut short: error messages stay one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def parse(text: str) -> sympy.Expr:
    """Parses an expression in x of the safe grammar into sympy.

    Raises:
        ExpressionError: one line naming the problem and its column.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"expression must be text, got {type(text).__name__}")
    if len(text) > MAX_TEXT_LENGTH:
        raise ExpressionError(f"expression is {len(text)} characters long (at most {MAX_TEXT_LENGTH})")
    if not text.strip():
        raise ExpressionError("expression is empty")
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch in "([{") - (ch in ")]}")
        if depth > MAX_DEPTH:
            raise ExpressionError(f"bad expression at column {i + 1}: nested deeper than {MAX_DEPTH} levels")
    builder = _Builder(text)
    try:
        tree = ast.parse(builder.source, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError) as err:
        offset = getattr(err, "offset", None)
        where = builder.where(getattr(err, "lineno", None), offset and offset - 1, in_bytes=False)
        raise ExpressionError(f"bad expression {_shown(text)}{where}: not valid syntax") from None
    try:
        return builder.build(tree.body)
    except RecursionError:
        raise ExpressionError(f"bad expression: nested deeper than {MAX_DEPTH} levels") from None
