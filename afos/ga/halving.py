"""Successive halving over training length: the front is ordered on the longest training it reached.

A one-epoch proxy ranks functions by how fast they start, not by where they end. With ``protocol.rungs``
(for example ``[3, 9]``) every candidate is first trained for ``fitness.epochs`` (rung 0); after each
generation, a function climbs from rung k to rung k + 1 (``rungs[k]`` epochs, on the search's seeds) when it
is among the best ``1 / halving`` of all functions that completed rung k, ranked by their accuracy there
(ties: the simpler, then the fingerprint), and has not climbed yet. This is the asynchronous promotion rule
of ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020): nobody waits for
a rung to fill, and as the memo grows each rung keeps its best third. A function at a higher rung ranks
above every function at a lower one (``Known.objectives``, ``FrontEntry.merit``); racing then confirms it
on more seeds at its own training length.

Each rung costs about as many epochs as rung 0 (a third of the functions, three times as long, with
``halving = 3`` and ``rungs = [3, 9]``). The policy decides who climbs; the caller trains.
"""

from __future__ import annotations

from collections.abc import Callable

from afos.config import Config
from afos.ga.memo import Known, Memo, promote
from afos.types import Fitness

# promote(fingerprint, what is known of it, epochs of its next rung) -> its fitness at that rung
Promote = Callable[[str, Known, int], Fitness]


def rung_epochs(config: Config) -> list[int | None]:
    """The training length of every rung, rung 0 first; ``[None]`` without successive halving (lines and
    the memo then record no training length, as in runs written before it existed)."""
    rungs = list(config.protocol.rungs)
    return [config.fitness.epochs, *rungs] if rungs else [None]


def accuracy_at(known: Known, rung: int) -> float | None:
    """The accuracy ``known`` reached at ``rung`` (None: it failed there, or never got there)."""
    if rung < known.rung:
        return known.climbed[rung]
    if rung == known.rung and known.fitness.ok:
        return known.fitness.val_accuracy
    return None


def next_promotion(memo: Memo, rungs: int, halving: int) -> tuple[str, int] | None:
    """(fingerprint, rung it climbs to) of the next promotion, lowest rung first, or None.

    Args:
        rungs: how many rungs above rung 0 there are.
    """
    for k in range(rungs):
        pool = [(fp, known) for fp, known in memo.items() if known.rung >= k]
        scored = sorted(((accuracy_at(known, k), known.complexity, fp) for fp, known in pool
                         if accuracy_at(known, k) is not None), key=lambda t: (-t[0], t[1], t[2]))
        for _, _, fp in scored[: len(pool) // halving]:  # the failed count in the pool, never among the best
            if memo[fp].rung == k:
                return fp, k + 1
    return None


def halve(memo: Memo, config: Config, promote_one: Promote) -> dict[str, Known]:
    """Promotes every function the rule lets climb (``next_promotion``), one at a time.

    Args:
        memo: what is known after the generation's offspring were scored (not changed).
        promote_one: trains a function at its next rung and returns its fitness there.

    Returns:
        What is known of every promoted function afterwards, in the order they climbed.
    """
    epochs = rung_epochs(config)
    memo, out = dict(memo), {}
    while (step := next_promotion(memo, len(epochs) - 1, config.protocol.halving)) is not None:
        fp, rung = step
        promote(memo, fp, promote_one(fp, memo[fp], epochs[rung]), epochs[rung])
        out[fp] = memo[fp]
    return out
