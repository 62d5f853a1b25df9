"""The search driver: ask -> evaluate -> tell -> persist, in a run directory, resumable at any point.

The run directory is the source of truth. Every finished evaluation is appended to the log (fsynced) before the next
one starts; the checkpoint is replaced atomically at every generation boundary. Resuming restores the checkpoint of
the generation in progress, asks the same individuals again (the RNG state is in the checkpoint) and answers what
the log already holds without training (``pools.Replay``); the log's lines win over anything recomputed
(``Run.append``), so a run stopped at any point ends exactly as if it had never stopped. With a fitness memory
(``afos.run.memory``), a generation's new functions that a run measured before under the same protocol are taken
from it (``pools.Remembering``, lines ``cached``); the log still answers first.

Besides one line per individual (``(generation, index)``), a run writes the anchors (standard activations scored
once per rung, generation -1, status ``anchor``) and, after a generation's individuals (indices from the population
size on), the promotions of successive halving (status ``promoted``) and the re-scorings of racing (status
``rescored``). All are decided from the state alone, so resuming reuses them like any other line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

import sympy

from afos import config as config_lib
from afos import types
from afos.config import Config
from afos.errors import ObjectiveExitError, RunError
from afos.expr import STANDARD_ACTIVATIONS, Candidate, analyse, parse
from afos.expr.names import canonical, label
from afos.fitness import compile_cache
from afos.fitness import evaluator as evaluator_lib
from afos.fitness.evaluator import Evaluator
from afos.fitness.pools import Answer, Remembering, Replay
from afos.ga import genome, halving, racing, surrogate
from afos.ga.front import FrontEntry
from afos.ga.memo import Known, Memo
from afos.ga.strategy import Search, SearchState
from afos.run import start
from afos.run.lock import raise_if_interrupted, stop_on_sigint
from afos.run.memory import FitnessMemory, run_protocol
from afos.run.records import ANCHOR_GENERATION, Evaluation
from afos.run.rundir import Run
from afos.types import Fitness
from afos.words import plural


class SearchInterruptedError(KeyboardInterrupt):
    """The search stopped on Ctrl-C after saving everything; the message says how to resume."""


class SearchReporter(Protocol):
    """What a search tells whoever watches it (the command line's progress bars, a notebook, nobody)."""

    def generation_started(self, generation: int, size: int) -> None: ...
    def evaluated(self, line: Evaluation) -> None: ...
    def generation_finished(self, generation: int, front: list[FrontEntry]) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    """Tells nobody (``afos.search(verbose=False)``, tests)."""

    def generation_started(self, generation: int, size: int) -> None: ...
    def evaluated(self, line: Evaluation) -> None: ...
    def generation_finished(self, generation: int, front: list[FrontEntry]) -> None: ...
    def message(self, text: str) -> None: ...


Describe = Callable[[sympy.Expr], Candidate]


class _Loop:
    """One search's generations, written into its run directory as they are scored."""

    def __init__(self, run: Run, search: Search, evaluator: Evaluator, reporter: SearchReporter,
                 stop: Callable[[], bool], memory: FitnessMemory | None = None):
        self.run, self.search, self.evaluator, self.reporter, self.stop = run, search, evaluator, reporter, stop
        p = search.config.protocol
        self.seeds = config_lib.search_seeds(search.config.fitness, p.max_seeds)  # a confirmed fitness's seeds
        self.fitness_seeds = self.seeds[: p.fitness_seeds]  # a new candidate's
        self.epochs = halving.rung_epochs(search.config)  # the training length of each rung ([None]: no rungs)
        # What trains a generation's new functions: through the fitness memory where there is one (the stored
        # config's fitness settings: an objective's direction as decided). Anchors, promotions and
        # re-scorings train through ``evaluator`` itself.
        self.individuals = evaluator if memory is None else Remembering(evaluator, memory, run.config.fitness)

    def emit(self, line: Evaluation, report: Callable[[Evaluation], None] | None = None) -> Evaluation:
        """Appends ``line`` (or finds it recorded), reports it and stops here if Ctrl-C asked to."""
        kept = self.run.append(line)
        (report or self.reporter.evaluated)(kept)
        if kept is line and self.stop():
            raise SearchInterruptedError
        return kept

    def report_again(self, line: Evaluation) -> None:
        acc = "failed" if line.val_accuracy is None else f"{line.val_accuracy:.4f}"
        std = "" if line.val_accuracy_std is None else f" ± {line.val_accuracy_std:.4f}"
        what = "re-scored" if line.status == types.RESCORED else "promoted"
        length = "" if line.epochs is None else f", {plural(line.epochs, 'epoch')}"
        self.reporter.message(f"{what} {label(line.expr)} on {plural(line.seeds, 'seed')}{length}: {acc}{std}")

    # --- anchors ------------------------------------------------------------------------------------
    def anchors(self) -> None:
        """Scores the configured standard activations once per run, on the seeds of a confirmed fitness, at
        every rung of successive halving (line ``k * len(anchors) + i``: anchor i at rung k).

        They are lines of their own (status ``anchor``, generation -1) and never enter the population.
        """
        recorded = {r.index: r for r in self.run.anchors()}
        names = self.search.config.protocol.anchors
        todo: dict[int | None, list[tuple[int, str, Candidate]]] = {}  # epochs -> anchors to score
        for k, epochs in enumerate(self.epochs):
            for i, name in enumerate(names):
                index, old = k * len(names) + i, recorded.get(k * len(names) + i)
                if old is None:
                    todo.setdefault(epochs, []).append((index, name, self.search.describe(
                        parse(STANDARD_ACTIVATIONS[name]))))
                elif old.tree != name:
                    raise RunError(f"{self.run.log}: anchor line {index} holds {old.tree!r} but the config asks "
                                   f"{name!r}")
        metric = types.metric_names(self.run.config.fitness)[0]
        for epochs, group in todo.items():  # together: a pool trains them side by side
            for j, fit in evaluator_lib.run(self.evaluator, [c for _, _, c in group], self.seeds, epochs):
                index, name, c = group[j]
                nodes = sum(1 for _ in sympy.preorder_traversal(c.expr))
                line = Evaluation.of(ANCHOR_GENERATION, index, name, nodes, c, types.ANCHOR, fit, fit.seconds, epochs)
                acc = "failed" if fit.val_accuracy is None else f"{fit.val_accuracy:.4f}"
                length = "" if epochs is None else f", {plural(epochs, 'epoch')}"
                self.emit(line, lambda r, acc=acc, length=length: self.reporter.message(
                    f"anchor {r.tree} ({canonical(r.expr)}): {metric} {acc} on "
                    f"{plural(len(self.seeds), 'seed')}{length}"))
        # what a surrogate learns before the run has scored anything of its own: the anchors at rung 0
        self.search.prior += [surrogate.Example(a.expr, a.gain, surrogate.target(a.fitness))
                              for a in self.run.anchors() if a.epochs == self.epochs[0]]

    # --- one generation -----------------------------------------------------------------------------
    def generation(self, state: SearchState) -> SearchState:
        g = state.generation
        proposal = self.search.propose(state)
        offspring = proposal.offspring
        self.reporter.generation_started(g, len(offspring))
        candidates = [self.search.candidate(ind) for ind in offspring]
        answers = self._answers(g, state.known)  # the individuals' and the second looks' requests never collide
        evaluator = Replay(self.individuals, answers)
        fits: list[Fitness | None] = [None] * len(offspring)
        base = self.epochs[0]

        def emit(i: int, status: str, fit: Fitness | None, seconds: float, epochs: int | None = base) -> None:
            ind = offspring[i]
            line = Evaluation.of(g, i, genome.to_text(ind), genome.complexity(ind), candidates[i], status, fit,
                                 seconds, None if status == types.REJECTED else epochs, proposal.prediction(i))
            kept = self.emit(line)
            fits[i] = None if status == types.REJECTED else kept.fitness

        todo: dict[str, list[int]] = {}  # fingerprint -> indices sharing it, the first one trained
        for i, c in enumerate(candidates):
            if not c.accepted:
                emit(i, types.REJECTED, None, 0.0)
            elif c.fingerprint in state.known:
                known = state.known[c.fingerprint]
                emit(i, types.CACHED, known.fitness, 0.0, known.epochs)
            else:
                todo.setdefault(c.fingerprint, []).append(i)
        firsts = [indices[0] for indices in todo.values()]
        for j, fit in evaluator_lib.run(evaluator, [candidates[i] for i in firsts], self.fitness_seeds, base):
            first = firsts[j]
            emit(first, fit.status, fit, fit.seconds)
            for i in todo[candidates[first].fingerprint][1:]:  # the same function again: its fitness reused
                emit(i, types.CACHED, fit, 0.0)
        # then, as lines after the individuals: the children a surrogate left untrained, promotions to longer
        # training, re-scorings on more seeds
        for j, (ind, predicted) in enumerate(zip(proposal.screened, proposal.screened_predicted, strict=True)):
            self.emit(Evaluation.of(g, len(offspring) + j, genome.to_text(ind), genome.complexity(ind),
                                    self.search.candidate(ind), types.SCREENED, None, 0.0, None, predicted))
        again = _Again(self, g, len(offspring) + len(proposal.screened), Replay(self.evaluator, answers))
        known = self.search.learned(state, offspring, fits)
        updates = halving.halve(known, self.search.config, again.promote)
        updates |= racing.race(known | updates, self.search.config.protocol, self.search.config.search.population,
                               again.rescore)
        state = self.search.tell(state, offspring, fits, updates)
        front = self.search.front(state)
        self.run.write_front(front)
        self.run.write_checkpoint(self.search.save(state))
        self.reporter.generation_finished(g, front)
        return state

    def _answers(self, g: int, known: Memo) -> dict[Answer, Fitness]:
        """What the log recorded for generation ``g`` before an interruption, as answers to the requests the
        generation will make again: an individual's training on the search seeds, a promotion's on the
        search seeds at its rung's length, a re-scoring's on the seeds it added. An individual the fitness memory
        answered (a ``cached`` line of a function the memo did not know) is answered as ``cached`` again, whatever
        the memory holds now; a function trained, then met again in the generation, has its trained line first."""
        out: dict[Answer, Fitness] = {}
        have: dict[str, int] = {}  # fingerprint -> seeds its fitness has so far in this generation
        for line in (r for r in self.run.records() if r.generation == g):
            fp = line.fingerprint
            if line.status in (types.OK, types.FAILED, types.PROMOTED):
                out[(fp, tuple(self.fitness_seeds), line.epochs)] = line.fitness
                have[fp] = len(self.fitness_seeds)
            elif line.status == types.CACHED and fp not in known:
                out.setdefault((fp, tuple(self.fitness_seeds), line.epochs),
                               dataclasses.replace(line.fitness, status=types.CACHED, seconds=0.0))
                have.setdefault(fp, len(self.fitness_seeds))
            elif line.status == types.RESCORED and (fp in have or fp in known):
                n = have.get(fp) or known[fp].fitness.seeds
                want = racing.rescored_seeds(n, self.search.config.protocol)  # a failed line records none
                out[(fp, tuple(self.seeds[n:want]), line.epochs)] = _added_part(line, n)
                have[fp] = want
        return out


class _Again:
    """A generation's second look at known functions, each a line of its own after the individuals (indices
    from the population size on): a promotion to the next rung (status ``promoted``) and a re-scoring on
    more seeds (status ``rescored``)."""

    def __init__(self, loop: _Loop, generation: int, first_index: int, evaluator: Evaluator):
        self.loop, self.generation, self.index, self.evaluator = loop, generation, first_index, evaluator

    def _line(self, known: Known, status: str, fit: Fitness, seconds: float, epochs: int | None) -> Fitness:
        search = self.loop.search
        ind = genome.from_text(known.tree, search.pset)
        line = Evaluation.of(self.generation, self.index, known.tree, genome.complexity(ind), search.candidate(ind),
                             status, fit, seconds, epochs)
        self.index += 1
        return self.loop.emit(line, self.loop.report_again).fitness

    def _train(self, known: Known, seeds: list[int], epochs: int | None) -> Fitness:
        c = self.loop.search.candidate(genome.from_text(known.tree, self.loop.search.pset))
        ((_, fit),) = evaluator_lib.run(self.evaluator, [c], seeds, epochs)
        return fit

    def promote(self, fp: str, known: Known, epochs: int) -> Fitness:
        fit = self._train(known, self.loop.fitness_seeds, epochs)
        return self._line(known, types.PROMOTED, fit, fit.seconds, epochs)

    def rescore(self, fp: str, known: Known, have: int, want: int) -> Fitness:
        part = self._train(known, self.loop.seeds[have:want], known.epochs)
        return self._line(known, types.RESCORED, known.fitness.extended(part), part.seconds, known.epochs)


def _added_part(line: Evaluation, have: int) -> Fitness:
    """The training a re-scoring line added to a fitness of ``have`` seeds. Its accuracies are exact; the
    line records no per-seed loss, so the part's loss is the line's mean: what the run keeps is the line
    itself (``Run.append`` returns it), not what is recomputed from the part."""
    if not line.scored:
        return Fitness.failed(line.reason or "failed", line.seconds)
    parts = [Fitness(types.OK, a, line.val_loss, None, 0.0) for a in line.seed_accuracies[have:]]
    return Fitness.mean_of(parts) if parts else line.fitness


def _drive(run: Run, search: Search, state: SearchState, evaluator: Evaluator,
           reporter: SearchReporter, memory: FitnessMemory | None = None) -> SearchState:
    hint = f"resume with: {start.resume_command(run)}"
    with run.lock(reporter), stop_on_sigint(reporter, hint) as stop:
        run.repair()  # a line a kill cut short: new lines start on a line of their own
        run.ensure_checkpoint(search.save(state))
        loop = _Loop(run, search, evaluator, reporter, stop, memory)
        if memory is not None:
            known = len(memory.entries(run_protocol(run.config), run.config.fitness))
            reporter.message(f"fitness memory {memory.path}: {known} function(s) known under this run's protocol")
        try:
            loop.anchors()
            while state.generation <= search.config.search.generations:
                state = loop.generation(state)
        except SearchInterruptedError:
            raise SearchInterruptedError(f"stopped by Ctrl-C in generation {state.generation}; every finished "
                                         f"evaluation is saved; {hint}") from None
        except ObjectiveExitError as err:
            raise err.stopped(f"the search stopped in generation {state.generation}; every finished evaluation "
                              f"is saved; {hint}") from None
    return state


def build_evaluator(config: Config) -> tuple[Evaluator, str]:
    """The evaluator of a run of ``config`` and a line describing it (the data is loaded here, so a bad
    dataset, model or cluster fails before the run directory is touched)."""
    from afos.fitness import plan as plan_lib
    from afos.fitness.problem import FitnessProblem

    problem = FitnessProblem(config.fitness)
    problem.prepare()  # the data loaded now: bad data fails before anything is written
    candidates = config.search.population * (config.search.generations + 1)
    plan = plan_lib.make_plan(config.evaluator, problem, candidates)
    return plan_lib.build(plan, problem, config.evaluator), plan.describe()


@contextlib.contextmanager
def _evaluator(config: Config, given: Evaluator | None, reporter: SearchReporter):
    if given is not None:
        yield given
        return
    evaluator, description = build_evaluator(config)
    with contextlib.closing(evaluator):
        reporter.message(f"evaluating with {description}")
        yield evaluator


@contextlib.contextmanager
def _memory(config: Config, run_dir: Path) -> Iterator[FitnessMemory | None]:
    """The fitness memory ``config`` names, opened for the run in ``run_dir`` and closed at the end (None: off)."""
    if not config.evaluator.memory:
        yield None
        return
    with contextlib.closing(FitnessMemory(config.evaluator.memory, str(run_dir))) as memory:
        yield memory


def screen_of(config: Config) -> Describe:
    """The screen of a run's candidates: ``afos.expr.analyse`` with the run's gain mode."""
    return functools.partial(analyse, gain=config.fitness.gain)


def run(config: Config, run_dir: str | Path, reporter: SearchReporter | None = None,
        evaluator: Evaluator | None = None, describe: Describe | None = None) -> SearchState:
    """Runs a new search into ``run_dir`` and returns its final state.

    Args:
        evaluator: what scores candidates (default: the one ``config.evaluator`` plans; it is closed at the
            end). A given one is the caller's to close.
        describe: the screen of candidates (default: ``screen_of(config)``).
    """
    reporter, run_dir = reporter or SilentReporter(), Path(run_dir)
    compile_cache.enable(config.evaluator.compilation_cache)  # before the screen's first compilation
    config = start.prepare(config, reporter.message, describe)  # every input checked before any work
    search = Search(config, describe or screen_of(config))
    Run.check_free(run_dir)
    raise_if_interrupted()  # a Ctrl-C swallowed while JAX and the data loaded: nothing started, nothing written
    reporter.message(start.start_line(config, run_dir))
    with _memory(search.config, run_dir) as memory, _evaluator(search.config, evaluator, reporter) as scorer:
        decided = _decided(search.config)
        # the prior is part of the start: written with the config, so that a resume always finds it
        warm = memory is not None and decided.search.surrogate != "none"
        raise_if_interrupted()  # and while the evaluator was built
        run_ = Run.create(run_dir, decided, memory.prior(decided) if warm else None)
        search.prior = _examples(run_.prior())
        return _drive(run_, search, search.init(), scorer, reporter, memory)


def _examples(rows: list[dict]) -> list[surrogate.Example]:
    return [surrogate.Example(r["expr"], r["gain"], r["value"]) for r in rows]


def _decided(config: Config) -> Config:
    """``config`` as a run stores it: an objective's direction decided (``own.with_direction``)."""
    if not config.fitness.objective or config.fitness.direction:
        return config
    from afos.fitness import own

    fitness = own.with_direction(config.fitness, own.objective(config.fitness.objective))
    return config_lib.override(config, fitness={"direction": fitness.direction})


def resume(run_dir: str | Path, generations: int | None = None, config: Config | None = None,
           reporter: SearchReporter | None = None, evaluator: Evaluator | None = None,
           describe: Describe | None = None, trust_run: bool = False,
           given: Mapping[str, str] | None = None) -> SearchState:
    """Continues the run in ``run_dir`` to ``generations`` (default: its configured number).

    ``config``, if given, must equal the stored one except for what a resume may change
    (``config.FREE_ON_RESUME``: the generations, and where the work runs). The user's code, Ray cluster and
    memory path the run names are used only with ``trust_run`` or where ``given`` names them (``start.reopen``).
    """
    reporter = reporter or SilentReporter()
    run_ = Run.open(run_dir)
    stored = run_.config
    if config is not None:
        diff = config_lib.differences(stored, config.resolved())
        if diff:
            raise RunError(f"refusing to resume {run_.path} with a changed config: {'; '.join(diff)}")
        placement = {k: getattr(config.evaluator, k) for k in config_lib.PLACEMENT}
        stored = config_lib.override(stored, evaluator=placement)
    places = start.places_of_run(run_.config, stored, evaluator is not None)
    for what in start.reopen(run_, lambda text: reporter.message(f"warning: {text}"), trust_run, given,
                             places=places):
        reporter.message(what)
    if generations is not None:
        stored = config_lib.override(stored, search={"generations": generations})
    compile_cache.enable(stored.evaluator.compilation_cache)
    if run_.format == 1:
        reporter.message(f"{run_.path} was started before gain normalisation existed: it goes on as it began, "
                         "training every function as it is (fitness.gain = none)")
    search = Search(stored, describe or screen_of(stored), _examples(run_.prior()))
    body = run_.resume_point(lambda text: reporter.message(f"warning: {text}"))
    try:
        state = search.restore(body, run_.records())
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise RunError(f"{run_.path}: its checkpoint does not describe a search of its config "
                       f"({type(err).__name__}: {err})") from None
    if state.generation > search.config.search.generations:
        reporter.message(f"{run_.path} has run generations 0-{state.generation - 1} (the initial population and "
                         f"{state.generation - 1} more); --generations {state.generation} or more goes on")
        return state
    with _memory(search.config, run_.path) as memory, _evaluator(search.config, evaluator, reporter) as scorer:
        return _drive(run_, search, state, scorer, reporter, memory)
