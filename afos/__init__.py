"""afos: discover activation functions for neural networks with a genetic algorithm.

The public API, for notebooks and scripts::

    import afos

    config = afos.config.override(afos.Config(), search={"population": 8})
    run = afos.search(config, "runs/first")          # a search, showing its progress (verbose=False: silent)
    run = afos.Run.open("runs/first")                 # any run directory: config, records, front, anchors
    run.best()                                        # the most accurate function of its front
    run.top(3)                                        # the three most accurate, best first
    print(afos.export_source("torch", run_dir=run.path))
    afos.resume("runs/first", generations=10)         # go on where it stopped

Names (and the subpackages: ``afos.config``, ``afos.fitness``, ...) load their module on first use, so
``import afos`` (and ``afos --help``) does not load JAX.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_ERRORS = ("AfosError", "ConfigError", "SpaceError", "ExpressionError", "RunError", "DataError", "ModelError",
           "BenchError", "ExportError", "DistributedError", "AfosWarning")
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


def search(config: Config | None = None, run_dir: str | Path | None = None, reporter=None, evaluator=None, *,
           verbose: bool = True, model=None, dataset=None, objective=None, **settings) -> Run:
    """Runs a new search of ``config`` (default: ``Config()``) into ``run_dir`` (default: ``runs/<date-time>``).

    Args:
        reporter: receives the progress (``afos.run.driver.SearchReporter``); None: ``verbose`` decides.
        verbose: with no reporter, show the progress as the command line does (a line per message and per
            generation in a notebook or a log, progress bars on a terminal); False: print nothing.
        evaluator: scores candidates (``afos.fitness.evaluator.Evaluator``); None: what ``config`` plans.
        model: a name (``cnn-small``, ``package.module:factory``) or the user's factory itself, a function or
            class defined at the top level of a module or notebook: ``factory(act, input_shape, num_classes,
            *, rngs)`` returning a Flax Module (``afos.fitness.own``).
        dataset: a name (``digits``, ``package.module:loader``), the user's loader itself, or the data as
            arrays ``(x_train, y_train, x_test, y_test)`` (``afos.fitness.data``).
        objective: a name (``package.module:function``) or the user's objective itself,
            ``objective(act, seed, settings)`` returning a validation score (``afos.fitness.own.call_objective``).
        settings: any setting as the command line names it (``population=8``, ``generations=3``, ``epochs=1``,
            ``train_size=2000``, ``rungs=(3, 9)``), applied over ``config``.
    """
    from afos import config as config_lib
    from afos.run import driver
    from afos.run.rundir import Run, new_run_dir

    named = _named(model=model, dataset=dataset, objective=objective)
    config = config_lib.override_flat(config or config_lib.Config(), **settings, **named)
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir()
    with _watched(reporter, verbose, config.search.generations, "search") as watcher:
        driver.run(config, run_dir, watcher, evaluator)
    return Run.open(run_dir)


@contextlib.contextmanager
def _watched(reporter, verbose: bool, generations: int, command: str) -> Iterator:
    """The reporter given; else, if ``verbose``, the command line's (``afos.cli.display.RichReporter``), closed
    at the end however the search ends; else None, which the driver takes for silence."""
    if reporter is not None or not verbose:
        yield reporter
        return
    from afos.cli.display import RichReporter

    shown = RichReporter(generations, command)
    try:
        yield shown
    finally:
        shown.close()


def _named(**objects) -> dict[str, str]:
    """The config names of a model, a dataset and an objective, given as names or as Python objects
    (``afos.plugins.name_of``)."""
    from afos import plugins

    return {kind: obj if isinstance(obj, str) else plugins.name_of(kind, obj)
            for kind, obj in objects.items() if obj is not None}


def resume(run_dir: str | Path, generations: int | None = None, reporter=None, evaluator=None, *,
           verbose: bool = True, model=None, dataset=None, objective=None, trust_run: bool = False,
           **placement) -> Run:
    """Continues the run in ``run_dir`` to ``generations`` (default: its own); the result equals never stopping.

    ``reporter`` and ``verbose``: as for ``search`` (by default the progress is shown; False: nothing printed).

    ``model``, ``dataset`` and ``objective``: what a run started from Python objects needs again in a new
    process (the same factory, loader or function, or the same arrays: checked against the recorded name).
    ``placement``: where the work runs now, named as on the command line (``ray_address="auto"``, ``workers=4``,
    ``memory="fitness.db"``; ``afos.config.PLACEMENT``), instead of what the run names.
    The user's code a run names (an import path, another package's registered name), the Ray cluster it names
    and a memory path of it that is not yet a memory are used only where given again here or with
    ``trust_run=True``: a run directory may come from someone else (README, Sharing a run or a memory).
    """
    from afos import config as config_lib
    from afos.errors import ConfigError
    from afos.run import driver, start
    from afos.run.rundir import Run

    unknown = sorted(set(placement) - set(config_lib.PLACEMENT))
    if unknown:
        raise ConfigError(f"afos.resume: {', '.join(unknown)} cannot change on a resume (it may change: "
                          f"{', '.join(config_lib.PLACEMENT)})")
    stored = Run.open(run_dir).config
    config = config_lib.override(stored, evaluator=placement) if placement else None
    given = {**_named(model=model, dataset=dataset, objective=objective),
             **{kind: value for kind, value in placement.items() if kind in start.PLACES and value is not None}}
    last = stored.search.generations if generations is None else generations
    with _watched(reporter, verbose, last, "resume") as watcher:
        driver.resume(run_dir, generations=generations, config=config, reporter=watcher, evaluator=evaluator,
                      trust_run=trust_run, given=given)
    return Run.open(run_dir)
