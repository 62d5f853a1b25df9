"""The ``afos`` command line: parses arguments and calls the library. Nothing else lives here."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
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

from afos import archive, types
from afos import config as config_lib
from afos.runlock import ignore_sigint

console = Console(stderr=True)


class RichReporter:
    """Shows one progress bar per generation with done/cached/rejected/failed counts and the best so far."""

    def __init__(self, generations: int):
        self.generations = generations
        self.counts: Counter[str] = Counter()  # by status: ok, cached, rejected, failed, anchor, rescored
        self.best: dict[str, Any] | None = None
        self.progress = Progress(
            TextColumn("[bold]gen {task.fields[gen]}/{task.fields[last]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("best {task.fields[best]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = None

    def _fields(self) -> dict[str, str]:
        c = self.counts
        counts = f"trained {c[types.OK]} cached {c[types.CACHED]} rejected {c[types.REJECTED]} failed {c[types.FAILED]}"
        best = "-" if self.best is None else f"{self.best['val_accuracy']:.4f} {self.best['expr']}"
        return {"counts": counts, "best": best[:60]}

    def generation_started(self, generation: int, size: int) -> None:
        if self.task is None:
            self.progress.start()
        else:
            self.progress.stop_task(self.task)
        self.task = self.progress.add_task("", total=size, gen=generation, last=self.generations, **self._fields())

    def evaluated(self, record: dict[str, Any]) -> None:
        self.counts[record["status"]] += 1
        acc = record.get("val_accuracy")
        if acc is not None and (self.best is None or acc > self.best["val_accuracy"]):
            self.best = record
        self.progress.update(self.task, advance=1, **self._fields())

    def generation_finished(self, generation: int, front) -> None:
        if generation >= self.generations:
            self.progress.stop()

    def close(self) -> None:
        self.progress.stop()

    def message(self, text: str) -> None:
        self.progress.console.print(f"afos: {text}", markup=False, highlight=False)


def front_table(front: list[archive.FrontEntry], title: str) -> Table:
    table = Table(title=title)
    for name, justify in (("complexity", "right"), ("val_accuracy", "right"), ("val_loss", "right"),
                          ("gen", "right"), ("expression", "left")):
        table.add_column(name, justify=justify)
    table.add_column("seeds", justify="right")
    for e in front:
        loss = "" if e.val_loss is None else f"{e.val_loss:.4f}"
        acc = f"{e.val_accuracy:.4f}" + ("" if e.val_accuracy_std is None else f" ± {e.val_accuracy_std:.4f}")
        table.add_row(str(e.complexity), acc, loss, str(e.generation), e.expression, str(e.seeds))
    return table


def anchors_table(records: list[dict[str, Any]], title: str) -> Table:
    """The standard activations scored under the search's own fitness protocol (compare with the front)."""
    table = Table(title=title)
    for name, justify in (("anchor", "left"), ("val_accuracy", "right"), ("val_loss", "right"),
                          ("seeds", "right"), ("expression", "left")):
        table.add_column(name, justify=justify)
    for r in records:
        acc = "failed" if r["val_accuracy"] is None else f"{r['val_accuracy']:.4f}"
        acc += "" if r.get("val_accuracy_std") is None else f" ± {r['val_accuracy_std']:.4f}"
        loss = "" if r["val_loss"] is None else f"{r['val_loss']:.4f}"
        table.add_row(r["tree"], acc, loss, str(r.get("seeds", 1)), r["expr"])
    return table


def anchor_verdict(front: list[archive.FrontEntry], anchors: list[dict[str, Any]]) -> str:
    """One line: does the front's best beat the best anchor on validation accuracy (not yet a test result)?"""
    scored = [r for r in anchors if r["val_accuracy"] is not None]
    if not front or not scored:
        return "nothing to compare yet"
    best, anchor = max(front, key=lambda e: e.val_accuracy), max(scored, key=lambda r: r["val_accuracy"])
    verb = "beats" if best.val_accuracy > anchor["val_accuracy"] else "does not beat"
    return (f"best of the front {best.expression} ({best.val_accuracy:.4f}) {verb} the best anchor {anchor['tree']} "
            f"({anchor['val_accuracy']:.4f}) on validation accuracy; `afos validate` checks it on the test split")


