"""The start of a new search: every input checked, and the config resolved as the run will store it.

``prepare`` runs before any data is loaded and before the run directory is created, so that bad input costs
nothing and leaves nothing behind: the model and the dataset (or objective, with its options) must exist,
every warm-start expression must be built in the space and pass the screen (one dropped is said in one line),
and a subset of the training data must fit the dataset. It also decides the sizes: a training subset shrinks
the validation split in proportion unless ``fitness.val_size`` is given, and the run stores the resolved,
explicit ``val_size``. A resume never comes here: a stored ``val_size = 0`` keeps meaning the whole validation
split.

A run opened again (a resume, a validation) imports the user's code its config names, joins the Ray cluster it
names or writes a memory file of it that is not yet one only with the user's consent (``consent``): a run
directory may come from someone else, and naming ``os:abort``, a module lying beside it or a hostile cluster
must not be enough to run code.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Collection, Mapping

import sympy

from afos import config as config_lib
from afos import plugins
from afos.config import Config
from afos.errors import AfosError, ExpressionError, RunError, command
from afos.expr import Candidate, analyse, parse
from afos.fitness import data as data_lib
from afos.ga import genome
from afos.run.memory import is_memory
from afos.run.rundir import Run

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
        return f"{f.train_size or 'all'} training and {f.val_size or 'all'} validation examples"  # a user's data
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


# --- a run opened again -------------------------------------------------------------------------------
# Evaluator settings whose value makes a resume reach outside its run directory: a Ray cluster it joins (whose
# results come back as pickles, which can run code here) and a memory file it writes.
PLACES = ("ray_address", "memory")


def reopen(run: Run, warn: Callable[[str], None], trust_run: bool = False, given: Mapping[str, str] | None = None,
           skip: Collection[str] = (), places: Mapping[str, str] | None = None) -> list[str]:
    """What opening a run again to train checks first (a resume, a validation): every file its start wrote is there
    and its settings are as it started (``Run.check_start``), the user's code it names is imported only with
    consent, and so are the places it names (``places``: a Ray cluster, a memory file; ``consent``, whose
    sentences it returns), and ``warn`` hears of a package at another version."""
    run.check_start()
    imported = consent(run, trust_run, given, skip, places)
    run.check_sources(warn)
    return imported


def resume_command(run: Run) -> str:
    """The command that resumes ``run``, as a hint to whoever started it: with ``--trust NAME`` for each of the
    user's own names it trains with, which a resume imports only with consent (``consent``)."""
    return command("resume", run.path, *(word for name in _code(run).values() for word in ("--trust", name)))


def consent(run: Run, trust_run: bool = False, given: Mapping[str, str] | None = None,
            skip: Collection[str] = (), places: Mapping[str, str] | None = None) -> list[str]:
    """Imports the user's code that ``run``'s config names (its objective, or its model and dataset, less the
    kinds in ``skip``), where the user consents, and returns what was consented to, one sentence each.

    Consent is ``trust_run`` (``--trust-run``) or the same name given again (``given``, kind -> name: ``--trust
    NAME`` on the command line, or the object handed over in Python; it must equal the run's). afos's own names
    need none. Nothing is imported without it, and what is imported goes through ``plugins.load_from_run`` (no
    standard-library module, no current directory that the user did not ask for).

    ``places`` (kind in ``PLACES`` -> value): the settings of the run's config.toml that a resume would use as
    they are, not given by the caller. A Ray cluster (any address but '', a local instance) needs the same
    consent, or the address given again (``given["ray_address"]``); so does a memory path that is not already
    an afos fitness memory (``memory.is_memory``: missing, empty or another file), which a memory would create
    or write. The user's own memory is opened without it: it holds measurements, each checked where it is read,
    and is given only values measured here.

    Raises:
        RunError: a name given that is not the run's; code or a place the run names without consent (one line
            naming each and how to consent); or code that does not import here.
    """
    given, names = dict(given or {}), run.trains_with()
    for kind, name in given.items():
        if kind in names and name != names[kind]:
            raise RunError(f"{run.path} was started with {kind} {names[kind]!r}, not {name!r}")
    code = _code(run, skip)
    asked = {kind: name for kind, name in code.items() if given.get(kind) != name}
    far = {kind: value for kind, value in (places or {}).items()
           if given.get(kind) != value and _reaches_out(kind, value)}
    if (asked or far) and not trust_run:
        raise RunError(_without_consent(run, asked, far))
    shown = []
    for kind, name in names.items():
        if kind in code:
            shown.append(f"importing the run's {plugins.describe_import(kind, name, typed=kind in given)}")
        try:  # arrays handed over in another process import nothing and are missing here: said now too
            if kind in code or (name.startswith(plugins.ARRAYS) and kind not in skip):
                plugins.load_from_run(kind, name, typed=kind in given)
        except AfosError as err:
            raise RunError(f"{run.path} cannot go on here: {err}") from None
    return shown + [f"using the run's {_PLACE_SAID[kind].format(value)}" for kind, value in far.items()]


