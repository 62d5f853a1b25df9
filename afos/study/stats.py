"""Statistics of a benchmark, with maintained libraries (scipy.stats, scikit-posthocs, statsmodels).

The scores form an array ``activation x case x seed`` of one metric (a case is a model on a dataset, at
one epoch). Comparisons follow Demsar (2006), "Statistical comparisons of classifiers over multiple data
sets": a Friedman test over blocks with average ranks, the Nemenyi post-hoc test and its critical
difference, and Wilcoxon signed-rank tests against a baseline with Holm's correction. A block is either
one (case, seed) run (``blocks = "run"``, paired by seed) or one case averaged over seeds (``"case"``,
as AFOS did over its 28 cases).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scikit_posthocs
import scipy.stats
from statsmodels.stats.multitest import multipletests

from afos.study.bench import METRICS, BenchSpec
from afos.words import plural, printable


@dataclass(frozen=True)
class Scores:
    activations: list[str]
    cases: list[str]
    seeds: list[int]
    values: np.ndarray  # (activation, case, seed); NaN where a cell is missing or not finite
    metric: str
    higher_is_better: bool


def case_label(model: str, dataset: str, epoch: int | None = None) -> str:
    return f"{model}/{dataset}" + (f"@{epoch}" if epoch is not None else "")


def scores(spec: BenchSpec, records: list[dict[str, Any]], metric: str | None = None) -> Scores:
    """The metric at the last epoch (and at ``spec.case_epochs``) of every cell, as an array."""
    metric = metric or spec.metric
    epochs = [None, *spec.case_epochs]
    cases = [case_label(m.label, d, e) for d in spec.datasets for m in spec.models for e in epochs]
    acts, seeds = spec.labels, list(spec.seeds)
    values = np.full((len(acts), len(cases), len(seeds)), np.nan)
    for r in records:
        history = r["history"]
        for e in epochs:
            row = history[-1] if e is None else history[e - 1] if e <= len(history) else {}
            value = row.get(metric)
            if value is not None:
                c = cases.index(case_label(r["model"], r["dataset"], e))
                values[acts.index(r["activation"]), c, seeds.index(r["seed"])] = value
    return Scores(acts, cases, seeds, values, metric, METRICS[metric])


def summary_table(s: Scores) -> list[dict[str, Any]]:
    """Mean, standard deviation (ddof=1) and count over seeds, per activation and case."""
    rows = []
    for a, act in enumerate(s.activations):
        for c, case in enumerate(s.cases):
            v = s.values[a, c][np.isfinite(s.values[a, c])]
            rows.append({"activation": act, "case": case, "n": int(v.size),
                         "mean": float(v.mean()) if v.size else math.nan,
                         "std": float(v.std(ddof=1)) if v.size > 1 else math.nan})
    return rows


def block_matrix(s: Scores, unit: str = "run") -> tuple[np.ndarray, list[str]]:
    """Blocks x activations; blocks with a missing value are left out."""
    if unit == "case":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN case: dropped below
            matrix = np.nanmean(s.values, axis=2).T
        labels = list(s.cases)
    elif unit == "run":
        matrix = s.values.transpose(1, 2, 0).reshape(-1, len(s.activations))
        labels = [f"{case} seed {seed}" for case in s.cases for seed in s.seeds]
    else:
        raise ValueError(f"unknown block unit {unit!r} (allowed: run, case)")
    keep = np.all(np.isfinite(matrix), axis=1)
    return matrix[keep], [label for label, k in zip(labels, keep, strict=True) if k]


def average_ranks(matrix: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Mean rank per activation over blocks; rank 1 is the best, ties share the average rank."""
    oriented = -matrix if higher_is_better else matrix
    return scipy.stats.rankdata(oriented, axis=1, method="average").mean(axis=0)


@dataclass(frozen=True)
class Friedman:
    statistic: float
    pvalue: float
    n_blocks: int
    ranks: dict[str, float]
    critical_difference: float
    nemenyi_pvalues: dict[str, dict[str, float]]


def critical_difference(k: int, n: int, alpha: float) -> float:
    """Nemenyi's critical difference of average ranks: q_alpha * sqrt(k (k + 1) / (6 n)), Demsar (2006).

    q_alpha is the studentized range quantile over sqrt(2), the same distribution scikit-posthocs uses
    for the Nemenyi p-values, so |rank_i - rank_j| > CD exactly when their p-value is below alpha.
    """
    q = scipy.stats.studentized_range.ppf(1.0 - alpha, k, np.inf) / math.sqrt(2.0)
    return float(q * math.sqrt(k * (k + 1) / (6.0 * n)))


