"""Running a benchmark: train every cell, record its learning curve, resume where it stopped.

A benchmark directory holds ``bench.toml`` (the resolved specification, activations as text in the safe
grammar), ``environment.json`` (versions and hardware of the machine that ran it) and ``results.jsonl``
(one line per finished cell, appended and fsynced): running the same benchmark again into the same
directory skips the cells already there, so an interrupted benchmark resumes where it stopped. Every cell
trains through the fitness problem of its settings (``afos.fitness.problem``), the loop a search uses.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Protocol

import tomli_w

from afos.config import FitnessSettings
from afos.errors import BenchError, ObjectiveExitError
from afos.expr import ir, parse
from afos.expr.gain import unit_gain
from afos.fitness import compile_cache, zoo
from afos.fitness import data as data_lib
from afos.fitness.data import DATA_SETTINGS, Dataset, Split
from afos.fitness.own import ObjectiveFailedError
from afos.fitness.problem import FitnessProblem, load_data
from afos.run.files import append_jsonl, read_jsonl, repair_jsonl, write_text_atomic
from afos.study.bench import ENVIRONMENT, RESULTS, SPEC, BenchSpec, Cell, cells, read_spec, spec_to_dict


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def run_cell(cell: Cell, problem: FitnessProblem, test_size: int = 0) -> dict[str, Any]:
    """Trains one cell and returns its record: per-epoch train/val/test loss and accuracy (a user's objective:
    its final validation and test scores)."""
    from afos.expr.compile import to_jax

    node, gain = ir.lower(parse(cell.activation.expression)), None
    if cell.settings.gain == "unit":
        gain, reason = unit_gain(node)
        if reason is not None:
            raise BenchError(f"activation {cell.activation.label!r} cannot be trained at unit gain: {reason}")
    act, start = to_jax(ir.scaled(node, gain)), time.perf_counter()
    if problem.objective is not None:
        history, diverged = _objective_history(problem, act, cell)
    else:
        history, diverged = _training_history(problem, act, cell, test_size)
    gained = {} if gain is None else {"gain": gain}
    return gained | {
        "key": cell.key, "activation": cell.activation.label, "expr": cell.activation.expression,
        "model": cell.model.label, "model_name": cell.model.name, "dataset": cell.dataset, "seed": cell.seed,
        "epochs": cell.settings.epochs, "diverged": diverged, "history": history,
        "final": history[-1] if history else {}, "seconds": round(time.perf_counter() - start, 3),
    }


def _training_history(problem: FitnessProblem, act, cell: Cell, test_size: int) -> tuple[list[dict], bool]:
    """Trains afos's model: one row per epoch of train/val/test loss and accuracy; whether it diverged."""
    dataset = problem.dataset
    history: list[dict[str, Any]] = []
    test = dataset.test()
    if test_size > 0:
        test = Split(test.x[:test_size], test.y[:test_size])

    def on_epoch(epoch: int, train_loss: float, evaluate) -> None:
        row = {"epoch": epoch + 1, "train_loss": _finite(train_loss)}
        for split_name, split in (("train", dataset.train), ("val", dataset.val), ("test", test)):
            loss, acc = evaluate(split)
            if split_name != "train":
                row[f"{split_name}_loss"] = _finite(loss)
            row[f"{split_name}_accuracy"] = _finite(acc)
        history.append(row)

    result = problem.score(act, cell.seed, on_epoch)
    return history, bool(result.diverged)


def _objective_history(problem: FitnessProblem, act, cell: Cell) -> tuple[list[dict], bool]:
    """The user's objective: one row, its ranked scores as accuracies and its own values as losses (a failed
    objective: no row, diverged; a NaN or infinite test score: the test values missing, None, and the
    validation score kept)."""
    try:
        (val, val_raw), test = problem.score_objective(act, cell.seed)
    except ObjectiveFailedError:
        return [], True
    if test is None:
        raise BenchError(f"objective {cell.settings.objective!r} gives no test score: a benchmark and `afos "
                         "validate` compare test scores (return (val, test) or {'val': ..., 'test': ...})")
    row = {"epoch": cell.settings.epochs, "val_accuracy": val, "val_loss": val_raw,
           "test_accuracy": _finite(test[0]), "test_loss": _finite(test[1])}
    return [row], False


class BenchReporter(Protocol):
    """What a benchmark tells whoever watches it."""

    def started(self, total: int, done: int) -> None: ...
    def cell_started(self, cell: Cell) -> None: ...
    def cell_finished(self, record: dict[str, Any]) -> None: ...


