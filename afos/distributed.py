"""Fitness evaluation spread over several places: the local accelerators of one host, or Ray workers.

Both pools have the interface of ``fitness.SeededEvaluator`` (``evaluate(candidates, seeds)`` yields
``(index, Fitness)`` as results come back, in any order) and give every candidate the fitness it gets
locally: each place runs the same backend evaluator on the same data with the same seeds, and nothing
in a candidate's training depends on which other candidates share its place. The driver stays the
only writer of the run directory.

- ``DevicePool``: the candidates of a call split over the local devices (several GPUs of one host),
  one thread per device; ``auto`` picks it where a host has more than one accelerator.
- ``RayPool``: Ray actors, one per GPU of a cluster (or per ``worker_cpus`` CPUs where it has none),
  each holding the dataset (put into Ray's object store once) and its compiled training steps. Groups
  of candidates go to whichever worker is free. A worker that dies is restarted by Ray and its group
  retried there (``max_task_retries``); its results only ever arrive once, with the finished group.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import socket
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

from afos.config import EvaluatorSettings
from afos.data import Dataset, Split
from afos.evaluate import Fitness
from afos.expr import Analysis
from afos.fitness import Scorer, SeededEvaluator
from afos.train import FitnessSettings
from afos.types import DistributedError

TASK_RETRIES = 3  # a group whose worker died is run again this many times before the search stops
POLL_SECONDS = 0.5  # waits are cut into slices this long, so Ctrl-C is seen while workers train
CONNECT_TIMEOUT = 10.0


def split(n: int, parts: int, size: int = 0) -> list[list[int]]:
    """``range(n)`` in consecutive groups: of ``size`` each when given, else ``parts`` near-equal ones."""
    if n == 0:
        return []
    size = size or math.ceil(n / max(1, parts))
    return [list(range(start, min(n, start + size))) for start in range(0, n, size)]


def _share(candidates: int | None, places: int) -> int | None:
    """The candidates one of ``places`` places will score in a run (for its ``auto``)."""
    return None if candidates is None else math.ceil(candidates / places)


def seeded_evaluator(settings: EvaluatorSettings, dataset: Dataset, fitness: FitnessSettings,
                     candidates: int | None = None) -> Scorer:
    """The scorer a run with these evaluator settings uses: local, over local devices, or on Ray.

    Args:
        candidates: how many candidates the run will score, for ``auto``.
    """
    if settings.backend == "ray":
        return RayPool(settings, dataset, fitness, candidates)
    devices = jax.local_devices()
    if settings.backend == "sharded" or (settings.backend == "auto" and len(devices) > 1
                                         and devices[0].platform != "cpu"):
        return DevicePool(settings.worker_backend, dataset, fitness, candidates, devices)
    return SeededEvaluator(settings.backend, dataset, fitness, candidates)


# --- several devices of one host ----------------------------------------------------------------------


class DevicePool:
    """The population sharded over local devices: one thread and one backend evaluator per device.

    Each thread runs its device's work under ``jax.default_device``, so the dataset, the parameters and
    the compiled steps of that evaluator live on that device.
    """

    def __init__(self, backend: str, dataset: Dataset, settings: FitnessSettings, candidates: int | None = None,
                 devices: Sequence[Any] | None = None):
        self.devices = list(devices or jax.local_devices())
        share = _share(candidates, len(self.devices))
        self.places = [SeededEvaluator(backend, dataset, settings, share) for _ in self.devices]
        self.threads = [ThreadPoolExecutor(1, thread_name_prefix=f"afos-device{k}") for k in range(len(self.devices))]

    def evaluate(self, candidates: Sequence[Analysis], seeds: Sequence[int]) -> Iterator[tuple[int, Fitness]]:
        results: queue.Queue[tuple[int, Fitness]] = queue.Queue()
        cancelled = threading.Event()

        def work(k: int, group: list[int]) -> None:
            with jax.default_device(self.devices[k]):
                for j, fit in self.places[k].evaluate([candidates[i] for i in group], seeds):
                    results.put((group[j], fit))
                    if cancelled.is_set():
                        return

        futures: list[Future] = [self.threads[k].submit(work, k, group)
                                 for k, group in enumerate(split(len(candidates), len(self.devices)))]
        try:
            for _ in range(len(candidates)):
                yield _next_result(results, futures)
        finally:
            cancelled.set()

    def close(self) -> None:
        for t in self.threads:
            t.shutdown(wait=True, cancel_futures=True)


def _next_result(results: queue.Queue, futures: list[Future]) -> tuple[int, Fitness]:
    """The next result a device thread put in ``results``; a thread's exception is raised here."""
    while True:
        try:
            return results.get(timeout=POLL_SECONDS)
        except queue.Empty:
            for f in futures:
                if f.done() and f.exception() is not None:
                    raise f.exception()
            if all(f.done() for f in futures) and results.empty():
                raise RuntimeError("a device's evaluator returned fewer results than it was given candidates")


# --- Ray ----------------------------------------------------------------------------------------------


def _ray():
    try:
        import ray
    except ImportError:
        raise DistributedError("--backend ray needs Ray: pip install 'afos[ray]'") from None
    return ray


def _check_reachable(address: str, given: str | None = None) -> None:
    """A one-line error, after at most ``CONNECT_TIMEOUT`` seconds, for a cluster address nobody answers.

    Ray itself retries a dead address for minutes.
    """
    given = given or address
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"--ray-address {given!r}: expected auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as err:
        where = address if given == address else f"{address} (what --ray-address {given} found)"
        raise DistributedError(f"cannot reach the Ray cluster at {where} ({err.strerror or err}); start it with "
                               "`ray start --head` there, or pass the address `ray start` printed") from None


