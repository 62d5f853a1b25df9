"""A fitness memory shared across runs: what a function scored under a training protocol, in one SQLite file.

Opt-in (``[evaluator] memory = "FILE"``, ``--memory FILE``). A run that trains a function under the same
protocol as an earlier run (same data, model, training, gain mode, seeds and training length:
``protocol_key``) takes its fitness from the memory instead of training it again; its line says ``cached``.
The file is SQLite (the standard library's ``sqlite3``; text and numbers, never a pickle) in WAL mode with a
busy timeout, and every value is written with ``INSERT OR IGNORE`` in a transaction of its own, so that
several runs (processes or threads, each with its own ``FitnessMemory``) can share one file without losing a
line: the first value written for a key stays. The evaluator wrapper that reads and fills it is
``afos.fitness.pools.Remembering``; the driver opens and closes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sqlite3
import time
import urllib.parse
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from afos import config as config_lib
from afos import types
from afos.config import Config, FitnessSettings
from afos.errors import AfosWarning, ConfigError
from afos.ga import halving, surrogate
from afos.types import Fitness

FORMAT = "afos-fitness-memory"
SCHEMA_VERSION = 1  # of the file's tables; a file of a later version is refused
# Bumped when the same settings train differently (afos.fitness.train, the model zoo, the data split): every
# value remembered before it then belongs to another protocol and is never reused.
MEMORY_VERSION = 1
BUSY_SECONDS = 60.0  # how long a write waits for another run's write to the same file

# Which settings enter the key: every field of ``FitnessSettings`` (a field added later enters it too, the safe
# side), except those that say where the same data is found and cannot change a value (``NOT_IN_KEY``). The
# training length is that of the request (a rung's epochs), replacing ``fitness.epochs``; the seeds are the
# request's (the initialisation seeds; ``fitness.seed`` also splits the data).
NOT_IN_KEY = ("data_dir",)
STORED = (types.OK, types.FAILED)  # what a memory keeps: a measurement, never a reuse of one

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS afos_memory (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS protocols (protocol TEXT PRIMARY KEY, settings TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fitness (protocol TEXT NOT NULL, fingerprint TEXT NOT NULL, expr TEXT NOT NULL, "
    "gain REAL, fitness TEXT NOT NULL, run TEXT NOT NULL, written REAL NOT NULL, "
    "PRIMARY KEY (protocol, fingerprint))",
)


class Entry(NamedTuple):
    """One remembered function of a protocol (what warms a surrogate model)."""

    fingerprint: str
    expr: str
    gain: float | None
    fitness: Fitness


def protocol_settings(fitness: FitnessSettings, seeds: Sequence[int], epochs: int | None) -> dict:
    """What a fitness value depends on, as JSON data: the fitness settings (but ``NOT_IN_KEY``), the training
    length (``epochs``; None: ``fitness.epochs``), the initialisation seeds and ``MEMORY_VERSION``."""
    settings = {k: v for k, v in dataclasses.asdict(fitness).items() if k not in NOT_IN_KEY}
    if not settings["objective_options"]:  # the keys of memories written before objective options existed
        del settings["objective_options"]
    settings["epochs"] = fitness.epochs if epochs is None else int(epochs)
    settings["topology"] = list(settings["topology"])
    return {"memory_version": MEMORY_VERSION, "fitness": settings, "seeds": [int(s) for s in seeds]}


def protocol_key(fitness: FitnessSettings, seeds: Sequence[int], epochs: int | None = None) -> str:
    """The hash of ``protocol_settings``: fitness values of equal keys are measurements of the same training."""
    return key_of(protocol_settings(fitness, seeds, epochs))


def key_of(settings: dict) -> str:
    """The key of a protocol described by ``protocol_settings``."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def run_protocol(config: Config) -> str:
    """The protocol of a run's new individuals: its search's own training length on its fitness seeds."""
    p = config.protocol
    seeds = config_lib.search_seeds(config.fitness, p.max_seeds)[: p.fitness_seeds]
    return protocol_key(config.fitness, seeds, halving.rung_epochs(config)[0])


def _to_json(fit: Fitness) -> str:
    def number(v: float | None) -> float | None:
        return None if v is None else float(v)

    return json.dumps({"status": fit.status, "val_accuracy": number(fit.val_accuracy),
                       "val_loss": number(fit.val_loss), "reason": fit.reason, "seconds": float(fit.seconds),
                       "val_accuracy_std": number(fit.val_accuracy_std),
                       "seed_accuracies": [float(a) for a in fit.seed_accuracies]})


