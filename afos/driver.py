"""The search driver: runs and resumes a search in its run directory.

The run directory is the source of truth. Every finished evaluation is appended
to ``evaluations.jsonl`` (fsynced) before the next one starts; the checkpoint is
replaced atomically at every generation boundary. Resuming loads the checkpoint
of the generation in progress, asks the same individuals again (the RNG state is
in the checkpoint) and reuses the lines already recorded for them, so a run
stopped at any point ends exactly as if it had never stopped.

Besides one line per individual (``(generation, index)``), a run writes the anchors
(standard activations scored once, generation -1, status ``anchor``) and, with
racing, the re-scorings of front members after a generation's individuals
(indices from the population size on, status ``rescored``). Both are decided
from the state alone, so resuming reuses them like any other line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import sympy

from afos import archive, genome, types
from afos import config as config_lib
from afos import data as data_lib
from afos.config import Config
from afos.distributed import seeded_evaluator
from afos.evaluate import Evaluator, Fitness, fitness_values
from afos.expr import Analysis, analyse, parse
from afos.fitness import MultiSeedEvaluator, Scorer, accuracies, combine, search_seeds, seeds_of
from afos.primitives import STANDARD_ACTIVATIONS
from afos.runlock import LOCK as LOCK  # re-exported: the name of the lock file
from afos.runlock import run_lock, stop_on_sigint
from afos.search import Known, Search, SearchState, rng_from_json, rng_to_json


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
        "tree": "" if ind is None else genome.to_text(ind),
        "expr": a.text,
        "key": a.key_hash,
        "fingerprint": a.fingerprint,
        "complexity": 0 if ind is None else genome.complexity(ind),
        "status": status,
        "reason": fit.reason if fit else a.reason,
        "val_accuracy": fit.val_accuracy if fit else None,
        "val_loss": fit.val_loss if fit else None,
        "val_accuracy_std": fit.val_accuracy_std if fit else None,
        "seeds": seeds_of(fit) if fit and fit.status == types.OK else 0,
        "seed_accuracies": list(accuracies(fit)) if fit and fit.status == types.OK else [],
        "seconds": round(seconds, 4),
    }


def _fitness_of(record: dict[str, Any]) -> Fitness:
    status = types.OK if record["val_accuracy"] is not None else types.FAILED
    return Fitness(status, record["val_accuracy"], record["val_loss"], record["reason"], record["seconds"],
                   record.get("val_accuracy_std"), tuple(record.get("seed_accuracies") or ()))


def _learn(state: SearchState, fingerprint: str, complexity: int, tree: str, expr: str, fit: Fitness,
           generation: int) -> None:
    """Records a scored function, keeping its simplest tree and the generation it was first seen."""
    old = state.known.get(fingerprint)
    if old is None or complexity < old.complexity:
        state.known[fingerprint] = Known(fit, complexity, tree, expr, generation if old is None else old.generation)


def _replay(state: SearchState, record: dict[str, Any]) -> None:
    """Applies one recorded line of an earlier generation to ``state.known``."""
    status = record["status"]
    if status == types.RESCORED:
        fp = record["fingerprint"]
        state.known[fp] = dataclasses.replace(state.known[fp], fitness=_fitness_of(record))
    elif status not in (types.REJECTED, types.ANCHOR):
        _learn(state, record["fingerprint"], record["complexity"], record["tree"], record["expr"],
               _fitness_of(record), record["generation"])


def front_of(state: SearchState, confirmed: int = 1) -> list[archive.FrontEntry]:
    """The Pareto front of the confirmed functions (scored on at least ``confirmed`` seeds) and the
    challengers that would join it, scored on fewer seeds so far.

    A challenger cannot push a confirmed function off the front before racing has re-scored it on
    ``confirmed`` seeds: until then both are listed (the ``seeds`` column tells them apart). Without
    racing every function is confirmed and this is the plain Pareto front.
    """
    entries = [
        archive.FrontEntry(k.expr, k.fitness.val_accuracy, k.complexity, k.fitness.val_loss, k.generation, fp, k.tree,
                           k.fitness.val_accuracy_std, seeds_of(k.fitness))
        for fp, k in state.known.items()
        if k.fitness.status == types.OK
    ]
    front = archive.pareto_front(entries)
    if all(e.seeds >= confirmed for e in front):
        return front
    incumbents = archive.pareto_front(e for e in entries if e.seeds >= confirmed)
    merged = {e.fingerprint: e for e in incumbents + [e for e in front if e.seeds < confirmed]}
    return sorted(merged.values(), key=lambda e: (e.complexity, -e.val_accuracy, e.generation, e.expression))


def _next_challenger(state: SearchState, confirmed: int) -> str | None:
    """The most accurate challenger of the front (scored on fewer than ``confirmed`` seeds), if any."""
    challengers = sorted((e for e in front_of(state, confirmed) if e.seeds < confirmed),
                         key=lambda e: (-e.val_accuracy, e.complexity, e.fingerprint))
    return challengers[0].fingerprint if challengers else None


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
        self._write(_record(g, i, ind, a, status, fit, seconds), self.reporter.evaluated)

    def _write(self, record: dict[str, Any], report: Callable[[dict[str, Any]], None]) -> None:
        """Appends ``record`` unless the same line was recorded before an interruption."""
        g, i = record["generation"], record["index"]
        old = self.recorded.get((g, i))
        if old is not None:
            if (old["tree"], old["status"]) != (record["tree"], record["status"]):
                raise archive.RunDirError(f"{self.log}: line for generation {g}, index {i} holds {old['status']} "
                                          f"{old['tree']!r} but the checkpoint asks {record['status']} "
                                          f"{record['tree']!r}")
            report(old)
            return
        archive.append_jsonl(self.log, record)
        report(record)
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

    def race(self, seeded: Scorer) -> None:
        """Re-scores front members on more seeds (doubling, up to ``race_seeds``) within the generation's budget.

        The most accurate unconfirmed front member goes first, so a function that entered the front on a
        lucky draw is measured again before it can push out an incumbent scored on more seeds. Each
        re-scoring is a line of its own (status ``rescored``, index after the generation's individuals).
        """
        config = self.search.config
        p, g = config.protocol, self.state.generation
        if p.max_seeds <= p.fitness_seeds:
            return
        seeds = search_seeds(config.fitness, p.max_seeds)
        budget = math.floor(p.race_budget * config.search.population * p.fitness_seeds + 1e-9)
        index = len(self.offspring)
        while (fp := _next_challenger(self.state, p.max_seeds)) is not None:
            known = self.state.known[fp]
            have = seeds_of(known.fitness)
            want = min(p.max_seeds, 2 * have)
            if want - have > budget:
                break
            budget -= want - have
            ind = genome.from_text(known.tree, self.search.pset)
            a = self.search.analysis(ind)
            old = self.recorded.get((g, index))
            if old is not None and old["status"] == types.RESCORED and old["fingerprint"] == fp:
                fit, seconds = _fitness_of(old), old["seconds"]
            else:
                _, extra = next(iter(seeded.evaluate([a], seeds[have:want])))
                fit, seconds = combine(known.fitness, extra), extra.seconds
            self._rescore(fp, fit)
            record = _record(g, index, ind, a, types.RESCORED, fit, seconds)
            self._write(record, self._report_rescore)
            index += 1

    def _rescore(self, fingerprint: str, fit: Fitness) -> None:
        self.state.known[fingerprint] = dataclasses.replace(self.state.known[fingerprint], fitness=fit)
        for ind in self.state.population + self.offspring:
            if self.search.analysis(ind).fingerprint == fingerprint:
                ind.fitness.values = fitness_values(fit, genome.complexity(ind))

    def _report_rescore(self, record: dict[str, Any]) -> None:
        acc = "failed" if record["val_accuracy"] is None else f"{record['val_accuracy']:.4f}"
        std = "" if record["val_accuracy_std"] is None else f" ± {record['val_accuracy_std']:.4f}"
        self.reporter.message(f"re-scored {record['expr']} on {record['seeds']} seeds: {acc}{std}")

    def _finish(self, first: int, fit: Fitness, todo) -> None:
        for i in todo[self.search.analysis(self.offspring[first]).fingerprint]:
            if i == first:
                self.emit(i, fit.status, fit, fit.seconds)
            else:
                self.emit(i, types.CACHED, fit, 0.0)


# --- run directory --------------------------------------------------------------------


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
                         val_size=f.val_size, data_dir=f.data_dir)


def _anchor_record(index: int, name: str, a: Analysis, fit: Fitness) -> dict[str, Any]:
    record = _record(archive.ANCHOR_GENERATION, index, None, a, types.ANCHOR, fit, fit.seconds)
    return record | {"tree": name, "complexity": sum(1 for _ in sympy.preorder_traversal(a.expr))}


def _anchors(config: Config, run_dir: Path, recorded: dict, seeded: Scorer, reporter: Reporter,
             stop: Callable[[], bool]) -> None:
    """Scores the configured standard activations once per run, on the seeds of a confirmed fitness.

    They are lines of their own (status ``anchor``, generation -1) and never enter the population.
    """
    seeds = search_seeds(config.fitness, config.protocol.max_seeds)
    todo: list[tuple[int, str, Analysis]] = []
    for i, name in enumerate(config.protocol.anchors):
        old = recorded.get((archive.ANCHOR_GENERATION, i))
        if old is None:
            todo.append((i, name, analyse(parse(STANDARD_ACTIVATIONS[name]))))
        elif old["tree"] != name:
            raise archive.RunDirError(f"{run_dir / archive.EVALUATIONS}: anchor line {i} holds {old['tree']!r} "
                                      f"but the config asks {name!r}")
    for j, fit in seeded.evaluate([a for _, _, a in todo], seeds):  # together: a pool trains them side by side
        i, name, a = todo[j]
        record = _anchor_record(i, name, a, fit)
        archive.append_jsonl(run_dir / archive.EVALUATIONS, record)
        acc = "failed" if fit.val_accuracy is None else f"{fit.val_accuracy:.4f}"
        reporter.message(f"anchor {name} ({record['expr']}): val_accuracy {acc} on {len(seeds)} seed(s)")
        if stop():
            raise SearchInterruptedError


def _scorer(config: Config, dataset: data_lib.Dataset) -> Scorer:
    """The run's scorer (connecting to a Ray cluster fails here, before the run directory is touched)."""
    candidates = config.search.population * (config.search.generations + 1)  # lets `auto` pick the backend
    return seeded_evaluator(config.evaluator, dataset, config.fitness, candidates)


def _drive(search: Search, state: SearchState, run_dir: Path, recorded: dict, reporter: Reporter,
           seeded: Scorer) -> SearchState:
    config = search.config
    hint = f"resume with: afos resume {run_dir}"
    with run_lock(run_dir, reporter), stop_on_sigint(reporter, hint) as stop:
        evaluator = MultiSeedEvaluator(seeded, search_seeds(config.fitness, config.protocol.fitness_seeds))
        if not (run_dir / archive.CHECKPOINT).exists():
            archive.write_checkpoint(run_dir, checkpoint_of(state))
        try:
            _anchors(config, run_dir, recorded, seeded, reporter, stop)
            while state.generation <= search.config.search.generations:
                offspring = search.ask(state)
                reporter.generation_started(state.generation, len(offspring))
                generation = _Generation(search, state, offspring, run_dir, recorded, reporter, stop)
                generation.run(evaluator)
                generation.race(seeded)
                state = search.tell(state, offspring)
                front = front_of(state, config.protocol.max_seeds)
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
    dataset = _load_dataset(search.config)  # fail on a bad dataset before creating anything
    if (run_dir / archive.CONFIG).exists() or (run_dir / archive.EVALUATIONS).exists():
        raise archive.RunDirError(f"{run_dir} already holds a run: `afos resume {run_dir}` continues it, "
                                  "or choose another --run-dir")
    with contextlib.closing(_scorer(search.config, dataset)) as seeded:
        run_dir.mkdir(parents=True, exist_ok=True)
        archive.write_text_atomic(run_dir / archive.CONFIG, config_lib.dumps(search.config))
        return _drive(search, search.init(), run_dir, {}, reporter, seeded)


FREE_ON_RESUME = ("search.generations", *(f"evaluator.{k}" for k in config_lib.PLACEMENT))


def config_differences(old: Config, new: Config) -> list[str]:
    """'section.key: old -> new' for every setting that differs, except those a resume may change
    (generations, and where the work runs: ``config.PLACEMENT``)."""
    a, b = _flatten(old.to_dict()), _flatten(new.to_dict())
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in FREE_ON_RESUME]


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
        placement = {k: getattr(config.evaluator, k) for k in config_lib.PLACEMENT}
        stored = config_lib.override(stored, evaluator=placement)
    if generations is not None:
        stored = config_lib.override(stored, search={"generations": generations})
    search = Search(stored)
    log = run_dir / archive.EVALUATIONS
    records = archive.read_jsonl(log)
    archive.repair_jsonl(log)
    data = archive.read_checkpoint(run_dir)
    state = search.init() if data is None else state_from_checkpoint(search, data)
    for r in records:  # what was known when the checkpointed generation began, in the order it was learnt
        if r["generation"] < state.generation:
            _replay(state, r)
    recorded = {(r["generation"], r["index"]): r for r in records
                if r["generation"] >= state.generation or r["status"] == types.ANCHOR}
    if state.generation > search.config.search.generations:
        reporter.message(f"{run_dir} already has {state.generation} generations; raise --generations to go on")
        return state
    with contextlib.closing(_scorer(search.config, _load_dataset(search.config))) as seeded:
        return _drive(search, state, run_dir, recorded, reporter, seeded)
