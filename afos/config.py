"""Run configuration: defaults, TOML files, command-line overrides, and the resolved form.

A run stores its fully resolved configuration in ``config.toml`` (the search space included as data), so it can
be resumed and read without the files it was started from. Every section is a frozen dataclass read by one typed
parser (``parse_section``), which the benchmark specification uses too. Nothing here imports JAX: every command
reads its configuration without loading the training stack.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import tomli_w

from afos.errors import ConfigError, read_text
from afos.expr import parse
from afos.expr.gain import GAIN_MODES
from afos.expr.primitives import STANDARD_ACTIVATIONS
from afos.ga import space as space_lib


@dataclass(frozen=True)
class SearchSettings:
    space: str = "default"
    population: int = 16
    generations: int = 6  # offspring generations after the initial population (generation 0)
    seed: int = 0
    crossover_prob: float = 0.7
    mutation_prob: float = 0.4
    novelty_tries: int = 10  # variation retries to produce a function not seen before
    init_exprs: list[str] = field(default_factory=list)  # warm start: functions that open generation 0
    # "ga": NSGA-II selection and variation; "random": fresh random trees every generation; "memetic": the best
    # functions' neighbours, the GA's children and random trees, chosen by quotas and a surrogate (afos.ga.local).
    # docs/SEARCH.md measures the three on planted targets. A stored config without it reads "ga" (UNSTORED).
    strategy: str = "ga"
    # A pre-screen of the ga and random strategies (afos.ga.surrogate): "none", or a regressor that ranks
    # oversample x population children and keeps population of them, explore of those drawn at random. (The
    # memetic strategy ranks its own pool, with oversample x population genetic children and as many random trees.)
    surrogate: str = "none"
    oversample: int = 4
    explore: float = 0.25


@dataclass(frozen=True)
class FitnessSettings:
    """Everything that changes what a fitness value means (part of the cache key)."""

    dataset: str = "digits"
    model: str = "cnn-small"
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3
    val_fraction: float = 0.2
    train_size: int = 0
    val_size: int = 0
    seed: int = 0  # the data split, and the first initialisation seed of fitness evaluations
    topology: tuple[int, ...] = ()  # hidden widths of the ``mlp`` model (empty: its default)
    data_dir: str = ""  # where dataset files are looked for first (empty: $AFOS_DATA_DIR, then system paths)
    gain: str = "unit"  # "unit": train g*f with E[(g f(z))^2] = 1 on N(0, 1) (afos.expr.gain); "none": f itself
    # the user's own objective (afos.fitness.own): trains what it likes and returns a validation score; empty:
    # afos trains ``model`` on ``dataset``. ``direction``: "max" (a score in [0, 1]) or "min" (a loss >= 0);
    # empty: what the objective declares (its attribute ``direction``), else "max" (a run stores the decision).
    objective: str = ""
    direction: str = ""
    # the objective's settings (--objective-option KEY=VALUE): those it declares, resolved and stored when a run
    # starts (afos.fitness.own.resolve_options); empty: none, what every run before them meant.
    objective_options: dict[str, Any] = field(default_factory=dict)


DIRECTIONS = ("", "max", "min")  # of a user's objective: a score to maximise, or a loss to minimise
STRATEGIES = ("ga", "random", "memetic")  # afos.ga.strategy: how generations after the first are proposed
SURROGATES = ("none", "knn", "gp", "forest")  # afos.ga.surrogate: the regressor of the pre-screen
BACKENDS = ("sequential", "batched")  # afos.fitness.evaluator: how one place trains candidates
POOLS = ("sharded", "ray")  # afos.fitness.pools, .cluster: the work of a backend spread over devices or machines


@dataclass(frozen=True)
class EvaluatorSettings:
    """Where and how candidates are trained (docs/PERFORMANCE.md, docs/SCALING.md)."""

    backend: str = "auto"
    worker_backend: str = "auto"  # what each device (sharded) or Ray worker runs
    ray_address: str = ""  # '' starts a local Ray instance; 'auto' or HOST:PORT joins a running cluster
    workers: int = 0  # Ray workers; 0: one per GPU of the cluster, or per worker_cpus CPUs where it has none
    worker_cpus: float = 1.0
    worker_gpus: float = -1.0  # -1: one GPU per worker where the cluster has GPUs, else none
    group_size: int = 0  # candidates per Ray task; 0: the candidates of a generation split evenly over workers
    compilation_cache: bool = True  # compiled programs kept on disk (afos.fitness.compile_cache); never a result
    # a fitness memory shared across runs (afos.run.memory): an SQLite file; '' = none. A value it gives is one
    # measured under the same protocol, so it changes no result: a resume may add, change or drop it.
    memory: str = ""


# Evaluator settings that place or speed up the work without changing a result: a resume may change them.
PLACEMENT = ("ray_address", "workers", "worker_cpus", "worker_gpus", "group_size", "compilation_cache", "memory")


DEFAULT_ANCHORS = ("relu", "leaky_relu", "gelu", "swish")


@dataclass(frozen=True)
class ProtocolSettings:
    """How much a fitness value can be trusted: seeds, racing, anchors and held-out validation."""

    fitness_seeds: int = 1  # fitness = mean validation accuracy over this many initialisation seeds
    race_seeds: int = 0  # racing: front members are re-scored up to this many seeds (<= fitness_seeds: off)
    race_budget: float = 0.25  # re-scoring trainings per generation, as a fraction of population * fitness_seeds
    # Successive halving over training length: rung k >= 1 trains for rungs[k-1] epochs (increasing, longer than
    # fitness.epochs); the best 1/halving of a rung's functions climb to the next (afos.ga.halving). () = off.
    rungs: tuple[int, ...] = ()
    halving: int = 3
    anchors: list[str] = field(default_factory=lambda: list(DEFAULT_ANCHORS))  # standard activations, same protocol
    validate_top: int = 3  # `afos validate`: functions of the front retrained on fresh seeds
    validate_seeds: int = 10  # fewer than 6 pairs cannot reach a verdict at alpha 0.05 (afos.study.verdict)
    validate_epochs: int = 5

    @property
    def max_seeds(self) -> int:
        """The seeds a confirmed fitness (a raced front member, an anchor) is averaged over."""
        return max(self.fitness_seeds, self.race_seeds)


@dataclass(frozen=True)
class Config:
    search: SearchSettings = field(default_factory=SearchSettings)
    fitness: FitnessSettings = field(default_factory=FitnessSettings)
    evaluator: EvaluatorSettings = field(default_factory=EvaluatorSettings)
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    space: space_lib.SearchSpace | None = None  # resolved from search.space

    def resolved(self) -> Config:
        """This config with its search space loaded (files are read once, here)."""
        if self.space is not None:
            return self
        return dataclasses.replace(self, space=space_lib.load(self.search.space))

    def to_dict(self) -> dict[str, Any]:
        fitness = dataclasses.asdict(self.fitness)  # without objective options: as stored before they existed
        out = {
            "search": dataclasses.asdict(self.search),
            "fitness": {k: v for k, v in fitness.items() if k != "objective_options" or v},
            "evaluator": dataclasses.asdict(self.evaluator),
            "protocol": dataclasses.asdict(self.protocol),
        }
        if self.space is not None:
            out["space"] = self.space.to_dict()
        return out


SECTIONS = {"search": SearchSettings, "fitness": FitnessSettings, "evaluator": EvaluatorSettings,
            "protocol": ProtocolSettings}


def parse_section(cls, data: dict, where: str, error: type[Exception] = ConfigError):
    """``cls`` (a dataclass of settings) from TOML data: unknown keys and values of the wrong type are refused
    with an ``error`` naming ``where`` and the key; integers are accepted for floats, lists for tuples."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise error(f"{where}: unknown key {key!r} (allowed: {', '.join(fields)})")
        default = getattr(cls(), key)
        if isinstance(default, tuple):  # a list of ints in TOML (e.g. fitness.topology)
            if not isinstance(value, list | tuple) or not all(type(v) is int for v in value):
                raise error(f"{where}.{key}: must be a list of integers, got {value!r}")
            value = tuple(value)
        elif isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, type(default)):
            if not (isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)):
                raise error(f"{where}.{key}: must be {describe_type(default)}, got {value!r}")
            value = float(value)
        values[key] = value
    return cls(**values)


