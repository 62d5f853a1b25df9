"""afos: discover activation functions for neural networks with a genetic algorithm.

The public API, for notebooks and scripts::

    import afos

    config = afos.config.override(afos.Config(), search={"population": 8})
    run = afos.search(config, "runs/first")          # a search
    run = afos.Run.open("runs/first")                 # any run directory: config, records, front, anchors
    run.best()                                        # the most accurate function of its front
    print(afos.export_source("torch", run_dir=run.path))
    afos.resume("runs/first", generations=10)         # go on where it stopped

Names (and the subpackages: ``afos.config``, ``afos.fitness``, ...) load their module on first use, so
``import afos`` (and ``afos --help``) does not load JAX.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_ERRORS = ("AfosError", "ConfigError", "SpaceError", "ExpressionError", "RunError", "DataError", "ModelError",
           "BenchError", "ExportError", "DistributedError")
_LAZY = {
    **dict.fromkeys(_ERRORS, "afos.errors"),
    "Config": "afos.config", "Fitness": "afos.types", "Run": "afos.run.rundir", "Evaluation": "afos.run.records",
    "FrontEntry": "afos.ga.front", "parse": "afos.expr", "export_source": "afos.export",
    "FitnessProblem": "afos.fitness.problem", "Evaluator": "afos.fitness.evaluator",
}
__all__ = [*_LAZY, "resume", "search"]

if TYPE_CHECKING:
    from afos.config import Config
    from afos.run.rundir import Run


_SUBPACKAGES = ("cli", "config", "errors", "export", "expr", "fitness", "ga", "run", "study", "types")


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"afos.{name}")
    raise AttributeError(f"module 'afos' has no attribute {name!r}")


def search(config: Config | None = None, run_dir: str | Path | None = None, reporter=None, evaluator=None) -> Run:
    """Runs a new search of ``config`` (default: ``Config()``) into ``run_dir`` (default: ``runs/<date-time>``).

    Args:
        reporter: receives the progress (``afos.run.driver.SearchReporter``); None: silent.
        evaluator: scores candidates (``afos.fitness.evaluator.Evaluator``); None: what ``config`` plans.
    """
    from afos.config import Config
    from afos.run import driver
    from afos.run.rundir import Run, new_run_dir

    run_dir = Path(run_dir) if run_dir is not None else new_run_dir()
    driver.run(config or Config(), run_dir, reporter, evaluator)
    return Run.open(run_dir)


def resume(run_dir: str | Path, generations: int | None = None, reporter=None, evaluator=None) -> Run:
    """Continues the run in ``run_dir`` to ``generations`` (default: its own); the result equals never stopping."""
    from afos.run import driver
    from afos.run.rundir import Run

    driver.resume(run_dir, generations=generations, reporter=reporter, evaluator=evaluator)
    return Run.open(run_dir)
