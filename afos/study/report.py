"""`afos report DIR`: a self-contained HTML page (plots embedded as base64 PNG) and a markdown file.

DIR is a benchmark directory (``bench.toml``) or a run directory (``config.toml``). A report is a list
of blocks (headings, paragraphs, tables, figures, preformatted text) rendered twice: to HTML with the
PNGs inline, and to markdown with the PNGs beside it in ``plots/``. Both end with the provenance: the
configuration, the seeds, and the versions and hardware of the machine that ran it and of this one.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afos.errors import BenchError, RunError
from afos.expr import STANDARD_ACTIVATIONS
from afos.expr.names import canonical, label
from afos.ga import surrogate
from afos.run.files import read_json_or_none, write_text_atomic
from afos.run.records import VALIDATION_HEADERS, format_validation_row
from afos.run.rundir import CONFIG, Run
from afos.study import bench, planted, plots, runner, stats, verdict
from afos.words import plural

HTML_NAME, MARKDOWN_NAME, STATS_NAME, PLOTS_DIR = "report.html", "report.md", "stats.json", "plots"
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}img{max-width:100%}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}code{background:#f6f6f6}"""


@dataclass
class Report:
    title: str
    blocks: list[tuple] = field(default_factory=list)  # ("h2"|"p"|"pre", text), ("table", t), ("figure", ...)

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def text(self, text: str) -> None:
        self.blocks.append(("p", text))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def table(self, table: stats.Table) -> None:
        self.blocks.append(("table", table))

    def figure(self, name: str, fig, caption: str) -> None:
        self.blocks.append(("figure", name, plots.png_bytes(fig), caption))


def to_html(report: Report) -> str:
    esc = html.escape
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(report.title)}</title>"
           f"<style>{CSS}</style></head><body><h1>{esc(report.title)}</h1>"]
    for kind, *rest in report.blocks:
        if kind == "table":
            header, rows = rest[0]
            out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
            out.append("</table>")
        elif kind == "figure":
            name, png, caption = rest
            data = base64.b64encode(png).decode("ascii")
            out.append(f"<figure><img alt='{esc(name)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{esc(caption)}</figcaption></figure>")
        else:
            out.append(f"<{kind}>{esc(rest[0])}</{kind}>")
    return "\n".join(out) + "\n</body></html>\n"


def to_markdown(report: Report, plots_dir: Path) -> str:
    """Markdown with the figures written to ``plots_dir`` (linked relative to the report). Every text shows as it is
    (``stats.markdown_text``): a name read from a file is never a tag, a link or a table's border."""
    text = stats.markdown_text
    out = [f"# {text(report.title)}"]
    for kind, *rest in report.blocks:
        if kind == "h2":
            out.append(f"## {text(rest[0])}")
        elif kind == "pre":
            out.append(stats.markdown_fence(rest[0]))
        elif kind == "table":
            out.append(stats.markdown_table(rest[0]))
        elif kind == "figure":
            name, png, caption = rest
            plots_dir.mkdir(parents=True, exist_ok=True)
            (plots_dir / f"{name}.png").write_bytes(png)
            out.append(f"![{text(caption)}]({plots_dir.name}/{name}.png)\n\n*{text(caption)}*")
        else:
            out.append(text(rest[0]))
    return "\n\n".join(out) + "\n"


def _provenance(report: Report, config_text: str, seeds: str, ran_on: dict[str, Any] | None) -> None:
    report.heading("Provenance")
    report.text(f"Seeds: {seeds}.")
    report.pre(config_text)
    for title, env in (("Ran on", ran_on), ("Report made on", runner.environment())):
        if env is None:
            continue
        versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
        report.text(f"{title}: Python {env['python']} on {env['platform']} ({env['machine']}, "
                    f"{env['cpu_count']} CPUs; JAX devices: {', '.join(env['jax_devices'])}) at {env['time']}. "
                    f"Versions: {versions}.")


# --- benchmark report ----------------------------------------------------------------