def describe_type(default: Any) -> str:
    """How an error names the type of a setting whose default is ``default``."""
    return {bool: "true or false", int: "an integer", float: "a number", str: "text", list: "a list",
            dict: "a table of KEY = VALUE"}.get(type(default), f"a {type(default).__name__}")


def from_dict(data: dict[str, Any], source: str = "config", limits: bool = True) -> Config:
    """The config ``data`` describes (``limits``: also check ``LIMITS``, which a stored run's never faces)."""
    for key in data:
        if key not in (*SECTIONS, "space"):
            raise ConfigError(f"{source}: unknown section [{key}] (allowed: {', '.join(SECTIONS)}, space)")
    parts = {name: parse_section(cls, data.get(name, {}), f"{source} [{name}]") for name, cls in SECTIONS.items()}
    space = space_lib.from_dict(data["space"], f"{source} [space]") if "space" in data else None
    config = Config(**parts, space=space)
    validate(config, limits)
    return config


# Upper bounds that a demanding user still finds generous. Past them a setting is a typo: afos would spend
# minutes or hours building a population or a list of seeds (NSGA-II's sort is quadratic in the population)
# before saying anything, or fail later (JAX's keys take 64-bit seeds, and a run adds offsets to its seed).
LIMITS = {
    "search.population": 10_000,
    "search.generations": 100_000,
    "search.novelty_tries": 1_000,
    "search.oversample": 100,
    "search.seed": 2**62,
    "fitness.seed": 2**62,
    "fitness.epochs": 100_000,
    "fitness.batch_size": 65_536,
    "evaluator.workers": 10_000,
    "evaluator.group_size": 100_000,
    "protocol.fitness_seeds": 1_000,
    "protocol.race_seeds": 1_000,
    "protocol.halving": 1_000,
    "protocol.validate_top": 1_000,
    "protocol.validate_seeds": 1_000,
    "protocol.validate_epochs": 100_000,
}
MAX_WIDTH = 65_536  # of a hidden layer of fitness.topology