def friedman(matrix: np.ndarray, activations: list[str], higher_is_better: bool, alpha: float = 0.05
             ) -> Friedman | str:
    """Friedman test with average ranks and the Nemenyi post-hoc test, or the reason it cannot run."""
    n, k = matrix.shape
    if k < 3:
        return f"the Friedman test needs at least 3 activations (got {k})"
    if n < 2:
        return f"the Friedman test needs at least 2 complete blocks (got {n})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all blocks tied: statistic NaN, reported as is
        result = scipy.stats.friedmanchisquare(*matrix.T)
    pvalues = scikit_posthocs.posthoc_nemenyi_friedman(matrix)
    ranks = average_ranks(matrix, higher_is_better)
    return Friedman(
        statistic=float(result.statistic), pvalue=float(result.pvalue), n_blocks=n,
        ranks={a: float(r) for a, r in zip(activations, ranks, strict=True)},
        critical_difference=critical_difference(k, n, alpha),
        nemenyi_pvalues={a: {b: float(pvalues.iloc[i, j]) for j, b in enumerate(activations)}
                         for i, a in enumerate(activations)},
    )


@dataclass(frozen=True)
class Comparison:
    activation: str
    n: int
    mean_difference: float  # activation minus baseline, in the metric's units
    statistic: float
    pvalue: float
    pvalue_holm: float
    significant: bool
    verdict: str  # "better", "worse" or "no significant difference"


def wilcoxon_vs_baseline(matrix: np.ndarray, activations: list[str], baseline: str, higher_is_better: bool,
                         alpha: float = 0.05) -> list[Comparison]:
    """Two-sided Wilcoxon signed-rank test of each activation against ``baseline``, Holm-corrected."""
    b = activations.index(baseline)
    others = [i for i in range(len(activations)) if i != b]
    raw = []
    for i in others:
        if matrix.shape[0] == 0:
            raw.append((math.nan, math.nan))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all differences zero: p = 1
            result = scipy.stats.wilcoxon(matrix[:, i], matrix[:, b])
        raw.append((float(result.statistic), float(result.pvalue)))
    pvalues = np.array([p for _, p in raw])
    finite = np.isfinite(pvalues)
    corrected = np.full_like(pvalues, np.nan)
    reject = np.zeros_like(finite)
    if finite.any():
        reject[finite], corrected[finite], *_ = multipletests(pvalues[finite], alpha=alpha, method="holm")
    out = []
    for j, i in enumerate(others):
        diff = float(np.mean(matrix[:, i] - matrix[:, b])) if matrix.shape[0] else math.nan
        better = diff > 0 if higher_is_better else diff < 0
        verdict = ("better" if better else "worse") if reject[j] else "no significant difference"
        out.append(Comparison(activations[i], int(matrix.shape[0]), diff, raw[j][0], raw[j][1],
                              float(corrected[j]), bool(reject[j]), verdict))
    return out


