"""Where and how a run's candidates are trained: ``auto`` resolved once into a ``Plan``, and its evaluator.

``make_plan`` reads the evaluator settings, the fitness problem and the machine (its devices, the number
of candidates the run will score) and decides everything ``auto`` leaves open: the pool (local, sharded
over the local accelerators, Ray), the backend of each place and the batched mode (``loop`` on CPUs,
``vmap`` on accelerators). ``build`` turns the
plan into an evaluator. ``choose_backend`` is the one rule behind ``auto``; a Ray worker applies it on its
own machine (its platform is only known there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from afos.config import EvaluatorSettings, FitnessSettings
from afos.fitness import own, zoo
from afos.fitness.batched import Batched, default_mode
from afos.fitness.evaluator import Evaluator, Sequential
from afos.fitness.layers import is_image
from afos.fitness.problem import FitnessProblem
from afos.words import plural

# The backends of one place, by the names ``[evaluator] backend`` takes (``afos.config.BACKENDS``).
BACKENDS = {"sequential": Sequential, "batched": Batched}

# ``auto`` on a CPU (measurements in docs/PERFORMANCE.md): the batched backend compiles its step once
# (8-15 s for cnn-small on a 2-core CPU) and then saves 1-1.5 s per candidate on small images (digits,
# batch 32: 2048 pixels per batch, 4.3-4.8x faster than sequential), but its interpreter costs more than
# a compilation on large activations (Fashion-MNIST, batch 128: 100352 pixels per batch, 1.6x slower).
# So: batched for the measured models, from this many candidates per place, up to this batch volume.
AUTO_CPU_MODELS = ("cnn-small", "mlp")
AUTO_CPU_MIN_CANDIDATES = 16
AUTO_CPU_MAX_PIXELS_PER_BATCH = 4096
# Platforms where batched has been measured faster; GPU/TPU: not measured yet (no device was lent).
AUTO_PLATFORMS = ("cpu",)


def choose_backend(settings: FitnessSettings, input_shape: Sequence[int], candidates: int | None,
                   platform: str, programs: bool = False) -> tuple[str, str]:
    """What ``auto`` means for a place that will score ``candidates`` on ``platform``: (backend, why).

    An unknown number of candidates gets ``sequential``, the choice that is never the slower one for a
    possibly tiny run. ``programs``: the objective trains interpreter programs (``own.takes_programs``), one
    compilation for every candidate instead of one each (docs/PERFORMANCE.md): batched, whatever the run's size.
    """
    if settings.objective:
        if programs:
            return "batched", f"objective {settings.objective!r} trains the candidates as programs"
        return "sequential", f"objective {settings.objective!r} trains its own way"
    if platform not in AUTO_PLATFORMS:
        return "sequential", f"batched is not measured on {platform} yet"
    if settings.model not in AUTO_CPU_MODELS:
        return "sequential", f"batched is not measured for {settings.model}"
    # flat features (a user's tabular data) count as the pixels of an image: what the mlp's first layer reads
    model = zoo.MODELS[settings.model]
    size = model.input_size(input_shape) * settings.batch_size
    if is_image(input_shape):
        height, width = model.input_hw(input_shape)
        batches = f"batches of {plural(settings.batch_size, f'{height}x{width} image')} ({size} pixels per batch)"
    else:
        batches = f"batches of {plural(settings.batch_size, f'{model.input_size(input_shape)}-feature example')} " \
                  f"({size} input values per batch)"
    if size > AUTO_CPU_MAX_PIXELS_PER_BATCH:
        return "sequential", f"{batches}: batched is faster only up to {AUTO_CPU_MAX_PIXELS_PER_BATCH}"
    if candidates is None or candidates < AUTO_CPU_MIN_CANDIDATES:
        return "sequential", f"too few candidates for batched's one compilation to pay (< {AUTO_CPU_MIN_CANDIDATES})"
    return "batched", f"a run of {plural(candidates, 'candidate')} (all its generations) on {batches} on the CPU"


def share(candidates: int | None, places: int) -> int | None:
    """The candidates one of ``places`` places will score in a run."""
    return None if candidates is None else math.ceil(candidates / max(1, places))


@dataclass(frozen=True)
class Plan:
    """How candidates are evaluated.

    Attributes:
        pool: ``local``, ``sharded`` (one place per local accelerator) or ``ray``.
        backend: what each place runs (``sequential`` or ``batched``; ``auto`` on Ray: each worker decides).
        places: how many places (Ray: decided when the workers start, 0 here).
        candidates: how many candidates the run will score in all (None: unknown).
        reason: why ``auto`` chose the backend, or empty.
        mode: how ``batched`` trains the population (``batched.MODES``; None for other backends).
    """

    pool: str
    backend: str
    places: int = 1
    candidates: int | None = None
    reason: str = ""
    mode: str | None = None

    def describe(self) -> str:
        where = {"local": "", "sharded": f" on each of {self.places} devices", "ray": " on Ray workers"}[self.pool]
        backend = self.backend + (f" ({self.mode} mode)" if self.mode else "")
        return f"{backend}{where}" + (f": {self.reason}" if self.reason else "")


def _local_devices() -> list[Any]:
    import jax

    return jax.local_devices()


def make_plan(settings: EvaluatorSettings, problem: FitnessProblem, candidates: int | None = None,
              devices: Sequence[Any] | None = None) -> Plan:
    """The plan of a run that will score ``candidates`` (every ``auto`` of ``settings`` decided here)."""
    if settings.backend == "ray":
        return Plan("ray", settings.worker_backend, 0, candidates)
    devices = list(devices) if devices is not None else _local_devices()
    platform = devices[0].platform if devices else "cpu"
    sharded = settings.backend == "sharded" or (settings.backend == "auto" and len(devices) > 1 and platform != "cpu")
    pool, places = ("sharded", len(devices)) if sharded else ("local", 1)
    backend = settings.worker_backend if sharded else settings.backend
    reason = ""
    if backend == "auto":
        backend, reason = choose_backend(problem.settings, problem.input_shape, share(candidates, places), platform,
                                         own.takes_programs(problem.objective))
    return Plan(pool, backend, places, candidates, reason, default_mode(platform) if backend == "batched" else None)


def local_evaluator(backend: str, problem: FitnessProblem, mode: str | None = None) -> Evaluator:
    """The backend called ``backend`` for ``problem`` on this machine (``mode``: batched's, None: by platform)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)})")
    return Batched(problem, mode) if backend == "batched" else BACKENDS[backend](problem)


def build(plan: Plan, problem: FitnessProblem, settings: EvaluatorSettings,
          devices: Sequence[Any] | None = None) -> Evaluator:
    """The evaluator ``plan`` describes (connecting to a Ray cluster fails here, before anything is written)."""
    if plan.pool == "ray":
        from afos.fitness.cluster import RayPool

        return RayPool(settings, problem, plan.candidates)
    if plan.pool == "sharded":
        from afos.fitness.pools import Sharded

        return Sharded(lambda: local_evaluator(plan.backend, problem, plan.mode), devices or _local_devices())
    return local_evaluator(plan.backend, problem, plan.mode)