def bench_report(bench_dir: Path) -> tuple[Report, dict[str, Any]]:
    spec, records = runner.read_results(bench_dir)
    if not records:
        raise BenchError(f"{bench_dir}: no finished cells in {bench.RESULTS} yet")
    analysis = stats.compare(spec, records)
    report = Report(f"afos benchmark {spec.name or bench_dir.name}")
    total = len(bench.cells(spec))
    report.text(f"{len(records)} of {plural(total, 'cell')} finished: {plural(len(spec.activations), 'activation')} "
                f"x {plural(len(spec.models), 'model')} x {plural(len(spec.datasets), 'dataset')} x "
                f"{plural(len(spec.seeds), 'seed')}, {plural(spec.epochs, 'epoch')} each. {spec.description}".strip())
    for note in spec.notes:
        report.text(f"Note: {note}.")
    diverged = [r for r in records if r["diverged"]]
    if diverged:
        report.text(f"{len(diverged)} cell(s) diverged: " + ", ".join(
            f"{r['activation']} on {r['model']}/{r['dataset']} seed {r['seed']}" for r in diverged) + ".")
    report.heading("Activations")
    report.table((["label", "expression", "source"],
                  [[a.label, label(a.expression), a.source] for a in spec.activations]))
    report.heading(f"Results: {spec.metric}")
    report.table(stats.summary_rows(analysis))
    report.heading("Friedman test and Nemenyi critical difference")
    report.text(stats.friedman_sentence(analysis))
    if isinstance(analysis.friedman, stats.Friedman):
        f = analysis.friedman
        report.figure("cd_diagram", plots.cd_diagram(f.ranks, f.nemenyi_pvalues, f.critical_difference,
                                                     spec.alpha), "Critical-difference diagram (Nemenyi)")
    report.heading(f"Against the baseline {spec.baseline}")
    report.text(f"Two-sided Wilcoxon signed-rank tests over {len(analysis.block_labels)} paired blocks, "
                f"p-values corrected with Holm's method.")
    report.table(stats.wilcoxon_rows(analysis))
    report.text(f"Wins, ties and losses per case (mean over seeds; a tie is within {spec.tie_tolerance:g}).")
    report.table(stats.wins_rows(analysis))
    report.heading("Learning curves")
    report.figure("curves", plots.learning_curves(records, spec.labels), "Validation accuracy and loss per epoch")
    report.heading("Activation shapes")
    report.figure("shapes", plots.activation_shapes([(a.label, a.expression) for a in spec.activations]),
                  "Activations and their derivatives")
    env_path = bench_dir / bench.ENVIRONMENT
    ran_on = read_json_or_none(env_path)  # a damaged one only costs the report that paragraph
    _provenance(report, (bench_dir / bench.SPEC).read_text(), ", ".join(map(str, spec.seeds)), ran_on)
    return report, analysis.to_dict()


# --- run report ----------------------------------------------------------------------


