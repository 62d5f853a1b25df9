"""The fake screen and training that tests/fixtures/fake_v1 was written with: every number exact, no JAX.

Shared by the tests of the run directory, the fitness memory and the surrogate; and a finished benchmark written
by hand, shared by the tests of the report.
"""

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import sympy
import tomli_w

from afos import types
from afos.expr import Candidate, X, canonical_key, to_text
from afos.fitness.evaluator import PerSeed
from afos.run.files import append_jsonl
from afos.study import bench
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


def write_bench(folder: Path, spec: dict[str, Any]) -> Path:
    """A finished benchmark written by hand in ``folder`` (no training): ``spec`` (as ``bench.spec_to_dict``
    writes it) as its spec file, and every cell trained for the spec's epochs, its accuracies rising with the
    activation's place in the list and with the epoch, plus noise of seed 0."""
    (folder / bench.SPEC).write_text(tomli_w.dumps(spec))
    spec = bench.spec_from_dict(spec)
    epochs = range(1, spec.epochs + 1)
    rng = np.random.default_rng(0)
    for cell in bench.cells(spec):
        base = 0.7 + 0.05 * spec.labels.index(cell.activation.label)
        history = [{"epoch": e, "train_loss": 1 / e, "train_accuracy": base + 0.02 * e,
                    "val_loss": 1.1 / e, "val_accuracy": base + 0.01 * e + rng.normal(0, 0.01),
                    "test_loss": 1.2 / e, "test_accuracy": base + 0.01 * e + rng.normal(0, 0.02)} for e in epochs]
        append_jsonl(folder / bench.RESULTS, {
            "key": cell.key, "activation": cell.activation.label, "expr": cell.activation.expression,
            "model": cell.model.label, "model_name": cell.model.name, "dataset": cell.dataset, "seed": cell.seed,
            "epochs": spec.epochs, "diverged": False, "history": history, "final": history[-1], "seconds": 0.1})
    return folder
