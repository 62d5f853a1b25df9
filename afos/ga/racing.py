"""Racing: a function that entered the front on a lucky draw is measured again before it can stay there.

After a generation's offspring are scored, the most accurate front member scored on fewer than
``race_seeds`` seeds (a challenger) is re-scored on twice as many (up to ``race_seeds``), then the next,
until the front is confirmed or the generation's budget (``race_budget`` x population x ``fitness_seeds``
trainings) is spent. With successive halving (``afos.ga.halving``) a function is re-scored at the training
length it reached, challengers at higher rungs first; every re-scoring training counts once against the
budget, whatever its length. The policy decides whom to re-score on which seeds; the caller trains.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from afos.config import ProtocolSettings
from afos.ga.memo import Known, Memo, front_of, rescore
from afos.types import Fitness

# rescore(fingerprint, what is known of it, seeds it has, seeds it should have) -> its fitness on all of them,
# each training as long as its known fitness's (``Known.epochs``)
Rescore = Callable[[str, Known, int, int], Fitness]


def next_challenger(memo: Memo, confirmed: int) -> str | None:
    """The most accurate challenger of the front (scored on fewer than ``confirmed`` seeds; at the longest
    training first), if any."""
    challengers = sorted((e for e in front_of(memo, confirmed) if e.seeds < confirmed),
                         key=lambda e: (-e.merit[0], -e.val_accuracy, e.complexity, e.fingerprint))
    return challengers[0].fingerprint if challengers else None


def rescored_seeds(have: int, protocol: ProtocolSettings) -> int:
    """The number of seeds a challenger scored on ``have`` seeds is re-scored on: twice as many, at most
    ``race_seeds``."""
    return min(protocol.max_seeds, 2 * have)


def budget(protocol: ProtocolSettings, population: int) -> int:
    """Re-scoring trainings one generation may spend."""
    return math.floor(protocol.race_budget * population * protocol.fitness_seeds + 1e-9)


def race(memo: Memo, protocol: ProtocolSettings, population: int, rescore_one: Rescore) -> dict[str, Known]:
    """Re-scores challengers (doubling their seeds) within the generation's budget.

    Args:
        memo: what is known after the generation's offspring were scored (not changed).
        rescore_one: trains a function on its missing seeds and returns its fitness on all of them.

    Returns:
        What is known of every re-scored function afterwards, in the order they were re-scored.
    """
    if protocol.max_seeds <= protocol.fitness_seeds:
        return {}
    memo, left, out = dict(memo), budget(protocol, population), {}
    while (fp := next_challenger(memo, protocol.max_seeds)) is not None:
        known = memo[fp]
        have = known.fitness.seeds
        want = rescored_seeds(have, protocol)
        if want - have > left:
            break
        left -= want - have
        rescore(memo, fp, rescore_one(fp, known, have, want))
        out[fp] = memo[fp]
    return out
