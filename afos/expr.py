"""Expressions: DEAP tree -> sympy -> text, canonical key, fingerprint, screen, safe parser.

The parser is the only way text from a user or a file becomes an expression. It
walks Python's ``ast`` of the text against a whitelist (registry names, ``x``,
numbers, + - * / ** ^) and builds sympy objects itself: nothing is evaluated,
and ``eval``/``sympify`` never see the text.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import sympy

from afos import primitives
from afos.primitives import STANDARD_ACTIVATIONS, X

MAX_TEXT_LENGTH = 2000
MAX_DEPTH = 48
MAX_EXPONENT = 16
# Bound on numbers (and on rational denominators) in parsed text, literal or folded.
MAX_CONSTANT = 1e12

# Points of the screen ([-10, 10], dense) and of the fingerprint (also beyond).
SCREEN_POINTS = np.linspace(-10.0, 10.0, 401, dtype=np.float32)
FINGERPRINT_POINTS = np.concatenate(
    [np.linspace(-6.0, 6.0, 97), [-1e3, -100.0, -30.0, -12.5, 12.5, 30.0, 100.0, 1e3]]
).astype(np.float32)


class ExpressionError(ValueError):
    """Text that is not an expression of the safe grammar."""


# --- tree -> sympy -------------------------------------------------------------------


def tree_to_sympy(tree: Sequence) -> sympy.Expr:
    """Converts a DEAP prefix tree (nodes with ``.name`` and ``.arity``) to sympy."""
    stack: list[sympy.Expr] = []
    for node in reversed(tree):
        if node.arity == 0:  # the one terminal: the argument x
            stack.append(X)
        else:
            args = [stack.pop() for _ in range(node.arity)]
            stack.append(primitives.get(node.name).sympy_fn(*args))
    (expr,) = stack
    return expr


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


# --- numeric screen and fingerprint -------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """What is known of a candidate before it is trained."""

    expr: sympy.Expr
    text: str
    key: str
    fingerprint: str
    reason: str | None  # why the screen rejected it, or None

    @property
    def accepted(self) -> bool:
        return self.reason is None

    @property
    def key_hash(self) -> str:
        """A short stable hash of the canonical key, for files."""
        return hashlib.sha1(self.key.encode()).hexdigest()[:16]


def _values_and_grads(fn, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs = jnp.asarray(points)
    values, vjp = jax.vjp(fn, xs)
    (grads,) = vjp(jnp.ones_like(values))
    return np.asarray(values, dtype=np.float64), np.asarray(grads, dtype=np.float64)


def fingerprint(values: np.ndarray) -> str:
    """Hash of the values rounded to 4 significant digits (and |v| < 1e-6 to 0): equal functions, equal hash."""
    values = np.where(np.abs(values) < 1e-6, 0.0, values)
    text = ",".join(f"{v:.3e}" if np.isfinite(v) else str(v) for v in values.tolist())
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def screen(values: np.ndarray, grads: np.ndarray) -> str | None:
    """The reason to reject a function from its values/gradients on [-10, 10], or None."""
    if not np.all(np.isfinite(values)):
        return "non-finite values on [-10, 10]"
    if not np.all(np.isfinite(grads)):
        return "non-finite gradient on [-10, 10]"
    scale = max(1.0, float(np.max(np.abs(values))))
    if np.ptp(values) <= 1e-6 * scale:
        return "constant on [-10, 10]"
    xs = SCREEN_POINTS.astype(np.float64)
    design = np.stack([xs, np.ones_like(xs)], axis=1)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    if np.max(np.abs(design @ coef - values)) <= 1e-4 * scale:
        return "linear on [-10, 10]"
    if np.max(np.abs(grads)) == 0.0:
        return "zero gradient on [-10, 10]"
    return None


def analyse(expr: sympy.Expr) -> Analysis:
    """Canonical key, fingerprint and screen of one expression (no training)."""
    from afos.compile import CompileError, to_jax

    text, key = to_text(expr), canonical_key(expr)
    try:
        fn = to_jax(expr)
        values, grads = _values_and_grads(fn, SCREEN_POINTS)
        fp_values, _ = _values_and_grads(fn, FINGERPRINT_POINTS)
    except CompileError as err:
        return Analysis(expr, text, key, "compile-error:" + key[:32], f"compile error: {err}")
    return Analysis(expr, text, key, fingerprint(fp_values), screen(values, grads))
