"""The commands of ``afos``: each turns its parsed arguments into one call of the library.

The training stack (JAX) is imported inside the commands that train, so ``afos show``, ``afos check`` and
``afos export`` start without it; ``afos --help`` imports none of this module (``parser`` defers it).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from afos import config as config_lib
from afos.cli.display import BenchProgress, RichReporter, console, print_calibration, print_run
from afos.errors import ConfigError, RunError
from afos.run.lock import ignore_sigint
from afos.run.rundir import Run, new_run_dir
from afos.study.verdict import cannot_conclude
from afos.words import plural


def parse_integers(text: str | None, option: str, what: str) -> list[int] | None:
    """``"64,32"`` -> ``[64, 32]`` for ``option`` (comma-separated positive integers: ``what``); None stays None."""
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{option} must be comma-separated positive {what}, got {text!r}")
    return values


def parse_options(items: list[str] | None, base: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """``--objective-option KEY=VALUE`` (repeated) over ``base`` (a config file's); None where none is given.
    The values stay text: the objective's declared types convert them (``afos.fitness.own.resolve_options``)."""
    if not items:
        return None
    out = dict(base or {})
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--objective-option must be KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def parse_topology(text: str | None) -> list[int] | None:
    """``"64,32"`` -> ``[64, 32]`` (hidden widths of the ``mlp`` model); None stays None."""
    return parse_integers(text, "--topology", "layer widths such as 64,32")


def _init_exprs(args: argparse.Namespace) -> list[str] | None:
    """Warm-start functions: --init-exprs, then the front of --init-from RUN_DIR (best first)."""
    exprs = list(args.init_exprs or [])
    for run_dir in args.init_from or []:
        front = Run.open(run_dir).ranked()
        if not front:
            raise RunError(f"--init-from {run_dir}: the run has no scored function yet")
        exprs += [e.expression for e in front]
    return exprs or None


def config_from_args(args: argparse.Namespace, base: config_lib.Config) -> config_lib.Config:
    """``base`` with the search options given on the command line."""
    return config_lib.override(
        base,
        search={"space": args.space, "population": args.population, "generations": args.generations,
                "seed": args.seed, "init_exprs": _init_exprs(args), "strategy": args.strategy,
                "surrogate": args.surrogate, "oversample": args.oversample, "explore": args.explore},
        fitness={"dataset": args.dataset, "model": args.model, "objective": args.objective,
                 "objective_options": parse_options(args.objective_options, base.fitness.objective_options),
                 "direction": args.direction, "epochs": args.epochs, "gain": args.gain,
                 "batch_size": args.batch_size, "seed": args.seed, "train_size": args.train_size,
                 "val_size": args.val_size, "topology": parse_topology(args.topology), "data_dir": args.data_dir},
        evaluator=_evaluator_options(args),
        protocol={"fitness_seeds": args.fitness_seeds, "race_seeds": args.race_seeds,
                  "rungs": parse_integers(args.rungs, "--rungs", "epochs such as 3,9")},
    ).resolved()


def _evaluator_options(args: argparse.Namespace) -> dict[str, Any]:
    backend = args.backend
    if args.ray_address is not None and backend not in (None, "ray"):
        raise ConfigError(f"--ray-address is for --backend ray, not --backend {backend}")
    if args.ray_address is not None:
        backend = "ray"
    return {"backend": backend, "worker_backend": args.worker_backend, "ray_address": args.ray_address,
            "workers": args.workers, "memory": args.memory}


def _finish_search(run_dir: Path, validate: bool = False, trust_run: bool = False,
                   given: dict[str, str] | None = None) -> int:
    run = Run.open(run_dir)
    if validate:
        _validate(run, trust_run=trust_run, given=run.trains_with() if given is None else given)
    print_run(run)
    return 0


def given_names(run: Run, names: list[str] | None) -> dict[str, str]:
    """The run's names given again with ``--trust NAME`` (kind -> name): consent to import them
    (``afos.run.start.consent``). A name the run does not use is refused: a typo must not pass unseen."""
    ours = run.trains_with()
    for name in names or []:
        if name not in ours.values():
            raise ConfigError(f"--trust {name}: {run.path} trains with no such name (its "
                              f"{', '.join(f'{k} {v!r}' for k, v in ours.items())})")
    return {kind: name for kind, name in ours.items() if name in (names or [])}


@contextlib.contextmanager
def _resumable(run_dir: Path) -> Iterator[None]:
    """A Ctrl-C inside that the search did not catch (``driver`` and ``run.lock`` say their own) says how to resume
    the run ``run_dir`` holds, once it holds one; before, the command line says there is nothing to resume."""
    try:
        yield
    except KeyboardInterrupt as err:
        if str(err) or not Run.exists(run_dir):
            raise
        from afos.run import start

        raise KeyboardInterrupt("stopped by Ctrl-C; every finished evaluation is saved; resume with: "
                                f"{start.resume_command(Run.open(run_dir))}") from None


def cmd_search(args: argparse.Namespace) -> int:
    config = config_from_args(args, config_lib.load(args.config) if args.config else config_lib.Config())
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir()
    with _resumable(run_dir):
        from afos.run import driver  # JAX: the first seconds, before the run directory exists

        reporter = RichReporter(config.search.generations, "search")
        try:  # the driver checks every input before any work, then says what starts (start.start_line)
            driver.run(config, run_dir, reporter)
        finally:
            reporter.close()
        return _finish_search(run_dir, args.validate)


def cmd_resume(args: argparse.Namespace) -> int:
    with _resumable(Path(args.run_dir)):
        return _resume(args)


def _resume(args: argparse.Namespace) -> int:
    from afos.run import driver

    run = Run.open(args.run_dir)
    placement = {"ray_address": args.ray_address, "workers": args.workers}
    if any(v is not None for v in placement.values()) and run.config.evaluator.backend != "ray":
        raise ConfigError(f"--ray-address and --workers place a Ray run; {run.path} evaluates with backend "
                          f"{run.config.evaluator.backend!r}, which a resume keeps")
    config = None
    if any(v is not None for v in placement.values()) or args.memory is not None:
        config = config_lib.override(run.config, evaluator={**placement, "memory": args.memory})
    again = {"ray_address": args.ray_address, "memory": args.memory}  # a place given again: consent to it
    given = {**given_names(run, args.trust), **{kind: v for kind, v in again.items() if v is not None}}
    generations = args.generations if args.generations is not None else run.config.search.generations
    reporter = RichReporter(generations, "resume")
    console.print(f"afos resume: run directory [bold]{run.path}[/]")
    try:
        driver.resume(run.path, generations=args.generations, config=config, reporter=reporter,
                      trust_run=args.trust_run, given=given)
    finally:
        reporter.close()
    return _finish_search(run.path, args.validate, args.trust_run, given)


def cmd_show(args: argparse.Namespace) -> int:
    print_run(Run.open(args.run_dir))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """The health of a run directory on stdout, a few plain lines (``Run.health``); exit status 1 if not healthy."""
    run = Run.open(args.run_dir)
    if args.repair:
        for sentence in run.heal(_Messages()) or ["nothing to repair"]:
            print(f"afos check: {sentence}")
        run = Run.open(args.run_dir)
    report = run.health()
    print(f"{run.path}: afos run of format {run.format}")
    for line in report.describe():
        print(f"  {line}")
    return 0 if report.healthy else 1


class _Messages:
    def message(self, text: str) -> None:
        console.print(f"afos: {text}", markup=False, highlight=False)


def _validate(run: Run, top: int | None = None, seeds: int | None = None, epochs: int | None = None,
              models: list[str] | None = None, trust_run: bool = False, given: dict[str, str] | None = None) -> None:
    from afos.study import validate

    for what in validate.consent(run, models, trust_run, given):  # before anything of the run is used
        console.print(f"afos validate: {what}", markup=False, highlight=False)
    spec = validate.validation_spec(run, top, seeds, epochs, models)
    console.print(f"afos validate: {plural(len(spec.activations), 'activation')} x "
                  f"{plural(len(spec.models), 'model')} x seeds {', '.join(map(str, spec.seeds))}, "
                  f"{plural(spec.epochs, 'epoch')}, scored on the test split")
    front = sum(a.source != "anchor" for a in spec.activations)
    warning = cannot_conclude(len(spec.seeds), front)
    if warning:
        console.print(f"afos validate: warning: {warning}", markup=False, highlight=False)
    progress = BenchProgress()
    try:
        validate.validate(run, top, seeds, epochs, models, progress, trust_run, given)
    finally:
        progress.close()


def cmd_validate(args: argparse.Namespace) -> int:
    from afos.study import bench

    run = Run.open(args.run_dir)
    models = bench.split_top_level(args.models) if args.models else None
    _validate(run, args.top, args.seeds, args.epochs, models, args.trust_run, given_names(run, args.trust))
    print_run(run)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from afos.study import bench, presets, report, runner, stats

    values = presets.load_preset(args.preset, args.quick) if args.preset else {}
    if args.quick and not args.preset:
        values = presets.apply_quick(values, {})
    given = {key: getattr(args, key) for key in ("activations", "models", "datasets", "seeds", "epochs", "batch_size",
                                                 "train_size", "val_size", "test_size", "data_dir", "gain", "metric",
                                                 "objective", "direction",
                                                 "baseline", "blocks")}
    given["objective_options"] = parse_options(args.objective_options, values.get("objective_options"))
    spec = bench.make_spec(values | {k: v for k, v in given.items() if v is not None})
    out = Path(args.out) if args.out else runner.default_out_dir(spec)
    console.print(f"afos benchmark: {plural(len(bench.cells(spec)), 'cell')} into [bold]{out}[/] (run the same command "
                  "again to resume)")
    for note in spec.notes:
        console.print(f"note: {note}")
    progress = BenchProgress()
    try:
        runner.run(spec, out, progress)
    except KeyboardInterrupt:
        ignore_sigint()
        console.print(f"interrupted: finished cells are in {out / bench.RESULTS}; run the same command to resume")
        return 130
    finally:
        progress.close()
    files = report.build(out)
    print(stats.markdown(stats.compare(*runner.read_results(out))))
    print(f"report: {files.html} and {files.markdown}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from afos.study import planted

    for name, value, low in (("--seeds", args.seeds, 2), ("--random", args.random, 0)):
        if not low <= value <= config_lib.LIMITS["protocol.validate_seeds"]:
            raise ConfigError(f"{name} must be between {low} and {config_lib.LIMITS['protocol.validate_seeds']}, "
                              f"got {value}")
    options = parse_options(args.objective_options) or {}
    settings = planted.with_options(config_lib.FitnessSettings(objective=args.objective),
                                    {**options, "target": args.target})
    console.print(f"afos calibrate: {args.target} against {len(config_lib.DEFAULT_ANCHORS)} anchors and "
                  f"{plural(args.random, 'random function')} of space {args.space}, {plural(args.seeds, 'seed')}")
    result = planted.calibrate(settings, args.seeds, args.random, args.space, draw_seed=args.draw_seed)
    print_calibration(result)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from afos.study import report

    files = report.build(args.directory)
    print(f"report: {files.html} and {files.markdown}; figures: {', '.join(str(p) for p in files.plots)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from afos import export

    source = export.export_source(args.format, expr=args.expr, run_dir=args.run_dir, top=args.top, rank=args.rank,
                                  gain=args.gain or "none")
    if args.output:
        Path(args.output).write_text(source)
        console.print(f"afos export: wrote {args.format} to [bold]{args.output}[/]")
    else:
        print(source, end="")
    return 0