def _code(run: Run, skip: Collection[str] = ()) -> dict[str, str]:
    """The names ``run`` trains with (kind -> name, less the kinds in ``skip``) whose resolving imports the user's
    code: not afos's own, and not arrays or objects handed over here (``plugins.foreign``)."""
    return {kind: name for kind, name in run.trains_with().items()
            if kind not in skip and not _afos_own(kind, name) and plugins.foreign(kind, name)}


def places_of_run(stored: Config, used: Config, evaluator_given: bool = False) -> dict[str, str]:
    """The settings of ``PLACES`` that a resume of ``stored`` would use as the run directory names them
    (``used``: with the caller's placement, whose changed values are the caller's own): a Ray address only
    where Ray is planned and the caller gives no evaluator of its own."""
    places = {kind: getattr(used.evaluator, kind) for kind in PLACES
              if getattr(used.evaluator, kind) == getattr(stored.evaluator, kind)}
    if evaluator_given or used.evaluator.backend != "ray":
        places.pop("ray_address", None)
    return places


def _reaches_out(kind: str, value: str) -> bool:
    """Whether the run's place setting ``kind = value`` needs consent (``consent``)."""
    if kind == "ray_address":
        return value != ""
    return value != "" and not is_memory(value)


_PLACE_SAID = {"ray_address": "Ray cluster at {}: its results come back as pickles, which can run code here",
               "memory": "memory {}, not yet an afos fitness memory, which it would create or write into"}
_PLACE_ELSE = {"ray_address": '--ray-address "" runs it on a local Ray instance instead',
               "memory": '--memory "" runs it without a memory'}


def _without_consent(run: Run, code: Mapping[str, str], far: Mapping[str, str]) -> str:
    """The one line refusing what ``run`` names without consent: its ``code`` to import and ``far`` places."""
    imports = "; ".join(plugins.describe_import(kind, name) for kind, name in code.items())
    local = "put the current directory on PYTHONPATH (PYTHONPATH=. afos ...) and " \
        if any(plugins.only_in_cwd(kind, name) for kind, name in code.items()) else ""
    what = [f"import code it names: {imports}"] if code else []
    what += [f"use the {_PLACE_SAID[kind].format(value)}" for kind, value in far.items()]
    again = [f"--trust {shlex.quote(name)}" for name in code.values()]
    again += [f"--{kind.replace('_', '-')} {shlex.quote(value)}" for kind, value in far.items()]
    instead = "".join(f"; {_PLACE_ELSE[kind]}" for kind in far)
    same = "the names" if not far else "the same settings" if not code else "the names and settings"
    return (f"{run.path} would {' and '.join(what)}; if you trust whoever wrote the run, {local}give --trust-run "
            f"(trust_run=True in Python) or {same} again ({' '.join(again)}){instead}")


def _afos_own(kind: str, name: str) -> bool:
    """Whether ``name`` is one of afos's own models or datasets, which the zoo and the data module look up first."""
    from afos.fitness import zoo

    if kind == "model":
        return name in zoo.MODELS
    return kind == "dataset" and (name in data_lib.DATASETS or name.partition(":")[0] in data_lib.PREFIXES)
