"""The search driver: runs and resumes a search in its run directory.

The run directory is the source of truth. Every finished evaluation is appended
to ``evaluations.jsonl`` (fsynced) before the next one starts; the checkpoint is
replaced atomically at every generation boundary. Resuming loads the checkpoint
of the generation in progress, asks the same individuals again (the RNG state is
in the checkpoint) and reuses the lines already recorded for them, so a run
stopped at any point ends exactly as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from afos import archive, genome, types
from afos import config as config_lib
from afos import data as data_lib
from afos.config import Config
from afos.evaluate import Evaluator, Fitness, fitness_values, make_evaluator
from afos.expr import Analysis
from afos.search import Known, Search, SearchState, rng_from_json, rng_to_json

LOCK = "lock.json"


class SearchInterruptedError(KeyboardInterrupt):
    """The search stopped on Ctrl-C after saving everything; the message says how to resume."""


class Reporter(Protocol):
    def generation_started(self, generation: int, size: int) -> None: ...
    def evaluated(self, record: dict[str, Any]) -> None: ...
    def generation_finished(self, generation: int, front: list[archive.FrontEntry]) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    def generation_started(self, generation: int, size: int) -> None:
        pass

    def evaluated(self, record: dict[str, Any]) -> None:
        pass

    def generation_finished(self, generation: int, front: list[archive.FrontEntry]) -> None:
        pass

    def message(self, text: str) -> None:
        pass


# --- records ------------------------------------------------------------------------


def _record(generation: int, index: int, ind, a: Analysis, status: str, fit: Fitness | None,
            seconds: float) -> dict[str, Any]:
    return {
        "generation": generation,
        "index": index,
        "tree": genome.to_text(ind),
        "expr": a.text,
        "key": a.key_hash,
        "fingerprint": a.fingerprint,
        "complexity": genome.complexity(ind),
        "status": status,
        "reason": fit.reason if fit else a.reason,
        "val_accuracy": fit.val_accuracy if fit else None,
        "val_loss": fit.val_loss if fit else None,
        "seconds": round(seconds, 4),
    }


def _fitness_of(record: dict[str, Any]) -> Fitness:
    status = types.OK if record["val_accuracy"] is not None else types.FAILED
    return Fitness(status, record["val_accuracy"], record["val_loss"], record["reason"], record["seconds"])


def _learn(state: SearchState, fingerprint: str, complexity: int, tree: str, expr: str, fit: Fitness,
           generation: int) -> None:
    """Records a scored function, keeping its simplest tree and the generation it was first seen."""
    old = state.known.get(fingerprint)
    if old is None or complexity < old.complexity:
        state.known[fingerprint] = Known(fit, complexity, tree, expr, generation if old is None else old.generation)


def front_of(state: SearchState) -> list[archive.FrontEntry]:
    return archive.pareto_front(
        archive.FrontEntry(k.expr, k.fitness.val_accuracy, k.complexity, k.fitness.val_loss, k.generation, fp, k.tree)
        for fp, k in state.known.items()
        if k.fitness.status == types.OK
    )


# --- one generation -------------------------------------------------------------------


class _Generation:
    """Scores one generation's individuals, reusing lines already in the run directory."""

    def __init__(self, search: Search, state: SearchState, offspring, run_dir: Path,
                 recorded: dict[tuple[int, int], dict], reporter: Reporter, stop):
        self.search, self.state, self.offspring = search, state, offspring
        self.log, self.recorded, self.reporter, self.stop = run_dir / archive.EVALUATIONS, recorded, reporter, stop

    def emit(self, i: int, status: str, fit: Fitness | None, seconds: float) -> None:
        g, ind = self.state.generation, self.offspring[i]
        a = self.search.analysis(ind)
        c = genome.complexity(ind)
        if fit is not None:
            ind.fitness.values = fitness_values(fit, c)
            _learn(self.state, a.fingerprint, c, genome.to_text(ind), a.text, fit, g)
        else:
            ind.fitness.values = types.WORST_FITNESS
        old = self.recorded.get((g, i))
        if old is not None:
            if old["tree"] != genome.to_text(ind):
                raise archive.RunDirError(f"{self.log}: line for generation {g}, index {i} holds {old['tree']!r} "
                                          f"but the checkpoint asks {genome.to_text(ind)!r}")
            self.reporter.evaluated(old)
            return
        record = _record(g, i, ind, a, status, fit, seconds)
        archive.append_jsonl(self.log, record)
        self.reporter.evaluated(record)
        if self.stop():
            raise SearchInterruptedError

    def run(self, evaluator: Evaluator) -> None:
        g = self.state.generation
        todo: dict[str, list[int]] = {}  # fingerprint -> indices sharing it, first one trained
        for i, ind in enumerate(self.offspring):
            a = self.search.analysis(ind)
            if not a.accepted:
                self.emit(i, types.REJECTED, None, 0.0)
            elif a.fingerprint in self.state.known:
                self.emit(i, types.CACHED, self.state.known[a.fingerprint].fitness, 0.0)
            else:
                todo.setdefault(a.fingerprint, []).append(i)
        firsts = [indices[0] for indices in todo.values()]
        done = [i for i in firsts if (g, i) in self.recorded]
        for i in done:  # recorded before an interruption: reused, not retrained
            self._finish(i, _fitness_of(self.recorded[(g, i)]), todo)
        pending = [i for i in firsts if (g, i) not in self.recorded]
        for j, fit in evaluator.evaluate([self.search.analysis(self.offspring[i]) for i in pending]):
            self._finish(pending[j], fit, todo)

    def _finish(self, first: int, fit: Fitness, todo) -> None:
        for i in todo[self.search.analysis(self.offspring[first]).fingerprint]:
            if i == first:
                self.emit(i, fit.status, fit, fit.seconds)
            else:
                self.emit(i, types.CACHED, fit, 0.0)


