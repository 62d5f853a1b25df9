"""Run configuration: defaults, TOML files, command-line overrides, and the resolved form.

A run stores its fully resolved configuration in ``config.toml`` (the search
space included as data), so it can be resumed and read without the files it
was started from.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from afos import space as space_lib
from afos.train import FitnessSettings


@dataclass(frozen=True)
class SearchSettings:
    space: str = "default"
    population: int = 16
    generations: int = 6  # offspring generations after the initial population (generation 0)
    seed: int = 0
    crossover_prob: float = 0.7
    mutation_prob: float = 0.4
    novelty_tries: int = 10  # variation retries to produce a function not seen before


@dataclass(frozen=True)
class EvaluatorSettings:
    backend: str = "auto"


@dataclass(frozen=True)
class Config:
    search: SearchSettings = field(default_factory=SearchSettings)
    fitness: FitnessSettings = field(default_factory=FitnessSettings)
    evaluator: EvaluatorSettings = field(default_factory=EvaluatorSettings)
    space: space_lib.SearchSpace | None = None  # resolved from search.space

    def resolved(self) -> Config:
        """This config with its search space loaded (files are read once, here)."""
        if self.space is not None:
            return self
        return dataclasses.replace(self, space=space_lib.load(self.search.space))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "search": dataclasses.asdict(self.search),
            "fitness": dataclasses.asdict(self.fitness),
            "evaluator": dataclasses.asdict(self.evaluator),
        }
        if self.space is not None:
            out["space"] = self.space.to_dict()
        return out


SECTIONS = {"search": SearchSettings, "fitness": FitnessSettings, "evaluator": EvaluatorSettings}


class ConfigError(ValueError):
    """A configuration file or value that is not valid; the message names the key."""


def _section(cls, data: dict, where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {', '.join(fields)})")
        default = getattr(cls(), key)
        if isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, type(default)):
            if not (isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)):
                raise ConfigError(f"{where}.{key}: must be a {type(default).__name__}, got {value!r}")
            value = float(value)
        values[key] = value
    return cls(**values)


def from_dict(data: dict[str, Any], source: str = "config") -> Config:
    for key in data:
        if key not in (*SECTIONS, "space"):
            raise ConfigError(f"{source}: unknown section [{key}] (allowed: {', '.join(SECTIONS)}, space)")
    parts = {name: _section(cls, data.get(name, {}), f"{source} [{name}]") for name, cls in SECTIONS.items()}
    space = None
    if "space" in data:
        try:
            space = space_lib.from_dict(data["space"], f"{source} [space]")
        except space_lib.SpaceError as err:
            raise ConfigError(str(err)) from None
    config = Config(**parts, space=space)
    validate(config)
    return config


def validate(config: Config) -> None:
    s, f = config.search, config.fitness
    checks = [
        (s.population >= 2, "search.population must be at least 2"),
        (s.generations >= 0, "search.generations must be at least 0"),
        (0.0 <= s.crossover_prob <= 1.0, "search.crossover_prob must be in [0, 1]"),
        (0.0 <= s.mutation_prob <= 1.0, "search.mutation_prob must be in [0, 1]"),
        (f.epochs >= 1, "fitness.epochs must be at least 1"),
        (f.batch_size >= 1, "fitness.batch_size must be at least 1"),
        (f.learning_rate > 0, "fitness.learning_rate must be positive"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def load(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    return from_dict(data, str(path))


def override(config: Config, **sections: dict[str, Any]) -> Config:
    """Replaces fields per section, e.g. ``override(c, search={"population": 8})``; None values are ignored."""
    parts = {name: getattr(config, name) for name in SECTIONS}
    for name, changes in sections.items():
        if name not in SECTIONS:
            raise ConfigError(f"unknown config section {name!r}")
        changes = {k: v for k, v in changes.items() if v is not None}
        merged = _section(SECTIONS[name], dataclasses.asdict(parts[name]) | changes, f"[{name}]")
        parts[name] = merged
    space_changed = sections.get("search", {}).get("space") not in (None, config.search.space)
    new = Config(**parts, space=None if space_changed else config.space)
    validate(new)
    return new


def dumps(config: Config) -> str:
    return tomli_w.dumps(config.to_dict())
