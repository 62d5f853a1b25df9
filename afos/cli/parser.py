"""The arguments of ``afos`` and its commands (argparse); the commands themselves are in ``commands``,
imported only when one runs, so that ``afos --help`` loads nothing of what they use."""

from __future__ import annotations

import argparse
from collections.abc import Callable

# What a resume takes: what it may change (afos.config.FREE_ON_RESUME) and consent to import the run's code
# (--trust-run, --trust); everything else is the run's, fixed when it started.
RESUME_OPTIONS = ("--generations", "--ray-address", "--workers", "--memory", "--validate", "--trust-run", "--trust")


def _deferred(name: str) -> Callable[[argparse.Namespace], int]:
    """The command ``afos.cli.commands.<name>``, imported when it runs: help and argument errors load none of
    the expression stack, the run or scikit-learn that the commands use."""
    def command(args: argparse.Namespace) -> int:
        from afos.cli import commands

        return getattr(commands, name)(args)
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="afos", description="Discover activation functions with a genetic algorithm.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("search", help="run a new search")
    _search_options(p)
    p.add_argument("--run-dir", help="run directory, new or empty (default: runs/<date-time>)")
    p.set_defaults(func=_deferred("cmd_search"))

    p = sub.add_parser("resume", help="continue a stopped run from its checkpoint (same result as never stopping)",
                       description="Continue a stopped run exactly where it stopped. Its settings are the ones it "
                       "was started with; only how far it goes and where a Ray run's work runs may change.")
    p.add_argument("run_dir", help="the run directory to continue")
    p.add_argument("--generations", type=int, help="go on to this many generations (default: the run's own)")
    _ray_options(p, "move a Ray run to this cluster")
    _memory_option(p, "(default: the one the run started with; '' for none)")
    p.add_argument("--validate", action="store_true", help="at the end, run `afos validate`")
    _trust_options(p, "continue")
    p.set_defaults(func=_deferred("cmd_resume"))

    p = sub.add_parser("show", help="print the Pareto front of a run")
    p.add_argument("run_dir", help="the run directory to show")
    p.set_defaults(func=_deferred("cmd_show"))

    p = sub.add_parser("check", help="report the health of a run directory (and repair it with --repair)",
                       description="Check a run directory: every line of its log, the log against the checkpoint, "
                       "the front. Exit status 0 when healthy, 1 when not.")
    p.add_argument("run_dir", help="the run directory to check")
    p.add_argument("--repair", action="store_true", help="move the log's damaged, repeated and cut-off lines into "
                   "evaluations.set-aside.jsonl and rewrite a damaged pareto.csv from the log, after a backup of "
                   "each (nothing is deleted)")
    p.set_defaults(func=_deferred("cmd_check"))

    p = sub.add_parser("validate", help="retrain the front's best and the anchors on fresh seeds and score them "
                       "on the test split (writes validation.csv)")
    p.add_argument("run_dir", help="the run directory whose front is validated")
    p.add_argument("--top", type=int, metavar="N",
                   help="functions of the front, most accurate first (default: the run's protocol.validate_top, 3)")
    p.add_argument("--seeds", type=int, metavar="S",
                   help="fresh seeds, never used by the search (default: the run's protocol.validate_seeds, 10; "
                   "fewer than 6 cannot reach a verdict)")
    p.add_argument("--epochs", type=int, metavar="E",
                   help="training epochs (default: the run's protocol.validate_epochs, 5)")
    p.add_argument("--models", help="comma-separated models (default: the search's model)")
    _trust_options(p, "validate")
    p.set_defaults(func=_deferred("cmd_validate"))

    _benchmark_parser(sub)

    p = sub.add_parser("calibrate", help="is a planted target the best activation of its task? its loss against "
                       "the anchors and random functions of the space, over seeds",
                       description="Score a planted target (--objective planted) against the anchors and random "
                       "functions of a space over seeds: a task whose answer is known needs the target to be best "
                       "by more than 2 seed standard deviations of the log loss (docs/SEARCH.md).")
    p.add_argument("target", help='the planted function, e.g. "x*sin(x)"')
    p.add_argument("--objective", default="planted", help="a planted-task objective with a target option "
                   "(default: planted)")
    p.add_argument("--objective-option", action="append", metavar="KEY=VALUE", dest="objective_options",
                   help="another option of the objective (repeat for several)")
    p.add_argument("--seeds", type=int, default=5, help="initialisation seeds (default: 5)")
    p.add_argument("--random", type=int, default=20, help="random functions of the space (default: 20)")
    p.add_argument("--space", default="default", help="where the random functions come from (default: default)")
    p.add_argument("--draw-seed", type=int, default=0, help="the seed that draws the random functions (default: 0)")
    p.set_defaults(func=_deferred("cmd_calibrate"))

    p = sub.add_parser("report", help="write report.html and report.md for a run or benchmark directory")
    p.add_argument("directory", help="a run directory or a benchmark directory")
    p.set_defaults(func=_deferred("cmd_report"))

    p = sub.add_parser("export", help="write a run's functions (or --expr) as jax, flax, numpy, torch, "
                       "tensorflow, latex or sympy code")
    p.add_argument("run_dir", nargs="?", help="a run directory (or give --expr)")
    p.add_argument("--expr", help='an expression instead of a run, e.g. "x*sigmoid(x)"')
    which = p.add_mutually_exclusive_group()
    which.add_argument("--top", type=int, metavar="K", help="the K most accurate functions of the front (all of "
                       "them, with a warning, where it holds fewer)")
    which.add_argument("--rank", type=int, metavar="R", help="the R-th most accurate function (default: 1)")
    p.add_argument("--format", required=True, help="jax, flax, numpy, torch, tensorflow, latex or sympy")
    p.add_argument("--gain", choices=("none", "unit"), help="with --expr: export it as it is (none, the default) "
                   "or at unit gain, as a search trains it (a run's functions come with the gain they were "
                   "trained with)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: print)")
    p.set_defaults(func=_deferred("cmd_export"))
    return parser