def _auto_address() -> str | None:
    """What ``auto`` points at: RAY_ADDRESS, else the last `ray start` on this machine (None: ask Ray later)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:  # a Ray without this helper resolves 'auto' in ray.init
        return None
    try:
        return canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError as err:
        raise DistributedError(f"--ray-address auto: {str(err).strip().splitlines()[0]}") from None


def connect(address: str) -> bool:
    """Connects to the Ray cluster at ``address`` ('' starts a local instance); True if it started one."""
    ray = _ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address:
        resolved = _auto_address() if address == "auto" else address
        if resolved:
            _check_reachable(resolved, address)
        auth = os.environ.get("RAY_AUTH_MODE")  # read first: ray.init may set it
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            hint = "" if auth else (
                "; a cluster started by `ray start` (Ray >= 2.59) also wants RAY_AUTH_MODE=token and its token "
                "here (docs/SCALING.md)")
            raise DistributedError(f"cannot connect to the Ray cluster at {address}: {first}{hint}") from None
        return False
    ray.init(address="local", num_cpus=os.cpu_count(), _node_ip_address="127.0.0.1", **options)
    return True


def _worker_resources(settings: EvaluatorSettings, available: dict[str, float]) -> tuple[int, float, float]:
    """(workers, CPUs each, GPUs each) for a cluster with ``available`` resources."""
    gpus = settings.worker_gpus if settings.worker_gpus >= 0 else (1.0 if available.get("GPU", 0) >= 1 else 0.0)
    cpus = settings.worker_cpus
    if settings.workers:
        workers = settings.workers
    elif gpus > 0:
        workers = int(available.get("GPU", 0) // gpus)
    else:
        workers = int(available.get("CPU", 0) // cpus)
    workers = max(1, workers)
    for name, each in (("CPU", cpus), ("GPU", gpus)):
        if workers * each > available.get(name, 0) + 1e-9:
            raise DistributedError(f"{workers} Ray worker(s) with {each:g} {name}(s) each need {workers * each:g} "
                                   f"{name}s, the cluster has {available.get(name, 0):g}; lower --workers or "
                                   f"evaluator.worker_{name.lower()}s")
    return workers, cpus, gpus


class FitnessWorker:
    """A Ray actor: one place's ``SeededEvaluator`` over a dataset fetched once from the object store.

    Every task names the dataset by its object reference (inside a list, so Ray passes the reference,
    not the data); the first task of a worker process fetches it. A restarted worker fetches it again
    on its retried task, and the driver holds the reference for the pool's lifetime.
    """

    def __init__(self, backend: str, settings: FitnessSettings, candidates: int | None):
        self.backend, self.settings, self.candidates = backend, settings, candidates
        self.seeded: SeededEvaluator | None = None

    def evaluate(self, dataset: list, candidates: list[Analysis], seeds: list[int]) -> list[tuple[int, Fitness]]:
        if self.seeded is None:
            import ray

            self.seeded = SeededEvaluator(self.backend, ray.get(dataset[0]), self.settings, self.candidates)
        return list(self.seeded.evaluate(candidates, seeds))


def _without_test(dataset: Dataset) -> Dataset:
    """The dataset as workers get it: selection never reads the test split, so it is not shipped."""
    empty = Split(np.zeros((0, *dataset.input_shape), dataset.train.x.dtype), np.zeros((0,), dataset.train.y.dtype))
    return dataclasses.replace(dataset, _test=empty)


class RayPool:
    """Candidates evaluated by Ray actors, a group at a time on whichever worker is free."""

    def __init__(self, settings: EvaluatorSettings, dataset: Dataset, fitness: FitnessSettings,
                 candidates: int | None = None):
        ray = self.ray = _ray()
        self.started = connect(settings.ray_address)
        try:
            workers, cpus, gpus = _worker_resources(settings, ray.cluster_resources())
            env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"} if 0 < gpus < 1 else {}  # workers share a GPU
            actor = ray.remote(FitnessWorker).options(
                num_cpus=cpus, num_gpus=gpus, max_restarts=-1, max_task_retries=TASK_RETRIES,
                runtime_env={"env_vars": env} if env else None)
            self.dataset = ray.put(_without_test(dataset))  # once: every worker fetches this copy
            share = _share(candidates, workers)
            self.workers = [actor.remote(settings.worker_backend, fitness, share) for _ in range(workers)]
        except BaseException:
            self.close()
            raise
        self.group_size = settings.group_size

    def evaluate(self, candidates: Sequence[Analysis], seeds: Sequence[int]) -> Iterator[tuple[int, Fitness]]:
        ray = self.ray
        todo = deque(split(len(candidates), len(self.workers), self.group_size))
        idle, running = list(self.workers), {}
        while todo or running:
            while idle and todo:
                worker, group = idle.pop(), todo.popleft()
                task = worker.evaluate.remote([self.dataset], [candidates[i] for i in group], list(seeds))
                running[task] = (worker, group)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                worker, group = running.pop(ref)
                try:
                    results = ray.get(ref)
                except ray.exceptions.RayActorError as err:
                    raise DistributedError(f"a Ray worker died {TASK_RETRIES + 1} times evaluating a group of "
                                           f"{len(group)} candidates ({type(err).__name__}); every finished "
                                           "evaluation is saved") from None
                idle.append(worker)
                for j, fit in results:
                    yield group[j], fit

    def close(self) -> None:
        for w in getattr(self, "workers", []):
            self.ray.kill(w)
        self.workers = []
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
