"""What the command line shows: progress of a search or benchmark, and the tables of a run."""

from __future__ import annotations

import datetime
import math
import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from afos import types
from afos.expr import parse
from afos.expr.names import canonical, known, label
from afos.ga import surrogate
from afos.ga.front import FrontEntry, ranked
from afos.run.records import Evaluation, format_validation_row
from afos.run.rundir import Run
from afos.study.planted import recovery_line
from afos.study.verdict import STALE, Standing, judge, standing, verdict_lines
from afos.types import metric_names
from afos.words import plural, printable

# Where nothing is a terminal (a file, a pipe), no line is wrapped or cut: as wide as what is printed.
LOG_WIDTH = 100_000


def output(stderr: bool = False) -> Console:
    """A console for the standard output (or error): on a terminal or in a notebook as wide as that is; in a
    file or a pipe (a log) without a width, so that no sentence wraps mid-phrase and no table cuts a name."""
    out = Console(stderr=stderr)
    if out.is_terminal or out.is_jupyter:
        return out
    return Console(stderr=stderr, width=LOG_WIDTH)


# On a terminal, progress bars; in a file or a pipe (a log), plain lines that no width cuts; in a notebook, plain
# lines that the page wraps, not rich.
console = output(stderr=True)
console.soft_wrap = not console.is_terminal


def shown(value: Any) -> Text:
    """A field read from a file, for a rich table: never read as markup, no control character."""
    return Text(printable(value))


def generation_label(generation: int, last: int) -> str:
    """``gen 3/6``: the third of six offspring generations; the initial population (generation 0, which the
    count of ``--generations`` leaves out) is ``gen 0 (initial)``, never ``gen 0/0``."""
    return f"gen {generation}/{last}" if generation else "gen 0 (initial)"


