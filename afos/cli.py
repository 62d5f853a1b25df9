"""The ``afos`` command line: parses arguments and calls the library. Nothing else lives here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from afos import archive, types
from afos import config as config_lib

console = Console(stderr=True)


class RichReporter:
    """Shows one progress bar per generation with done/cached/rejected/failed counts and the best so far."""

    def __init__(self, generations: int):
        self.generations = generations
        self.counts = dict.fromkeys(types.STATUSES, 0)
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


def front_table(front: list[archive.FrontEntry], title: str) -> Table:
    table = Table(title=title)
    for name, justify in (("complexity", "right"), ("val_accuracy", "right"), ("val_loss", "right"),
                          ("gen", "right"), ("expression", "left")):
        table.add_column(name, justify=justify)
    for e in front:
        loss = "" if e.val_loss is None else f"{e.val_loss:.4f}"
        table.add_row(str(e.complexity), f"{e.val_accuracy:.4f}", loss, str(e.generation), e.expression)
    return table


def cmd_search(args: argparse.Namespace) -> int:
    from afos import search

    config = config_lib.load(args.config) if args.config else config_lib.Config()
    config = config_lib.override(
        config,
        search={"space": args.space, "population": args.population, "generations": args.generations,
                "seed": args.seed},
        fitness={"dataset": args.dataset, "model": args.model, "epochs": args.epochs,
                 "batch_size": args.batch_size, "seed": args.seed, "train_size": args.train_size,
                 "val_size": args.val_size},
        evaluator={"backend": args.backend},
    ).resolved()
    run_dir = Path(args.run_dir) if args.run_dir else search.new_run_dir()
    reporter = RichReporter(config.search.generations)
    console.print(f"afos search: space [bold]{config.space.name}[/], dataset [bold]{config.fitness.dataset}[/], "
                  f"population {config.search.population}, generations {config.search.generations}, "
                  f"run directory [bold]{run_dir}[/]")
    try:
        state = search.run(config, run_dir, reporter)
    finally:
        reporter.close()
    Console().print(front_table(search.front_of(state), f"Pareto front of {run_dir}"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not (run_dir / archive.CONFIG).exists():
        raise archive.RunDirError(f"{run_dir} is not an afos run directory (no {archive.CONFIG})")
    front = archive.read_pareto_csv(run_dir)
    if not front:
        front = archive.front_from_records(archive.read_jsonl(run_dir / archive.EVALUATIONS))
    Console().print(front_table(front, f"Pareto front of {run_dir}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="afos", description="Discover activation functions with a genetic algorithm.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("search", help="run a new search")
    p.add_argument("--config", help="a TOML config file (command-line options override it)")
    p.add_argument("--space", help="search space: a built-in name (default, afos, swish) or a .toml file")
    p.add_argument("--dataset", help="dataset name (default: digits)")
    p.add_argument("--model", help="model name (default: cnn-small)")
    p.add_argument("--population", type=int, help="population size (default: 16)")
    p.add_argument("--generations", type=int, help="offspring generations after the initial one (default: 6)")
    p.add_argument("--epochs", type=int, help="training epochs per fitness evaluation (default: 1)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: 32)")
    p.add_argument("--train-size", type=int, help="use only this many training examples")
    p.add_argument("--val-size", type=int, help="use only this many validation examples")
    p.add_argument("--seed", type=int, help="the one seed of the run (default: 0)")
    p.add_argument("--backend", help="fitness evaluator: auto, sequential")
    p.add_argument("--run-dir", help="run directory (default: runs/<date-time>)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("show", help="print the Pareto front of a run")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_show)
    return parser


EXPECTED_ERRORS = (ValueError, archive.RunDirError, OSError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EXPECTED_ERRORS as err:
        print(f"afos {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