class SilentReporter:
    def started(self, total: int, done: int) -> None:
        pass

    def cell_started(self, cell: Cell) -> None:
        pass

    def cell_finished(self, record: dict[str, Any]) -> None:
        pass


def environment() -> dict[str, Any]:
    """Versions and hardware of this machine (the provenance of a benchmark or report)."""
    import importlib.metadata as md
    import os
    import platform
    import sys

    import jax

    versions = {}
    for pkg in ("afos", "jax", "jaxlib", "flax", "optax", "numpy", "scipy", "scikit-posthocs", "statsmodels",
                "sympy", "deap", "matplotlib"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
        "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "jax_devices": [str(d) for d in jax.devices()], "versions": versions,
        "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def results(spec: BenchSpec, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of ``spec``'s cells (latest line per cell), labelled as the spec labels them."""
    by_key = {r["key"]: r for r in records}
    out = []
    for cell in cells(spec):
        if cell.key in by_key:
            out.append({**by_key[cell.key], "activation": cell.activation.label, "model": cell.model.label})
    return out


def read_results(bench_dir: Path) -> tuple[BenchSpec, list[dict[str, Any]]]:
    spec = read_spec(bench_dir)
    return spec, results(spec, read_jsonl(Path(bench_dir) / RESULTS))


def _pending(spec: BenchSpec, path: Path) -> tuple[list[Cell], int]:
    repair_jsonl(path)
    done = {r.get("key") for r in read_jsonl(path)}
    all_cells = cells(spec)
    return [c for c in all_cells if c.key not in done], len(all_cells)


def default_out_dir(spec: BenchSpec, root: str | Path = "runs") -> Path:
    """``runs/bench-<name>`` for a named benchmark (so that running it again resumes), else a new one."""
    return Path(root) / (f"bench-{spec.name}" if spec.name else time.strftime("bench-%Y%m%d-%H%M%S"))


def _data_key(settings: FitnessSettings) -> tuple:
    return tuple(getattr(settings, k) for k in DATA_SETTINGS)


def _check_inputs(spec: BenchSpec) -> tuple[tuple, Dataset] | None:
    """A ModelError unless every cell's model takes its dataset's inputs (``zoo.check_input``: a CNN needs images),
    before anything is written. afos's own datasets give images; a user's is loaded to see its inputs where an
    image model will train on it. Returns the last data loaded (its key and the dataset), else None."""
    trained = [c for c in cells(spec) if not c.settings.objective]
    loaded = None
    for dataset in dict.fromkeys(c.dataset for c in trained):
        mine = [c for c in trained if c.dataset == dataset]
        models = dict.fromkeys(c.settings.model for c in mine)
        if data_lib.gives_images(dataset) or not any(zoo.needs_images(m) for m in models):
            continue
        data = load_data(mine[0].settings)
        for model in models:
            zoo.check_input(model, data.input_shape, dataset)
        loaded = (_data_key(mine[0].settings), data)
    return loaded


def run(spec: BenchSpec, out_dir: str | Path, reporter: BenchReporter | None = None) -> list[dict[str, Any]]:
    """Trains every cell of ``spec`` not yet in ``out_dir/results.jsonl``; returns the spec's records.

    A cell's data is loaded with the cell's own settings (a model option may change the split sizes); cells
    that share them share the loaded data.
    """
    out_dir = Path(out_dir)
    reporter = reporter or SilentReporter()
    loaded = _check_inputs(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    compile_cache.enable()  # a benchmark run again compiles the same cells
    write_text_atomic(out_dir / SPEC, tomli_w.dumps(spec_to_dict(spec)))
    if not (out_dir / ENVIRONMENT).exists():
        write_text_atomic(out_dir / ENVIRONMENT, json.dumps(environment(), indent=2))
    todo, total = _pending(spec, out_dir / RESULTS)
    reporter.started(total, total - len(todo))
    for cell in todo:
        if cell.settings.objective:  # the objective loads its own data
            problem = FitnessProblem(cell.settings)
        else:
            if loaded is None or loaded[0] != _data_key(cell.settings):
                loaded = (_data_key(cell.settings), FitnessProblem(cell.settings).dataset)
            problem = FitnessProblem(cell.settings, loaded[1])
        reporter.cell_started(cell)
        try:
            record = run_cell(cell, problem, spec.test_size)
        except ObjectiveExitError as err:
            raise err.stopped(f"every finished cell is saved in {out_dir}; the same command goes on from "
                              "there") from None
        append_jsonl(out_dir / RESULTS, record)
        reporter.cell_finished(record)
    return read_results(out_dir)[1]
