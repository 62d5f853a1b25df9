"""Figures of benchmarks and runs (matplotlib, Agg, no pyplot state): each function returns a Figure.

``save(fig, path)`` writes a PNG. Colours follow the order of the activations, so one activation has
the same colour in every figure of a report.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, also on machines with a display

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from afos.expr import ir, numeric, parse  # noqa: E402
from afos.expr.names import canonical  # noqa: E402
from afos.ga.front import FrontEntry  # noqa: E402
from afos.run.records import Evaluation  # noqa: E402
from afos.types import ANCHOR, RESCORINGS  # noqa: E402
from afos.words import printable  # noqa: E402

DPI = 110
METRIC_TITLES = {
    "val_accuracy": "validation accuracy", "val_loss": "validation loss", "test_accuracy": "test accuracy",
    "test_loss": "test loss", "train_accuracy": "training accuracy", "train_loss": "training loss",
}


def colours(labels: Sequence[str]) -> dict[str, Any]:
    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def plain(text: str) -> str:
    """A label (read from a file, perhaps) as matplotlib should draw it: as it is. Every ``$`` is escaped, so no
    mathtext is parsed (two of them around ``\\frac{`` would be a ParseError when the figure is drawn), and control
    characters are written out as escapes (a font has no glyph for them)."""
    return printable(text).replace("$", r"\$")


def _short(text: str, n: int = 28) -> str:
    """``text`` cut to ``n`` characters, as a label (``plain``)."""
    return plain(text if len(text) <= n else text[: n - 1] + "…")


def _distinct(labels: Sequence[str], n: int = 40) -> list[str]:
    """Labels as drawn, all different: cut to ``n`` characters (a long one squeezes the axes away), and numbered
    where two would look the same (a common beginning, a control character and its written-out escape)."""
    shown = [_short(a, n) for a in labels]
    return shown if len(set(shown)) == len(shown) else [f"{i + 1}: {s}" for i, s in enumerate(shown)]


# --- benchmark figures ---------------------------------------------------------------


def learning_curves(records: list[dict[str, Any]], activations: Sequence[str],
                    metrics: Sequence[str] = ("val_accuracy", "val_loss")) -> Figure:
    """Mean (line) and min-max over seeds (band) of each metric per epoch; one column per case."""
    cases = list(dict.fromkeys((r["model"], r["dataset"]) for r in records))
    fig = Figure(figsize=(4.2 * max(1, len(cases)) + 1.8, 3.0 * len(metrics)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(metrics), max(1, len(cases)), squeeze=False))
    colour = colours(activations)
    for col, case in enumerate(cases):
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            for act in activations:
                runs = [[math.nan if h.get(metric) is None else h[metric] for h in r["history"]]
                        for r in records if (r["model"], r["dataset"]) == case and r["activation"] == act]
                if not runs:
                    continue
                length = max(map(len, runs))
                values = np.array([run + [math.nan] * (length - len(run)) for run in runs])
                epochs = np.arange(1, length + 1)
                with np.errstate(all="ignore"):
                    mean = np.nanmean(values, axis=0)
                ax.plot(epochs, mean, marker="o" if length <= 20 else None, ms=3, color=colour[act], label=act)
                if len(runs) > 1:
                    ax.fill_between(epochs, np.nanmin(values, axis=0), np.nanmax(values, axis=0),
                                    color=colour[act], alpha=0.15, linewidth=0)
            ax.set_title(plain(f"{case[0]} / {case[1]}") if row == 0 else "", fontsize=10)
            ax.set_xlabel("epoch" if row == len(metrics) - 1 else "")
            ax.set_ylabel(METRIC_TITLES.get(metric, metric) if col == 0 else "")
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, [_short(label) for label in labels], loc="outside right upper", fontsize=9)
    fig.suptitle("Learning curves: mean over seeds, band = min-max", fontsize=11)
    return fig


def activation_shapes(activations: Sequence[tuple[str, str]], lo: float = -4.0, hi: float = 4.0) -> Figure:
    """Each activation ``(label, expression)`` and its derivative on [lo, hi]."""
    xs = np.linspace(lo, hi, 401, dtype=np.float32)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_f, ax_d = fig.subplots(1, 2)
    colour = colours([label for label, _ in activations])
    for label, text in activations:
        values, grads = numeric.values_and_derivatives(ir.lower(parse(text)), xs)
        ax_f.plot(xs, values, color=colour[label], label=_short(label))
        ax_d.plot(xs, grads, color=colour[label], label=_short(label))
    for ax, title in ((ax_f, "f(x)"), (ax_d, "f'(x)")):
        ax.axhline(0, color="0.6", lw=0.8)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_title(title)
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
    ax_f.set_ylim(max(-3.0, ax_f.get_ylim()[0]), min(6.0, ax_f.get_ylim()[1]))
    ax_d.set_ylim(max(-1.5, ax_d.get_ylim()[0]), min(2.5, ax_d.get_ylim()[1]))
    if activations:
        ax_d.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9)
    return fig


def cd_diagram(ranks: dict[str, float], nemenyi_pvalues: dict[str, dict[str, float]], cd: float,
               alpha: float = 0.05, title: str = "") -> Figure:
    """Critical-difference diagram (scikit-posthocs): average ranks, bars join activations not told apart."""
    import pandas as pd
    import scikit_posthocs

    labels = list(ranks)
    shown = _distinct(labels)
    sig = pd.DataFrame([[nemenyi_pvalues[a][b] for b in labels] for a in labels], index=shown, columns=shown)
    fig = Figure(figsize=(8, 0.9 + 0.32 * len(labels)), layout="constrained")
    ax = fig.subplots()
    scikit_posthocs.critical_difference_diagram(pd.Series(list(ranks.values()), index=shown), sig, alpha=alpha,
                                                ax=ax, label_props={"fontsize": 9})
    # The CD bar above the tick labels (scikit-posthocs would draw it across them).
    above = blended_transform_factory(ax.transData, ax.transAxes)
    start = min(ranks.values())
    ax.plot([start, start + cd], [1.3, 1.3], color="k", lw=2, transform=above, clip_on=False)
    ax.text(start + cd / 2, 1.33, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9, transform=above)
    ax.set_title(title or f"Average ranks (1 = best); Nemenyi CD at α = {alpha}", fontsize=10, pad=44)
    return fig


# --- run figures ---------------------------------------------------------------------


def pareto_front(records: Sequence[Evaluation], front: Sequence[FrontEntry]) -> Figure:
    """Every scored individual (grey) and the front (accuracy against complexity), front labelled (with its
    training length where successive halving trained it longer)."""
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    scored = [r for r in records if r.scored and r.status not in (ANCHOR, *RESCORINGS)]
    ax.scatter([r.complexity for r in scored], [r.val_accuracy for r in scored], s=14, color="0.7",
               label=f"evaluated ({len(scored)})")
    if front:
        xs, ys = [e.complexity for e in front], [e.val_accuracy for e in front]
        ax.step(xs, ys, where="post", color="tab:red", lw=1.5)
        ax.scatter(xs, ys, color="tab:red", s=30, zorder=3, label=f"Pareto front ({len(front)})")
        for e in front:
            length = "" if e.epochs is None else f" [{e.epochs} ep]"
            ax.annotate(_short(canonical(e.expression), 36) + length, (e.complexity, e.val_accuracy), fontsize=8,
                        xytext=(4, -10), textcoords="offset points")
    ax.set_xlabel("complexity")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Pareto front: maximise accuracy, minimise complexity")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def fitness_history(records: Sequence[Evaluation]) -> Figure:
    """Best and median validation accuracy per generation, and the best found so far."""
    per_gen: dict[int, list[float]] = defaultdict(list)
    for r in records:  # the population's own lines: not the anchors, not re-scorings or promotions of earlier ones
        if r.scored and r.status not in (ANCHOR, *RESCORINGS):
            per_gen[r.generation].append(r.val_accuracy)
    gens = sorted(per_gen)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    if gens:
        best = [max(per_gen[g]) for g in gens]
        ax.plot(gens, best, marker="o", label="best of generation")
        ax.plot(gens, [float(np.median(per_gen[g])) for g in gens], marker="s", label="median of generation")
        ax.plot(gens, np.maximum.accumulate(best), ls="--", color="0.3", label="best so far")
        ax.legend()  # only with lines to name: an empty legend is a matplotlib warning
    ax.set_xlabel("generation")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Fitness per generation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    return fig
