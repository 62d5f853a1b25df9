"""The verdict of a validation: is a function of the front better than relu on the test split?

Per case (model and dataset), every function of the front is compared with relu over paired seeds: a two-sided
t confidence interval of the mean difference and a Wilcoxon signed-rank test, the Wilcoxon p-values corrected
with Holm's step-down method over the front (Holm 1979; the anchors are a family of their own). One verdict
per function:

- ``better than relu``: Holm-corrected p below ``ALPHA`` and the whole confidence interval above 0 (both tests
  agree);
- ``not better than relu``: the whole confidence interval at or below 0, or a significant negative difference;
- ``undecided``: neither; the seeds cannot tell.

A test of ``n`` pairs cannot reach ``ALPHA`` at all when its smallest possible p-value, ``2 / 2**n`` for the exact
two-sided Wilcoxon test (every difference of one sign) times the number of functions Holm corrects for, is not
below ``ALPHA``: with 5 seeds that is 0.0625 for a single function. ``cannot_conclude`` says so. This module is
light (no JAX, no statsmodels): ``afos show`` and exports lead with the verdict. Holm's method is written here
(six lines, checked against ``statsmodels.stats.multitest.multipletests`` in the tests) to keep it so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

ALPHA = 0.05
BETTER, NOT_BETTER, UNDECIDED = "better than relu", "not better than relu", "undecided"
BASELINE = "relu"


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (nan stays nan and does not count as a test)."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if math.isfinite(p))
    out, running = [math.nan] * len(pvalues), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        out[i] = running
    return out


def smallest_p(pairs: int) -> float:
    """The smallest two-sided p-value an exact Wilcoxon signed-rank test of ``pairs`` pairs can give."""
    return min(1.0, 2.0 / 2.0**pairs) if pairs > 0 else 1.0


def cannot_conclude(pairs: int, tests: int = 1, alpha: float = ALPHA) -> str | None:
    """A warning where ``tests`` Holm-corrected tests of ``pairs`` pairs cannot reach ``alpha`` at all, else None."""
    floor = min(1.0, max(1, tests) * smallest_p(pairs))
    if floor < alpha:
        return None
    return (f"with {pairs} seeds the verdict cannot be 'better than relu': the smallest Wilcoxon p-value of "
            f"{pairs} pairs{f', Holm-corrected for {tests} functions,' if tests > 1 else ''} is {floor:.3g}, "
            f"not below alpha = {alpha}; validate with more seeds (--seeds)")


def _number(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    return float(value)


def judge(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (of ``summarise`` or ``validation.csv``) with ``wilcoxon_p_holm`` and ``verdict`` added.

    The front (every row that is not an anchor) is one family per case, the anchors another; relu itself has
    no verdict.
    """
    out = [dict(row) for row in rows]
    families: dict[tuple[str, str, bool], list[int]] = {}
    for i, row in enumerate(out):
        if row["activation"] != BASELINE:
            families.setdefault((row["model"], row["dataset"], row["source"] == "anchor"), []).append(i)
    for row in out:
        row["wilcoxon_p_holm"], row["verdict"] = math.nan, ""
    for members in families.values():
        adjusted = holm([_number(out[i]["wilcoxon_p"]) for i in members])
        for i, p in zip(members, adjusted, strict=True):
            out[i]["wilcoxon_p_holm"] = p
            out[i]["verdict"] = _verdict(*(_number(out[i][k]) for k in ("diff_vs_relu", "diff_ci_low", "diff_ci_high")),
                                         p)
    return out


def _verdict(diff: float, ci_low: float, ci_high: float, p_holm: float) -> str:
    if math.isfinite(p_holm) and p_holm < ALPHA and diff > 0 and math.isfinite(ci_low) and ci_low > 0:
        return BETTER
    if (math.isfinite(ci_high) and ci_high <= 0) or (math.isfinite(p_holm) and p_holm < ALPHA and diff < 0):
        return NOT_BETTER
    return UNDECIDED


def warnings_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One warning per case whose front cannot reach a verdict of 'better' with the pairs it has."""
    out = []
    for case in dict.fromkeys((row["model"], row["dataset"]) for row in rows):
        front = [r for r in rows if (r["model"], r["dataset"]) == case and r["source"] != "anchor"
                 and r["activation"] != BASELINE]
        pairs = min((int(_number(r["n"])) for r in front if math.isfinite(_number(r["n"]))), default=0)
        warning = cannot_conclude(pairs, len(front))
        if front and warning:
            out.append(f"{case[0]}/{case[1]}: {warning}")
    return out


def verdict_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The verdict of every function of the front, then the warnings: what a validated run leads with."""
    from afos.expr.names import label

    judged = judge(rows)
    out = []
    for r in judged:
        if r["verdict"] and r["source"] != "anchor":
            diff, low, high, p = (_number(r[k]) for k in ("diff_vs_relu", "diff_ci_low", "diff_ci_high",
                                                          "wilcoxon_p_holm"))
            out.append(f"{r['activation']} {label(r['expression'])}: {r['verdict'].upper()} "
                       f"({r['model']}/{r['dataset']}, {r['n']} seeds: test accuracy {diff:+.4f} vs relu, 95% CI "
                       f"[{low:+.4f}, {high:+.4f}], Wilcoxon p = {p:.3g} after Holm)")
    return out + [f"warning: {w}" for w in warnings_of(judged)]
