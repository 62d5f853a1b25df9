"""Discovered activations as code: JAX, Flax, NumPy, PyTorch, TensorFlow/Keras, LaTeX, SymPy.

One module per target (``export_<name>.py``), each with ``render(items) -> str``,
and one registry, :data:`EXPORTERS`, looked up by name. The array targets write
a self-contained Python file (it does not import afos) that reproduces the safe
numerics of ``afos.expr.compile`` operation by operation, so the exported function
computes what afos measured, values and gradients (``tests/test_export.py``).

    >>> from afos import export
    >>> print(export.export_source("torch", expr="x*sigmoid(x)"))        # doctest: +SKIP
    >>> print(export.export_source("latex", run_dir="runs/r1", top=3))   # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from afos.errors import AfosError, AfosWarning, ExportError
from afos.export import (
    export_flax,
    export_jax,
    export_latex,
    export_numpy,
    export_sympy,
    export_tensorflow,
    export_torch,
)
from afos.export.items import Item
from afos.expr import check, parse, to_text
from afos.expr.gain import GAIN_MODES, unit_gain
from afos.expr.ir import lower
from afos.run.rundir import Run
from afos.study.verdict import standing
from afos.words import plural

__all__ = ["EXPORTERS", "ExportError", "Exporter", "Item", "export_source", "get", "items_from_run", "render"]


@dataclass(frozen=True)
class Exporter:
    """One export target.

    Attributes:
        name: registry key, the ``--format`` of ``afos export``.
        suffix: file name suffix of what it writes.
        render: items -> the text of the file.
        description: one line for help texts.
    """

    name: str
    suffix: str
    render: Callable[[Sequence[Item]], str]
    description: str


EXPORTERS: dict[str, Exporter] = {
    e.name: e
    for e in (
        Exporter("jax", ".py", export_jax.render, "elementwise jax.numpy function"),
        Exporter("flax", ".py", export_flax.render, "JAX function for act= and a parameter-free nnx.Module"),
        Exporter("numpy", ".py", export_numpy.render, "NumPy function (values only; erf from SciPy)"),
        Exporter("torch", ".py", export_torch.render, "PyTorch function (autograd) and nn.Module"),
        Exporter("tensorflow", ".py", export_tensorflow.render, "TensorFlow function and serializable Keras layer"),
        Exporter("latex", ".tex", export_latex.render, "LaTeX formula"),
        Exporter("sympy", ".py", export_sympy.render, "SymPy source rebuilding the expression"),
    )
}


def get(name: str) -> Exporter:
    """The exporter called ``name``, or an ExportError naming the allowed ones."""
    try:
        return EXPORTERS[name]
    except KeyError:
        raise ExportError(f"unknown format {name!r} (allowed: {', '.join(EXPORTERS)})") from None


def render(items: Sequence[Item], fmt: str) -> str:
    """The source of ``items`` in format ``fmt``."""
    if not items:
        raise ExportError("nothing to export")
    return get(fmt).render(items)


def items_from_run(run_dir: str | Path | Run, top: int | None = None, rank: int | None = None) -> list[Item]:
    """Front entries of a run, most accurate first: the ``top`` K, or the one of 1-based ``rank`` (default: 1).

    Ties in validation accuracy go to the simpler function (``afos.ga.front.ranked``). A ``top`` past the end
    of the front is the whole front, with an ``AfosWarning`` saying how many entries it holds; a ``rank`` past
    its end is an error saying the same.

    Raises:
        ExportError: a bad ``top``/``rank``.
        RunError: not a run directory, or nothing scored yet.
    """
    if top is not None and rank is not None:
        raise ExportError("give either top or rank, not both")
    run = run_dir if isinstance(run_dir, Run) else Run.open(run_dir)
    ranked = run.top(len(run.front()) or 1)
    if top is not None:
        if top < 1:
            raise ExportError(f"top must be at least 1, got {top}")
        if top > len(ranked):
            warnings.warn(f"top {top} is past the end: the front of {run.path} has {plural(len(ranked), 'entry')}, "
                          f"so {'that one is' if len(ranked) == 1 else f'all {len(ranked)} are'} exported", AfosWarning,
                          stacklevel=2)
        chosen = list(enumerate(ranked[:top], start=1))
    else:
        rank = 1 if rank is None else rank
        if not 1 <= rank <= len(ranked):
            raise ExportError(f"rank {rank} is out of range: the front of {run.path} has "
                              f"{plural(len(ranked), 'entry')}")
        chosen = [(rank, ranked[rank - 1])]
    validation = tuple(run.validation())
    now = standing(validation, [e.expression for e in ranked]) if validation else None
    return [Item(_parsed(entry.expression, f"{run.path}, rank {r}"), rank=r, entry=entry, run_dir=str(run.path),
                 validation=validation, gain=entry.gain, standing=now) for r, entry in chosen]


def _parsed(text: str, where: str):
    try:
        return parse(text)
    except AfosError as err:
        raise ExportError(f"{where}: {err}") from None


def screened(text: str, gain: str = "none") -> Item:
    """The expression ``text`` as an item, if it is an activation afos could use: parsed, and passed by the
    screen a search applies (``afos.expr.check``: finite, not constant, not linear, a gradient somewhere);
    ``gain="unit"`` exports it at unit gain (``afos.expr.gain``)."""
    expr = parse(text)
    reason = check(expr, gain)
    if reason is not None:
        # a text that simplifies to a constant says so: '1/(x-x)' is sympy's zoo
        shown = repr(text.strip()) + ("" if expr.free_symbols else f" (= {to_text(expr)})")
        raise ExportError(f"{shown} is not an activation afos would train: {reason}; nothing exported")
    return Item(expr, gain=unit_gain(lower(expr))[0] if gain == "unit" else None)


def export_source(fmt: str, *, expr: str | None = None, run_dir: str | Path | Run | None = None,
                  top: int | None = None, rank: int | None = None, gain: str = "none") -> str:
    """Source code in format ``fmt`` for the expression text ``expr``, or for entries of a run.

    A function a run trained at unit gain is exported with its gain (what was measured); an expression is
    exported as it is, or at unit gain with ``gain="unit"``.

    Raises:
        ExportError: bad format, rank, or both/neither of expr and run_dir; an expression the screen rejects.
        ExpressionError: ``expr`` is outside the safe grammar (the parser's one-line message).
        RunError: ``run_dir`` is not a run, or has nothing scored yet.
    """
    get(fmt)  # an unknown format fails before any work
    if (expr is None) == (run_dir is None):
        raise ExportError("give either an expression or a run directory")
    if run_dir is not None and gain != "none":
        raise ExportError("--gain is for an expression; a run's functions are exported with the gain they were "
                          "trained with")
    if expr is not None:
        if top is not None or rank is not None:
            raise ExportError("top and rank select entries of a run, not of an expression")
        if gain not in GAIN_MODES:
            raise ExportError(f"gain must be one of {', '.join(GAIN_MODES)}, got {gain!r}")
        items = [screened(expr, gain)]
    else:
        items = items_from_run(run_dir, top=top, rank=rank)
    return render(items, fmt)
