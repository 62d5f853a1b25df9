"""Objectives, their directions and the fitness given to failures: defined once, used everywhere."""

from __future__ import annotations

# NSGA-II objectives, in order: maximise validation accuracy, minimise complexity.
OBJECTIVES: tuple[str, ...] = ("val_accuracy", "complexity")
WEIGHTS: tuple[float, ...] = (1.0, -1.0)

# A candidate that is rejected by the screen, fails to compile or diverges gets this:
# below any real accuracy and above any real complexity, so it is never on the front.
WORST_FITNESS: tuple[float, ...] = (-1.0, 1e6)

# Status of one evaluation line.
OK = "ok"  # trained and scored
CACHED = "cached"  # an equal function was scored before; its fitness is reused
REJECTED = "rejected"  # screened out before training (non-finite, constant, linear, ...)
FAILED = "failed"  # compile error, NaN/inf loss or divergence during training
# Lines that are not candidates of the search: a standard activation scored under the same protocol,
# and a front member re-scored on more seeds (racing).
ANCHOR = "anchor"
RESCORED = "rescored"
STATUSES = (OK, CACHED, REJECTED, FAILED, ANCHOR, RESCORED)


class DistributedError(RuntimeError):
    """Ray is missing, a cluster cannot be reached or lacks the resources, or workers keep dying."""
