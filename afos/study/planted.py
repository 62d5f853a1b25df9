"""Planted tasks: is a target the measurable optimum of its task, and did a search recover it?

A planted task (``afos.examples.planted``, or any objective with a ``target`` option) has a known answer, the
target function. Two questions make it useful:

- ``calibrate``: is the target the best activation of its task by a clear margin? Its validation loss over
  seeds against the anchors and against random functions of a space (those equal to the target up to affine
  maps set aside: they are the target). The margin is measured on the log of the loss, where the seed noise of
  a squared error is about even (a squared error ranges over orders of magnitude and its spread grows with it):
  ``(mean log10 loss of the closest other - that of the target) / the larger of their seed standard
  deviations``. A task counts where the margin exceeds ``MARGIN``.
- ``recovery``: which function of a run's front recovers the target, ``f = a * t(b*x + c) + d``
  (``afos.expr.names.affine_fit``), and whether the run's best does.

This module trains (``calibrate``) through afos's own fitness problem and evaluator, the path a search takes.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from afos.config import DEFAULT_ANCHORS, EvaluatorSettings, FitnessSettings
from afos.errors import AfosError, ConfigError
from afos.expr import STANDARD_ACTIVATIONS, analyse, parse
from afos.expr.names import AffineFit, affine_fit, canonical

MARGIN = 2.0  # seed standard deviations by which a target must beat everything else to make a task
# A squared error below this is an exact fit: the student reproduces the teacher to about 1e-4 of its spread,
# and float32 training resolves no finer difference between two such fits (they are not told apart).
FLOOR = 1e-8


@dataclass(frozen=True)
class Scored:
    """One function of a calibration: its validation loss on each seed."""

    name: str  # "target", an anchor's name, or "random"
    expression: str
    losses: tuple[float, ...]  # per seed; inf where the training failed

    @property
    def log_losses(self) -> np.ndarray:
        """log10 of the losses, those below ``FLOOR`` (exact fits) at ``FLOOR``."""
        return np.log10(np.maximum(np.asarray(self.losses, np.float64), FLOOR))

    @property
    def mean(self) -> float:
        return float(np.mean(self.losses))

    @property
    def log_mean(self) -> float:
        return float(np.mean(self.log_losses))

    @property
    def log_std(self) -> float:
        return float(np.std(self.log_losses, ddof=1)) if len(self.losses) > 1 else 0.0


@dataclass(frozen=True)
class Calibration:
    """The target and every other function, scored on the same seeds; ``equal``: random functions that are the
    target up to affine maps (not competitors)."""

    target: Scored
    others: tuple[Scored, ...]
    equal: tuple[str, ...]
    seeds: tuple[int, ...]

    @property
    def closest(self) -> Scored:
        """The other function with the lowest mean log loss."""
        return min(self.others, key=lambda s: s.log_mean)

    @property
    def margin(self) -> float:
        """How many seed standard deviations (of the log loss) the target is ahead of the closest other."""
        other = self.closest
        spread = max(self.target.log_std, other.log_std, 1e-12)
        return (other.log_mean - self.target.log_mean) / spread

    @property
    def counts(self) -> bool:
        return self.margin > MARGIN


def target_of(settings: FitnessSettings) -> str | None:
    """The planted target of a run's fitness settings (its objective's ``target`` option), or None."""
    target = settings.objective_options.get("target") if settings.objective else None
    return target if isinstance(target, str) else None


def random_functions(space_name: str, n: int, seed: int, gain: str, avoid: Sequence[str] = ()) -> list[str]:
    """``n`` distinct functions drawn from a space as its generation 0 draws them (screened, distinct by
    fingerprint, none of ``avoid``'s fingerprints), reproducibly from ``seed``."""
    from afos.ga import genome
    from afos.ga import space as space_lib
    from afos.ga.strategy import using_rng

    space = space_lib.load(space_name)
    pset, rng = genome.make_pset(space), random.Random(seed)
    seen = {analyse(parse(text), gain=gain).fingerprint for text in avoid}
    out: list[str] = []
    for _ in range(100 * n):
        if len(out) == n:
            break
        with using_rng(rng):
            tree = genome.generate_tree(space, pset) if space.representation == "tree" else \
                genome.generate_template(space, pset)
        c = analyse(genome.to_sympy(tree), gain=gain)
        if c.accepted and c.fingerprint not in seen:
            seen.add(c.fingerprint)
            out.append(c.text)
    return out


def calibrate(settings: FitnessSettings, seeds: int = 5, randoms: int = 20, space: str = "default",
              anchors: Sequence[str] = DEFAULT_ANCHORS, draw_seed: int = 0, evaluator=None) -> Calibration:
    """Scores the target of ``settings`` (a planted objective with its options resolved), the ``anchors`` and
    ``randoms`` random functions of ``space`` on ``seeds`` initialisation seeds (``settings.seed`` on), through
    the objective's fitness problem and the evaluator ``auto`` plans for it (or ``evaluator``)."""
    target = target_of(settings)
    if target is None:
        raise ConfigError(f"objective {settings.objective!r} has no target option: nothing to calibrate")
    if seeds < 2:
        raise ConfigError(f"a calibration needs at least 2 seeds (a spread), got {seeds}")
    names = ["target", *anchors]
    texts = [target, *(STANDARD_ACTIVATIONS[a] for a in anchors)]
    drawn = random_functions(space, randoms, draw_seed, settings.gain, avoid=texts)
    equal = tuple(t for t in drawn if affine_fit(parse(t), parse(target)).equal)
    drawn = [t for t in drawn if t not in equal]
    names += ["random"] * len(drawn)
    texts += drawn
    losses = _losses(settings, texts, [settings.seed + i for i in range(seeds)], evaluator)
    rows = [Scored(n, t, tuple(v)) for n, t, v in zip(names, texts, losses, strict=True)]
    return Calibration(rows[0], tuple(rows[1:]), equal, tuple(settings.seed + i for i in range(seeds)))


def _losses(settings: FitnessSettings, texts: Sequence[str], seeds: Sequence[int], evaluator) -> list[list[float]]:
    """The validation loss of each function on each seed (inf for a failed training)."""
    from afos.fitness import plan as plan_lib
    from afos.fitness.evaluator import run
    from afos.fitness.problem import FitnessProblem

    candidates = [analyse(parse(t), gain=settings.gain) for t in texts]
    for text, c in zip(texts, candidates, strict=True):
        if not c.accepted:
            raise ConfigError(f"{text!r} cannot be trained: {c.reason}")
    owned = evaluator is None
    if owned:
        problem = FitnessProblem(settings)
        plan = plan_lib.make_plan(EvaluatorSettings(), problem, len(texts) * len(seeds))
        evaluator = plan_lib.build(plan, problem, EvaluatorSettings())
    out = [[math.inf] * len(seeds) for _ in texts]
    try:
        for j, seed in enumerate(seeds):
            for i, fit in run(evaluator, candidates, [seed]):
                out[i][j] = fit.val_loss if fit.ok and fit.val_loss is not None else math.inf
    finally:
        if owned:
            evaluator.close()
    return out


@dataclass(frozen=True)
class Recovery:
    """What a run's front says of its planted target: the best function's fit to it, and the first function of
    the front (most accurate first) that recovers it, if any."""

    target: str
    best: str
    best_fit: AffineFit
    recovered_by: str | None

    @property
    def recovered(self) -> bool:
        return self.best_fit.equal


def recovery(target: str, ranked: Sequence[str]) -> Recovery | None:
    """The recovery of ``target`` by a front ranked best first (``ranked``: its expressions); None for an empty
    front or a target afos cannot compute."""
    if not ranked:
        return None
    try:
        t = parse(target)
        fits = [affine_fit(parse(e), t) for e in ranked]
    except AfosError:
        return None
    found = next((e for e, fit in zip(ranked, fits, strict=True) if fit.equal), None)
    return Recovery(target, ranked[0], fits[0], found)


def recovery_line(settings: FitnessSettings, ranked: Sequence[str]) -> str | None:
    """One line on a planted run's front (``ranked``: its expressions, best first): whether its best recovers the
    target, as ``afos show`` and the report say it; None for a run without a planted target or an empty front."""
    target = target_of(settings)
    found = None if target is None else recovery(target, ranked)
    if found is None:
        return None
    fit, best, target = found.best_fit, canonical(found.best), canonical(target)
    if found.recovered:
        return (f"the front's best, {best}, recovers the planted target {target}: it is "
                f"{fit.a:.4g} * t({fit.b:.4g}*x + {fit.c:.4g}) + {fit.d:.4g} with t the target")
    line = (f"the front's best, {best}, does not recover the planted target {target} (the closest "
            f"a * t(b*x + c) + d is off by {fit.error:.2g} of its spread)")
    if found.recovered_by is not None:
        return f"{line}; {canonical(found.recovered_by)}, further down the front, recovers it"
    return f"{line}; no function of the front recovers it"


def with_options(settings: FitnessSettings, options: dict) -> FitnessSettings:
    """``settings`` with its objective's options resolved over ``options`` (``own.resolve_options``)."""
    from afos.fitness import own

    resolved = own.resolve_options(settings.objective, own.objective(settings.objective),
                                   {**settings.objective_options, **options})
    return dataclasses.replace(own.with_direction(settings, own.objective(settings.objective)),
                               objective_options=resolved)