def check_limits(section: str, settings: Any, error: type[Exception] = ConfigError) -> None:
    """An ``error`` naming the setting and its bound if a setting of ``section`` exceeds ``LIMITS``."""
    for key, limit in LIMITS.items():
        name, _, field_name = key.partition(".")
        value = getattr(settings, field_name, None) if name == section else None
        if value is not None and value > limit:
            raise error(f"{key} must be at most {limit}, got {value}")


def check_fitness(f: FitnessSettings, error: type[Exception] = ConfigError, limits: bool = True) -> None:
    """The checks of the fitness settings, which a search's config and a benchmark's training share."""
    checks = [
        (f.epochs >= 1, "fitness.epochs must be at least 1"),
        (f.batch_size >= 1, "fitness.batch_size must be at least 1"),
        (0 < f.learning_rate < math.inf, "fitness.learning_rate must be positive"),
        (0.0 < f.val_fraction < 1.0, f"fitness.val_fraction must be between 0 and 1, got {f.val_fraction}"),
        (f.train_size >= 0, f"fitness.train_size must be at least 0 (0: the whole training split), got {f.train_size}"),
        (f.val_size >= 0, f"fitness.val_size must be at least 0 (0: the whole validation split), got {f.val_size}"),
        (f.gain in GAIN_MODES, f"fitness.gain must be one of {', '.join(GAIN_MODES)}, got {f.gain!r}"),
        (f.direction in DIRECTIONS, f"fitness.direction must be max or min, got {f.direction!r}"),
        (all(w >= 1 for w in f.topology), "fitness.topology must be positive layer widths"),
        (all(w <= MAX_WIDTH for w in f.topology), f"fitness.topology: layer widths must be at most {MAX_WIDTH}, "
                                                  f"got {list(f.topology)}"),
        (bool(f.objective) or not f.objective_options, "fitness.objective_options are options of an objective, "
                                                       "and no objective is set (--objective)"),
    ]
    for ok, message in checks:
        if not ok:
            raise error(message)
    if limits:
        check_limits("fitness", f, error)


