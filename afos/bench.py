"""Benchmark mode: train every activation x model x dataset x seed and record learning curves.

A benchmark directory holds ``bench.toml`` (the resolved specification, activations as text in the safe
grammar), ``environment.json`` (versions and hardware of the machine that ran it) and ``results.jsonl``
(one line per finished cell, appended and fsynced): running the same benchmark again into the same
directory skips the cells already there, so an interrupted benchmark resumes where it stopped.
Presets (``benchmarks/presets/*.toml``, installed as ``afos.presets``) reproduce the studies afos grew
out of; their ``[quick]`` table shrinks them to seconds and maps datasets that are not available offline
to ones that are (``[quick.dataset_fallback]``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import tomli_w

from afos import archive, data, models, train
from afos import compile as compile_lib
from afos import expr as expr_lib
from afos.primitives import STANDARD_ACTIVATIONS
from afos.space import data_files

SPEC = "bench.toml"
RESULTS = "results.jsonl"
ENVIRONMENT = "environment.json"
FIRST_SEED = 1000  # benchmark seeds start here so that they differ from the seeds searches use by default

# Metric name -> True when higher is better. Every metric is recorded per epoch in a cell's history.
METRICS: dict[str, bool] = {
    "test_accuracy": True, "val_accuracy": True, "train_accuracy": True,
    "test_loss": False, "val_loss": False, "train_loss": False,
}
BLOCK_UNITS = ("run", "case")  # a Friedman block is one (case, seed) run, or one case averaged over seeds

# What `--quick` does to any benchmark before a preset's own [quick] table and the command line apply.
# Equal split sizes: the evaluation step compiles once per cell instead of three times.
DEFAULT_QUICK: dict[str, Any] = {"epochs": 1, "seeds": 2, "train_size": 128, "val_size": 128, "test_size": 128,
                                 "case_epochs": []}

DEFAULTS: dict[str, Any] = {
    "name": "", "description": "", "activations": ["relu", "leaky_relu", "elu"], "models": ["cnn-small"],
    "datasets": ["digits"], "seeds": 3, "epochs": 5, "batch_size": 32, "learning_rate": 1e-3,
    "val_fraction": 0.2, "train_size": 0, "val_size": 0, "test_size": 0, "metric": "test_accuracy", "baseline": "",
    "blocks": "run", "alpha": 0.05, "tie_tolerance": 0.0, "case_epochs": [], "notes": [],
}


class BenchError(ValueError):
    """A benchmark specification, preset or directory that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class Activation:
    label: str  # the name shown in tables and plots
    expression: str  # safe-grammar text
    source: str  # "standard", "expression" or "RUN_DIR rank K"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # a key of afos.models.MODELS
    label: str
    options: tuple[tuple[str, Any], ...] = ()  # FitnessSettings fields, e.g. (("topology", (64, 32)),)