class RichReporter:
    """Shows one progress bar per generation with done/cached/rejected/failed counts and the best so far.

    When the standard error is not a terminal (a log file, a pipe) there is no bar to redraw: each
    generation is one plain line once it ends (or the search stops), with every field whole, the best
    expression too, so that the log reads as well as the screen.
    """

    def __init__(self, generations: int, command: str = ""):
        self.generations = generations
        self.prefix = f"afos {command}:" if command else "afos:"
        self.counts: Counter[str] = Counter()  # by status: ok, cached, rejected, failed, anchor, rescored
        self.best: tuple[float, int, str] | None = None  # accuracy, -complexity, expression: as the front ranks
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.fields[gen]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("best {task.fields[best]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = None
        self.pending: tuple[int, int, int, float] | None = None  # plain lines: generation, done, size, start

    def _fields(self, cut: int | None = 60) -> dict[str, str]:
        c = self.counts
        counts = f"trained {c[types.OK]} cached {c[types.CACHED]} rejected {c[types.REJECTED]} failed {c[types.FAILED]}"
        if c[types.SCREENED]:
            counts += f" screened {c[types.SCREENED]}"
        best = "-" if self.best is None else f"{self.best[0]:.4f} {label(self.best[2])}"
        return {"counts": counts, "best": best[:cut]}

    def generation_started(self, generation: int, size: int) -> None:
        if not self.live:
            self._line()
            self.pending = (generation, 0, size, time.monotonic())
            return
        if self.task is None:
            self.progress.start()
        else:
            self.progress.stop_task(self.task)
        self.task = self.progress.add_task("", total=size, gen=generation_label(generation, self.generations),
                                           **self._fields())

    def evaluated(self, line: Evaluation) -> None:
        self.counts[line.status] += 1
        if line.status == types.SCREENED:  # not one of the generation's individuals: counted, not advanced
            return
        if line.scored and (self.best is None or (line.val_accuracy, -line.complexity) > self.best[:2]):
            self.best = (line.val_accuracy, -line.complexity, line.expr)
        if not self.live:
            if self.pending is not None:
                g, done, size, start = self.pending
                self.pending = (g, done + 1, size, start)
            return
        self.progress.update(self.task, advance=1, **self._fields())

    def _line(self) -> None:
        """The plain line of the generation in progress, if any: the fields of the bar, uncut."""
        if self.pending is None:
            return
        g, done, size, start = self.pending
        self.pending = None
        fields = self._fields(cut=None)
        elapsed = datetime.timedelta(seconds=int(time.monotonic() - start))
        console.print(f"{generation_label(g, self.generations)} {done}/{size} {fields['counts']} "
                      f"best {fields['best']} {elapsed}",
                      markup=False, highlight=False, soft_wrap=True)

    def generation_finished(self, generation: int, front: list[FrontEntry]) -> None:
        if front:  # the best of the front, as the closing lines, show and export name it (``ranked``)
            best = ranked(front)[0]
            self.best = (best.val_accuracy, -best.complexity, best.expression)
        if not self.live:
            self._line()
        elif generation >= self.generations:
            self.progress.stop()

    def close(self) -> None:
        if self.live:
            self.progress.stop()
        else:
            self._line()  # a generation a stop cut short: what it had done

    def message(self, text: str) -> None:
        self.progress.console.print(f"{self.prefix} {text}", markup=False, highlight=False)


class BenchProgress:
    """One progress bar over a benchmark's cells, with the cell being trained and the time remaining; in a
    log (not a terminal), one plain line per finished cell."""

    def __init__(self):
        self.progress = Progress(
            TextColumn("[bold]{task.fields[cell]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), console=console,
        )
        self.task = None
        self.live = console.is_terminal
        self.done, self.total, self.cell, self.start = 0, 0, "", time.monotonic()

    def started(self, total: int, done: int) -> None:
        self.done, self.total, self.start = done, total, time.monotonic()
        if self.live:
            self.progress.start()
            self.task = self.progress.add_task("", total=total, completed=done, cell="")

    def cell_started(self, cell) -> None:
        self.cell = f"{cell.activation.label} {cell.model.label}/{cell.dataset} seed {cell.seed}"
        if self.live:
            self.progress.update(self.task, cell=self.cell[:48])

    def cell_finished(self, record: dict[str, Any]) -> None:
        self.done += 1
        if self.live:
            self.progress.update(self.task, advance=1)
        else:
            elapsed = datetime.timedelta(seconds=int(time.monotonic() - self.start))
            console.print(f"cell {self.done}/{self.total} {self.cell} {elapsed}", markup=False, highlight=False)

    def close(self) -> None:
        if self.live:
            self.progress.stop()


def front_table(front: list[FrontEntry], title: str | Text,
                names: tuple[str, str] = ("val_accuracy", "val_loss")) -> Table:
    """The front; with successive halving, the training length of every accuracy (``epochs``)."""
    table = Table(title=title)
    for name, justify in (("complexity", "right"), (names[0], "right"), (names[1], "right"),
                          ("gen", "right"), ("expression", "left")):
        table.add_column(name, justify=justify)
    table.add_column("seeds", justify="right")
    rungs = any(e.epochs is not None for e in front)
    if rungs:
        table.add_column("epochs", justify="right")
    for e in front:
        loss = "" if e.val_loss is None else f"{e.val_loss:.4f}"
        acc = f"{e.val_accuracy:.4f}" + ("" if e.val_accuracy_std is None else f" ± {e.val_accuracy_std:.4f}")
        table.add_row(*map(shown, (e.complexity, acc, loss, e.generation, label(e.expression), e.seeds,
                                   *([e.epochs] if rungs else []))))
    return table


def anchors_table(anchors: list[Evaluation], title: str,
                  names: tuple[str, str] = ("val_accuracy", "val_loss")) -> Table:
    """The standard activations scored under the search's own fitness protocol (compare with the front)."""
    table = Table(title=title)
    for name, justify in (("anchor", "left"), (names[0], "right"), (names[1], "right"),
                          ("seeds", "right"), ("expression", "left")):
        table.add_column(name, justify=justify)
    rungs = any(r.epochs is not None for r in anchors)
    if rungs:
        table.add_column("epochs", justify="right")
    for r in anchors:
        acc = "failed" if r.val_accuracy is None else f"{r.val_accuracy:.4f}"
        acc += "" if r.val_accuracy_std is None else f" ± {r.val_accuracy_std:.4f}"
        loss = "" if r.val_loss is None else f"{r.val_loss:.4f}"
        table.add_row(*map(shown, (r.tree, acc, loss, r.seeds, label(r.expr), *([r.epochs] if rungs else []))))
    return table


def surrogate_table(records: list[Evaluation]) -> Table | None:
    """Per generation, how well the surrogate pre-screen ranked what training then measured (None: the run
    has no predictions)."""
    per_generation = surrogate.rank_correlation(records)
    if not per_generation:
        return None
    table = Table(title="Surrogate pre-screen: predictions against training")
    for name in ("generation", "trained", "screened", "Spearman rho"):
        table.add_column(name, justify="right")
    for g, (rho, trained, screened) in per_generation.items():
        table.add_row(str(g), str(trained), str(screened), "-" if math.isnan(rho) else f"{rho:+.2f}")
    return table


def anchor_verdict(front: list[FrontEntry], anchors: list[Evaluation], metric: str = "validation accuracy",
                   then: str = "`afos validate` checks it on the test split") -> str:
    """One line: does the front's best beat the best anchor on validation accuracy (not yet a test result)?
    ``then`` ends it: what checks it on the test split.

    Both at the same training length (successive halving scores the anchors at every rung). A known function
    at another scale is called what it is, never a discovery."""
    if not front:
        return "nothing to compare yet"
    best = ranked(front)[0]
    scored = [r for r in anchors if r.scored and r.epochs == best.epochs]
    if not scored:
        return "nothing to compare yet"
    anchor = max(scored, key=lambda r: r.val_accuracy)
    verb = "beats" if best.val_accuracy > anchor.val_accuracy else "does not beat"
    name = known(parse(best.expression))
    what = "" if name is None else f", which is {name.said}: a known function, not a discovery"
    length = "" if best.epochs is None else f" after {plural(best.epochs, 'epoch')}"
    return (f"best of the front {canonical(best.expression)} ({best.val_accuracy:.4f}) {verb} the best anchor "
            f"{anchor.tree} ({anchor.val_accuracy:.4f}) on {metric}{length}{what}; {then}")


def validation_table(rows: list[dict], title: str | Text) -> Table:
    """Judged validation rows (``afos.study.verdict.judge``) with the p-value the verdict uses, after Holm's
    correction, named as such (the report and exports give the uncorrected one beside it)."""
    table = Table(title=title)
    for name, justify in (("activation", "left"), ("model", "left"), ("test accuracy", "right"),
                          ("vs relu (95% CI, Wilcoxon p after Holm)", "right"), ("verdict", "left"),
                          ("expression", "left")):
        table.add_column(name, justify=justify)
    for row in rows:
        acc, diff, holm, _ = format_validation_row(row)
        table.add_row(*map(shown, (row["activation"], row["model"], acc, f"{diff} p={holm}" if holm else diff,
                                   row.get("verdict", ""), label(row["expression"]))))
    return table


def _print_verdict(out: Console, rows: list[dict], now: Standing) -> None:
    """The head of a validated run: its verdict lines, led by a warning where the front changed since."""
    if not now.current:
        headline = now.headline()
        out.print(printable(headline[0].upper() + headline[1:] + "."), style="bold yellow", markup=False,
                  highlight=False)
    when = "" if now.current else ", of the front it judged then"
    epochs = plural(rows[0]['epochs'], 'epoch')
    out.print(printable(f"Verdict on the test split (afos validate: seeds {rows[0]['seeds']}, {epochs}{when}):"),
              style="bold", markup=False, highlight=False)
    for line in verdict_lines(rows, now):
        out.print(f"  {printable(line)}", markup=False, highlight=False)


def _validation_title(rows: list[dict], now: Standing) -> str:
    title = f"Validated on the test split (seeds {rows[0]['seeds']}, {plural(rows[0]['epochs'], 'epoch')})"
    if now.current:
        return title
    return f"{title}, before the front changed" if now.state == STALE else f"{title}, perhaps of another front"


def print_run(run: Run) -> None:
    """The verdict once validated, then the front with the anchors beside it, and the held-out numbers.

    A verdict is shown for the front it judged (``verdict.standing``): where a resume changed the front since,
    the run says so and the verdict lines say where their functions stand now. Until the front's best has a
    verdict of its own, the run ends with the comparison on validation accuracy (not yet a verdict)."""
    out = output()
    rows = run.validation()
    front = run.front()
    now = standing(rows, [e.expression for e in ranked(front)]) if rows else None
    if rows:
        _print_verdict(out, rows, now)
    names = metric_names(run.config.fitness)
    out.print(front_table(front, shown(f"Pareto front of {run.path}"), names))
    recovered = recovery_line(run.config.fitness, [e.expression for e in ranked(front)])
    if recovered is not None:
        out.print(printable(recovered), markup=False, highlight=False)
    anchors = run.anchors()
    if anchors:
        out.print(anchors_table(anchors, "Anchors (same fitness protocol)", names))
    predictions = surrogate_table(run.records())
    if predictions is not None:
        out.print(predictions)
    if rows:
        out.print(validation_table(judge(rows), shown(_validation_title(rows, now))))
    if anchors and (now is None or not now.current):
        metric = "validation accuracy" if names[0] == "val_accuracy" else f"{names[0]} of the validation split"
        then = {} if now is None else {"then": now.headline()}
        out.print(printable(anchor_verdict(front, anchors, metric, **then)), markup=False, highlight=False)


def print_calibration(result) -> None:
    """A calibration (``afos.study.planted.Calibration``): every function by its mean log loss, then the verdict."""
    from afos.study.planted import MARGIN

    out = output()
    table = Table(title=f"Validation MSE over seeds {', '.join(map(str, result.seeds))}")
    for column in ("function", "kind", "mean MSE", "mean log10 MSE", "std log10"):
        table.add_column(column, justify="left" if column in ("function", "kind") else "right")
    for row in sorted((result.target, *result.others), key=lambda r: r.log_mean):
        table.add_row(*map(shown, (label(row.expression), row.name, f"{row.mean:.3g}", f"{row.log_mean:+.3f}",
                                   f"{row.log_std:.3f}")), style="bold" if row is result.target else None)
    out.print(table)
    for text in result.equal:
        out.print(f"set aside: {canonical(text)} equals the target up to affine maps", markup=False, highlight=False)
    closest, verdict = result.closest, "a task whose answer is known" if result.counts else \
        f"not a task whose answer is known (it needs more than {MARGIN:g})"
    out.print(f"{canonical(result.target.expression)} is ahead of the closest other function, "
              f"{canonical(closest.expression)} "
              f"({closest.name}), by {result.margin:.1f} seed standard deviations of the log loss: {verdict}",
              markup=False, highlight=False)
