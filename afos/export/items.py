"""What gets exported: expressions with their provenance, and the header every file starts with."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import sympy

from afos.expr import to_text
from afos.expr.names import known
from afos.ga.front import FrontEntry
from afos.run.records import format_validation_row
from afos.study.verdict import Standing, judge, judged_rows
from afos.words import plural, printable

# to_text of a parsed expression only uses these characters: safe inside a docstring.
_PLAIN = re.compile(r"[\w.+\-*/(), ]*")


@dataclass(frozen=True)
class Item:
    """One function to export.

    Attributes:
        expr: the expression.
        rank: its rank by validation accuracy in the run's Pareto front (1 = most accurate), if from a run.
        entry: its row of the run's pareto.csv, if from a run.
        run_dir: the run directory it comes from, if any.
        validation: the run's ``validation.csv`` rows, if any (``Run.validation``).
        standing: how that validation stands to the run's front now (``afos.study.verdict.standing``), if any.
        gain: the ``g`` of a function trained at unit gain, ``g * expr`` (``afos.expr.gain``): the exported
            code computes ``g * expr``, what was measured. None: the expression as it is.
    """

    expr: sympy.Expr
    rank: int | None = None
    entry: FrontEntry | None = None
    run_dir: str | None = None
    validation: tuple[dict[str, str], ...] = ()
    gain: float | None = None
    standing: Standing | None = None

    @property
    def text(self) -> str:
        """The expression (without its gain)."""
        text = to_text(self.expr)
        return text if _PLAIN.fullmatch(text) else repr(text)

    @property
    def formula(self) -> str:
        """What the exported function computes: the expression, times its gain if it has one."""
        return self.text if self.gain is None else f"{self.gain!r}*({self.text})"

    @property
    def key(self) -> str:
        """A short stable hash of the expression (unique registration names, e.g. for Keras)."""
        return hashlib.sha1(to_text(self.expr).encode()).hexdigest()[:10]

    def provenance(self) -> list[str]:
        """Lines saying where the function comes from and how it scored, led by its verdict once validated."""
        lines = verdict_of(self.validation, self.entry.expression, self.standing) if self.entry is not None else []
        lines.append(f"Expression: {self.text}")
        name = known(self.expr)
        if name is not None:
            lines.append(f"Known function: {name.described}")
        if self.gain is not None:
            lines.append(f"Gain: trained, and computed here, as g * ({self.text}) with g = {self.gain!r}, "
                         "afos's unit gain (E[(g f(z))^2] = 1 for z ~ N(0, 1))")
        if self.run_dir is not None:
            rank = "" if self.rank is None else f" (rank {self.rank} by validation accuracy on the Pareto front)"
            lines.append(f"Run: {self.run_dir!r}{rank}")
        if self.entry is not None:
            lines.append(proxy_line(self.entry))
        if self.entry is not None:
            lines += validated_lines(self.validation, self.entry.expression)
        return lines


def proxy_line(e: FrontEntry) -> str:
    """The search's own score of a function: its fitness on the validation split, over the seeds it had (a proxy
    that ranks the search, not a test result)."""
    seeds = "one seed" if e.seeds <= 1 else f"mean of {e.seeds} seeds"
    spread = "" if e.seeds <= 1 or e.val_accuracy_std is None else f" ± {e.val_accuracy_std:.6g}"
    loss = "" if e.val_loss is None else f", val_loss {e.val_loss:.6g}"
    length = "" if e.epochs is None else f" after {plural(e.epochs, 'epoch')}"
    return (f"Search proxy ({seeds}, validation split): val_accuracy {e.val_accuracy:.6g}{spread}{length}, "
            f"complexity {e.complexity}{loss}, generation {e.generation}")


def verdict_of(rows: Sequence[dict[str, str]], expression: str, now: Standing | None = None) -> list[str]:
    """``Verdict: ...`` per case where ``afos validate`` judged ``expression`` (none if the run was not validated);
    in a validated run, a function it did not judge says why it has no verdict (``now``: the validation's
    standing to the front)."""
    judged = judged_rows(judge(rows), expression)
    if rows and not judged:
        why = now.headline() if now is not None and not now.current else \
            "`afos validate` did not judge this function; run it again with a larger --top"
        return [f"Verdict on the test split: none; {why}"]
    return [f"Verdict on the test split ({row['model']}/{row['dataset']}, {plural(row['n'], 'seed')}, "
            f"{plural(row['epochs'], 'epoch')}): {row['verdict']}" for row in judged if row["verdict"]]


def validated_lines(rows: Sequence[dict[str, str]], expression: str) -> list[str]:
    """The held-out numbers of ``afos validate`` for ``expression`` (none if the run was not validated), with the
    p-value its verdict uses (after Holm) and the uncorrected one, each named."""
    lines = []
    for row in judged_rows(judge(rows), expression):
        acc, diff, holm, raw = format_validation_row(row)
        epochs = plural(row['epochs'], 'epoch')
        lines.append(f"Test (afos validate, {row['model']}, seeds {row['seeds']}, {epochs}): "
                     f"accuracy {acc}; vs relu {diff} (95% CI), Wilcoxon p = {holm} after Holm ({raw} uncorrected)")
    return lines


def names(items: Sequence[Item], function: str = "activation", cls: str = "Activation") -> list[tuple[str, str]]:
    """(function name, class name) per item: ``activation``/``Activation`` for one, numbered by rank for more."""
    if len(items) == 1:
        return [(function, cls)]
    return [(f"{function}_{it.rank or i + 1}", f"{cls}{it.rank or i + 1}") for i, it in enumerate(items)]


SAFE_NOTE = (
    "Generated by afos; this file does not import afos. Safe forms as in afos: exp clipped at\n"
    "70, sinh/cosh at +-70, denominators kept >= 1e-6 away from 0, sqrt/log arguments >= 1e-12."
)


def header(items: Sequence[Item], target: str, prefix: str = "", note: str = SAFE_NOTE) -> str:
    """The provenance block: a docstring body (prefix "") or comment lines (prefix "% " or "# "), each line kept one
    line by ``printable`` (the only place the text of a run's files enters a generated file): every line break and
    control character in the names and values read from a run's files is written out as its escape (``\\n``), so
    nothing it holds starts a line of code."""
    lines = [f"afos activation{'s' if len(items) > 1 else ''} exported for {target}.", ""]
    for item, (fn, _) in zip(items, names(items), strict=True):
        if len(items) > 1:
            lines.append(f"{fn}:")
        lines.extend(("    " if len(items) > 1 else "") + line for line in item.provenance())
    if note:
        lines += ["", *note.splitlines()]
    return "\n".join((prefix + printable(line)).rstrip() for line in lines) + "\n"


def docstring(items: Sequence[Item], target: str, note: str = SAFE_NOTE) -> str:
    """The header as a module docstring that shows it as it is: every backslash and quote escaped, so no text in it
    ends the string or is read as an escape sequence (``\\N`` would not compile)."""
    body = header(items, target, note=note).replace("\\", "\\\\").replace('"', '\\"')
    return '"""' + body + '"""\n'
