"""The start of a new search: every input checked, and the config resolved as the run will store it.

``prepare`` runs before any data is loaded and before the run directory is created, so that bad input costs
nothing and leaves nothing behind: the model and the dataset (or objective, with its options) must exist,
every warm-start expression must be built in the space and pass the screen (one dropped is said in one line),
and a subset of the training data must fit the dataset. It also decides the sizes: a training subset shrinks
the validation split in proportion unless ``fitness.val_size`` is given, and the run stores the resolved,
explicit ``val_size``. A resume never comes here: a stored ``val_size = 0`` keeps meaning the whole validation
split.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from afos import config as config_lib
from afos.config import Config
from afos.errors import ExpressionError
from afos.expr import Candidate, analyse, parse
from afos.fitness import data as data_lib
from afos.ga import genome

Describe = Callable[[sympy.Expr], Candidate]


def prepare(config: Config, message: Callable[[str], None], describe: Describe | None = None) -> Config:
    """``config`` (space loaded) checked for a new search and with its sizes decided; idempotent.

    Args:
        message: receives one line per warm-start expression dropped.
        describe: the screen of candidates (default: ``afos.expr.analyse`` with the run's gain).

    Raises:
        ModelError, ExpressionError, DataError, ConfigError: the first input afos cannot use, in one line.
    """
    config = config.resolved()
    config_lib.validate(config)  # with the bounds of LIMITS, which a stored run never faces
    config = _checked_task(config)
    config = _warm_start(config, message, describe)
    return _sized(config)


def _checked_task(config: Config) -> Config:
    """``config`` once its model and dataset exist, or its objective with its options resolved
    (``own.resolve_options``: the run stores every option the objective is called with, its defaults included)."""
    from afos.fitness import own, zoo
    from afos.fitness.problem import FitnessProblem

    f = config.fitness
    if not f.objective:
        zoo.check(f.model, FitnessProblem.model_options(f))
        data_lib.check(f.dataset)
        return config
    options = own.resolve_options(f.objective, own.objective(f.objective), f.objective_options)
    if options == f.objective_options:
        return config
    return config_lib.override(config, fitness={"objective_options": options})


def _warm_start(config: Config, message: Callable[[str], None], describe: Describe | None) -> Config:
    """``config`` with the warm-start expressions the screen keeps, at most a population of them."""
    describe = describe or (lambda expr: analyse(expr, gain=config.fitness.gain))
    pset = genome.make_pset(config.space)
    kept = []
    for text in config.search.init_exprs:
        expr = parse(text)
        if not expr.free_symbols or expr.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
            raise ExpressionError(f"init expression {text!r} simplifies to {_named(expr)}, which is not a "
                                  "function of x")
        try:
            ind = genome.from_expression(expr, config.space, pset)
        except ExpressionError as err:
            raise ExpressionError(f"init expression {text!r}: {err}") from None
        reason = describe(genome.to_sympy(ind)).reason
        if reason is not None:
            message(f"init expression {text!r} dropped: the screen rejects it ({reason})")
        else:
            kept.append(text)
    population = config.search.population
    if len(kept) > population:
        message(f"init expressions beyond the population of {population} dropped: "
                f"{', '.join(repr(t) for t in kept[population:])}")
        kept = kept[:population]
    if kept == list(config.search.init_exprs):
        return config
    return config_lib.override(config, search={"init_exprs": kept})


def _named(expr: sympy.Expr) -> str:
    """How an error names what an expression simplifies to."""
    words = {sympy.zoo: "zoo (complex infinity)", sympy.nan: "nan (not a number)", sympy.oo: "oo (infinity)",
             -sympy.oo: "-oo (minus infinity)"}
    return words.get(expr, sympy.sstr(expr))


def _sized(config: Config) -> Config:
    """``config`` with ``fitness.val_size`` explicit: a training subset shrinks validation in proportion."""
    f = config.fitness
    if f.objective:
        return config
    # another's dataset is counted by loading it only where a subset asks for its sizes (its loader checks
    # the rest when it runs, before the run directory exists)
    sizes = data_lib.split_sizes(f.dataset, f.val_fraction, f.data_dir,
                                 count=bool(f.train_size) and not f.val_size)
    if sizes is None:
        return config
    used = data_lib.subset_sizes(f.dataset, sizes, f.train_size, f.val_size)
    if used.val == f.val_size:
        return config
    return config_lib.override(config, fitness={"val_size": used.val})


def describe_sizes(config: Config) -> str:
    """'1151 training and 287 validation images' for a start line ('' where afos does not know them)."""
    f = config.fitness
    if f.objective:
        return ""
    sizes = data_lib.split_sizes(f.dataset, f.val_fraction, f.data_dir, count=False)
    if sizes is None:
        return f"{f.train_size or 'all'} training and {f.val_size or 'all'} validation images"
    used = data_lib.subset_sizes(f.dataset, sizes, f.train_size, f.val_size)
    return f"{used.train} training and {used.val} validation images"


def start_line(config: Config, run_dir) -> str:
    """What a new search of a ``prepare``d config says as it starts: the space, the task and its sizes, the
    population, generations, gain and run directory."""
    f = config.fitness
    task = f"objective {f.objective}" if f.objective else \
        f"dataset {f.dataset} ({describe_sizes(config)}), model {f.model}"
    return (f"space {config.space.name}, {task}, population {config.search.population}, generations "
            f"{config.search.generations}, gain {f.gain}, run directory {run_dir}")