def validation_table(rows: list[dict[str, str]], title: str) -> Table:
    table = Table(title=title)
    for name, justify in (("activation", "left"), ("model", "left"), ("test_accuracy", "right"),
                          ("vs relu (95% CI, Wilcoxon p)", "right"), ("expression", "left")):
        table.add_column(name, justify=justify)
    for row in rows:
        table.add_row(row["activation"], row["model"], *archive.format_validation_row(row), row["expression"])
    return table


def print_run(run_dir: Path, front: list[archive.FrontEntry]) -> None:
    """The front, the anchors beside it and, once validated, the held-out numbers."""
    out = Console()
    out.print(front_table(front, f"Pareto front of {run_dir}"))
    anchors = archive.anchors_from_records(archive.read_jsonl(run_dir / archive.EVALUATIONS))
    if anchors:
        out.print(anchors_table(anchors, "Anchors (same fitness protocol)"))
        out.print(anchor_verdict(front, anchors), markup=False, highlight=False)
    rows = archive.read_validation_csv(run_dir)
    if rows:
        seeds, epochs = rows[0]["seeds"], rows[0]["epochs"]
        out.print(validation_table(rows, f"Validated on the test split (seeds {seeds}, {epochs} epochs)"))


def parse_topology(text: str | None) -> list[int] | None:
    """``"64,32"`` -> ``[64, 32]`` (hidden widths of the ``mlp`` model); None stays None."""
    if text is None:
        return None
    try:
        widths = [int(part) for part in text.split(",")]
    except ValueError:
        widths = []
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"--topology must be comma-separated positive layer widths such as 64,32, got {text!r}")
    return widths


def _init_exprs(args: argparse.Namespace) -> list[str] | None:
    """Warm-start functions: --init-exprs, then the front of --init-from RUN_DIR (best first)."""
    exprs = list(args.init_exprs or [])
    for run_dir in args.init_from or []:
        front = archive.read_pareto_csv(Path(run_dir))
        if not front:
            raise archive.RunDirError(f"--init-from {run_dir}: no pareto.csv with entries there")
        exprs += [e.expression for e in sorted(front, key=lambda e: -e.val_accuracy)]
    return exprs or None


def _config_from_args(args: argparse.Namespace, base: config_lib.Config) -> config_lib.Config:
    return config_lib.override(
        base,
        search={"space": args.space, "population": args.population, "generations": args.generations,
                "seed": args.seed, "init_exprs": _init_exprs(args)},
        fitness={"dataset": args.dataset, "model": args.model, "epochs": args.epochs,
                 "batch_size": args.batch_size, "seed": args.seed, "train_size": args.train_size,
                 "val_size": args.val_size, "topology": parse_topology(args.topology), "data_dir": args.data_dir},
        evaluator=_evaluator_options(args),
        protocol={"fitness_seeds": args.fitness_seeds, "race_seeds": args.race_seeds},
    ).resolved()


def _evaluator_options(args: argparse.Namespace) -> dict[str, Any]:
    backend = args.backend
    if args.ray_address is not None and backend not in (None, "ray"):
        raise ValueError(f"--ray-address is for --backend ray, not --backend {backend}")
    if args.ray_address is not None:
        backend = "ray"
    return {"backend": backend, "worker_backend": args.worker_backend, "ray_address": args.ray_address,
            "workers": args.workers}


def _finish_search(state, run_dir: Path, validate: bool = False) -> int:
    if validate:
        _validate(run_dir)
    print_run(run_dir, archive.read_pareto_csv(run_dir))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from afos import driver

    config = _config_from_args(args, config_lib.load(args.config) if args.config else config_lib.Config())
    run_dir = Path(args.run_dir) if args.run_dir else driver.new_run_dir()
    reporter = RichReporter(config.search.generations)
    console.print(f"afos search: space [bold]{config.space.name}[/], dataset [bold]{config.fitness.dataset}[/], "
                  f"population {config.search.population}, generations {config.search.generations}, "
                  f"run directory [bold]{run_dir}[/]")
    try:
        state = driver.run(config, run_dir, reporter)
    finally:
        reporter.close()
    return _finish_search(state, run_dir, args.validate)


