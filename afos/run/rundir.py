"""``Run``: one object is the way into a run directory, for every command and for notebooks.

A run directory (format 2, described in docs/ARCHITECTURE.md; format 1, written before gain normalisation, is
still read) holds:

- ``config.toml``: the fully resolved configuration, search space included;
- ``evaluations.jsonl``: one line per finished evaluation (``records.Evaluation``), appended and fsynced,
  never rewritten: the source of truth;
- ``checkpoint.json`` (and ``checkpoint.prev.json``, the one before): the search's state at the last
  generation boundary, replaced atomically; its body is the strategy's (``Search.save``);
- ``pareto.csv``: the current front, human readable;
- ``validation.csv`` and ``validation/`` (a benchmark directory): what ``afos validate`` measured;
- ``sources.json`` where the run trains the user's own model or data: where each came from (import path,
  distribution and version, file), a record compared when the run goes on, never a reason to import;
- ``run.json`` (``afos.run.manifest``): the run format, a digest of the settings, the files the start wrote;
- ``lock.json`` while a process writes it.

``Run.open`` checks a directory once and raises ``RunError`` (one line) if it is not a run; the rest reads
and writes through the object. Nothing here imports JAX.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from afos import config as config_lib
from afos import plugins, types
from afos.config import Config
from afos.errors import AfosError, AfosWarning, RunError, command, read_text
from afos.ga import memo
from afos.ga.front import FrontEntry, ranked
from afos.run import checkpoints, health, manifest
from afos.run import records as records_lib
from afos.run.checkpoints import CHECKPOINT, PREVIOUS_CHECKPOINT  # noqa: F401 (rundir.CHECKPOINT)
from afos.run.files import append_jsonl, create_directory, repair_jsonl, unused_path, write_text_atomic
from afos.run.lock import Messenger, run_lock
from afos.run.records import Evaluation
from afos.words import plural

CONFIG = "config.toml"
EVALUATIONS = "evaluations.jsonl"
PARETO = "pareto.csv"
VALIDATION = "validation.csv"  # written by `afos validate` (held-out test split, fresh seeds)
VALIDATION_DIR = "validation"  # its benchmark directory (resumable)
LOCK = "lock.json"
SOURCES = "sources.json"  # where the user's own model and data come from (absent: afos's own only)
PRIOR = "surrogate_prior.jsonl"  # what a fitness memory taught the surrogate when the run started (absent: none)


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
        self._read: health.LogRead | None = None
        self._records: list[Evaluation] | None = None
        self._by_identity: dict[tuple[int, int], Evaluation] = {}

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """The run in ``path``; RunError if there is none."""
        path = Path(path)
        if not path.exists():
            raise RunError(f"{path}: no such directory")
        manifest.check_format(path)  # a newer afos's run: refused before its config is read
        if not (path / CONFIG).is_file():
            raise RunError(manifest.interrupted(path, CONFIG) if (path / manifest.MANIFEST).exists() else
                           f"{path} is not an afos run directory (no {CONFIG})")
        return cls(path, *config_lib.load_stored(path / CONFIG))

    @classmethod
    def create(cls, path: str | Path, config: Config, prior: list[dict[str, Any]] | None = None) -> Run:
        """A new run of ``config`` in ``path`` (created whole: ``files.create_directory``, ``config.toml`` last);
        RunError if ``path`` is not free. ``prior``: what a fitness memory teaches its surrogate (None: nothing)."""
        path = Path(path)
        cls.check_free(path)
        sources = {kind: plugins.source(kind, getattr(config.fitness, kind)) for kind in plugins.GROUPS}
        sources = {kind: where for kind, where in sources.items() if where}
        files = {SOURCES: json.dumps(sources, indent=1, sort_keys=True)} if sources else {}
        if prior is not None:
            files[PRIOR] = "".join(json.dumps(r, sort_keys=True) + "\n" for r in prior)
        text = config_lib.dumps(config)
        create_directory(path, {**files, manifest.MANIFEST: manifest.make(text, list(files)), CONFIG: text})
        return cls(path, config)

    @staticmethod
    def exists(path: str | Path) -> bool:
        """Whether ``path`` holds a run (its ``config.toml``): one that ``open`` opens and a resume continues."""
        return (Path(path) / CONFIG).is_file()

    @staticmethod
    def check_free(path: str | Path) -> None:
        """RunError unless ``path`` is missing or an empty directory: a run is continued with ``afos resume``,
        never overwritten, and another directory's files are never written over or renamed."""
        path = Path(path)
        if (path / CONFIG).exists() or (path / EVALUATIONS).exists():
            raise RunError(f"{path} already holds a run: `{command('resume', path)}` continues it, "
                           "or choose another --run-dir")
        if (path / manifest.MANIFEST).exists():
            raise RunError(manifest.interrupted(path, CONFIG))
        if path.exists() and not path.is_dir():
            raise RunError(f"{path} is not a directory: choose another --run-dir")
        if path.exists() and any(path.iterdir()):
            raise RunError(f"{path} is not empty and holds no afos run: choose a new or empty --run-dir")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def sources(self) -> dict[str, dict[str, str]]:
        """Where the run's own model and data come from, as recorded when it started (``afos.plugins.source``)."""
        path = self.path / SOURCES
        try:
            recorded = json.loads(read_text(path, RunError)) if path.exists() else {}
        except ValueError as err:
            raise RunError(f"{path}: damaged ({err})") from None
        if not isinstance(recorded, dict):
            raise RunError(f"{path}: damaged (not a JSON object)")
        return recorded

    def trains_with(self) -> dict[str, str]:
        """The names (kind -> name) the run trains with: its objective, or its model and dataset."""
        f = self.config.fitness
        return {"objective": f.objective} if f.objective else {"model": f.model, "dataset": f.dataset}

    def check_sources(self, warn: Callable[[str], None]) -> None:
        """``warn``s of a package now at another version than recorded, or a record the config does not use."""
        plugins.check_sources(self.sources(), self.trains_with(), warn)

    # --- the log ------------------------------------------------------------------------------------
    @property
    def log(self) -> Path:
        return self.path / EVALUATIONS

    def records(self) -> list[Evaluation]:
        """Every line of the log, in the order written, each identity once (``health.read_log``): a truncated
        last line, damaged lines and repeated ones are skipped with a warning that says how to repair."""
        if self._records is None:
            self._read = health.read_log(self.log, self.config.fitness)
            self._records = list(self._read.records)
            self._by_identity = {r.identity: r for r in self._records}
            self._warn(self._read.problems)
        return list(self._records)

    def log_problems(self) -> list[health.Problem]:
        """The lines of the log that ``records`` skips (damaged, duplicated, conflicting, truncated)."""
        self.records()
        return list(self._read.problems)

    def _warn(self, problems: list[health.Problem]) -> None:
        cut = [p for p in problems if p.kind == health.TRUNCATED]
        if cut:
            warnings.warn(f"{self.log}: ignoring a truncated last line ({len(cut[0].text)} characters)", AfosWarning,
                          stacklevel=3)
        rest = [p for p in problems if p.kind != health.TRUNCATED]
        if rest:
            kinds = sorted({p.kind for p in rest})
            warnings.warn(f"{self.log}: ignoring {len(rest)} {'/'.join(kinds)} line{'s' if len(rest) > 1 else ''} "
                          f"({health.summary(rest)}); `{command('check', '--repair', self.path)}` moves them aside",
                          AfosWarning, stacklevel=3)

    def append(self, line: Evaluation) -> Evaluation:
        """Appends ``line`` (durably) and returns it; if the log already holds a line for its identity (an
        interrupted run redoing its generation), returns that one instead: the log is the source of truth.

        Raises:
            RunError: the recorded line is of another tree or status (the log and the checkpoint disagree).
        """
        self.records()
        old = self._by_identity.get(line.identity)  # the first line of its identity (``health.read_log``)
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
        """Cuts a truncated last line off the log, so that new lines start on a line of their own; the cut-off
        text is kept in ``health.SET_ASIDE``."""
        cut = [p for p in self.log_problems() if p.kind == health.TRUNCATED]
        if cut:
            health.set_aside(self.log, cut)
            repair_jsonl(self.log)
            self._records = None

    def anchors(self) -> list[Evaluation]:
        """The anchor lines, in configured order."""
        return sorted((r for r in self.records() if r.status == types.ANCHOR), key=lambda r: r.index)

    # --- the front ----------------------------------------------------------------------------------
    def front(self) -> list[FrontEntry]:
        """The front as ``pareto.csv`` holds it, or recomputed from the log where there is none yet."""
        path = self.path / PARETO
        try:
            front = records_lib.read_front(path, self.config.fitness)
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

    def best(self) -> FrontEntry:
        """The most accurate function of the front (ties: the simpler); RunError if nothing is scored yet."""
        return self.top(1)[0]

    def top(self, k: int) -> list[FrontEntry]:
        """The ``k`` most accurate functions of the front, best first (all of them where it holds fewer, as
        ``afos validate --top`` takes them); RunError if nothing is scored yet."""
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

    def prior(self) -> list[dict[str, Any]]:
        """What a fitness memory held for the run's protocol when it started ({expr, gain, value, fingerprint}):
        a resume warms its surrogate with these, whatever the memory holds now (``records.read_prior``)."""
        return records_lib.read_prior(self.path / PRIOR)  # none: [] (a start that wrote one: ``check_start``)

    def check_start(self) -> None:
        """RunError unless the run keeps the files and settings its start wrote (``afos.run.manifest``)."""
        manifest.check(self.path, self.path / CONFIG)

    # --- the checkpoint (``afos.run.checkpoints``) ------------------------------------------------------
    def checkpoint(self) -> dict[str, Any] | None:
        """The newest readable checkpoint's body (None: none yet; ``checkpoints.read``)."""
        return checkpoints.read(self.path)

    def ensure_checkpoint(self, body: dict[str, Any]) -> None:
        """``body`` as the first checkpoint unless one can be read (``checkpoints.ensure``)."""
        checkpoints.ensure(self.path, body)

    def write_checkpoint(self, body: dict[str, Any]) -> None:
        """Atomically replaces the checkpoint, keeping the one before it."""
        checkpoints.write(self.path, body)

    def resume_point(self, warn: Callable[[str], None]) -> dict[str, Any] | None:
        """The checkpoint a resume goes on from, checked against the log; None: from generation 0, replaying
        the log (there is no checkpoint yet, or none can be read: the search is deterministic given its seed
        and the recorded fitness values, so replaying rebuilds the state exactly).

        Raises:
            RunError: the log has damaged or conflicting lines, or lacks history the checkpoint stands on.
        """
        records = self.records()
        blocking = [p for p in self.log_problems() if p.kind in (health.DAMAGED, health.CONFLICT)]
        if blocking:
            raise RunError(f"{self.log}: {health.summary(blocking)}; `{command('check', '--repair', self.path)}` "
                           "moves them aside (after a backup of the log); a resume then goes on, unless the "
                           "checkpoint stands on them, which it says")
        try:
            body = self.checkpoint()
        except RunError as err:
            warn(f"{err}; rebuilding the search state by replaying the log from generation 0 (the damaged "
                 "checkpoints are kept as checkpoint*.damaged.json)")
            return None
        edited = health.edited_population(self.config, body)
        if edited:
            raise RunError(f"{self.path}: {edited}")
        missing = health.missing_history(self.config, records, body)
        if missing:
            raise RunError(f"{self.path}: the checkpoint is at generation {body['generation']} but {EVALUATIONS} "
                           f"lacks {missing} (deleted, replaced or cut short?); resuming would lose that history: "
                           "put the log back, or start anew from its front with "
                           f"`{command('search', '--init-from', self.path)}`")
        return body

    # --- health -------------------------------------------------------------------------------------
    def health(self) -> health.Health:
        """The directory checked: the log line by line and against the checkpoint, the front, the surrogate's prior
        and the validation (``afos check``)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the log's problems are what the report lists
            records = self.records()
        with warnings.catch_warnings(record=True) as caught:  # a fallback to the previous checkpoint: its note
            warnings.simplefilter("always")
            try:
                body, notes = self.checkpoint(), [str(w.message) for w in caught]
            except RunError as err:
                body, notes = None, [str(err)]
        note = "; ".join(n.removeprefix(f"{self.path}: ") for n in notes)
        front, front_ok = self._front_health()
        return health.Health(
            self.path, len(records), tuple(sorted({r.generation for r in records if r.generation >= 0})),
            sum(r.status == types.ANCHOR for r in records), tuple(self.log_problems()),
            None if body is None else body["generation"], note, health.missing_history(self.config, records, body),
            front, front_ok, health.unreadable(self.prior, self.validation))

    def _front_health(self) -> tuple[str, bool]:
        path = self.path / PARETO
        if not path.exists():
            return f"no {PARETO} yet (recomputed from the log where asked)", True
        try:
            return f"{PARETO}, {plural(len(records_lib.read_front(path, self.config.fitness)), 'function')}", True
        except (ValueError, KeyError, AfosError) as err:
            return f"{PARETO} damaged ({type(err).__name__}: {err})", False

    def heal(self, reporter: Messenger) -> list[str]:
        """Moves the log's damaged, repeated, conflicting and cut-off lines into ``health.SET_ASIDE`` and
        rewrites a damaged ``pareto.csv`` from the log, each after a backup; returns what it did, one
        sentence each (empty: nothing to repair). Takes the run's lock."""
        done = []
        with self.lock(reporter):
            read = health.read_log(self.log, self.config.fitness)  # afresh, under the lock
            moved = health.repair_log(self.log, read)
            if moved:
                backup, side = moved
                done.append(f"moved {health.count_lines(len(read.problems))} of {EVALUATIONS} into {side.name} "
                            f"(the log before: {backup.name})")
            self._records = None
            if not self._front_health()[1]:
                kept = health.keep_aside(self.path / PARETO)
                self.write_front(self.recomputed_front())
                done.append(f"rewrote {PARETO} from the log (the damaged one: {kept})")
        return done

    # --- validation ---------------------------------------------------------------------------------
    @property
    def validation_dir(self) -> Path:
        return self.path / VALIDATION_DIR

    def validation(self) -> list[dict[str, str]]:
        """The rows of ``validation.csv`` (empty if the run was not validated; ``records.read_validation``)."""
        return records_lib.read_validation(self.path / VALIDATION)

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
    return unused_path(Path(root), time.strftime("%Y%m%d-%H%M%S"))