# --- run directory --------------------------------------------------------------------


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def run_lock(run_dir: Path, reporter: Reporter) -> Iterator[None]:
    """One writer per run directory; a lock left by a dead process is taken over."""
    path = run_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = archive.read_json_or_none(path)
            if owner and owner.get("host") == me["host"] and _process_alive(int(owner.get("pid", -1))):
                raise archive.RunDirError(f"{run_dir} is being written by process {owner['pid']} "
                                          f"(lock file {path}); stop it first or wait for it to finish") from None
            if owner and owner.get("host") != me["host"]:
                raise archive.RunDirError(f"{run_dir} is locked by process {owner.get('pid')} on host "
                                          f"{owner.get('host')}; delete {path} if that process is gone") from None
            reporter.message(f"taking over the stale lock of dead process {owner and owner.get('pid')}")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(archive.json_text(me))
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def stop_on_sigint(reporter: Reporter, resume_hint: str) -> Iterator[Callable[[], bool]]:
    """First Ctrl-C: stop after the evaluation in flight. Second: stop at once (KeyboardInterrupt)."""
    requested = []

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(True)
        reporter.message(f"stopping after the evaluation in flight (Ctrl-C again to stop at once); {resume_hint}")

    if not _main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def checkpoint_of(state: SearchState) -> dict[str, Any]:
    return {
        "generation": state.generation,
        "population": [{"tree": genome.to_text(ind), "fitness": list(ind.fitness.values)} for ind in state.population],
        # The only evolving RNG is the GA's. Fitness evaluations draw NumPy and JAX randomness from
        # generators seeded afresh by fitness.seed in every evaluation, so they need no saved state.
        "rng": {"python": rng_to_json(state.rng)},
    }


def state_from_checkpoint(search: Search, data: dict[str, Any]) -> SearchState:
    population = []
    for item in data["population"]:
        ind = genome.from_text(item["tree"], search.pset)
        ind.fitness.values = tuple(item["fitness"])
        population.append(ind)
    return SearchState(data["generation"], population, rng_from_json(data["rng"]["python"]))