def _search_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a TOML config file (command-line options override it)")
    p.add_argument("--space", help="search space: a built-in name (default, afos, swish) or a .toml file")
    p.add_argument("--dataset", help="dataset: digits (default), fashion_mnist, tfds:NAME or your own as "
                   "package.module:loader")
    p.add_argument("--model", help="model name (default: cnn-small; see README, Datasets and models) or your own "
                   "as package.module:factory")
    p.add_argument("--population", type=int, help="population size (default: 16)")
    p.add_argument("--generations", type=int, help="offspring generations after the initial one (default: 6)")
    _training_options(p, "training epochs per fitness evaluation (default: 1)", "unit")
    p.add_argument("--topology", help="hidden layer widths of the mlp model, e.g. 64,32")
    p.add_argument("--seed", type=int, help="the one seed of the run (default: 0)")
    p.add_argument("--backend", help="fitness evaluator: auto, sequential (exact, one compile per candidate), "
                   "batched (one compiled step for all candidates; docs/PERFORMANCE.md), sharded (over the "
                   "local GPUs; auto where there are several), ray (docs/SCALING.md)")
    p.add_argument("--worker-backend", help="what each device (sharded) or Ray worker runs: auto, sequential, "
                   "batched (default: auto)")
    _ray_options(p, "run on this Ray cluster (implies --backend ray; without it --backend ray starts a local Ray "
                 "instance)")
    _memory_option(p, "(default: none)")
    p.add_argument("--strategy", choices=("memetic", "ga", "random"),
                   help="ga (default): NSGA-II selection and variation; memetic: a local search around the best "
                   "functions with genetic children and random trees, ranked by a surrogate of their shapes; "
                   "random: fresh random functions every generation, the baseline a search must beat "
                   "(docs/SEARCH.md compares them)")
    p.add_argument("--surrogate", choices=("none", "knn", "gp", "forest"),
                   help="surrogate pre-screen: rank --oversample x population children by a regressor of their "
                   "outputs and derivatives, fitted on the run's scores, and train only population of them "
                   "(default: none, every novel child is trained; docs/SEARCH.md)")
    p.add_argument("--oversample", type=int, metavar="K", help="children proposed per place with --surrogate "
                   "(default: 4)")
    p.add_argument("--explore", type=float, metavar="F", help="with --surrogate, the share of places drawn at "
                   "random from the children it ranks lower (default: 0.25)")
    p.add_argument("--init-exprs", nargs="+", metavar="EXPR",
                   help='warm start: functions that open the first population, e.g. "x*sigmoid(x)" "max(x, 0)"')
    p.add_argument("--init-from", nargs="+", metavar="RUN_DIR", help="warm start from the front of earlier runs")
    p.add_argument("--fitness-seeds", type=int, metavar="K",
                   help="fitness = mean validation accuracy over K initialisation seeds (default: 1)")
    p.add_argument("--race-seeds", type=int, metavar="M",
                   help="racing: re-score front members on up to M seeds before they displace others (default: off)")
    p.add_argument("--rungs", metavar="E1,E2",
                   help="successive halving: the best third of the candidates trained again for E1 epochs, the best "
                        "third of those for E2, ...; the front is ordered on the longest training (default: off)")
    p.add_argument("--validate", action="store_true",
                   help="at the end, run `afos validate` (fresh seeds, longer training, test split)")