def run_report(run_dir: Path) -> tuple[Report, dict[str, Any]]:
    run = Run.open(run_dir)
    records = run.records()
    front = run.front()
    config_text = (run.path / CONFIG).read_text()
    report = Report(f"afos run {run.path.name}")
    counts = Counter(r.status for r in records)
    generations = max((r.generation for r in records), default=-1) + 1
    report.text(f"{plural(len(records), 'evaluation')} over {plural(generations, 'generation')}: "
                + ", ".join(f"{n} {status}" for status, n in counts.items()) + ".")
    validation = run.validation()
    if validation:
        _verdict_section(report, validation, verdict.standing(validation, [e.expression for e in run.ranked()]))
    report.heading("Pareto front")
    report.table((["complexity", "val_accuracy", "val_loss", "generation", "epochs", "expression"],
                  [[str(e.complexity), f"{e.val_accuracy:.4f}",
                    "" if e.val_loss is None or not math.isfinite(e.val_loss) else f"{e.val_loss:.4f}",
                    str(e.generation), str(e.epochs or run.config.fitness.epochs), label(e.expression)]
                   for e in front]))
    recovered = planted.recovery_line(run.config.fitness, [e.expression for e in run.ranked()])
    if recovered is not None:
        report.text(recovered[0].upper() + recovered[1:] + ".")
    report.figure("pareto", plots.pareto_front(records, front), "Evaluated functions and the Pareto front")
    anchors = run.anchors()
    if anchors:
        report.heading("Anchors")
        report.text("Standard activations scored under the search's own fitness protocol, beside the front.")
        report.table((["anchor", "val_accuracy", "seeds", "epochs", "expression"],
                      [[a.tree, "failed" if a.val_accuracy is None else f"{a.val_accuracy:.4f}", str(a.seeds),
                        str(a.epochs or run.config.fitness.epochs), label(a.expr)] for a in anchors]))
    predictions = surrogate.rank_correlation(records)
    if predictions:
        report.heading("Surrogate pre-screen")
        report.text(f"The {run.config.search.surrogate} surrogate ranked {run.config.search.oversample} children per "
                    "place; per generation, the Spearman correlation of its predictions with the accuracy training "
                    "then measured (over the trained children it ranked), and how many it left untrained.")
        report.table((["generation", "trained", "screened", "Spearman rho"],
                      [[str(g), str(n), str(m), "-" if math.isnan(rho) else f"{rho:+.2f}"]
                       for g, (rho, n, m) in predictions.items()]))
    report.heading("Fitness per generation")
    report.figure("history", plots.fitness_history(records), "Best and median validation accuracy")
    report.heading("Activation shapes")
    shapes = [("relu", STANDARD_ACTIVATIONS["relu"])] + [(f"#{i + 1} {canonical(e.expression)}", e.expression)
                                                         for i, e in enumerate(run.ranked()[:6])]
    report.figure("shapes", plots.activation_shapes(shapes), "The front's best functions, with relu")
    seeds = f"search {run.config.search.seed}, fitness {run.config.fitness.seed}"
    _provenance(report, config_text, seeds, None)
    return report, {"front": [e.__dict__ for e in front], "counts": dict(counts)}


def _verdict_section(report: Report, validation: list[dict[str, str]], now: verdict.Standing) -> None:
    """What ``afos validate`` found, for the front it judged: a warning first where the front changed since."""
    judged = verdict.judge(validation)
    report.heading("Verdict on the test split")
    if not now.current:
        headline = now.headline()
        report.text(f"{headline[0].upper()}{headline[1:]}. The verdict below is of the front it judged then.")
    report.text(f"afos validate retrained the front's best and the anchors on fresh seeds "
                f"({validation[0]['seeds']}) for {plural(validation[0]['epochs'], 'epoch')} and scored them "
                "on the held-out test split. A verdict uses the Wilcoxon p-value after Holm's correction.")
    for line in verdict.verdict_lines(validation, now):
        report.text(line)
    report.table((["activation", "model", *VALIDATION_HEADERS, "verdict", "expression"],
                  [[r["activation"], r["model"], *format_validation_row(r), r["verdict"], label(r["expression"])]
                   for r in judged]))


# A directory kind is known by the file that marks it.
KINDS: dict[str, Callable[[Path], tuple[Report, dict[str, Any]]]] = {
    bench.SPEC: bench_report,
    CONFIG: run_report,
}


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    stats: Path
    plots: list[Path]


def build(directory: str | Path) -> ReportFiles:
    """Writes report.html, report.md, stats.json and plots/*.png into a benchmark or run directory."""
    directory = Path(directory)
    make = next((fn for marker, fn in KINDS.items() if (directory / marker).is_file()), None)
    if make is None:
        raise RunError(f"{directory} is neither a benchmark directory ({bench.SPEC}) "
                       f"nor a run directory ({CONFIG})")
    report, data = make(directory)
    html_path, md_path, stats_path = directory / HTML_NAME, directory / MARKDOWN_NAME, directory / STATS_NAME
    markdown = to_markdown(report, directory / PLOTS_DIR)
    write_text_atomic(html_path, to_html(report))
    write_text_atomic(md_path, markdown)
    write_text_atomic(stats_path, json.dumps(data, indent=2, sort_keys=True, default=str))
    figures = [directory / PLOTS_DIR / f"{b[1]}.png" for b in report.blocks if b[0] == "figure"]
    return ReportFiles(html_path, md_path, stats_path, figures)