_KEYS = ("status", "val_accuracy", "val_loss", "reason", "seconds", "val_accuracy_std", "seed_accuracies")


def _from_json(text: Any, fitness: FitnessSettings | None) -> Fitness:
    """The fitness a row holds, measured under ``fitness`` (None: any settings); ValueError (why, in words) where
    it is not one afos writes (``types.fitness_problem``): another program's row is never believed."""
    if not isinstance(text, str):
        raise ValueError(f"its fitness is {type(text).__name__}, not text")
    try:
        d = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("its fitness is not valid JSON") from None
    if not isinstance(d, dict) or set(d) != set(_KEYS):
        raise ValueError(f"its fitness is not an object of {', '.join(_KEYS)}")
    accuracies = d["seed_accuracies"]
    fit = Fitness(*(d[k] for k in _KEYS[:-1]), tuple(accuracies) if isinstance(accuracies, list) else accuracies)
    why = types.fitness_problem(fit, fitness)
    if why:
        raise ValueError(why)
    return fit


def is_memory(path: str | Path) -> bool:
    """Whether ``path`` is already an afos fitness memory, read without changing anything: the file opened
    read-only and immutable, so that SQLite neither writes it nor leaves a journal beside it. A missing or empty
    file, or another program's, is not (a damaged memory may be: opening it refuses it)."""
    uri = f"file:{urllib.parse.quote(str(Path(path).absolute()))}?mode=ro&immutable=1"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            return dict(db.execute("SELECT name, value FROM afos_memory")).get("format") == FORMAT
    except sqlite3.Error:
        return False


def _damaged(path: Path, detail: str) -> str:
    return f'evaluator.memory: {path} is damaged ({detail}); replace it, or run without it: --memory ""'


def _unusable(path: Path, err: sqlite3.DatabaseError) -> str:
    """The one-line message of an SQLite error met while opening ``path``, by its primary result code."""
    code = (err.sqlite_errorcode or 0) & 0xFF  # an extended code holds its primary one in the low byte
    if code == sqlite3.SQLITE_READONLY:
        return f'evaluator.memory: cannot write {path} ({err}); make it writable, or run without it: --memory ""'
    if code == sqlite3.SQLITE_CORRUPT:
        return _damaged(path, str(err))
    if code == sqlite3.SQLITE_CANTOPEN:
        return f"evaluator.memory: cannot open {path} ({err})"
    return f"evaluator.memory: {path} is not an afos fitness memory ({err})"