def _training_options(p: argparse.ArgumentParser, epochs_help: str, gain: str) -> None:
    """The training settings a search and a benchmark share (``afos.config.FitnessSettings``)."""
    p.add_argument("--epochs", type=int, help=epochs_help)
    p.add_argument("--gain", choices=("unit", "none"), help="unit: train every function as g*f with "
                   "E[(g f(z))^2] = 1 for z ~ N(0,1), comparing shapes at equal gain; none: as it is "
                   f"(default: {gain})")
    p.add_argument("--batch-size", type=int, help="training batch size (default: 32)")
    p.add_argument("--train-size", type=int, help="use only this many training examples")
    p.add_argument("--val-size", type=int, help="use only this many validation examples")
    p.add_argument("--data-dir", help="where dataset files are looked for first (Fashion-MNIST IDX files, "
                   "the TFDS data dir)")
    p.add_argument("--objective", help="your own objective, package.module:function(act, seed, settings) returning "
                   "a validation score (and a test score); replaces --model and --dataset (README, Your own network)")
    p.add_argument("--objective-option", action="append", metavar="KEY=VALUE", dest="objective_options",
                   help="a setting of --objective (repeat for several; a key it does not declare is refused "
                   "with the list of those it does); stored with the run")
    p.add_argument("--direction", choices=("max", "min"),
                   help="of --objective: max, a score in [0, 1]; min, a loss >= 0 (default: what the function "
                   "declares, else max)")


def _ray_options(p: argparse.ArgumentParser, address_help: str) -> None:
    p.add_argument("--ray-address", metavar="auto|HOST:PORT", help=address_help)
    p.add_argument("--workers", type=int, metavar="N",
                   help="Ray workers (default: one per GPU of the cluster, or one per CPU where it has none)")


def _trust_options(p: argparse.ArgumentParser, verb: str) -> None:
    """Consent to import the user's code a run names (README, Sharing a run or a memory)."""
    g = p.add_argument_group("the run's own code", f"A run that names your own model, dataset or objective (an import "
                             f"path, another package's registered name) imports it to {verb} only with your consent.")
    g.add_argument("--trust-run", action="store_true", help="import the code the run's config.toml names (said "
                   "before it is imported), from PYTHONPATH and installed packages: never from the current directory, "
                   "nor a module of Python's standard library")
    g.add_argument("--trust", action="append", metavar="NAME", help="import this one name of the run's (its model, "
                   "dataset or objective, given again: package.module:function), from the current directory too "
                   "(repeat for several)")


def _memory_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--memory", metavar="FILE", help="a fitness memory shared across runs (SQLite, created if "
                   "missing): functions it holds for the same data, model, training and seeds are not trained "
                   f"again (lines 'cached'), and what this run trains is added; safe to share {default}")


def _benchmark_parser(sub) -> None:
    p = sub.add_parser("benchmark", help="train activations x models x datasets x seeds and compare them")
    p.add_argument("--activations", help="comma-separated: standard names, expressions, RUN_DIR[:topK|:all]")
    p.add_argument("--models", help="comma-separated model names; options as mlp:topology=64x32;batch_size=16")
    p.add_argument("--datasets", help="comma-separated dataset names (default: digits)")
    p.add_argument("--seeds", type=int, help="number of seeds (default: 3)")
    _training_options(p, "training epochs per cell (default: 5)", "none")
    p.add_argument("--test-size", type=int, help="score on only this many test examples")
    p.add_argument("--metric", help="the compared metric (default: test_accuracy)")
    p.add_argument("--baseline", help="activation the others are tested against (default: relu)")
    p.add_argument("--blocks", help="Friedman blocks: run (each case x seed) or case (seed means)")
    p.add_argument("--preset", help="a preset name (benchmarks/presets) or a .toml file")
    p.add_argument("--quick", action="store_true", help="tiny data, 1 epoch, few seeds: a smoke test")
    p.add_argument("--out", help="benchmark directory (default: runs/bench-<preset>); reused to resume")
    p.set_defaults(func=_deferred("cmd_benchmark"))


def search_option_names() -> set[str]:
    """Every option of ``afos search`` (those of them a resume does not take are fixed by the run)."""
    p = argparse.ArgumentParser()
    _search_options(p)
    return {s for action in p._actions for s in action.option_strings}