@dataclass(frozen=True)
class BenchSpec:
    """A resolved benchmark: what to train, and how the statistics read the results."""

    activations: tuple[Activation, ...]
    models: tuple[ModelSpec, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    val_fraction: float = 0.2
    train_size: int = 0
    val_size: int = 0
    test_size: int = 0  # if positive, score on the first test_size test examples only (quick forms)
    metric: str = "test_accuracy"
    baseline: str = "relu"
    blocks: str = "run"
    alpha: float = 0.05
    tie_tolerance: float = 0.0
    case_epochs: tuple[int, ...] = ()  # score the metric at these epochs too, each a case of its own
    name: str = ""
    description: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def labels(self) -> list[str]:
        return [a.label for a in self.activations]


@dataclass(frozen=True)
class Cell:
    activation: Activation
    model: ModelSpec
    dataset: str
    seed: int
    settings: train.FitnessSettings
    key: str


# --- activation and model lists --------------------------------------------------------


def split_top_level(text: str) -> list[str]:
    """Splits on commas outside parentheses and brackets: ``relu,max(x, 0)`` -> ``['relu', 'max(x, 0)']``."""
    items, depth, current = [], 0, []
    for ch in text:
        depth += (ch in "([") - (ch in ")]")
        if ch == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    items.append("".join(current).strip())
    if depth != 0:
        raise BenchError(f"unbalanced parentheses in {text!r}")
    if any(not item for item in items):
        raise BenchError(f"empty item in the list {text!r}")
    return items


_RUN_ITEM = re.compile(r"(?P<path>.+):(?:top(?P<k>\d+)|(?P<all>all))")


def _from_run(item: str) -> list[Activation]:
    match = _RUN_ITEM.fullmatch(item)
    path = Path(match["path"] if match else item)
    if not (path / archive.CONFIG).is_file():
        raise BenchError(f"{path} is not an afos run directory (no {archive.CONFIG})")
    front = archive.read_pareto_csv(path) or archive.front_from_records(archive.read_jsonl(path / archive.EVALUATIONS))
    if not front:
        raise BenchError(f"{path}: the run has no scored function yet")
    ranked = sorted(front, key=lambda e: (-e.val_accuracy, e.complexity, e.expression))
    k = len(ranked) if match and match["all"] else int(match["k"]) if match else 1
    if k < 1:
        raise BenchError(f"{item}: top-K needs K >= 1")
    return [Activation(f"{path.name}#{i + 1}", e.expression, f"{path} rank {i + 1}") for i, e in
            enumerate(ranked[:k])]


def parse_activation(item: str) -> list[Activation]:
    """One item of an activation list: a standard name, an expression, or ``RUN_DIR[:topK|:all]``."""
    item = item.strip()
    if item in STANDARD_ACTIVATIONS:
        return [Activation(item, STANDARD_ACTIVATIONS[item], "standard")]
    if ":" in item or (Path(item) / archive.CONFIG).is_file():  # ':' never occurs in an expression
        return _from_run(item)
    try:
        parsed = expr_lib.parse(item)
        compile_lib.to_jax(parsed)
    except ValueError as err:
        raise BenchError(f"activation {item!r} is neither a standard name ({', '.join(STANDARD_ACTIVATIONS)}), "
                         f"a run directory nor a valid expression: {err}") from None
    return [Activation(item, expr_lib.to_text(parsed), "expression")]


def parse_activations(items: str | list[str]) -> tuple[Activation, ...]:
    items = split_top_level(items) if isinstance(items, str) else items
    out = [a for item in items for a in parse_activation(item)]
    seen: set[str] = set()
    for a in out:
        if a.label in seen:
            raise BenchError(f"activation {a.label!r} is listed twice")
        seen.add(a.label)
    return tuple(out)


def _option_value(key: str, value: Any) -> Any:
    """A model option converted to the type of its FitnessSettings field (e.g. a list to a tuple)."""
    fields = {f.name: f for f in dataclasses.fields(train.FitnessSettings)}
    if key not in fields or key in ("model", "dataset", "seed", "epochs"):
        raise BenchError(f"model option {key!r} is not a setting of afos.train.FitnessSettings in this afos "
                         f"(settings: {', '.join(f for f in fields if f not in ('model', 'dataset', 'seed'))})")
    default = getattr(train.FitnessSettings(), key)
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) if isinstance(default, str) else tuple(value)
    return value


def parse_model(item: str | dict[str, Any]) -> ModelSpec:
    """``NAME``, ``NAME:key=value;key=value`` (lists as ``64x32``) or a table {name, label, options}."""
    if isinstance(item, str):
        name, _, rest = item.partition(":")
        options = {}
        for part in filter(None, rest.split(";")):
            key, eq, value = part.partition("=")
            if not eq:
                raise BenchError(f"model option {part!r} in {item!r} is not key=value")
            options[key.strip()] = [int(v) for v in value.split("x")] if re.fullmatch(r"\d+(x\d+)*", value) \
                else value
        item = {"name": name.strip(), "label": item if rest else name.strip(), "options": options}
    unknown = set(item) - {"name", "label", "options"}
    if unknown or "name" not in item:
        raise BenchError(f"a model table has keys name, label, options; got {sorted(item)}")
    if item["name"] not in models.MODELS:
        raise BenchError(f"unknown model {item['name']!r} (available: {', '.join(models.MODELS)})")
    options = tuple(sorted((k, _option_value(k, v)) for k, v in item.get("options", {}).items()))
    return ModelSpec(item["name"], item.get("label", item["name"]), options)