def validate(config: Config, limits: bool = True) -> None:
    """A ConfigError naming the first setting of ``config`` that afos cannot use (one line). ``limits``: also
    the bounds of ``LIMITS``, which new input must keep; a run stored before they existed opens as it is."""
    s, f, p, e = config.search, config.fitness, config.protocol, config.evaluator
    local = ("auto", *BACKENDS)
    checks = [
        (e.backend in (*local, *POOLS), f"evaluator.backend: unknown backend {e.backend!r} "
                                        f"(available: {', '.join((*local, *POOLS))})"),
        (e.worker_backend in local, f"evaluator.worker_backend: unknown backend {e.worker_backend!r} "
                                    f"(available: {', '.join(local)})"),
        (e.workers >= 0 and e.group_size >= 0, "evaluator.workers and evaluator.group_size must be at least 0"),
        (e.worker_cpus > 0, "evaluator.worker_cpus must be positive"),
        (e.worker_gpus >= 0 or e.worker_gpus == -1, "evaluator.worker_gpus must be at least 0 (or -1: automatic)"),
        (s.seed >= 0 and f.seed >= 0, "search.seed and fitness.seed must be at least 0"),
        (s.population >= 2, "search.population must be at least 2"),
        (s.strategy in STRATEGIES, f"search.strategy must be one of {', '.join(STRATEGIES)}, got {s.strategy!r}"),
        (s.generations >= 0, "search.generations must be at least 0"),
        (s.surrogate in SURROGATES, f"search.surrogate must be one of {', '.join(SURROGATES)}, got {s.surrogate!r}"),
        (s.oversample >= 1, f"search.oversample must be at least 1, got {s.oversample}"),
        (0.0 <= s.explore <= 1.0, f"search.explore must be in [0, 1], got {s.explore}"),
        (s.novelty_tries >= 0, "search.novelty_tries must be at least 0"),
        (0.0 <= s.crossover_prob <= 1.0, "search.crossover_prob must be in [0, 1]"),
        (0.0 <= s.mutation_prob <= 1.0, "search.mutation_prob must be in [0, 1]"),
        (p.fitness_seeds >= 1, "protocol.fitness_seeds must be at least 1"),
        (p.race_seeds >= 0, "protocol.race_seeds must be at least 0"),
        (0.0 <= p.race_budget <= 10.0, "protocol.race_budget must be in [0, 10]"),
        (all(a < b for a, b in zip((f.epochs, *p.rungs), p.rungs, strict=False)),
         f"protocol.rungs must be increasing epochs, each longer than fitness.epochs ({f.epochs}), "
         f"got {list(p.rungs)}"),
        (all(r <= LIMITS["fitness.epochs"] for r in p.rungs),
         f"protocol.rungs must be at most {LIMITS['fitness.epochs']} epochs, got {list(p.rungs)}"),
        (p.halving >= 2, "protocol.halving must be at least 2"),
        (p.validate_top >= 1 and p.validate_seeds >= 1 and p.validate_epochs >= 1,
         "protocol.validate_top, validate_seeds and validate_epochs must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    check_fitness(f, limits=limits)
    for name, settings in (("search", s), ("evaluator", e), ("protocol", p)) if limits else ():
        check_limits(name, settings)
    for name in p.anchors:
        if name not in STANDARD_ACTIVATIONS:
            raise ConfigError(f"protocol.anchors: unknown activation {name!r} "
                              f"(available: {', '.join(STANDARD_ACTIVATIONS)})")
    for text in s.init_exprs:
        if not isinstance(text, str):
            raise ConfigError(f"search.init_exprs: {text!r} is not text")
        parse(text)  # raises ExpressionError (a ValueError) naming the problem


# What a setting meant before it existed: a run's stored config without the key is read with this value, so
# that a run keeps the behaviour it was started with (a user's config file without it gets today's default).
# FORMAT_1's keys mark a run of format 1; UNSTORED's were added later with a new default, in any format.
FORMAT_1 = {"fitness": {"gain": "none"}}
UNSTORED = {"search": {"strategy": "ga", "surrogate": "none"}}


def _read(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        return tomllib.loads(read_text(path, ConfigError))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None


def load(path: str | Path) -> Config:
    """A config file a user wrote: missing keys get today's defaults."""
    return from_dict(_read(path), str(path))


def load_stored(path: str | Path) -> tuple[Config, int]:
    """A run's ``config.toml`` and the run format it was written in: 1 for a run started before the settings
    of ``FORMAT_1`` existed (those keys keep the meaning they had), else 2."""
    data = _read(path)
    data |= {section: keys | data.get(section, {}) for section, keys in UNSTORED.items()}
    fitness = data.get("fitness", {})
    for key in ("train_size", "val_size"):  # before sizes were checked, a negative size meant the whole split
        if isinstance(fitness.get(key), int) and fitness[key] < 0:
            fitness[key] = 0
    missing = {section: {k: v for k, v in keys.items() if k not in data.get(section, {})}
               for section, keys in FORMAT_1.items()}
    if not any(missing.values()):
        return from_dict(data, str(path), limits=False), 2
    filled = {**data, **{section: {**data.get(section, {}), **keys} for section, keys in missing.items()}}
    return from_dict(filled, str(path), limits=False), 1


def override(config: Config, **sections: dict[str, Any]) -> Config:
    """Replaces fields per section, e.g. ``override(c, search={"population": 8})``; None values are ignored."""
    parts = {name: getattr(config, name) for name in SECTIONS}
    for name, changes in sections.items():
        if name not in SECTIONS:
            raise ConfigError(f"unknown config section {name!r}")
        changes = {k: v for k, v in changes.items() if v is not None}
        parts[name] = parse_section(SECTIONS[name], dataclasses.asdict(parts[name]) | changes, f"[{name}]")
    space_changed = sections.get("search", {}).get("space") not in (None, config.search.space)
    new = Config(**parts, space=None if space_changed else config.space)
    validate(new, limits=False)  # what was there before keeps its meaning (a stored run's); what changes is new
    for name, changes in sections.items():
        check_limits(name, SimpleNamespace(**{k: v for k, v in changes.items() if v is not None}))
    return new


def override_flat(config: Config, **settings: Any) -> Config:
    """``config`` with settings named as on the command line, without their section (``population=8``,
    ``epochs=1``, ``rungs=(3, 9)``); a name in several sections (``seed``) sets each of them."""
    sections: dict[str, dict[str, Any]] = {}
    for key, value in settings.items():
        owners = [name for name, cls in SECTIONS.items() if key in {f.name for f in dataclasses.fields(cls)}]
        if not owners:
            known = sorted({f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)})
            raise ConfigError(f"unknown setting {key!r} (settings: {', '.join(known)})")
        for name in owners:
            sections.setdefault(name, {})[key] = value
    return override(config, **sections)


def search_seeds(fitness: FitnessSettings, n: int) -> list[int]:
    """The first ``n`` initialisation seeds of a search: ``fitness.seed``, ``fitness.seed + 1``, ..."""
    return [fitness.seed + i for i in range(n)]


# What a resume may change: how far the search goes, and where its work runs (PLACEMENT).
FREE_ON_RESUME = ("search.generations", *(f"evaluator.{k}" for k in PLACEMENT))


def differences(old: Config, new: Config, free: tuple[str, ...] = FREE_ON_RESUME) -> list[str]:
    """'section.key: old -> new' for every setting that differs, except the ``free`` ones."""
    a, b = _flatten(old.to_dict()), _flatten(new.to_dict())
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in free]


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    return {key: value for k, v in d.items()
            for key, value in (_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v}).items()}


def dumps(config: Config) -> str:
    return tomli_w.dumps(config.to_dict())
