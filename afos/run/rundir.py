"""``Run``: one object is the way into a run directory, for every command and for notebooks.

A run directory (format 1, described in docs/ARCHITECTURE.md) holds:

- ``config.toml``: the fully resolved configuration, search space included;
- ``evaluations.jsonl``: one line per finished evaluation (``records.Evaluation``), appended and fsynced,
  never rewritten: the source of truth;
- ``checkpoint.json`` (and ``checkpoint.prev.json``, the one before): the search's state at the last
  generation boundary, replaced atomically; its body is the strategy's (``Search.save``);
- ``pareto.csv``: the current front, human readable;
- ``validation.csv`` and ``validation/`` (a benchmark directory): what ``afos validate`` measured;
- ``sources.json`` where the run trains the user's own model or data: where each came from (import path,
  distribution and version, file), checked when the run goes on (``check_sources``);
- ``lock.json`` while a process writes it.

``Run.open`` checks a directory once and raises ``RunError`` (one line) if it is not a run; the rest reads
and writes through the object. Nothing here imports JAX.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from afos import config as config_lib
from afos import plugins, types
from afos.config import Config
from afos.errors import AfosError, RunError, read_text
from afos.ga import memo
from afos.ga.front import FrontEntry, ranked
from afos.run import records as records_lib
from afos.run.files import append_jsonl, read_jsonl, repair_jsonl, write_text_atomic
from afos.run.lock import Messenger, run_lock
from afos.run.records import Evaluation

CONFIG = "config.toml"
EVALUATIONS = "evaluations.jsonl"
CHECKPOINT = "checkpoint.json"
PREVIOUS_CHECKPOINT = "checkpoint.prev.json"
PARETO = "pareto.csv"
VALIDATION = "validation.csv"  # written by `afos validate` (held-out test split, fresh seeds)
VALIDATION_DIR = "validation"  # its benchmark directory (resumable)
LOCK = "lock.json"
SOURCES = "sources.json"  # where the user's own model and data come from (absent: afos's own only)
CHECKPOINT_FORMAT = "afos-checkpoint"
CHECKPOINT_VERSION = 1


class Run:
    """A run directory, checked once. Use ``Run.open`` (an existing run) or ``Run.create`` (a new one).

    Attributes:
        path: the directory.
        config: its configuration (``config.toml``; settings added after the run was written keep the meaning
            they had then: ``config.FORMAT_1``).
        format: the run format it was written in (1: before gain normalisation; 2: today's).
    """

    def __init__(self, path: Path, config: Config, run_format: int = 2):
        self.path, self.config, self.format = path, config, run_format
        self._records: list[Evaluation] | None = None
        self._by_identity: dict[tuple[int, int], Evaluation] = {}

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """The run in ``path``; RunError if there is none."""
        path = Path(path)
        if not path.exists():
            raise RunError(f"{path}: no such directory")
        if not (path / CONFIG).is_file():
            raise RunError(f"{path} is not an afos run directory (no {CONFIG})")
        return cls(path, *config_lib.load_stored(path / CONFIG))

    @classmethod
    def create(cls, path: str | Path, config: Config) -> Run:
        """A new run of ``config`` in ``path`` (created); RunError if ``path`` already holds a run."""
        path = Path(path)
        cls.check_free(path)
        path.mkdir(parents=True, exist_ok=True)
        sources = {kind: plugins.source(kind, getattr(config.fitness, kind)) for kind in plugins.GROUPS}
        sources = {kind: where for kind, where in sources.items() if where}
        if sources:
            write_text_atomic(path / SOURCES, json.dumps(sources, indent=1, sort_keys=True))
        write_text_atomic(path / CONFIG, config_lib.dumps(config))
        return cls(path, config)

    @staticmethod
    def check_free(path: str | Path) -> None:
        """RunError if ``path`` already holds a run (it is continued with ``afos resume``, never overwritten)."""
        path = Path(path)
        if (path / CONFIG).exists() or (path / EVALUATIONS).exists():
            raise RunError(f"{path} already holds a run: `afos resume {path}` continues it, "
                           "or choose another --run-dir")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def sources(self) -> dict[str, dict[str, str]]:
        """Where the run's own model and data come from, as recorded when it started (``afos.plugins.source``)."""
        path = self.path / SOURCES
        if not path.exists():
            return {}
        try:
            return json.loads(read_text(path, RunError))
        except ValueError as err:
            raise RunError(f"{path}: damaged ({err})") from None

    def check_sources(self, warn: Callable[[str], None]) -> None:
        """RunError unless the user's model and data the run was started with import here (one line naming
        them); a changed package version is worth ``warn``."""
        try:
            plugins.check_sources(self.sources(), warn)
        except AfosError as err:
            raise RunError(f"{self.path} cannot go on here: {err}") from None

    # --- the log ------------------------------------------------------------------------------------
    @property
    def log(self) -> Path:
        return self.path / EVALUATIONS

    def records(self) -> list[Evaluation]:
        """Every line of the log, in the order written (a truncated last line is dropped with a warning)."""
        if self._records is None:
            self._records = [Evaluation.from_json(r) for r in read_jsonl(self.log)]
            self._by_identity = {r.identity: r for r in self._records}
        return list(self._records)

    def append(self, line: Evaluation) -> Evaluation:
        """Appends ``line`` (durably) and returns it; if the log already holds a line for its identity (an
        interrupted run redoing its generation), returns that one instead: the log is the source of truth.

        Raises:
            RunError: the recorded line is of another tree or status (the log and the checkpoint disagree).
        """
        self.records()
        old = self._by_identity.get(line.identity)
        if old is not None:
            if (old.tree, old.status) != (line.tree, line.status):
                g, i = line.identity
                raise RunError(f"{self.log}: the line for generation {g}, index {i} holds {old.status} "
                               f"{old.tree!r} but this run asks {line.status} {line.tree!r}")
            return old
        append_jsonl(self.log, line.to_json())
        self._records.append(line)
        self._by_identity[line.identity] = line
        return line

    def repair(self) -> None:
        """Cuts a truncated last line off the log, so that new lines start on a line of their own."""
        repair_jsonl(self.log)

    def anchors(self) -> list[Evaluation]:
        """The anchor lines, in configured order."""
        return sorted((r for r in self.records() if r.status == types.ANCHOR), key=lambda r: r.index)

    # --- the front ----------------------------------------------------------------------------------
    def front(self) -> list[FrontEntry]:
        """The front as ``pareto.csv`` holds it, or recomputed from the log where there is none yet."""
        path = self.path / PARETO
        try:
            front = records_lib.front_from_csv(read_text(path, RunError)) if path.exists() else []
        except (ValueError, KeyError) as err:
            raise RunError(f"{path}: damaged ({type(err).__name__}: {err})") from None
        return front or self.recomputed_front()

    def recomputed_front(self) -> list[FrontEntry]:
        """The front the search keeps (``memo.front_of``), rebuilt from the log: what ``pareto.csv`` holds after
        every generation, and what a run stopped before its first generation's end has found so far."""
        known: dict = {}
        memo.replay(known, self.records())
        return memo.front_of(known, self.config.protocol.max_seeds)

    def ranked(self) -> list[FrontEntry]:
        """The front, most accurate first (``afos.ga.front.ranked``)."""
        return ranked(self.front())

    def best(self, k: int = 1) -> list[FrontEntry]:
        """The ``k`` most accurate functions of the front; RunError if nothing is scored yet."""
        out = self.ranked()[:k]
        if not out:
            raise RunError(f"{self.path}: the run has no scored function yet")
        return out

    def export(self, fmt: str, rank: int | None = None, top: int | None = None) -> str:
        """Source code in format ``fmt`` (``jax``, ``torch``, ``latex``, ...) of the front's most accurate
        function (``rank``: the rank-th; ``top``: the first ``top``), as ``afos.export_source`` writes it."""
        exporter = importlib.import_module("afos.export")  # the layer above this one: loaded on use only
        return exporter.export_source(fmt, run_dir=self, rank=rank, top=top)

    def write_front(self, front: list[FrontEntry]) -> None:
        write_text_atomic(self.path / PARETO, records_lib.pareto_csv(front))

    # --- the checkpoint -----------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any] | None:
        """The newest readable checkpoint's body (None: there is none yet); falls back to the previous one
        with a warning, and raises RunError if neither can be read."""
        current, previous = self.path / CHECKPOINT, self.path / PREVIOUS_CHECKPOINT
        if not current.exists() and not previous.exists():
            return None
        errors = []
        for path in (current, previous):
            if not path.exists():
                continue
            try:
                data = _read_checkpoint_file(path)
            except (ValueError, OSError) as err:
                errors.append(f"{path.name}: {err}")
                continue
            if errors:
                warnings.warn(f"{self.path}: {'; '.join(errors)}; using {path.name}", stacklevel=2)
            return data
        raise RunError(f"{self.path}: no readable checkpoint ({'; '.join(errors)})")

    def write_checkpoint(self, body: dict[str, Any]) -> None:
        """Atomically replaces the checkpoint, keeping the one before it."""
        payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **body}
        text = json.dumps(payload, sort_keys=True, allow_nan=False)
        current = self.path / CHECKPOINT
        if current.exists():
            os.replace(current, self.path / PREVIOUS_CHECKPOINT)
        write_text_atomic(current, text)

    # --- validation ---------------------------------------------------------------------------------
    @property
    def validation_dir(self) -> Path:
        return self.path / VALIDATION_DIR

    def validation(self) -> list[dict[str, str]]:
        """The rows of ``validation.csv`` (empty if the run was not validated)."""
        path = self.path / VALIDATION
        return records_lib.validation_rows(read_text(path, RunError)) if path.exists() else []

    def write_validation(self, rows: list[dict[str, Any]]) -> Path:
        write_text_atomic(self.path / VALIDATION, records_lib.validation_csv(rows))
        return self.path / VALIDATION

    # --- writing ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, reporter: Messenger) -> Iterator[None]:
        """One writer at a time (a lock left by a dead process is taken over)."""
        with run_lock(self.path / LOCK, reporter):
            yield


def new_run_dir(root: str | Path = "runs") -> Path:
    """``root/<date>-<time>`` (with a counter if that exists): where a search goes unless told otherwise."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{stamp}-{n}"
    return path


def _read_checkpoint_file(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("not an afos checkpoint")
    if data.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"written by a newer afos (checkpoint version {data['version']})")
    return {k: v for k, v in data.items() if k not in ("format", "version")}