def new_run_dir(root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{stamp}-{n}"
    return path


def _load_dataset(config: Config) -> data_lib.Dataset:
    f = config.fitness
    return data_lib.load(f.dataset, seed=f.seed, val_fraction=f.val_fraction, train_size=f.train_size,
                         val_size=f.val_size)


def _drive(search: Search, state: SearchState, run_dir: Path, recorded: dict, reporter: Reporter) -> SearchState:
    evaluator = make_evaluator(search.config.evaluator.backend, _load_dataset(search.config), search.config.fitness)
    hint = f"resume with: afos resume {run_dir}"
    with run_lock(run_dir, reporter), stop_on_sigint(reporter, hint) as stop:
        if not (run_dir / archive.CHECKPOINT).exists():
            archive.write_checkpoint(run_dir, checkpoint_of(state))
        try:
            while state.generation <= search.config.search.generations:
                offspring = search.ask(state)
                reporter.generation_started(state.generation, len(offspring))
                _Generation(search, state, offspring, run_dir, recorded, reporter, stop).run(evaluator)
                state = search.tell(state, offspring)
                front = front_of(state)
                archive.write_pareto_csv(run_dir, front)
                archive.write_checkpoint(run_dir, checkpoint_of(state))
                reporter.generation_finished(state.generation - 1, front)
        except SearchInterruptedError:
            raise SearchInterruptedError(f"stopped by Ctrl-C in generation {state.generation}; every finished "
                                         f"evaluation is saved; {hint}") from None
    return state


def run(config: Config, run_dir: str | Path, reporter: Reporter | None = None) -> SearchState:
    """Runs a new search into ``run_dir`` and returns its final state."""
    reporter, run_dir = reporter or SilentReporter(), Path(run_dir)
    search = Search(config)
    _load_dataset(search.config)  # fail on a bad dataset before creating anything
    if (run_dir / archive.CONFIG).exists() or (run_dir / archive.EVALUATIONS).exists():
        raise archive.RunDirError(f"{run_dir} already holds a run: `afos resume {run_dir}` continues it, "
                                  "or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    archive.write_text_atomic(run_dir / archive.CONFIG, config_lib.dumps(search.config))
    return _drive(search, search.init(), run_dir, {}, reporter)


def config_differences(old: Config, new: Config) -> list[str]:
    """'section.key: old -> new' for every setting that differs, generations aside."""
    a, b = _flatten(old.to_dict()), _flatten(new.to_dict())
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k != "search.generations"]


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def resume(run_dir: str | Path, generations: int | None = None, config: Config | None = None,
           reporter: Reporter | None = None) -> SearchState:
    """Continues the run in ``run_dir`` to ``generations`` (default: its configured number).

    ``config``, if given, must equal the stored one except for ``search.generations``.
    """
    reporter, run_dir = reporter or SilentReporter(), Path(run_dir)
    if not (run_dir / archive.CONFIG).exists():
        raise archive.RunDirError(f"{run_dir} is not an afos run directory (no {archive.CONFIG})")
    stored = config_lib.load(run_dir / archive.CONFIG)
    if config is not None:
        diff = config_differences(stored, config.resolved())
        if diff:
            raise archive.RunDirError(f"refusing to resume {run_dir} with a changed config: {'; '.join(diff)}")
    if generations is not None:
        stored = config_lib.override(stored, search={"generations": generations})
    search = Search(stored)
    log = run_dir / archive.EVALUATIONS
    records = archive.read_jsonl(log)
    archive.repair_jsonl(log)
    data = archive.read_checkpoint(run_dir)
    state = search.init() if data is None else state_from_checkpoint(search, data)
    for r in records:  # what was known when the checkpointed generation began, in the order it was learnt
        if r["generation"] < state.generation and r["status"] != types.REJECTED:
            _learn(state, r["fingerprint"], r["complexity"], r["tree"], r["expr"], _fitness_of(r), r["generation"])
    recorded = {(r["generation"], r["index"]): r for r in records if r["generation"] >= state.generation}
    if state.generation > search.config.search.generations:
        reporter.message(f"{run_dir} already has {state.generation} generations; raise --generations to go on")
        return state
    return _drive(search, state, run_dir, recorded, reporter)
