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
from collections.abc import Iterator
from dataclasses import dataclass, field

from deap import tools

from afos import genome
from afos.config import Config
from afos.evaluate import Fitness
from afos.expr import Analysis, analyse, parse, tree_to_sympy


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
        if not state.population:  # generation 0 opens with the warm-start functions
            for ind in seed_individuals(self)[:n]:
                batch.add(self.analysis(ind).fingerprint)
                out.append(ind)
        with using_rng(state.rng):
            if state.population:
                ranked = _rank(state.population)
            for _ in range(n - len(out)):
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


def seed_individuals(search: Search) -> list[genome.Individual]:
    """The configured ``init_exprs`` as individuals of the space (they open generation 0)."""
    out = []
    for text in search.config.search.init_exprs:
        out.append(genome.from_expression(parse(text), search.space, search.pset))
    return out


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
