"""The genetic search: ``init / ask / tell`` over an explicit ``SearchState``, and the driver ``run``.

One generation: ``ask`` proposes individuals (generation 0: ramped
half-and-half; later: tournament, crossover, mutation), each becomes a sympy
expression that is screened and fingerprinted, functions seen before reuse
their fitness, the evaluator scores the rest, and ``tell`` keeps the best
``population`` of parents and children by NSGA-II. Same seed and config, same
run.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deap import tools

from afos import archive, genome, types
from afos import config as config_lib
from afos import data as data_lib
from afos.config import Config
from afos.evaluate import Evaluator, Fitness, fitness_values, make_evaluator
from afos.expr import Analysis, analyse, tree_to_sympy


@contextlib.contextmanager
def using_rng(rng: random.Random) -> Iterator[None]:
    """Runs DEAP's operators (which use the global ``random``) on ``rng``'s state."""
    saved = random.getstate()
    random.setstate(rng.getstate())
    try:
        yield
    finally:
        rng.setstate(random.getstate())
        random.setstate(saved)


def rng_to_json(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(data: list) -> random.Random:
    rng = random.Random()
    rng.setstate((data[0], tuple(data[1]), data[2]))
    return rng


@dataclass
class Known:
    """A function that has been scored: its fitness and its simplest tree so far."""

    fitness: Fitness
    complexity: int
    tree: str
    expr: str
    generation: int


@dataclass
class SearchState:
    generation: int  # the next generation to evaluate; 0 = the initial population
    population: list[genome.Individual]  # evaluated parents (empty before generation 0)
    rng: random.Random
    known: dict[str, Known] = field(default_factory=dict)  # fingerprint -> fitness


class Search:
    """The GA for one config: representation-specific operators plus screening and memo."""

    def __init__(self, config: Config):
        self.config = config.resolved()
        self.space = self.config.space
        self.pset = genome.make_pset(self.space)
        self._generate, self._mutate, self._crossover = genome.OPERATORS[self.space.representation]
        self._analyses: dict[str, Analysis] = {}

    # -- analysis ----------------------------------------------------------------
    def analysis(self, ind: genome.Individual) -> Analysis:
        text = genome.to_text(ind)
        if text not in self._analyses:
            self._analyses[text] = analyse(tree_to_sympy(ind))
        return self._analyses[text]

    def _is_novel(self, ind, known: dict[str, Known], batch: set[str]) -> bool:
        a = self.analysis(ind)
        return a.accepted and a.fingerprint not in known and a.fingerprint not in batch

    # -- init / ask / tell -----------------------------------------------------------
    def init(self) -> SearchState:
        return SearchState(generation=0, population=[], rng=random.Random(self.config.search.seed))

    def ask(self, state: SearchState) -> list[genome.Individual]:
        """Proposes ``population`` new individuals for ``state.generation``, preferring novel functions."""
        n, tries = self.config.search.population, self.config.search.novelty_tries
        batch: set[str] = set()
        out = []
        with using_rng(state.rng):
            if state.population:
                ranked = _rank(state.population)
            for _ in range(n):
                for _ in range(max(1, tries)):
                    child = self._vary(ranked) if state.population else self._generate(self.space, self.pset)
                    if self._is_novel(child, state.known, batch):
                        break
                batch.add(self.analysis(child).fingerprint)
                out.append(child)
        return out

    def _vary(self, ranked) -> genome.Individual:
        s = self.config.search
        a, b = (genome.Individual(list(_tournament(ranked))) for _ in range(2))
        crossed = random.random() < s.crossover_prob
        if crossed:
            a, b = self._crossover(self.space, a, b)
        if not crossed or random.random() < s.mutation_prob:
            a = self._mutate(self.space, self.pset, a)
        return a

    def tell(self, state: SearchState, offspring: list[genome.Individual]) -> SearchState:
        """NSGA-II survival over parents and (evaluated) offspring."""
        pool = state.population + offspring
        survivors = tools.selNSGA2(pool, min(self.config.search.population, len(pool)))
        return SearchState(state.generation + 1, survivors, state.rng, state.known)


def _rank(population: list[genome.Individual]) -> list[tuple[int, float, genome.Individual]]:
    """(front rank, crowding distance, individual) for crowded binary tournaments."""
    ranked = []
    for rank, front in enumerate(tools.sortNondominated(population, len(population))):
        tools.emo.assignCrowdingDist(front)
        ranked += [(rank, ind.fitness.crowding_dist, ind) for ind in front]
    return ranked


def _tournament(ranked) -> genome.Individual:
    a, b = random.choice(ranked), random.choice(ranked)
    if a[0] != b[0]:
        return (a if a[0] < b[0] else b)[2]
    return (a if a[1] >= b[1] else b)[2]


# --- the driver ---------------------------------------------------------------------


class Reporter(Protocol):
    def generation_started(self, generation: int, size: int) -> None: ...
    def evaluated(self, record: dict[str, Any]) -> None: ...
    def generation_finished(self, generation: int, front: list[archive.FrontEntry]) -> None: ...


class SilentReporter:
    def generation_started(self, generation: int, size: int) -> None:
        pass

    def evaluated(self, record: dict[str, Any]) -> None:
        pass

    def generation_finished(self, generation: int, front: list[archive.FrontEntry]) -> None:
        pass


def _record(generation: int, index: int, ind, a: Analysis, status: str, fit: Fitness | None, seconds: float,
            reason: str | None = None) -> dict[str, Any]:
    return {
        "generation": generation,
        "index": index,
        "tree": genome.to_text(ind),
        "expr": a.text,
        "key": a.key_hash,
        "fingerprint": a.fingerprint,
        "complexity": genome.complexity(ind),
        "status": status,
        "reason": reason if reason is not None else (fit.reason if fit else a.reason),
        "val_accuracy": fit.val_accuracy if fit else None,
        "val_loss": fit.val_loss if fit else None,
        "seconds": round(seconds, 4),
    }


def evaluate_generation(search: Search, state: SearchState, offspring: list[genome.Individual],
                        evaluator: Evaluator, run_dir: Path, reporter: Reporter) -> None:
    """Scores ``offspring`` in place: screened, cached or trained, each line appended as it is known."""
    log = run_dir / archive.EVALUATIONS
    g = state.generation
    todo: dict[str, list[int]] = {}  # fingerprint -> offspring indices sharing it
    for i, ind in enumerate(offspring):
        a = search.analysis(ind)
        if not a.accepted:
            ind.fitness.values = types.WORST_FITNESS
            record = _record(g, i, ind, a, types.REJECTED, None, 0.0)
        elif a.fingerprint in state.known:
            known = state.known[a.fingerprint]
            _assign(state, ind, a, known.fitness, g)
            record = _record(g, i, ind, a, types.CACHED, known.fitness, 0.0)
        else:
            todo.setdefault(a.fingerprint, []).append(i)
            continue
        archive.append_jsonl(log, record)
        reporter.evaluated(record)
    unique = [indices[0] for indices in todo.values()]
    for j, fit in evaluator.evaluate([search.analysis(offspring[i]) for i in unique]):
        first = unique[j]
        a = search.analysis(offspring[first])
        for i in todo[a.fingerprint]:
            _assign(state, offspring[i], a, fit, g)
            status = fit.status if i == first else types.CACHED
            record = _record(g, i, offspring[i], a, status, fit, fit.seconds if i == first else 0.0)
            archive.append_jsonl(log, record)
            reporter.evaluated(record)


def _assign(state: SearchState, ind, a: Analysis, fit: Fitness, generation: int) -> None:
    c = genome.complexity(ind)
    ind.fitness.values = fitness_values(fit, c)
    old = state.known.get(a.fingerprint)
    if old is None or c < old.complexity:
        state.known[a.fingerprint] = Known(fit, c, genome.to_text(ind), a.text,
                                           generation if old is None else old.generation)


def front_of(state: SearchState) -> list[archive.FrontEntry]:
    return archive.pareto_front(
        archive.FrontEntry(k.expr, k.fitness.val_accuracy, k.complexity, k.fitness.val_loss, k.generation, fp, k.tree)
        for fp, k in state.known.items()
        if k.fitness.status == types.OK
    )


def checkpoint_of(state: SearchState) -> dict[str, Any]:
    return {
        "generation": state.generation,
        "population": [{"tree": genome.to_text(ind), "fitness": list(ind.fitness.values)} for ind in state.population],
        "rng": {"python": rng_to_json(state.rng)},
    }


def new_run_dir(root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{stamp}-{n}"
    return path


def start_run_dir(config: Config, run_dir: Path) -> None:
    if (run_dir / archive.CHECKPOINT).exists() or (run_dir / archive.EVALUATIONS).exists():
        raise archive.RunDirError(f"{run_dir} already holds a run: `afos resume {run_dir}` continues it, "
                                  "or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    archive.write_text_atomic(run_dir / archive.CONFIG, config_lib.dumps(config))


def run(config: Config, run_dir: str | Path, reporter: Reporter | None = None) -> SearchState:
    """Runs a whole search into ``run_dir`` and returns its final state."""
    reporter = reporter or SilentReporter()
    run_dir = Path(run_dir)
    search = Search(config)
    fitness = search.config.fitness
    dataset = data_lib.load(fitness.dataset, seed=fitness.seed, val_fraction=fitness.val_fraction,
                            train_size=fitness.train_size, val_size=fitness.val_size)
    evaluator = make_evaluator(search.config.evaluator.backend, dataset, fitness)
    start_run_dir(search.config, run_dir)
    state = search.init()
    while state.generation <= search.config.search.generations:
        offspring = search.ask(state)
        reporter.generation_started(state.generation, len(offspring))
        evaluate_generation(search, state, offspring, evaluator, run_dir, reporter)
        state = search.tell(state, offspring)
        front = front_of(state)
        archive.write_pareto_csv(run_dir, front)
        archive.write_checkpoint(run_dir, checkpoint_of(state))
        reporter.generation_finished(state.generation - 1, front)
    return state
