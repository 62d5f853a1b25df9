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

A verdict belongs to the functions it judged, not to the run: a resume can change the front after
``afos validate``. ``judged_rows`` is the one check that ties a validation row to a function of the front (the
same text, or the same function in another spelling), and ``standing`` compares what a validation judged with
the front as it is now: ``current`` where it judged today's most accurate functions at their ranks, ``stale``
("validated before the front changed"), ``unsure`` where the file cannot tell (it names no expression, or one
that no longer parses).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from afos.words import plural

ALPHA = 0.05
BETTER, NOT_BETTER, UNDECIDED = "better than relu", "not better than relu", "undecided"
BASELINE = "relu"
CURRENT, STALE, UNSURE = "current", "stale", "unsure"
STALE_NOTE = "validated before the front changed; run `afos validate` again"


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


# --- which front a validation judged ------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _canonical(text: str) -> str | None:
    """The canonical form of an expression text (None: it does not parse)."""
    from afos.errors import AfosError
    from afos.expr import canonical_key, parse

    try:
        return canonical_key(parse(text))
    except AfosError:
        return None


def same_function(validated: str | None, expression: str) -> bool | None:
    """Is the function a validation row names (``validated``) the front's ``expression``? The same text, or the
    same canonical form (an earlier afos may have spelled it otherwise); None where the row cannot tell."""
    if not validated:
        return None
    if validated == expression:
        return True
    mine, theirs = _canonical(validated), _canonical(expression)
    return None if mine is None or theirs is None else mine == theirs


def judged_rows(rows: Sequence[dict[str, Any]], expression: str) -> list[dict[str, Any]]:
    """The rows of a validation that judged the front's function ``expression`` (one per model): the one check
    that ties a verdict to a function, for ``afos show``, the report and exports alike."""
    return [row for row in rows if row.get("source") != "anchor" and row.get("activation") != BASELINE
            and same_function(row.get("expression"), expression)]


def _validated_rank(row: dict[str, Any]) -> int | None:
    """The rank of the front a row judged, from its source (``front rank 2``) or label (``front#2``)."""
    match = re.fullmatch(r"front rank (\d+)", str(row.get("source", ""))) or \
        re.fullmatch(r"front#(\d+)", str(row.get("activation", "")))
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Standing:
    """How a validation stands to the front as it is now.

    Attributes:
        state: ``CURRENT`` (it judged today's most accurate functions, at their ranks), ``STALE`` (the front
            changed since) or ``UNSURE`` (the file cannot tell).
        ranks: per function it judged (its label, ``front#1``), the rank it has on today's front; None where it
            is no longer on the front, or where that cannot be told.
        reason: why not current, in words ("" where it is).
    """

    state: str
    ranks: dict[str, int | None] = field(default_factory=dict)
    reason: str = ""

    @property
    def current(self) -> bool:
        return self.state == CURRENT

    def note(self, activation: str) -> str:
        """What a verdict line of ``activation`` adds: where that function stands now ("" where current)."""
        if self.current or activation not in self.ranks:
            return ""
        rank = self.ranks[activation]
        if rank is not None:
            return f"now rank {rank} of the front"
        return "cannot tell whether it is on the front now" if self.state == UNSURE else "no longer on the front"

    def headline(self) -> str:
        """One sentence for the head of a validated run that is not current ("" where it is)."""
        if self.current:
            return ""
        if self.state == UNSURE:
            return (f"cannot tell whether this validation judged the front as it is now ({self.reason}); run "
                    "`afos validate` again to be sure")
        return f"{STALE_NOTE} ({self.reason})"


def standing(rows: Sequence[dict[str, Any]], front: Sequence[str]) -> Standing:
    """How the validation ``rows`` stand to the front ``front`` (its expressions, most accurate first).

    Current where the functions the validation judged (``judged_rows``'s check) are today's most accurate ones,
    each at the rank it was validated at: the front's best has a verdict of its own."""
    validated = {row.get("activation", ""): row for row in rows
                 if row.get("source") != "anchor" and row.get("activation") != BASELINE}
    if not validated:
        return Standing(UNSURE, {}, "it names no function of the front")
    ranks: dict[str, int | None] = dict.fromkeys(validated)
    for rank, text in reversed(list(enumerate(front, start=1))):  # the best rank wins
        for row in judged_rows(validated.values(), text):
            ranks[row.get("activation", "")] = rank
    unread = [name for name, row in validated.items()
              if ranks[name] is None and _canonical(row.get("expression") or "") is None]
    if unread:
        return Standing(UNSURE, ranks, f"the expression of {', '.join(unread)} is missing or not one this afos reads")
    gone = [name for name, rank in ranks.items() if rank is None]
    if gone:
        return Standing(STALE, ranks, f"{', '.join(gone)} no longer on the front")
    unvalidated = sorted(set(range(1, len(validated) + 1)) - set(ranks.values()))
    if unvalidated:
        said = " and ".join(map(str, unvalidated)).replace(" and ", ", ", len(unvalidated) - 2)
        what = f"rank {said} was" if len(unvalidated) == 1 else f"ranks {said} were"
        return Standing(STALE, ranks, f"the front's {what} not validated")
    moved = [name for name, rank in ranks.items() if _validated_rank(validated[name]) not in (None, rank)]
    if moved:
        return Standing(STALE, ranks, f"{', '.join(moved)} moved to another rank")
    return Standing(CURRENT, ranks)


def verdict_lines(rows: Sequence[dict[str, Any]], now: Standing | None = None) -> list[str]:
    """The verdict of every function of the front, then the warnings: what a validated run leads with; with
    ``now`` (``standing``), each line says where its function stands on today's front if that changed."""
    from afos.expr.names import label

    judged = judge(rows)
    out = []
    for r in judged:
        if r["verdict"] and r["source"] != "anchor":
            diff, low, high, p = (_number(r[k]) for k in ("diff_vs_relu", "diff_ci_low", "diff_ci_high",
                                                          "wilcoxon_p_holm"))
            note = "" if now is None else now.note(r["activation"])
            out.append(f"{r['activation']} {label(r['expression'])}: {r['verdict'].upper()} "
                       f"({r['model']}/{r['dataset']}, {plural(r['n'], 'seed')}: test accuracy {diff:+.4f} vs "
                       f"relu, 95% CI [{low:+.4f}, {high:+.4f}], Wilcoxon p = {p:.3g} after Holm)"
                       + (f"; {note}" if note else ""))
    return out + [f"warning: {w}" for w in warnings_of(judged)]
