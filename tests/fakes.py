"""The fake screen and training that tests/fixtures/fake_v1 was written with: every number exact, no JAX.

Shared by the tests of the run directory, the fitness memory and the surrogate.
"""

import hashlib

import sympy

from afos import types
from afos.expr import Candidate, X, canonical_key, to_text
from afos.fitness.evaluator import PerSeed
from afos.types import Fitness


def fake_describe(e: sympy.Expr) -> Candidate:
    """The screen the fixture was written with: fingerprint = hash of the text, linear/constant rejected."""
    text, key = to_text(e), canonical_key(e)
    reason = None
    if not e.free_symbols:
        reason = "constant on [-10, 10]"
    elif e.is_polynomial(X) and sympy.degree(e, X) <= 1:
        reason = "linear on [-10, 10]"
    return Candidate(e, text, key, hashlib.sha1(text.encode()).hexdigest()[:16], reason)


class FakeTraining(PerSeed):
    """The training the fixture was written with: accuracy from the text and the seed, a few failures."""

    def evaluate_seed(self, candidates, seed, epochs=None):
        for i, c in enumerate(candidates):
            h = int(hashlib.sha1(f"{c.text}/{seed}".encode()).hexdigest()[:8], 16)
            if h % 13 == 0:
                yield i, Fitness.failed("non-finite loss during training", 0.25)
            else:
                acc = 0.3 + 0.6 * (h % 1000) / 1000
                yield i, Fitness(types.OK, acc, 1.0 - acc / 2, None, 0.25)