class FitnessMemory:
    """One connection to a memory file (created if missing); one per thread or process.

    Args:
        path: the file.
        run: who writes (a run directory), recorded with each value.

    Raises:
        ConfigError: the file cannot be opened or written, is damaged, or is not an afos fitness memory (one
            line naming it).
    """

    def __init__(self, path: str | Path, run: str = ""):
        self.path, self.run = Path(path), run
        self._ignored: set[tuple[str, Any]] = set()  # the rows warned of (``_entry``): once each
        try:
            self.db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        except sqlite3.Error as err:
            raise ConfigError(f"evaluator.memory: cannot open {self.path} ({err})") from None
        try:
            self._init_when_free()
        except sqlite3.DatabaseError as err:
            self.db.close()
            raise ConfigError(_unusable(self.path, err)) from None
        except ConfigError:
            self.db.close()
            raise

    def _init_when_free(self) -> None:
        """``_init``, tried again while another process holds the file: switching a new file to WAL can report
        "database is locked" at once, without waiting out the busy timeout (two runs creating one memory)."""
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                return self._init()
            except sqlite3.OperationalError as err:
                if (err.sqlite_errorcode or 0) & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _init(self) -> None:
        self._check_tables()  # before anything is written: another program's database is left as it was
        self._check_pages()
        self.db.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer; one writer at a time
        self.db.execute("BEGIN IMMEDIATE")  # two runs creating the file: one makes the tables, the other sees them
        try:
            self._check_tables()
            for statement in _SCHEMA:
                self.db.execute(statement)
            self.db.executemany("INSERT OR IGNORE INTO afos_memory VALUES (?, ?)",
                                [("format", FORMAT), ("version", str(SCHEMA_VERSION))])
            meta = dict(self.db.execute("SELECT name, value FROM afos_memory"))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        if meta.get("format") != FORMAT or not meta.get("version", "").isdigit():
            raise ConfigError(f"evaluator.memory: {self.path} is not an afos fitness memory")
        if int(meta["version"]) > SCHEMA_VERSION:
            raise ConfigError(f"evaluator.memory: {self.path} was written by a later afos (memory version "
                              f"{meta['version']}; this one reads {SCHEMA_VERSION})")

    def _check_tables(self) -> None:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "afos_memory" not in tables:
            raise ConfigError(f"evaluator.memory: {self.path} is not an afos fitness memory "
                              f"(an SQLite file with tables {', '.join(sorted(tables))})")

    def _check_pages(self) -> None:
        """ConfigError if SQLite finds the file damaged: refused before any work, not met halfway through a run."""
        rows = [row[0] for row in self.db.execute("PRAGMA quick_check")]
        if rows != ["ok"]:
            lines = [line for row in rows for line in row.splitlines() if not line.startswith("***")]
            raise ConfigError(_damaged(self.path, lines[0] if lines else "quick_check failed"))

    def get(self, protocol: str, fingerprint: str, fitness: FitnessSettings | None = None) -> Fitness | None:
        """The fitness remembered for the function ``fingerprint`` under ``protocol`` (status ok or failed), whose
        settings are ``fitness`` (None: any); None where there is none, or where the row holds what afos does not
        write (``_from_json``: a warning naming the file and the row, and the function is trained again)."""
        row = self.db.execute("SELECT expr, gain, fitness FROM fitness WHERE protocol = ? AND fingerprint = ?",
                              (protocol, fingerprint)).fetchone()
        return None if row is None else self._entry(protocol, fingerprint, *row, fitness)

    def _entry(self, protocol: str, fingerprint: Any, expr: Any, gain: Any, text: Any,
               fitness: FitnessSettings | None) -> Fitness | None:
        """The fitness of a row, checked; None, with one warning per row, where it cannot be believed."""
        try:
            if not isinstance(fingerprint, str) or not isinstance(expr, str):
                raise ValueError("its fingerprint or expression is not text")
            why = types.value_problem("gain", gain)
            if why:
                raise ValueError(why)
            return _from_json(text, fitness)
        except ValueError as err:
            if (protocol, fingerprint) not in self._ignored:
                self._ignored.add((protocol, fingerprint))
                warnings.warn(f"{self.path}: ignoring the row of fingerprint {fingerprint!r} (protocol "
                              f"{protocol[:12]}, {str(expr)[:60]!r}): {err}; the function is trained instead",
                              AfosWarning, stacklevel=3)
            return None

    def put(self, protocol: str, fingerprint: str, expr: str, gain: float | None, fit: Fitness,
            settings: dict | None = None) -> None:
        """Remembers ``fit`` (only a measurement: status ok or failed); a value already there stays.

        ``settings``: the protocol's ``protocol_settings``, kept once per protocol so that a person can read
        what a key means. A file another process holds for longer than ``BUSY_SECONDS`` is a warning, not a
        stop: the run's own log has the value."""
        if fit.status not in STORED:
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")  # one transaction: the protocol's description and the value
            try:
                if settings is not None:
                    self.db.execute("INSERT OR IGNORE INTO protocols VALUES (?, ?)",
                                    (protocol, json.dumps(settings, sort_keys=True)))
                self.db.execute("INSERT OR IGNORE INTO fitness VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (protocol, fingerprint, expr, None if gain is None else float(gain), _to_json(fit),
                                 self.run, time.time()))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            warnings.warn(f"{self.path}: could not remember {expr} ({err})", AfosWarning, stacklevel=2)

    def entries(self, protocol: str, fitness: FitnessSettings | None = None) -> list[Entry]:
        """Every function remembered under ``protocol`` (of settings ``fitness``; None: any), in the order they
        were written; a row that cannot be believed is left out with a warning (``get``)."""
        rows = self.db.execute("SELECT fingerprint, expr, gain, fitness FROM fitness WHERE protocol = ? "
                               "ORDER BY written, rowid", (protocol,)).fetchall()
        entries = [(fp, expr, gain, self._entry(protocol, fp, expr, gain, fit, fitness))
                   for fp, expr, gain, fit in rows]
        return [Entry(fp, expr, gain, fit) for fp, expr, gain, fit in entries if fit is not None]

    def prior(self, config: Config) -> list[dict[str, Any]]:
        """What the memory holds for a run of ``config`` (its search's own training on its fitness seeds), as
        a surrogate learns it: {expr, gain, value, fingerprint}, in the order written."""
        entries = self.entries(run_protocol(config), config.fitness)
        return [{"expr": e.expr, "gain": e.gain, "value": surrogate.target(e.fitness), "fingerprint": e.fingerprint}
                for e in entries]

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM fitness").fetchone()[0]

    def close(self) -> None:
        self.db.close()