# --- specification: defaults, presets, quick form, command line ----------------------------


def preset_names() -> list[str]:
    presets = data_files("afos.presets", "benchmarks/presets")
    return sorted(p.name[:-5] for p in presets.iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str | Path, quick: bool = False) -> dict[str, Any]:
    """The raw values of a preset (a built-in name or a .toml file), in its quick form if asked."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise BenchError(f"{path}: no such preset file")
        text, source = path.read_text(), str(path)
    elif str(name_or_path) in preset_names():
        text = (data_files("afos.presets", "benchmarks/presets") / f"{name_or_path}.toml").read_text()
        source = f"benchmarks/presets/{name_or_path}.toml"
    else:
        raise BenchError(f"unknown preset {str(name_or_path)!r} (available: {', '.join(preset_names())})")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BenchError(f"{source}: not valid TOML ({err})") from None
    if set(doc) - {"benchmark", "quick"}:
        raise BenchError(f"{source}: unknown section(s) {sorted(set(doc) - {'benchmark', 'quick'})} "
                         "(allowed: benchmark, quick)")
    values = {"name": path.stem, **doc.get("benchmark", {})}
    _check_keys(values, source + " [benchmark]")
    if quick:
        values = apply_quick(values, doc.get("quick", {}), source)
    return values


def apply_quick(values: dict[str, Any], quick: dict[str, Any], source: str = "quick") -> dict[str, Any]:
    """The quick form: tiny data and few seeds, datasets replaced by ``dataset_fallback`` where named."""
    quick = dict(quick)
    fallback = quick.pop("dataset_fallback", {})
    note = quick.pop("note", "")
    _check_keys(quick, source + " [quick]")
    out = {**values, **DEFAULT_QUICK, **quick}
    datasets = out.get("datasets", DEFAULTS["datasets"])
    out["datasets"] = list(dict.fromkeys(fallback.get(d, d) for d in datasets))
    notes = list(out.get("notes", [])) + ["quick form: tiny data, few seeds; not for conclusions"]
    notes += [f"quick form: dataset {d} replaced by {fallback[d]} ({note or 'not available offline'})"
              for d in datasets if d in fallback]
    out["notes"] = notes
    out["name"] = f"{out.get('name') or 'bench'}-quick"
    return out


def _check_keys(values: dict[str, Any], where: str) -> None:
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise BenchError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: {', '.join(DEFAULTS)})")


def make_spec(values: dict[str, Any]) -> BenchSpec:
    """Resolves raw values (defaults < preset < quick < command line) into a checked BenchSpec."""
    _check_keys(values, "benchmark")
    v = {**DEFAULTS, **values}
    seeds = v["seeds"]
    seeds = tuple(range(FIRST_SEED, FIRST_SEED + seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    datasets = split_top_level(v["datasets"]) if isinstance(v["datasets"], str) else v["datasets"]
    model_items = split_top_level(v["models"]) if isinstance(v["models"], str) else v["models"]
    activations = parse_activations(v["activations"])
    labels = [a.label for a in activations]
    baseline = v["baseline"] or ("relu" if "relu" in labels else labels[0])
    spec = BenchSpec(
        activations=activations, models=tuple(parse_model(m) for m in model_items), datasets=tuple(datasets),
        seeds=seeds, epochs=int(v["epochs"]), batch_size=int(v["batch_size"]),
        learning_rate=float(v["learning_rate"]), val_fraction=float(v["val_fraction"]),
        train_size=int(v["train_size"]), val_size=int(v["val_size"]), test_size=int(v["test_size"]),
        metric=v["metric"], baseline=baseline,
        blocks=v["blocks"], alpha=float(v["alpha"]), tie_tolerance=float(v["tie_tolerance"]),
        case_epochs=tuple(int(e) for e in v["case_epochs"]), name=v["name"], description=v["description"],
        notes=tuple(v["notes"]),
    )
    _validate(spec)
    return spec


def _validate(spec: BenchSpec) -> None:
    checks = [
        (spec.models and spec.datasets and spec.seeds, "a benchmark needs at least one model, dataset and seed"),
        (spec.epochs >= 1, "epochs must be at least 1"),
        (spec.batch_size >= 1, "batch_size must be at least 1"),
        (spec.metric in METRICS, f"unknown metric {spec.metric!r} (available: {', '.join(METRICS)})"),
        (spec.baseline in spec.labels, f"baseline {spec.baseline!r} is not among the activations "
                                       f"({', '.join(spec.labels)})"),
        (spec.blocks in BLOCK_UNITS, f"blocks must be one of {', '.join(BLOCK_UNITS)}, got {spec.blocks!r}"),
        (0.0 < spec.alpha < 1.0, "alpha must be between 0 and 1"),
        (all(1 <= e <= spec.epochs for e in spec.case_epochs), f"case_epochs must lie in 1..{spec.epochs}"),
        (len(set(spec.seeds)) == len(spec.seeds), "seeds must differ"),
        (len({m.label for m in spec.models}) == len(spec.models), "model labels must differ"),
    ]
    for ok, message in checks:
        if not ok:
            raise BenchError(message)


def spec_to_dict(spec: BenchSpec) -> dict[str, Any]:
    out = dataclasses.asdict(spec)
    out["activations"] = [dataclasses.asdict(a) for a in spec.activations]
    out["models"] = [{"name": m.name, "label": m.label, "options": dict(m.options)} for m in spec.models]
    return out


def spec_from_dict(d: dict[str, Any]) -> BenchSpec:
    """The inverse of `spec_to_dict` (reads a benchmark directory's bench.toml)."""
    fields = {f.name for f in dataclasses.fields(BenchSpec)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields}
    values["activations"] = tuple(Activation(**a) for a in d["activations"])
    values["models"] = tuple(ModelSpec(m["name"], m["label"], tuple(sorted(
        (k, tuple(v) if isinstance(v, list) else v) for k, v in m.get("options", {}).items())))
        for m in d["models"])
    return BenchSpec(**values)


def read_spec(bench_dir: Path) -> BenchSpec:
    path = Path(bench_dir) / SPEC
    if not path.is_file():
        raise BenchError(f"{bench_dir} is not a benchmark directory (no {SPEC})")
    return spec_from_dict(tomllib.loads(path.read_text()))


# --- cells and the driver --------------------------------------------------------------


def cells(spec: BenchSpec) -> list[Cell]:
    """Every cell, dataset and seed outermost so that an interrupted benchmark has whole seeds."""
    out = []
    for dataset in spec.datasets:
        for seed in spec.seeds:
            for model in spec.models:
                settings = train.FitnessSettings(
                    dataset=dataset, model=model.name, epochs=spec.epochs, batch_size=spec.batch_size,
                    learning_rate=spec.learning_rate, val_fraction=spec.val_fraction, train_size=spec.train_size,
                    val_size=spec.val_size, seed=seed)
                settings = dataclasses.replace(settings, **dict(model.options))
                for act in spec.activations:
                    ident = json.dumps([act.expression, dataclasses.asdict(settings), spec.test_size],
                                       sort_keys=True, default=str)
                    key = hashlib.sha1(ident.encode()).hexdigest()[:16]
                    out.append(Cell(act, model, dataset, seed, settings, key))
    return out


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def run_cell(cell: Cell, dataset: data.Dataset, test_size: int = 0) -> dict[str, Any]:
    """Trains one cell and returns its record: per-epoch train/val/test loss and accuracy."""
    history: list[dict[str, Any]] = []
    test = dataset.test()
    if test_size > 0:
        test = data.Split(test.x[:test_size], test.y[:test_size])

    def on_epoch(epoch: int, train_loss: float, evaluate) -> None:
        row = {"epoch": epoch + 1, "train_loss": _finite(train_loss)}
        for split_name, split in (("train", dataset.train), ("val", dataset.val), ("test", test)):
            loss, acc = evaluate(split)
            if split_name != "train":
                row[f"{split_name}_loss"] = _finite(loss)
            row[f"{split_name}_accuracy"] = _finite(acc)
        history.append(row)

    act = compile_lib.to_jax(expr_lib.parse(cell.activation.expression))
    start = time.perf_counter()
    result = train.fit(act, dataset, cell.settings, on_epoch)
    return {
        "key": cell.key, "activation": cell.activation.label, "expr": cell.activation.expression,
        "model": cell.model.label, "model_name": cell.model.name, "dataset": cell.dataset, "seed": cell.seed,
        "epochs": cell.settings.epochs, "diverged": bool(result.diverged), "history": history,
        "final": history[-1] if history else {}, "seconds": round(time.perf_counter() - start, 3),
    }


class Reporter(Protocol):
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
    return spec, results(spec, archive.read_jsonl(Path(bench_dir) / RESULTS))


def _pending(spec: BenchSpec, path: Path) -> tuple[list[Cell], int]:
    archive.repair_jsonl(path)
    done = {r.get("key") for r in archive.read_jsonl(path)}
    all_cells = cells(spec)
    return [c for c in all_cells if c.key not in done], len(all_cells)


def default_out_dir(spec: BenchSpec, root: str | Path = "runs") -> Path:
    """``runs/bench-<name>`` for a named benchmark (so that running it again resumes), else a new one."""
    return Path(root) / (f"bench-{spec.name}" if spec.name else time.strftime("bench-%Y%m%d-%H%M%S"))


def run(spec: BenchSpec, out_dir: str | Path, reporter: Reporter | None = None) -> list[dict[str, Any]]:
    """Trains every cell of ``spec`` not yet in ``out_dir/results.jsonl``; returns the spec's records."""
    out_dir = Path(out_dir)
    reporter = reporter or SilentReporter()
    out_dir.mkdir(parents=True, exist_ok=True)
    archive.write_text_atomic(out_dir / SPEC, tomli_w.dumps(spec_to_dict(spec)))
    if not (out_dir / ENVIRONMENT).exists():
        archive.write_text_atomic(out_dir / ENVIRONMENT, json.dumps(environment(), indent=2))
    todo, total = _pending(spec, out_dir / RESULTS)
    reporter.started(total, total - len(todo))
    loaded: tuple[tuple[str, int], data.Dataset] | None = None
    for cell in todo:
        if loaded is None or loaded[0] != (cell.dataset, cell.seed):
            ds = data.load(cell.dataset, seed=cell.seed, val_fraction=spec.val_fraction,
                           train_size=spec.train_size, val_size=spec.val_size)
            loaded = ((cell.dataset, cell.seed), ds)
        reporter.cell_started(cell)
        record = run_cell(cell, loaded[1], spec.test_size)
        archive.append_jsonl(out_dir / RESULTS, record)
        reporter.cell_finished(record)
    return read_results(out_dir)[1]


def iter_histories(records: list[dict[str, Any]], metric: str) -> Iterator[tuple[dict[str, Any], list[float]]]:
    """(record, per-epoch values of ``metric``; NaN where it was not finite) for each record."""
    for r in records:
        yield r, [math.nan if h.get(metric) is None else h[metric] for h in r["history"]]