@dataclass(frozen=True)
class Record:
    activation: str
    wins: int
    ties: int
    losses: int

    @property
    def cases(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def win_rate(self) -> float:
        return self.wins / self.cases if self.cases else math.nan


def wins_ties_losses(s: Scores, baseline: str, tolerance: float = 0.0) -> list[Record]:
    """Per case, the seed-mean of each activation against the baseline's: a tie within ``tolerance``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(s.values, axis=2)  # (activation, case)
    b = s.activations.index(baseline)
    sign = 1.0 if s.higher_is_better else -1.0
    out = []
    for a, act in enumerate(s.activations):
        if a == b:
            continue
        diff = sign * (means[a] - means[b])
        diff = diff[np.isfinite(diff)]
        out.append(Record(act, int(np.sum(diff > tolerance)), int(np.sum(np.abs(diff) <= tolerance)),
                          int(np.sum(diff < -tolerance))))
    return out


@dataclass(frozen=True)
class Statistics:
    """Everything the report shows about a benchmark's scores."""

    scores: Scores
    blocks: str
    block_labels: list[str]
    matrix: np.ndarray
    table: list[dict[str, Any]]
    friedman: Friedman | str
    comparisons: list[Comparison]
    records: list[Record]
    baseline: str
    alpha: float
    tolerance: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready; NaN as None)."""
        def clean(value):
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [clean(v) for v in value]
            return value

        friedman = asdict(self.friedman) if isinstance(self.friedman, Friedman) else {"skipped": self.friedman}
        return clean({
            "metric": self.scores.metric, "higher_is_better": self.scores.higher_is_better,
            "activations": self.scores.activations, "cases": self.scores.cases, "seeds": self.scores.seeds,
            "baseline": self.baseline, "alpha": self.alpha, "tie_tolerance": self.tolerance, "blocks": self.blocks,
            "n_blocks": len(self.block_labels), "table": self.table, "friedman": friedman,
            "wilcoxon": [asdict(c) for c in self.comparisons],
            "wins_ties_losses": [{**asdict(r), "cases": r.cases, "win_rate": r.win_rate} for r in self.records],
        })


def compare(spec: BenchSpec, records: list[dict[str, Any]]) -> Statistics:
    """Table, Friedman + Nemenyi, Wilcoxon-Holm against the baseline and wins/ties/losses of a benchmark."""
    s = scores(spec, records)
    matrix, labels = block_matrix(s, spec.blocks)
    return Statistics(
        scores=s, blocks=spec.blocks, block_labels=labels, matrix=matrix, table=summary_table(s),
        friedman=friedman(matrix, s.activations, s.higher_is_better, spec.alpha),
        comparisons=wilcoxon_vs_baseline(matrix, s.activations, spec.baseline, s.higher_is_better, spec.alpha),
        records=wins_ties_losses(s, spec.baseline, spec.tie_tolerance), baseline=spec.baseline, alpha=spec.alpha,
        tolerance=spec.tie_tolerance,
    )


def format_mean_std(mean: float, std: float, digits: int = 4) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if math.isfinite(std) else "")


Table = tuple[list[str], list[list[str]]]


def summary_rows(a: Statistics) -> Table:
    """Activations x cases of mean ± std, with the average rank when the Friedman test ran."""
    s = a.scores
    ranks = a.friedman.ranks if isinstance(a.friedman, Friedman) else {}
    cells = {(r["activation"], r["case"]): r for r in a.table}
    rows = []
    for act in s.activations:
        row = [act] + [format_mean_std(cells[act, c]["mean"], cells[act, c]["std"]) for c in s.cases]
        rows.append(row + ([f"{ranks[act]:.2f}"] if ranks else []))
    return ["activation", *s.cases] + (["avg rank"] if ranks else []), rows


def friedman_sentence(a: Statistics) -> str:
    if not isinstance(a.friedman, Friedman):
        return f"Friedman test not run: {a.friedman}."
    f = a.friedman
    return (f"Friedman test over {f.n_blocks} blocks ({a.blocks}): chi² = {f.statistic:.4f}, p = {f.pvalue:.4g}. "
            f"Nemenyi critical difference at α = {a.alpha}: {f.critical_difference:.3f} ranks.")


def wilcoxon_rows(a: Statistics) -> Table:
    rows = [[c.activation, f"{c.mean_difference:+.4f}", f"{c.statistic:g}", f"{c.pvalue:.4g}",
             f"{c.pvalue_holm:.4g}", c.verdict] for c in a.comparisons]
    return ["activation", f"mean diff vs {a.baseline}", "W", "uncorrected p", "p after Holm", "verdict"], rows


def wins_rows(a: Statistics) -> Table:
    rows = []
    for r in a.records:
        rate = "-" if not math.isfinite(r.win_rate) else f"{100 * r.win_rate:.1f}% of {r.cases} cases"
        rows.append([r.activation, str(r.wins), str(r.ties), str(r.losses), rate])
    return ["activation", "wins", "ties", "losses", "outperforms in"], rows


# --- markdown of text read from files -------------------------------------------------------------

# What markdown (CommonMark, GitHub's tables and math) reads as syntax inside a line: written with a backslash,
# which markdown shows as the character itself. A name read from a file is text, never a link, tag or cell border.
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_\[\]<>|~$&])")
# What makes a block at the start of a line: a heading, a list item or rule, an ordered list item ("1.").
_BLOCK_START = re.compile(r"^([#+=-]|\d+(?=[.)]))([.)]?)")


def markdown_inline(text: str) -> str:
    """One line of ``text`` as markdown shows it: its syntax characters escaped, control characters but the tab
    written out as escapes (``printable``)."""
    return _MARKDOWN_SYNTAX.sub(r"\\\1", printable(text, keep="\t"))


def markdown_text(text: str) -> str:
    """``text`` (read from a file, perhaps) as one markdown paragraph that shows it: lines joined as HTML joins
    them, nothing read as markup, and no line start read as a heading, quote or list."""
    line = markdown_inline(" ".join(str(text).splitlines()).strip())
    return _BLOCK_START.sub(lambda m: m[1] + "\\" + m[2] if m[2] else "\\" + m[1], line)


def markdown_cell(text: str) -> str:
    """``text`` as one cell of a markdown table: a ``|`` or a line break cannot end the cell or the row."""
    return "<br>".join(markdown_inline(line) for line in str(text).splitlines())


def markdown_fence(text: str) -> str:
    """``text`` as a fenced code block that it cannot close: the fence is longer than any run of backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = "\n".join(printable(line, keep="\t") for line in text.rstrip().splitlines())
    return f"{fence}\n{body}\n{fence}"


def markdown_table(table: Table) -> str:
    """A markdown table whose cells show their text as it is (``markdown_cell``)."""
    header, rows = table
    lines = ["| " + " | ".join(map(markdown_cell, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(markdown_cell, row)) + " |" for row in rows])


def markdown(a: Statistics) -> str:
    """The analysis as markdown tables and sentences."""
    s = a.scores
    return "\n\n".join([
        f"Metric: **{markdown_inline(s.metric)}** ({'higher' if s.higher_is_better else 'lower'} is better), "
        f"mean ± std over {plural(len(s.seeds), 'seed')}.",
        markdown_table(summary_rows(a)),
        friedman_sentence(a),
        f"Wilcoxon signed-rank vs **{markdown_inline(a.baseline)}** over {len(a.block_labels)} paired blocks, "
        "Holm-corrected:",
        markdown_table(wilcoxon_rows(a)),
        f"Wins / ties / losses vs **{markdown_inline(a.baseline)}** per case (seed means, tie within "
        f"{a.tolerance:g}):",
        markdown_table(wins_rows(a)),
    ]) + "\n"
