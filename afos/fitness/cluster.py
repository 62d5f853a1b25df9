"""Fitness evaluation on a Ray cluster: one evaluator per worker, groups of candidates to whoever is free.

``RayPool`` keeps the evaluator protocol (``evaluate(candidates, seeds, epochs=None)`` yields ``(index, Fitness)`` as
results come back, in any order) and gives every candidate the fitness it gets locally: each worker runs
the same backend on the same data with the same seeds, and nothing in a candidate's training depends on
which other candidates share its worker. Ray actors, one per GPU of a cluster (or per ``worker_cpus``
CPUs where it has none), each hold the fitness problem (put into Ray's object store once) and its
compiled training steps. A worker that dies is restarted by Ray and its group retried there
(``max_task_retries``); its results only ever arrive once, with the finished group. The driver stays the
only writer of the run directory.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Sequence
from typing import Any

from afos import plugins
from afos.config import EvaluatorSettings
from afos.errors import DistributedError, first_line
from afos.expr import Candidate
from afos.fitness import evaluator as evaluator_lib
from afos.fitness.evaluator import Results
from afos.fitness.pools import POLL_SECONDS, split
from afos.fitness.problem import FitnessProblem
from afos.types import Fitness

TASK_RETRIES = 3  # a group whose worker died is run again this many times before the search stops
CONNECT_TIMEOUT = 10.0


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
        raise DistributedError(f"--ray-address auto: {first_line(err)}") from None


def connect(address: str, py_modules: Sequence[str] = ()) -> bool:
    """Connects to the Ray cluster at ``address`` ('' starts a local instance); True if it started one.

    ``py_modules``: the user's own code (files or folders) that the workers import, sent with the job (Ray
    uploads it; only ``ray.init`` can). A Ray the caller initialised already is the caller's to set up.
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if py_modules:
        options["runtime_env"] = {"py_modules": list(py_modules)}
    if address:
        resolved = _auto_address() if address == "auto" else address
        if resolved:
            _check_reachable(resolved, address)
        auth = os.environ.get("RAY_AUTH_MODE")  # read first: ray.init may set it
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = first_line(err)
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
    """A Ray actor: one place's evaluator over a fitness problem fetched once from the object store.

    Every task names the problem by its object reference (inside a list, so Ray passes the reference,
    not the data); the first task of a worker process fetches it and decides ``auto`` for the machine it
    runs on (``plan.choose_backend``). A restarted worker fetches it again on its retried task, and the
    driver holds the reference for the pool's lifetime.
    """

    def __init__(self, backend: str, candidates: int | None, compilation_cache: bool = True):
        self.backend, self.candidates, self.compilation_cache = backend, candidates, compilation_cache
        self.evaluator = None

    def evaluate(self, problem: list, candidates: list[Candidate], seeds: list[int],
                 epochs: int | None = None) -> list[tuple[int, Fitness]]:
        if self.evaluator is None:
            import jax
            import ray

            from afos.fitness import compile_cache, own, plan

            compile_cache.enable(self.compilation_cache)  # a restarted worker finds its compiled steps
            problem = ray.get(problem[0])
            backend = self.backend
            if backend == "auto":
                backend, _ = plan.choose_backend(problem.settings, problem.input_shape, self.candidates,
                                                 jax.default_backend(), own.takes_programs(problem.objective))
            self.evaluator = plan.local_evaluator(backend, problem)
        return list(evaluator_lib.run(self.evaluator, candidates, seeds, epochs))


class RayPool:
    """Candidates evaluated by Ray actors, a group at a time on whichever worker is free."""

    def __init__(self, settings: EvaluatorSettings, problem: FitnessProblem, candidates: int | None = None):
        from afos.fitness.plan import share

        ray = self.ray = _ray()
        # the user's own code on sys.path (not installed) reaches the workers with the job
        own_code = plugins.local_modules([problem.settings.model, problem.settings.objective])
        self.started = connect(settings.ray_address, own_code)
        try:
            workers, cpus, gpus = _worker_resources(settings, ray.cluster_resources())
            env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"} if 0 < gpus < 1 else {}  # workers share a GPU
            actor = ray.remote(FitnessWorker).options(
                num_cpus=cpus, num_gpus=gpus, max_restarts=-1, max_task_retries=TASK_RETRIES,
                runtime_env={"env_vars": env} if env else None)
            self.problem = ray.put(problem.without_test())  # once: every worker fetches this copy
            self.workers = [actor.remote(settings.worker_backend, share(candidates, workers),
                                         settings.compilation_cache) for _ in range(workers)]
        except BaseException:
            self.close()
            raise
        self.group_size = settings.group_size

    def evaluate(self, candidates: Sequence[Candidate], seeds: Sequence[int], epochs: int | None = None) -> Results:
        ray = self.ray
        todo = deque(split(len(candidates), len(self.workers), self.group_size))
        idle, running = list(self.workers), {}
        while todo or running:
            while idle and todo:
                worker, group = idle.pop(), todo.popleft()
                task = worker.evaluate.remote([self.problem], [candidates[i] for i in group], list(seeds), epochs)
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
