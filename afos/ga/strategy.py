"""The genetic search as a strategy: ``init / ask / tell`` over an explicit ``SearchState``.

One generation: ``ask`` proposes individuals (generation 0: the warm-start functions, then ramped
half-and-half; later: crowded tournaments, crossover, mutation), preferring functions not seen before;
the caller scores them; ``tell`` learns their fitness (and any re-scorings of known functions) into the
memo and keeps the best ``population`` of parents and children by NSGA-II. ``save`` and ``restore`` are
the checkpoint format, RNG included. Same seed, config and fitness values: same search.

The strategy never trains anything and never imports JAX: what it knows of a function before training
(canonical key, fingerprint, screen) comes from ``describe``, by default ``afos.expr.analyse``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy
from deap import tools

from afos import types
from afos.config import Config
from afos.errors import ExpressionError
from afos.expr import Candidate, analyse, parse
from afos.ga import genome, halving, local, memo, surrogate
from afos.ga.front import FrontEntry
from afos.ga.memo import Known, Memo
from afos.types import Fitness


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


ELITE = 4  # the memetic strategy's local search: the neighbours of this many best functions


@dataclass(frozen=True)
class Proposal:
    """One generation's individuals to train (with the surrogate's prediction of each, None where there is
    none) and the children a surrogate pre-screen left untrained (``screened``, with their predictions)."""

    offspring: list[genome.Individual]
    predicted: list[float | None] = field(default_factory=list)
    screened: list[genome.Individual] = field(default_factory=list)
    screened_predicted: list[float] = field(default_factory=list)

    def prediction(self, i: int) -> float | None:
        return self.predicted[i] if i < len(self.predicted) else None


@dataclass
class SearchState:
    generation: int  # the next generation to evaluate; 0 = the initial population
    population: list[genome.Individual]  # evaluated parents (empty before generation 0)
    rng: random.Random
    known: Memo = field(default_factory=dict)  # fingerprint -> what is known of the function


class Search:
    """The GA for one config: representation-specific operators, the screen of candidates, the memo.

    Args:
        config: the run's configuration (its space is loaded here if it is not yet).
        describe: sympy expression -> ``Candidate`` (key, fingerprint, screen); ``afos.expr.analyse``.
    """

    def __init__(self, config: Config, describe: Callable[[sympy.Expr], Candidate] = analyse,
                 prior: Sequence[surrogate.Example] = ()):
        self.config = config.resolved()
        self.space = self.config.space
        self.pset = genome.make_pset(self.space)
        self.describe = describe
        self._generate, self._mutate, self._crossover = genome.OPERATORS[self.space.representation]
        self._candidates: dict[str, Candidate] = {}
        self.prior = list(prior)  # what a surrogate learns besides the run's own scores
        self._features: dict = {}  # the surrogate's features, by function (computed once per process)
        self._sketches: dict[tuple[str, str], local.Sketch] = {}  # the memetic pool's, by tree or expression text

    def candidate(self, ind: genome.Individual) -> Candidate:
        """What is known of an individual's function before training (cached per tree)."""
        text = genome.to_text(ind)
        if text not in self._candidates:
            self._candidates[text] = self.describe(genome.to_sympy(ind))
        return self._candidates[text]

    def _is_novel(self, ind, known: Memo, batch: set[str]) -> bool:
        c = self.candidate(ind)
        return c.accepted and c.fingerprint not in known and c.fingerprint not in batch

    # -- init / ask / tell ---------------------------------------------------------------
    def init(self) -> SearchState:
        return SearchState(generation=0, population=[], rng=random.Random(self.config.search.seed))

    def ask(self, state: SearchState) -> list[genome.Individual]:
        """Proposes ``population`` new individuals for ``state.generation``, preferring novel functions.

        With ``search.strategy = "random"`` every generation is drawn like the first (the baseline a genetic
        search must beat at equal budget: ``benchmarks/search_quality.py``). With a surrogate
        (``search.surrogate``) they are the ones ``propose`` chose to train."""
        return self.propose(state).offspring

    def propose(self, state: SearchState) -> Proposal:
        """The individuals to train in ``state.generation`` and, with a surrogate pre-screen, the children it
        left untrained, each with its prediction.

        With ``search.surrogate`` set and enough scored functions to learn from (``surrogate.MIN_FIT``, the
        memo and ``prior``), ``oversample x population`` children are drawn and ranked by the surrogate;
        ``surrogate.choose`` keeps ``population`` of them (warm-start functions always). Otherwise the
        ``population`` children of the plain strategy."""
        s = self.config.search
        if s.strategy == "memetic":
            return self._propose_memetic(state)
        model = self.surrogate(state)
        n = s.population
        seeds = self.seed_individuals()[:n] if not state.population else []
        pool = self._draw(state, n * (s.oversample if model.ready else 1), seeds)
        if not model.ready:
            return Proposal(pool)
        drawn, batch = pool[len(seeds):], {self.candidate(ind).fingerprint for ind in seeds}
        novel = []  # a function new to the run and to this pool (a repeat is ranked last, as if known)
        for ind in drawn:
            novel.append(self._is_novel(ind, state.known, batch))
            batch.add(self.candidate(ind).fingerprint)
        items = [(c.expr, c.gain, c.text) for c in (self.candidate(ind) for ind, new in zip(drawn, novel) if new)]
        values = iter(model.predict(items))
        predicted = [next(values) if new else None for new in novel]
        chosen = set(surrogate.choose(predicted, n - len(seeds), s.explore, state.rng))
        kept = [i for i in range(len(drawn)) if i in chosen]
        left = [i for i in range(len(drawn)) if i not in chosen and predicted[i] is not None]
        return Proposal(seeds + [drawn[i] for i in kept], [None] * len(seeds) + [predicted[i] for i in kept],
                        [drawn[i] for i in left], [predicted[i] for i in left])

    def _propose_memetic(self, state: SearchState) -> Proposal:
        """The memetic strategy (``afos.ga.local``): generation 0 as the plain one; later, a pool of the best
        functions' neighbours, genetic children and random trees, the novel ones ranked by the surrogate."""
        s = self.config.search
        n = s.population
        if not state.population:
            return Proposal(self._draw(state, n, self.seed_individuals()[:n]))
        pool = self._pool(state)
        examples = [(self._sketch_known(k), surrogate.target(k.fitness, k.climbed)) for k in state.known.values()]
        seen = {k.expr for k in state.known.values()}
        examples += [(self._sketch_expr(e.expr), e.value) for e in self.prior if e.expr not in seen]
        usable = [(sk.features, value) for sk, value in examples if sk.features is not None]
        if len(usable) < surrogate.MIN_FIT or not pool:
            taken = [ind for ind, _, _ in pool[:n]]
            return Proposal(self._draw(state, n, taken))
        model = local.SymmetricKNN(np.stack([f for f, _ in usable]), local.percentiles([v for _, v in usable]))
        features = np.stack([sk.features for _, sk, _ in pool])
        predicted = np.round(model.predict(features), 6)
        chosen = local.select(features, predicted, [kind for _, _, kind in pool], model, min(n, len(pool)),
                              state.rng)
        offspring = self._draw(state, n, [pool[i][0] for i in chosen])  # a pool smaller than the population
        return Proposal(offspring, [float(predicted[i]) for i in chosen] + [None] * (n - len(chosen)))

    def _pool(self, state: SearchState) -> list[tuple[genome.Individual, local.Sketch, str]]:
        """The novel children of one memetic generation, each once (by its function up to sign symmetries) with
        where it comes from: the best known functions' neighbours (``simplify``, ``replace``, ``grow``: best
        function first), then genetic children (``vary``) and random trees (``random``)."""
        s = self.config.search
        best = sorted((k for k in state.known.values() if k.fitness.ok),
                      key=lambda k: (-k.objectives(k.complexity)[0], k.complexity, k.tree))
        elite, keys = [], set()
        for k in best:  # the best functions, one per function up to sign symmetries
            if len(elite) == ELITE:
                break
            key = self._sketch_known(k).key
            if key not in keys:
                keys.add(key)
                elite.append(k)
        children = [(f"{kind}:{rank}", nb) for rank, k in enumerate(elite)
                    for kind, nb in genome.neighbours(self.space, self.pset, genome.from_text(k.tree, self.pset))]
        with using_rng(state.rng):
            ranked = _rank(state.population)
            children += [("vary", self._vary(ranked)) for _ in range(s.oversample * s.population)]
            children += [("random", self._generate(self.space, self.pset)) for _ in range(s.oversample * s.population)]
        taken = {self._sketch_known(k).key for k in state.known.values()}
        out = []
        for kind, child in children:
            sk = self._sketch_tree(child)
            if sk.reason is None and sk.key not in taken:
                taken.add(sk.key)
                out.append((child, sk, kind))
        return out

    def _sketch_tree(self, ind: genome.Individual, text: str | None = None) -> local.Sketch:
        """A tree's sketch, cached by its genome text (``text`` where the caller has it)."""
        text = genome.to_text(ind) if text is None else text
        if ("tree", text) not in self._sketches:
            self._sketches[("tree", text)] = local.sketch(genome.to_sympy(ind))
        return self._sketches[("tree", text)]

    def _sketch_known(self, known: Known) -> local.Sketch:
        """A scored function's sketch, from its tree (its text may not parse back: ``x**18`` is beyond the
        parser's bounds on what a user types); the tree is read only the first time."""
        cached = self._sketches.get(("tree", known.tree))
        return cached or self._sketch_tree(genome.from_text(known.tree, self.pset), known.tree)

    def _sketch_expr(self, text: str) -> local.Sketch:
        """The sketch of an expression from elsewhere (an anchor, a fitness memory); one that does not parse
        is set aside (a sketch without features)."""
        if ("expr", text) not in self._sketches:
            try:
                self._sketches[("expr", text)] = local.sketch(parse(text))
            except ExpressionError as err:
                self._sketches[("expr", text)] = local.Sketch(str(err))
        return self._sketches[("expr", text)]

    def _draw(self, state: SearchState, size: int, seeds: list[genome.Individual]) -> list[genome.Individual]:
        """``seeds`` then children up to ``size`` in all, each novel where ``novelty_tries`` allow."""
        tries = self.config.search.novelty_tries
        batch = {self.candidate(ind).fingerprint for ind in seeds}
        out = list(seeds)
        with using_rng(state.rng):
            vary = bool(state.population) and self.config.search.strategy == "ga"
            if vary:
                ranked = _rank(state.population)
            for _ in range(size - len(out)):
                for _ in range(max(1, tries)):
                    child = self._vary(ranked) if vary else self._generate(self.space, self.pset)
                    if self._is_novel(child, state.known, batch):
                        break
                batch.add(self.candidate(child).fingerprint)
                out.append(child)
        return out

    def surrogate(self, state: SearchState) -> surrogate.Surrogate:
        """The surrogate of ``search.surrogate`` fitted on what the run has scored (``state.known``) and on
        ``prior`` (a fitness memory's functions of the same protocol); not ``ready`` with too few."""
        examples = [surrogate.Example(k.expr, k.gain, surrogate.target(k.fitness, k.climbed))
                    for k in state.known.values()]
        seen = {k.expr for k in state.known.values()}
        examples += [e for e in self.prior if e.expr not in seen]
        return surrogate.Surrogate(self.config.search.surrogate, examples, self._features)

    def _vary(self, ranked) -> genome.Individual:
        s = self.config.search
        a, b = (genome.Individual(list(_tournament(ranked))) for _ in range(2))
        crossed = random.random() < s.crossover_prob
        if crossed:
            a, b = self._crossover(self.space, a, b)
        if not crossed or random.random() < s.mutation_prob:
            a = self._mutate(self.space, self.pset, a)
        return a

    def learned(self, state: SearchState, offspring: Sequence[genome.Individual],
                fitnesses: Sequence[Fitness | None]) -> Memo:
        """The memo once ``offspring`` are known by ``fitnesses`` (None: rejected by the screen); pure."""
        known, epochs = dict(state.known), halving.rung_epochs(self.config)[0]
        for ind, fit in zip(offspring, fitnesses, strict=True):
            if fit is not None:
                c = self.candidate(ind)
                memo.learn(known, c.fingerprint, genome.complexity(ind), genome.to_text(ind), c.text, fit,
                           state.generation, c.gain, epochs)
        return known

    def tell(self, state: SearchState, offspring: Sequence[genome.Individual], fitnesses: Sequence[Fitness | None],
             updates: Mapping[str, Known] | None = None) -> SearchState:
        """Learns the offspring's fitnesses and what was learnt of known functions since, then NSGA-II survival.

        Args:
            fitnesses: per offspring, its function's fitness, or None where the screen rejected it.
            updates: fingerprint -> what is now known of a function scored again after the offspring
                (racing on more seeds, successive halving on longer training).

        The individuals of ``state`` and ``offspring`` carry their objective values from here on.
        """
        known = self.learned(state, offspring, fitnesses)
        known.update(updates or {})
        for ind, fit in zip(offspring, fitnesses, strict=True):
            fp = self.candidate(ind).fingerprint
            ind.fitness.values = types.WORST_FITNESS if fit is None else known[fp].objectives(genome.complexity(ind))
        for ind in state.population:
            fp = self.candidate(ind).fingerprint
            if fp in (updates or {}):
                ind.fitness.values = known[fp].objectives(genome.complexity(ind))
        pool = state.population + list(offspring)
        survivors = tools.selNSGA2(pool, min(self.config.search.population, len(pool)))
        return SearchState(state.generation + 1, survivors, state.rng, known)

    def front(self, state: SearchState) -> list[FrontEntry]:
        """The front of everything scored, with unconfirmed challengers beside it (``memo.front_of``)."""
        return memo.front_of(state.known, self.config.protocol.max_seeds)

    # -- checkpoint ----------------------------------------------------------------------
    def save(self, state: SearchState) -> dict[str, Any]:
        """The checkpoint of ``state`` as plain data (the memo is not in it: it is the run's log, replayed)."""
        return {
            "generation": state.generation,
            "population": [{"tree": genome.to_text(ind), "fitness": list(ind.fitness.values)}
                           for ind in state.population],
            # The only evolving RNG is the GA's. Fitness evaluations draw NumPy and JAX randomness from
            # generators seeded afresh by their seed in every evaluation, so they need no saved state.
            "rng": {"python": _rng_to_json(state.rng)},
        }

    def restore(self, data: dict[str, Any] | None, history: Iterable[memo.Line] = ()) -> SearchState:
        """The state a checkpoint describes (None: a fresh start), its memo replayed from the recorded
        evaluations of the generations before it, in the order they were recorded."""
        if data is None:
            state = self.init()
        else:
            population = []
            for item in data["population"]:
                ind = genome.from_text(item["tree"], self.pset)
                ind.fitness.values = tuple(item["fitness"])
                population.append(ind)
            state = SearchState(data["generation"], population, _rng_from_json(data["rng"]["python"]))
        memo.replay(state.known, (line for line in history if line.generation < state.generation))
        return state

    def seed_individuals(self) -> list[genome.Individual]:
        """The configured ``init_exprs`` as individuals of the space (they open generation 0)."""
        return [genome.from_expression(parse(text), self.space, self.pset) for text in self.config.search.init_exprs]


def _rng_to_json(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_json(data: list) -> random.Random:
    rng = random.Random()
    rng.setstate((data[0], tuple(data[1]), data[2]))
    return rng


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

