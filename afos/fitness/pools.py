"""Evaluators that wrap evaluators: sharding over the local devices, replaying a run's log, a fitness memory.

All keep the protocol of ``afos.fitness.evaluator.Evaluator`` and give every candidate the fitness the
wrapped evaluator gives it: ``Sharded`` runs one evaluator per device, each on its share of the
candidates (nothing in a candidate's training depends on which others share its place); ``Replay``
answers from the log what an interrupted run already measured and passes the rest on; ``Remembering``
answers what a fitness memory shared across runs holds (``afos.run.memory``) and remembers the rest.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from afos import types
from afos.config import FitnessSettings
from afos.expr import Candidate
from afos.fitness.evaluator import Evaluator, Results, run
from afos.run.memory import FitnessMemory, key_of, protocol_settings
from afos.types import Fitness

POLL_SECONDS = 0.5  # waits are cut into slices this long, so Ctrl-C is seen while workers train


def split(n: int, parts: int, size: int = 0) -> list[list[int]]:
    """``range(n)`` in consecutive groups: of ``size`` each when given, else ``parts`` near-equal ones."""
    if n == 0:
        return []
    size = size or math.ceil(n / max(1, parts))
    return [list(range(start, min(n, start + size))) for start in range(0, n, size)]


class Sharded:
    """The candidates of a call split over local devices: one thread and one evaluator per device.

    Each thread runs its device's work under ``jax.default_device``, so the dataset, the parameters and
    the compiled steps of that evaluator live on that device.

    Args:
        make: builds one place's evaluator (called once per device, on that device).
        devices: the local devices (several GPUs of one host).
    """

    def __init__(self, make: Callable[[], Evaluator], devices: Sequence[Any]):
        import jax

        self.jax, self.devices = jax, list(devices)
        self.threads = [ThreadPoolExecutor(1, thread_name_prefix=f"afos-device{k}") for k in range(len(self.devices))]
        self.places: list[Evaluator] = []
        try:
            for k in range(len(self.devices)):
                self.places.append(self.threads[k].submit(self._make, make, k).result())
        except BaseException:
            self.close()
            raise

    def _make(self, make: Callable[[], Evaluator], k: int) -> Evaluator:
        with self.jax.default_device(self.devices[k]):
            return make()

    def evaluate(self, candidates: Sequence[Candidate], seeds: Sequence[int], epochs: int | None = None) -> Results:
        results: queue.Queue[tuple[int, Fitness]] = queue.Queue()
        cancelled = threading.Event()

        def work(k: int, group: list[int]) -> None:
            with self.jax.default_device(self.devices[k]):
                for j, fit in run(self.places[k], [candidates[i] for i in group], seeds, epochs):
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
        for place in self.places:
            place.close()
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


Answer = tuple[str, tuple[int, ...], int | None]  # (fingerprint, seeds, epochs): a request a recorded line answers


class Replay:
    """Answers requests the log of a run already holds; passes the others to ``inner``.

    A resumed run asks for the generation in progress again (the same individuals: the RNG is in the
    checkpoint). Whatever the log recorded for a function on the same seeds is yielded first, in the order
    of the request, without training; each answer is used once. The rest goes to ``inner``.

    Args:
        inner: the evaluator that trains.
        answers: (fingerprint, seeds, epochs) -> the fitness recorded for that request.
    """

    def __init__(self, inner: Evaluator, answers: Mapping[Answer, Fitness]):
        self.inner, self.answers = inner, dict(answers)

    def evaluate(self, candidates: Sequence[Candidate], seeds: Sequence[int], epochs: int | None = None) -> Results:
        keys = [(c.fingerprint, tuple(seeds), epochs) for c in candidates]
        rest = []
        for i, key in enumerate(keys):
            if key in self.answers:
                yield i, self.answers.pop(key)
            else:
                rest.append(i)
        if rest:
            for j, fit in run(self.inner, [candidates[i] for i in rest], seeds, epochs):
                yield rest[j], fit

    def close(self) -> None:
        self.inner.close()


class Remembering:
    """Answers from a fitness memory what an earlier run measured under the same protocol; trains the rest
    through ``inner`` and remembers each result.

    A remembered fitness comes back with status ``cached`` and no cost (``seconds`` 0), so that the run's line
    says it was not trained. A result is put into the memory when the caller asks for the next one (the driver
    has logged it): a run killed in between has the line in its log and not in the memory, never the reverse
    (a caller that stops early, on Ctrl-C, leaves its last result unremembered).

    Args:
        inner: the evaluator that trains.
        memory: the open memory (its owner closes it; ``close`` here closes ``inner`` only).
        fitness: the run's fitness settings (with ``seeds`` and ``epochs``, the protocol of a request).
    """

    def __init__(self, inner: Evaluator, memory: FitnessMemory, fitness: FitnessSettings):
        self.inner, self.memory, self.fitness = inner, memory, fitness

    def evaluate(self, candidates: Sequence[Candidate], seeds: Sequence[int], epochs: int | None = None) -> Results:
        settings = protocol_settings(self.fitness, seeds, epochs)
        protocol, rest = key_of(settings), []
        for i, c in enumerate(candidates):
            known = self.memory.get(protocol, c.fingerprint, self.fitness)
            if known is None:
                rest.append(i)
            else:
                yield i, dataclasses.replace(known, status=types.CACHED, seconds=0.0)
        for j, fit in run(self.inner, [candidates[i] for i in rest], seeds, epochs):
            yield rest[j], fit
            c = candidates[rest[j]]  # the caller took it: the run's line is written
            self.memory.put(protocol, c.fingerprint, c.text, c.gain, fit, settings)

    def close(self) -> None:
        self.inner.close()
