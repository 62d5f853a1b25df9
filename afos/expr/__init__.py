"""Expressions: primitives, the safe parser, afos's intermediate form, the screen, and the compilers.

``primitives`` (the registry), ``parse`` (text <-> sympy), ``ir`` (the one intermediate form),
``screen`` (fingerprint and screen of a candidate), ``numeric`` (NumPy values and derivatives) and
``compile`` (JAX functions). Only ``compile`` and ``screen.analyse`` load JAX.
"""

from afos.errors import ExpressionError
from afos.expr.parse import canonical_key, parse, to_text
from afos.expr.primitives import STANDARD_ACTIVATIONS, X
from afos.expr.screen import Candidate, analyse, check

__all__ = ["STANDARD_ACTIVATIONS", "X", "Candidate", "ExpressionError", "analyse", "canonical_key", "check",
           "parse", "to_text"]
