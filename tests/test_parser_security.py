"""The safe parser rejects whatever is outside its grammar, quickly, in one line, and executes nothing."""

from __future__ import annotations

import time

import pytest
import sympy

from afos.expr import ExpressionError, parse
from afos.expr.parse import MAX_CONSTANT
from afos.expr.primitives import X


def _payloads(marker: str) -> list[str]:
    """Texts that would create ``marker`` if anything evaluated them."""
    write = f"open({marker!r}, 'w').write('pwned')"
    return [
        write,
        f"__import__('os').system('touch {marker}')",
        f"__import__('pathlib').Path({marker!r}).touch()",
        f"x.__class__.__base__.__subclasses__()[0]({marker!r})",
        f"(lambda: {write})()",
        f"[{write} for _ in (1,)]",
        f"{{{write}: 1}}",
        f"{{{write} for _ in (1,)}}",
        f"sin(x) if {write} else x",
        f"(y := {write})",
        f"exp({write})",
        f"exp(x, key={write})",
        f"exp(*[{write}])",
        f"f'{{{write}}}'",
        f"x + {write}",
        f"globals()['__builtins__']['open']({marker!r}, 'w')",
        f"exec('{write}')",
        f"eval('{write}')",
        f"sympify('{write}')",
        f"x; {write}",
        f"x\n{write}",
    ]


def test_injection_attempts_are_rejected_without_executing_anything(tmp_path):
    marker = tmp_path / "pwned"
    for text in _payloads(str(marker)):
        with pytest.raises(ExpressionError) as info:
            parse(text)
        message = str(info.value)
        assert "\n" not in message and len(message) < 300, text
        assert not marker.exists(), f"{text!r} executed"


@pytest.mark.parametrize(
    "text, fragment, column",
    [
        ("x.__class__", "Attribute is not allowed", 1),
        ("x + __import__('os')", "unknown function '__import__'", 5),
        ("x + __builtins__", "unknown name '__builtins__'", 5),
        ("sin(x) + (lambda: 1)()", "only calls of named functions", 10),
        ("x * (lambda y: y)", "Lambda is not allowed", 6),
        ("[x for x in range(3)]", "ListComp is not allowed", 1),
        ("tanh(x) + {x: 1 for x in (1,)}", "DictComp is not allowed", 11),
        ("sum(x for x in (1, 2))", "unknown function 'sum'", 1),
        ("max(x, open('f'))", "unknown function 'open'", 8),
        ("x + getattr(x, 'y')", "unknown function 'getattr'", 5),
        ("x and 1", "operator And is not allowed", 1),
        ("x @ x", "operator MatMult is not allowed", 1),
        ("x // 2", "operator FloorDiv is not allowed", 1),
        ("~x", "operator Invert is not allowed", 1),
        ("x[0]", "Subscript is not allowed", 1),
        ("x < 1", "Compare is not allowed", 1),
        ("'x' + x", "only numbers are allowed as constants", 1),
        ("b'x'", "only numbers are allowed as constants", 1),
        ("1j * x", "only numbers are allowed as constants", 1),
        ("True * x", "only numbers are allowed as constants", 1),
        ("x * 1e400", "constant is not finite", 5),
        ("x**99", "exponent 99 is larger than 16", 4),
        ("x + 1e13", "constant is larger than", 5),
        ("   x + foo(x)", "unknown function 'foo'", 8),  # columns count the stripped blanks
        ("é + x", "unknown name 'é'", 1),
        ("ｘ + foo(x)", "unknown function 'foo'", 5),  # columns count characters, not UTF-8 bytes
        ("x^2 + foo(x)", "unknown function 'foo'", 7),  # ... of the text as written, ^ and all
        ("x^99", "exponent 99 is larger than 16", 3),
        ("x^2 + x^2^2 + foo(x)", "unknown function 'foo'", 15),
    ],
)
def test_rejections_name_the_problem_and_its_column(text, fragment, column):
    with pytest.raises(ExpressionError) as info:
        parse(text)
    message = str(info.value)
    assert fragment in message
    assert f"at column {column}:" in message
    assert "\n" not in message


def test_multi_line_text_points_at_line_and_column():
    with pytest.raises(ExpressionError, match="at line 2, column 3: unknown function 'foo'"):
        parse("(x +\n  foo(x))")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("x+" * 1200 + "x", "characters long"),
        ("(" * 49 + "x" + ")" * 49, "nested deeper than 48"),
        ("[" * 200 + "x" + "]" * 200, "nested deeper than 48"),
        ("sin(" * 60 + "x" + ")" * 60, "nested deeper than 48"),
        ("-" * 500 + "x", "nested deeper than 48"),
        ("x**" * 200 + "x", "nested deeper than 48"),
        ("x" + "+x" * 60, "nested deeper than 48"),  # a long left-nested sum
        ("((9**16)**16)**16*x", "constant is larger than"),  # folding would build a 10**3900 integer
        ("((1/10**12)**16)**16*x", "constant is larger than"),  # ... or such a denominator
        ("9**9**9*x", "exponent 387420489 is larger"),
        ("1" * 1500 + "*x", "constant is larger than"),
    ],
)
def test_long_deep_or_huge_input_is_rejected_quickly(text, fragment):
    start = time.perf_counter()
    with pytest.raises(ExpressionError) as info:
        parse(text)
    assert time.perf_counter() - start < 1.0
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert len(message) < 300, "the offending text is cut short in the message"


def test_what_is_inside_the_grammar_still_parses():
    assert parse("  x*sigmoid(x)  ") == X * parse("sigmoid(x)")
    assert parse("x^2 + 0.5*x") == X**2 + sympy.Float(0.5) * X  # ^ is **, binding tighter than +
    assert parse("-x^2") == -(X**2)
    assert parse("max(x, tanh(x), 0)") == sympy.Max(X, sympy.tanh(X), 0)
    assert parse("(x +\n 1)") == X + 1
    assert parse(f"{int(MAX_CONSTANT)}*x") == int(MAX_CONSTANT) * X
    assert parse("x**-16 + 2**x") == X**-16 + 2**X
    assert parse("1.0507009873554805*x") == sympy.Float(1.0507009873554805) * X
