"""Benchmark specifications: what to train (activations x models x datasets x seeds) and how to compare it.

A benchmark is described by the keys of a ``[benchmark]`` table (``BenchSettings``: a preset file, the
command line, or ``afos validate``), read by the same typed parser as a run's configuration
(``afos.config.parse_section``), and resolved into a ``BenchSpec``: activations parsed, models checked,
seeds numbered. The training settings of every cell are a ``FitnessSettings`` (``BenchSpec.fitness``), the
settings a search's fitness uses. Presets (``benchmarks/presets/*.toml``, installed as ``afos.presets``)
reproduce the studies afos grew out of; their ``[quick]`` table shrinks them to seconds and maps datasets
that are not available offline to ones that are (``[quick.dataset_fallback]``; ``afos.study.presets``).
Running one is ``afos.study.runner``'s work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afos import plugins
from afos.config import LIMITS, FitnessSettings, check_fitness, describe_type, parse_section
from afos.errors import AfosError, AfosWarning, BenchError, ModelError, read_text
from afos.expr import STANDARD_ACTIVATIONS, parse, to_text
from afos.expr.gain import unit_gain
from afos.expr.ir import lower
from afos.fitness import data
from afos.run.rundir import CONFIG, Run
from afos.words import plural

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
# The training settings a benchmark sets for all its cells: fields of FitnessSettings (dataset, model and
# seed differ per cell; topology is a model option), in a [benchmark] table beside the keys of BenchSettings.
TRAINING = ("epochs", "batch_size", "learning_rate", "val_fraction", "train_size", "val_size", "data_dir", "gain",
            "objective", "direction", "objective_options")
# A benchmark trains longer than a search's fitness evaluation, and the functions as they are (a study compares
# published activations; `gain = "unit"` compares their shapes at equal gain, as a search does); its other
# training defaults are the search's.
TRAINING_DEFAULTS = FitnessSettings(epochs=5, gain="none")
# Model options a cell may set besides the model's own (``topology`` of mlp): what changes per model.
MODEL_SETTINGS = ("batch_size", "learning_rate", "val_fraction", "train_size", "val_size", "data_dir", "topology")


@dataclass(frozen=True)
class BenchSettings:
    """The keys of a ``[benchmark]`` table besides ``TRAINING``, and their defaults (lists may be given as
    comma-separated text)."""

    name: str = ""
    description: str = ""
    activations: list[str] = field(default_factory=lambda: ["relu", "leaky_relu", "elu"])
    models: list = field(default_factory=lambda: ["cnn-small"])  # names, NAME:key=value, or tables
    datasets: list[str] = field(default_factory=lambda: ["digits"])
    seeds: int = 3
    test_size: int = 0  # if positive, score on the first test_size test examples only (quick forms)
    metric: str = "test_accuracy"
    baseline: str = ""  # empty: relu if listed, else the first activation
    blocks: str = "run"
    alpha: float = 0.05
    tie_tolerance: float = 0.0
    case_epochs: tuple[int, ...] = ()  # score the metric at these epochs too, each a case of its own
    notes: list[str] = field(default_factory=list)


KEYS = (*(f.name for f in dataclasses.fields(BenchSettings)), *TRAINING)


@dataclass(frozen=True)
class Activation:
    label: str  # the name shown in tables and plots
    expression: str  # safe-grammar text
    source: str  # "standard", "expression" or "RUN_DIR rank K"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # a key of afos.fitness.zoo.MODELS
    label: str
    options: tuple[tuple[str, Any], ...] = ()  # FitnessSettings fields, e.g. (("topology", (64, 32)),)


@dataclass(frozen=True)
class BenchSpec:
    """A resolved benchmark: what to train, and how the statistics read the results."""

    activations: tuple[Activation, ...]
    models: tuple[ModelSpec, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    training: FitnessSettings = TRAINING_DEFAULTS  # every cell's (its dataset, model and seed are the cell's)
    test_size: int = 0
    metric: str = "test_accuracy"
    baseline: str = "relu"
    blocks: str = "run"
    alpha: float = 0.05
    tie_tolerance: float = 0.0
    case_epochs: tuple[int, ...] = ()
    name: str = ""
    description: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def labels(self) -> list[str]:
        return [a.label for a in self.activations]

    @property
    def epochs(self) -> int:
        return self.training.epochs

    def fitness(self, dataset: str, model: ModelSpec, seed: int) -> FitnessSettings:
        """The training settings of one cell: the benchmark's, then the model's options."""
        return dataclasses.replace(self.training, dataset=dataset, model=model.name, seed=seed, **dict(model.options))


@dataclass(frozen=True)
class Cell:
    activation: Activation
    model: ModelSpec
    dataset: str
    seed: int
    settings: FitnessSettings
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
    try:
        run = Run.open(path)
        k = len(run.front()) if match and match["all"] else int(match["k"]) if match else 1
        if k < 1:
            raise BenchError(f"{item}: top-K needs K >= 1")
        best = run.top(k)
    except AfosError as err:
        raise BenchError(str(err)) from None
    if len(best) < k:  # as afos export --top says it
        warnings.warn(f"{item}: top {k} is past the end: the front of {path} has {plural(len(best), 'entry')}, so "
                      f"{'that one is' if len(best) == 1 else f'all {len(best)} are'} benchmarked", AfosWarning,
                      stacklevel=2)
    return [Activation(f"{path.name}#{i + 1}", e.expression, f"{path} rank {i + 1}") for i, e in enumerate(best)]


def parse_activation(item: str) -> list[Activation]:
    """One item of an activation list: a standard name, an expression, or ``RUN_DIR[:topK|:all]``."""
    item = item.strip()
    if item in STANDARD_ACTIVATIONS:
        return [Activation(item, STANDARD_ACTIVATIONS[item], "standard")]
    if ":" in item or (Path(item) / CONFIG).is_file():  # ':' never occurs in an expression
        return _from_run(item)
    try:
        parsed = parse(item)
        lower(parsed)
    except AfosError as err:
        raise BenchError(f"activation {item!r} is neither a standard name ({', '.join(STANDARD_ACTIVATIONS)}), "
                         f"a run directory nor a valid expression: {err}") from None
    return [Activation(item, to_text(parsed), "expression")]


def parse_activations(items: str | list[str]) -> tuple[Activation, ...]:
    items = split_top_level(items) if isinstance(items, str) else items
    out = [a for item in items for a in parse_activation(item)]
    seen: set[str] = set()
    for a in out:
        if a.label in seen:
            raise BenchError(f"activation {a.label!r} is listed twice")
        seen.add(a.label)
    return tuple(out)


def _option_from_text(key: str, text: str) -> Any:
    """A model option written on the command line (``NAME:key=value``), as TOML would give it."""
    default = getattr(FitnessSettings(), key)
    try:
        if isinstance(default, tuple):
            return [int(v) for v in text.split("x")]
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        kind = "widths such as 64x32" if isinstance(default, tuple) else describe_type(default)
        raise BenchError(f"model option {key}={text!r}: must be {kind}") from None
    return text


def _options(name: str, options: dict[str, Any], where: str) -> tuple[tuple[str, Any], ...]:
    from afos.fitness import zoo  # the model registry (loads the training stack)

    allowed = [k for k in MODEL_SETTINGS if k != "topology" or "topology" in zoo.options_of(name)]
    for key in options:
        if key not in allowed:
            raise BenchError(f"model option {key!r} is not a setting model {name!r} takes in {where} "
                             f"(settings: {', '.join(allowed)})")
    typed = parse_section(FitnessSettings, options, f"model option of {where}", BenchError)
    return tuple(sorted((k, getattr(typed, k)) for k in options))


def parse_model(item: str | dict[str, Any]) -> ModelSpec:
    """``NAME``, ``NAME:key=value;key=value`` (lists as ``64x32``) or a table {name, label, options}."""
    from afos.fitness import zoo

    if isinstance(item, str):
        name, _, rest = item.partition(":")
        head, _, tail = rest.partition(":")
        if plugins.is_reference(f"{name}:{head}"):  # the user's package.module:factory[:key=value;...]
            name, rest = f"{name}:{head}", tail
        options = {}
        for part in filter(None, rest.split(";")):
            key, eq, value = part.partition("=")
            if not eq:
                raise BenchError(f"model option {part!r} in {item!r} is not key=value")
            key = key.strip()
            options[key] = _option_from_text(key, value.strip()) if key in MODEL_SETTINGS else value
        item = {"name": name.strip(), "label": item if rest else name.strip(), "options": options}
    unknown = set(item) - {"name", "label", "options"}
    if unknown or "name" not in item:
        raise BenchError(f"a model table has keys name, label, options; got {sorted(item)}")
    try:
        zoo.check(item["name"])
    except ModelError as err:
        raise BenchError(str(err)) from None
    label = item.get("label", item["name"])
    return ModelSpec(item["name"], label, _options(item["name"], item.get("options", {}), repr(label)))


# --- specification: defaults < preset < quick form < command line ---------------------------------


def check_keys(values: dict[str, Any], where: str) -> None:
    unknown = set(values) - set(KEYS)
    if unknown:
        raise BenchError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: {', '.join(KEYS)})")


def _as_list(value: Any) -> Any:
    return split_top_level(value) if isinstance(value, str) else value


def make_spec(values: dict[str, Any]) -> BenchSpec:
    """Resolves raw values (defaults < preset < quick < command line) into a checked BenchSpec."""
    check_keys(values, "benchmark")
    lists = {k: _as_list(values[k]) for k in ("activations", "models", "datasets") if k in values}
    v = parse_section(BenchSettings, {k: x for k, x in (values | lists).items() if k not in TRAINING}, "benchmark",
                      BenchError)
    if v.seeds > LIMITS["protocol.validate_seeds"]:  # before a tuple of them is built
        raise BenchError(f"seeds must be at most {LIMITS['protocol.validate_seeds']}, got {v.seeds}")
    given = {k: x for k, x in values.items() if k in TRAINING}
    training = parse_section(FitnessSettings, given, "benchmark", BenchError)
    if training.objective:  # its options as a search resolves them (the declared ones filled in and checked)
        from afos.fitness import own

        given["objective_options"] = own.resolve_options(training.objective, own.objective(training.objective),
                                                         training.objective_options)
        training = dataclasses.replace(training, objective_options=given["objective_options"])
    activations = parse_activations(v.activations)
    labels = [a.label for a in activations]
    spec = BenchSpec(
        activations=activations, models=tuple(parse_model(m) for m in v.models), datasets=tuple(v.datasets),
        seeds=tuple(range(FIRST_SEED, FIRST_SEED + v.seeds)),
        training=dataclasses.replace(TRAINING_DEFAULTS, **{k: getattr(training, k) for k in given}),
        test_size=v.test_size, metric=v.metric, baseline=v.baseline or ("relu" if "relu" in labels else labels[0]),
        blocks=v.blocks, alpha=v.alpha, tie_tolerance=v.tie_tolerance, case_epochs=v.case_epochs, name=v.name,
        description=v.description, notes=tuple(v.notes),
    )
    _validate(spec)
    return spec


def _validate(spec: BenchSpec) -> None:
    check_fitness(spec.training, BenchError)  # the training settings are checked as a search's are
    checks = [
        (spec.models and spec.datasets and spec.seeds, "a benchmark needs at least one model, dataset and seed"),
        (spec.test_size >= 0, f"test_size must be at least 0 (0: the whole test split), got {spec.test_size}"),
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
    t = spec.training
    for name in spec.datasets:  # afos's own datasets' sizes are known before loading them
        sizes = data.split_sizes(name, t.val_fraction, count=False)
        if sizes is not None:
            data.subset_sizes(name, sizes, t.train_size, t.val_size)
    if spec.training.gain == "unit":
        for act in spec.activations:
            reason = unit_gain(lower(parse(act.expression)))[1]
            if reason is not None:
                raise BenchError(f"activation {act.label!r} cannot be trained at unit gain: {reason}")


def spec_to_dict(spec: BenchSpec) -> dict[str, Any]:
    """What ``bench.toml`` holds: the training settings flat, beside the other keys, as a [benchmark] table."""
    out = dataclasses.asdict(spec)
    del out["training"]
    out |= {k: getattr(spec.training, k) for k in TRAINING}
    out["activations"] = [dataclasses.asdict(a) for a in spec.activations]
    out["models"] = [{"name": m.name, "label": m.label, "options": dict(m.options)} for m in spec.models]
    return out


def spec_from_dict(d: dict[str, Any]) -> BenchSpec:
    """The inverse of `spec_to_dict` (reads a benchmark directory's bench.toml; one written before a training
    setting existed gets its default)."""
    fields = {f.name for f in dataclasses.fields(BenchSpec)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields}
    values["training"] = dataclasses.replace(TRAINING_DEFAULTS, **{k: d[k] for k in TRAINING if k in d})
    values["activations"] = tuple(Activation(**a) for a in d["activations"])
    values["models"] = tuple(ModelSpec(m["name"], m["label"], tuple(sorted(
        (k, tuple(v) if isinstance(v, list) else v) for k, v in m.get("options", {}).items())))
        for m in d["models"])
    return BenchSpec(**values)


def read_spec(bench_dir: Path) -> BenchSpec:
    path = Path(bench_dir) / SPEC
    if not path.is_file():
        raise BenchError(f"{bench_dir} is not a benchmark directory (no {SPEC})")
    try:
        return spec_from_dict(tomllib.loads(read_text(path, BenchError)))
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as err:
        raise BenchError(f"{path}: not a benchmark specification this afos can read ({err})") from None


# --- cells --------------------------------------------------------------------------------------

# The settings a cell's key was made of when benchmark directories were first written; a setting added
# later enters the key only where it differs from the value that means what cells meant before it existed
# (KEY_LEGACY), so that older results keep their keys.
KEY_SETTINGS = ("dataset", "model", "epochs", "batch_size", "learning_rate", "val_fraction", "train_size",
                "val_size", "seed", "topology", "data_dir")
KEY_LEGACY = {"gain": "none", "objective": "", "direction": "", "objective_options": {}}


def cell_key(expression: str, settings: FitnessSettings, test_size: int) -> str:
    values = dataclasses.asdict(settings)
    ident = {k: v for k, v in values.items() if k in KEY_SETTINGS or v != KEY_LEGACY[k]}
    text = json.dumps([expression, ident, test_size], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cells(spec: BenchSpec) -> list[Cell]:
    """Every cell, dataset and seed outermost so that an interrupted benchmark has whole seeds."""
    out = []
    for dataset in spec.datasets:
        for seed in spec.seeds:
            for model in spec.models:
                settings = spec.fitness(dataset, model, seed)
                for act in spec.activations:
                    out.append(Cell(act, model, dataset, seed, settings,
                                    cell_key(act.expression, settings, spec.test_size)))
    return out