def cmd_resume(args: argparse.Namespace) -> int:
    from afos import driver

    run_dir = Path(args.run_dir)
    changed = args.config or any(getattr(args, k, None) is not None for k in RESUME_OVERRIDES)
    config = None
    if changed:
        stored = config_lib.load(run_dir / archive.CONFIG) if (run_dir / archive.CONFIG).exists() else None
        base = config_lib.load(args.config) if args.config else stored
        config = _config_from_args(args, base) if base is not None else None
    generations = args.generations
    reporter = RichReporter(generations if generations is not None else _stored_generations(run_dir))
    console.print(f"afos resume: run directory [bold]{run_dir}[/]")
    try:
        state = driver.resume(run_dir, generations=generations, config=config, reporter=reporter)
    finally:
        reporter.close()
    return _finish_search(state, run_dir, args.validate)


def _stored_generations(run_dir: Path) -> int:
    try:
        return config_lib.load(run_dir / archive.CONFIG).search.generations
    except config_lib.ConfigError:
        return 0


def cmd_show(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not (run_dir / archive.CONFIG).exists():
        raise archive.RunDirError(f"{run_dir} is not an afos run directory (no {archive.CONFIG})")
    front = archive.read_pareto_csv(run_dir)
    if not front:
        front = archive.front_from_records(archive.read_jsonl(run_dir / archive.EVALUATIONS))
    print_run(run_dir, front)
    return 0


def _validate(run_dir: Path, top: int | None = None, seeds: int | None = None, epochs: int | None = None,
              models: list[str] | None = None) -> None:
    from afos import validate

    spec = validate.validation_spec(run_dir, top, seeds, epochs, models)
    console.print(f"afos validate: {len(spec.activations)} activations x {len(spec.models)} model(s) x seeds "
                  f"{', '.join(map(str, spec.seeds))}, {spec.epochs} epochs, scored on the test split")
    progress = BenchProgress()
    try:
        validate.validate(run_dir, top, seeds, epochs, models, progress)
    finally:
        progress.close()


def cmd_validate(args: argparse.Namespace) -> int:
    from afos import bench

    run_dir = Path(args.run_dir)
    models = bench.split_top_level(args.models) if args.models else None
    _validate(run_dir, args.top, args.seeds, args.epochs, models)
    print_run(run_dir, archive.read_pareto_csv(run_dir))
    return 0


class BenchProgress:
    """One progress bar over a benchmark's cells, with the cell being trained and the time remaining."""

    def __init__(self):
        self.progress = Progress(
            TextColumn("[bold]{task.fields[cell]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), console=console,
        )
        self.task = None

    def started(self, total: int, done: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("", total=total, completed=done, cell="")

    def cell_started(self, cell) -> None:
        text = f"{cell.activation.label} {cell.model.label}/{cell.dataset} seed {cell.seed}"
        self.progress.update(self.task, cell=text[:48])

    def cell_finished(self, record: dict[str, Any]) -> None:
        self.progress.update(self.task, advance=1)

    def close(self) -> None:
        self.progress.stop()


def cmd_benchmark(args: argparse.Namespace) -> int:
    from afos import bench, report, stats

    values = bench.load_preset(args.preset, args.quick) if args.preset else {}
    if args.quick and not args.preset:
        values = bench.apply_quick(values, {})
    given = {"activations": args.activations, "models": args.models, "datasets": args.datasets,
             "seeds": args.seeds, "epochs": args.epochs, "batch_size": args.batch_size,
             "train_size": args.train_size, "val_size": args.val_size, "test_size": args.test_size,
             "metric": args.metric,
             "baseline": args.baseline, "blocks": args.blocks}
    spec = bench.make_spec(values | {k: v for k, v in given.items() if v is not None})
    out = Path(args.out) if args.out else bench.default_out_dir(spec)
    console.print(f"afos benchmark: {len(bench.cells(spec))} cells into [bold]{out}[/] (run the same command "
                  "again to resume)")
    for note in spec.notes:
        console.print(f"note: {note}")
    progress = BenchProgress()
    try:
        bench.run(spec, out, progress)
    except KeyboardInterrupt:
        ignore_sigint()
        console.print(f"interrupted: finished cells are in {out / bench.RESULTS}; run the same command to resume")
        return 130
    finally:
        progress.close()
    files = report.build(out)
    print(stats.markdown(stats.analyse(*bench.read_results(out))))
    print(f"report: {files.html} and {files.markdown}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from afos import report

    files = report.build(args.directory)
    print(f"report: {files.html} and {files.markdown}; figures: {', '.join(str(p) for p in files.plots)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from afos import export

    source = export.export_source(args.format, expr=args.expr, run_dir=args.run_dir, top=args.top, rank=args.rank)
    if args.output:
        Path(args.output).write_text(source)
        console.print(f"afos export: wrote {args.format} to [bold]{args.output}[/]")
    else:
        print(source, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="afos", description="Discover activation functions with a genetic algorithm.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("search", help="run a new search")
    _search_options(p)
    p.add_argument("--run-dir", help="run directory (default: runs/<date-time>)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("resume", help="continue a stopped run from its checkpoint (same result as never stopping)")
    p.add_argument("run_dir")
    _search_options(p)
    p.set_defaults(func=cmd_resume)

    return _rest_of_parser(parser, sub)


def _search_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a TOML config file (command-line options override it)")
    p.add_argument("--space", help="search space: a built-in name (default, afos, swish) or a .toml file")
    p.add_argument("--dataset", help="dataset: digits (default), fashion_mnist or tfds:NAME")
    p.add_argument("--model", help="model name (default: cnn-small; see README, Datasets and models)")
    p.add_argument("--population", type=int, help="population size (default: 16)")
    p.add_argument("--generations", type=int, help="offspring generations after the initial one (default: 6)")
    p.add_argument("--epochs", type=int, help="training epochs per fitness evaluation (default: 1)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: 32)")
    p.add_argument("--train-size", type=int, help="use only this many training examples")
    p.add_argument("--val-size", type=int, help="use only this many validation examples")
    p.add_argument("--topology", help="hidden layer widths of the mlp model, e.g. 64,32")
    p.add_argument("--data-dir", help="where dataset files are looked for first (Fashion-MNIST IDX files, "
                   "the TFDS data dir)")
    p.add_argument("--seed", type=int, help="the one seed of the run (default: 0)")
    p.add_argument("--backend", help="fitness evaluator: auto, sequential (exact, one compile per candidate), "
                   "batched (one compiled step for all candidates; docs/PERFORMANCE.md), sharded (over the "
                   "local GPUs; auto where there are several), ray (docs/SCALING.md)")
    p.add_argument("--worker-backend", help="what each device (sharded) or Ray worker runs: auto, sequential, "
                   "batched (default: auto)")
    p.add_argument("--ray-address", metavar="auto|HOST:PORT",
                   help="run on this Ray cluster (implies --backend ray; without it --backend ray starts a local "
                   "Ray instance)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="Ray workers (default: one per GPU of the cluster, or one per CPU where it has none)")
    p.add_argument("--init-exprs", nargs="+", metavar="EXPR",
                   help='warm start: functions that open the first population, e.g. "x*sigmoid(x)" "max(x, 0)"')
    p.add_argument("--init-from", nargs="+", metavar="RUN_DIR", help="warm start from the front of earlier runs")
    p.add_argument("--fitness-seeds", type=int, metavar="K",
                   help="fitness = mean validation accuracy over K initialisation seeds (default: 1)")
    p.add_argument("--race-seeds", type=int, metavar="M",
                   help="racing: re-score front members on up to M seeds before they displace others (default: off)")
    p.add_argument("--validate", action="store_true",
                   help="at the end, run `afos validate` (fresh seeds, longer training, test split)")


# Options that change a run's config: resume refuses them unless they equal the stored values.
RESUME_OVERRIDES = ("space", "dataset", "model", "population", "epochs", "batch_size", "train_size", "val_size",
                    "topology", "data_dir", "seed", "backend", "worker_backend", "ray_address", "workers",
                    "init_exprs", "init_from", "fitness_seeds", "race_seeds")
# Of those, a resume may change where the work runs (config.PLACEMENT): --ray-address, --workers.


def _rest_of_parser(parser: argparse.ArgumentParser, sub) -> argparse.ArgumentParser:
    p = sub.add_parser("show", help="print the Pareto front of a run")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("validate", help="retrain the front's best and the anchors on fresh seeds and score them "
                       "on the test split (writes validation.csv)")
    p.add_argument("run_dir")
    p.add_argument("--top", type=int, metavar="N", help="functions of the front, most accurate first (default: 3)")
    p.add_argument("--seeds", type=int, metavar="S", help="fresh seeds, never used by the search (default: 5)")
    p.add_argument("--epochs", type=int, metavar="E", help="training epochs (default: 5)")
    p.add_argument("--models", help="comma-separated models (default: the search's model)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("benchmark", help="train activations x models x datasets x seeds and compare them")
    p.add_argument("--activations", help="comma-separated: standard names, expressions, RUN_DIR[:topK|:all]")
    p.add_argument("--models", help="comma-separated model names; options as mlp:topology=64x32")
    p.add_argument("--datasets", help="comma-separated dataset names (default: digits)")
    p.add_argument("--seeds", type=int, help="number of seeds (default: 3)")
    p.add_argument("--epochs", type=int, help="training epochs per cell (default: 5)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: 32)")
    p.add_argument("--train-size", type=int, help="use only this many training examples")
    p.add_argument("--val-size", type=int, help="use only this many validation examples")
    p.add_argument("--test-size", type=int, help="score on only this many test examples")
    p.add_argument("--metric", help="the compared metric (default: test_accuracy)")
    p.add_argument("--baseline", help="activation the others are tested against (default: relu)")
    p.add_argument("--blocks", help="Friedman blocks: run (each case x seed) or case (seed means)")
    p.add_argument("--preset", help="a preset name (benchmarks/presets) or a .toml file")
    p.add_argument("--quick", action="store_true", help="tiny data, 1 epoch, few seeds: a smoke test")
    p.add_argument("--out", help="benchmark directory (default: runs/bench-<preset>); reused to resume")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("report", help="write report.html and report.md for a run or benchmark directory")
    p.add_argument("directory")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="write a run's functions (or --expr) as jax, flax, numpy, torch, "
                       "tensorflow, latex or sympy code")
    p.add_argument("run_dir", nargs="?", help="a run directory (or give --expr)")
    p.add_argument("--expr", help='an expression instead of a run, e.g. "x*sigmoid(x)"')
    which = p.add_mutually_exclusive_group()
    which.add_argument("--top", type=int, metavar="K", help="the K most accurate functions of the front")
    which.add_argument("--rank", type=int, metavar="R", help="the R-th most accurate function (default: 1)")
    p.add_argument("--format", required=True, help="jax, flax, numpy, torch, tensorflow, latex or sympy")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: print)")
    p.set_defaults(func=cmd_export)
    return parser


EXPECTED_ERRORS = (ValueError, archive.RunDirError, OSError, types.DistributedError)


SHORT_OPTIONS = ("-h", "-o")


def _shield_leading_minus(argv: list[str]) -> list[str]:
    """Lets expressions start with a minus (``--expr "-x*erf(exp(-x))"``) without ``--expr=``.

    argparse takes any token that starts with '-' for an option; afos's only short options are -h and
    -o, so every other single-dash token is a value: a leading space hides its dash from argparse (the
    expression parser and int() ignore it).
    """
    return [f" {a}" if a.startswith("-") and not a.startswith("--") and a not in SHORT_OPTIONS else a
            for a in argv]


def main(argv: list[str] | None = None) -> int:
    """Runs one afos command and returns its exit status (130 when stopped by Ctrl-C).

    A command stopped by Ctrl-C leaves SIGINT ignored: the process is on its way out, and a further
    Ctrl-C while it reports and exits must not turn a clean stop into a traceback.
    """
    try:
        return _command(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # a further Ctrl-C that landed while the first stop was being reported
        ignore_sigint()
        return 130


def _command(argv: list[str]) -> int:
    args = build_parser().parse_args(_shield_leading_minus(argv))
    try:
        return args.func(args)
    except EXPECTED_ERRORS as err:
        print(f"afos {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # driver.SearchInterruptedError (first Ctrl-C) carries its own message
        ignore_sigint()
        where = getattr(args, "run_dir", None)
        hint = f"; resume with: afos resume {where}" if where else ""
        message = str(err) or f"stopped at once; every finished evaluation is saved{hint}"
        print(f"afos {args.command}: {message}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
