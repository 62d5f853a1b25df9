"""Planted targets: does a search recover a known best activation, and with fewer trainings than random sampling?

For every target (``--targets``, default ``SUITE``), arm (``--arms``) and search seed, one search on the planted
task (``afos.examples.planted``, the target as its ``target`` option) runs into ``OUT/runs/`` until it has spent
``--budget`` trainings (every trained line counts: anchors, individuals, promotions, re-scorings), resumable: run
the same command again. A run's log is then read in the order it was written: after every training, the
function the search would name best so far (the lowest validation loss of its front) is what it would return if
stopped there, so every smaller budget (``--budgets``) is a prefix of the same run.

Per arm and budget the script reports:
- the recovery rate: the share of (target, seed) whose best so far equals the target up to affine maps of input
  and output (``afos.expr.names.affine_fit``);
- the trainings to recovery (the first training after which the best so far recovers the target);
- the regret: the best so far retrained on ``--val-seeds`` fresh seeds, its test loss against the target's, as
  the difference of their mean log10 test MSE in units of the larger seed standard deviation;
- a paired test over targets against random sampling (Wilcoxon signed-rank, one-sided, on the per-target
  recovery rates; ties dropped), with wins / ties / losses.

Each target is first calibrated (``afos.study.planted.calibrate``: the target against the anchors and 20 random
functions of the space, over 5 seeds); the tables say which targets make a task (margin above 2).

  python benchmarks/planted.py --out runs/planted --plot docs/planted_recovery.png --jobs 2
  python benchmarks/planted.py --targets "x*sin(x)" "atan(x**3)" --arms random,ga --budget 100 --out runs/p2
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import multiprocessing
import re
import sys
import time
from pathlib import Path

import numpy as np

# 13 targets of 2 to 7 nodes of the default space, none of them an anchor, each calibrated (docs/SEARCH.md;
# sqrt(abs(sin(x))) was dropped: its margin is 1.6 seed std with the task's defaults).
SUITE = ("log(1 + abs(x))", "tanh(x)**3", "atan(x**3)", "max(0, sin(x))", "x*sin(x)",
         "min(x, cos(x))", "cos(x) + x", "x*atan(x)", "sinh(x)*exp(-x**2)", "x*exp(-abs(x))", "sigmoid(x)*sin(x)",
         "x*tanh(x)*sin(x)", "tanh(x) - x*sigmoid(x)")
ARMS = {  # name -> search settings over the defaults (afos.config.SearchSettings)
    "random": {"strategy": "random"},
    "ga": {"strategy": "ga"},
    "ga+knn": {"strategy": "ga", "surrogate": "knn"},
    "memetic": {"strategy": "memetic"},
}
VALIDATION_SEED = 1000  # the first fresh seed: no search uses it


def slug(target: str) -> str:
    """A folder name for a target: its readable characters and a short hash of the text."""
    return re.sub(r"[^A-Za-z0-9]+", "_", target).strip("_")[:40] + "-" + hashlib.sha1(target.encode()).hexdigest()[:6]


def arm_settings(arm: str) -> dict:
    """An arm's search settings: a name of ``ARMS``, or ``name:key=value,key=value`` over it."""
    name, _, rest = arm.partition(":")
    if name not in ARMS:
        raise SystemExit(f"unknown arm {name!r} (arms: {', '.join(ARMS)}, each optionally :key=value,...)")
    out = dict(ARMS[name])
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        out[key] = int(value) if value.isdigit() else float(value) if re.fullmatch(r"[\d.]+", value) else value
    return out


def search_config(args, target: str, arm: str, seed: int, generations: int):
    from afos import config as config_lib

    search = {"seed": seed, "generations": generations, **arm_settings(arm)}
    if args.population:
        search["population"] = args.population
    return config_lib.override(
        config_lib.Config(), search=search,
        fitness={"objective": "planted", "seed": seed, "objective_options": {**args.options, "target": target}},
    ).resolved()


def trainings(lines) -> int:
    from afos import types

    return sum(1 for r in lines if r.status in (types.OK, types.FAILED, types.ANCHOR, *types.RESCORINGS))


def run_one(job: tuple) -> str:
    """One search of (args, target, arm, seed), run or resumed until it has spent the budget."""
    args, target, arm, seed = job
    from afos.run import driver
    from afos.run.rundir import CHECKPOINT, Run

    run_dir = Path(args.out) / "runs" / slug(target) / f"{arm.replace(':', '_')}-s{seed}"
    start = time.perf_counter()
    population = search_config(args, target, arm, seed, 0).search.population
    if not (run_dir / CHECKPOINT).exists():
        if run_dir.exists():
            driver.resume(run_dir)
        else:
            driver.run(search_config(args, target, arm, seed, max(0, args.budget // population - 1)), run_dir)
    while trainings(Run.open(run_dir).records()) < args.budget:  # one more generation (the next to evaluate)
        driver.resume(run_dir, generations=Run.open(run_dir).checkpoint()["generation"])
    return f"{slug(target)}/{arm}-s{seed} {time.perf_counter() - start:.0f} s"


def trajectory(run) -> list[tuple[int, str, float]]:
    """After each training, in the order the log was written: (trainings so far, the best so far, its loss)."""
    from afos import types
    from afos.ga import memo
    from afos.ga.front import ranked

    known, spent, out, best = {}, 0, [], None
    for line in run.records():
        memo.replay(known, [line])
        if line.status in (types.OK, types.FAILED, types.ANCHOR, *types.RESCORINGS):
            spent += 1
            if line.status not in (types.ANCHOR, types.FAILED):
                top = ranked(memo.front_of(known, run.config.protocol.max_seeds))
                best = (top[0].expression, top[0].val_loss) if top else best
            out.append((spent, *(best or ("", math.inf))))
    return out


def best_at(steps: list[tuple[int, str, float]], budget: int) -> str:
    """The best so far after ``budget`` trainings ('' where nothing was scored yet)."""
    found = ""
    for spent, expr, _ in steps:
        if spent > budget:
            break
        found = expr
    return found


def recovered_at(steps, target: str, cache: dict) -> int | None:
    """The first training after which the best so far recovers the target (None: never)."""
    for spent, expr, _ in steps:
        if expr and _recovers(expr, target, cache):
            return spent
    return None


def _recovers(expr: str, target: str, cache: dict) -> bool:
    from afos.expr import parse
    from afos.expr.names import recovers

    if (expr, target) not in cache:
        cache[(expr, target)] = recovers(parse(expr), parse(target))
    return cache[(expr, target)]


def validate(args, target: str, expressions: list[str], out: Path) -> dict[str, list[float]]:
    """Test MSE of each expression (and the target) on the validation seeds, cached in OUT/validation.json."""
    from afos.config import FitnessSettings
    from afos.examples import planted as task
    from afos.expr import analyse, parse
    from afos.study.planted import with_options

    path = out / "validation.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    mine = cache.setdefault(target, {})
    todo = [e for e in dict.fromkeys([target, *expressions]) if e and e not in mine]
    if todo:
        settings = with_options(FitnessSettings(objective="planted"), {**args.options, "target": target})
        nodes = [analyse(parse(e), gain=settings.gain).node for e in todo]
        losses = {e: [] for e in todo}
        for k in range(args.val_seeds):
            for e, scores in zip(todo, _scores(task, nodes, VALIDATION_SEED + k, settings), strict=True):
                losses[e].append(scores.get("test", math.inf))
        mine.update(losses)
        path.write_text(json.dumps(cache, indent=1))
    return mine


def _scores(task, nodes, seed: int, settings) -> list[dict]:
    """The planted objective's scores of each function: as programs where the interpreter runs them, else
    compiled one by one (the exact path)."""
    from afos.expr.compile import to_jax
    from afos.fitness.interpreter import Shape, UnsupportedError, encode

    out, programs = [None] * len(nodes), {}
    for i, node in enumerate(nodes):
        try:
            programs[i] = encode(node, Shape(32))
        except UnsupportedError:
            out[i] = task.objective(to_jax(node), seed, settings)
    order = list(programs)
    for j, scores in task.programs([programs[i] for i in order], seed, settings):
        out[order[j]] = scores
    return out


def speed(args, n: int) -> dict:
    """Seconds per training of ``n`` random functions of the default space: a generation's students as programs
    (one call; its first call compiles), and each function compiled and trained on its own (the exact path)."""
    from afos.config import FitnessSettings
    from afos.examples import planted as task
    from afos.expr import analyse, parse
    from afos.expr.compile import to_jax
    from afos.fitness.interpreter import Shape, UnsupportedError, encode
    from afos.study import planted

    settings = planted.with_options(FitnessSettings(objective="planted"), {**args.options, "target": args.targets[0]})
    nodes = [analyse(parse(e), gain=settings.gain).node
             for e in planted.random_functions("default", n, 0, settings.gain)]
    programs = []
    for node in nodes:
        with contextlib.suppress(UnsupportedError):  # the exact path alone times those
            programs.append(encode(node, Shape(32)))
    out = {"functions": n, "as programs": len(programs)}
    for label, seed in (("programs, first call (compiles)", 0), ("programs, warm", 1)):
        start = time.perf_counter()
        list(task.programs(programs, seed, settings))
        out[label] = (time.perf_counter() - start) / len(programs)
    start = time.perf_counter()
    for node in nodes:
        task.objective(to_jax(node), 0, settings)
    out["compiled one by one"] = (time.perf_counter() - start) / n
    return out


def regret(losses: dict[str, list[float]], expr: str, target: str) -> float:
    """(mean log10 test MSE of ``expr`` - the target's) / the larger of their seed standard deviations."""
    if not expr:
        return math.inf
    from afos.study.planted import FLOOR

    a, t = (np.log10(np.maximum(np.asarray(losses[e], float), FLOOR)) for e in (expr, target))
    spread = max(float(np.std(a, ddof=1)), float(np.std(t, ddof=1)), 1e-12)
    return float((a.mean() - t.mean()) / spread)


def calibrations(args, targets: list[str], out: Path) -> dict[str, dict]:
    """Each target's calibration (cached in OUT/calibration.json)."""
    from afos.config import FitnessSettings
    from afos.study import planted

    path = out / "calibration.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    key = json.dumps(args.options, sort_keys=True)
    for target in targets:
        if f"{target} {key}" in cache:
            continue
        print(f"calibrating {target}", flush=True)
        result = planted.calibrate(planted.with_options(FitnessSettings(objective="planted"),
                                                        {**args.options, "target": target}))
        cache[f"{target} {key}"] = {"margin": result.margin, "closest": result.closest.expression,
                                    "target_log_mean": result.target.log_mean, "counts": result.counts}
        path.write_text(json.dumps(cache, indent=1))
    return {t: cache[f"{t} {key}"] for t in targets}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="+", default=list(SUITE), help="planted functions (default: the suite)")
    p.add_argument("--arms", default="random,ga,ga+knn", help=f"comma-separated: {', '.join(ARMS)} (each "
                   "optionally name:key=value,... over its search settings)")
    p.add_argument("--budget", type=int, default=200, help="trainings per search")
    p.add_argument("--budgets", default="50,100,200", help="where the tables read the runs")
    p.add_argument("--seeds", type=int, default=3, help="search seeds per target and arm")
    p.add_argument("--population", type=int, default=0, help="every arm's population (default: afos's)")
    p.add_argument("--val-seeds", type=int, default=5, help="fresh seeds the best functions are retrained on")
    p.add_argument("--objective-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the planted task besides its target")
    p.add_argument("--no-calibration", action="store_true", help="skip calibrating the targets")
    p.add_argument("--jobs", type=int, default=1, help="searches run side by side (processes)")
    p.add_argument("--out", required=True)
    p.add_argument("--plot", help="write the figure of recovery rate against trainings here")
    p.add_argument("--speed", type=int, default=0, metavar="N", help="only time N random functions' trainings "
                   "on the first target, as programs and compiled one by one, then stop")
    args = p.parse_args()
    args.options = dict(item.split("=", 1) for item in args.objective_option)
    if args.speed:
        print(json.dumps(speed(args, args.speed), indent=1))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arms = args.arms.split(",")
    budgets = [int(b) for b in args.budgets.split(",") if int(b) <= args.budget]
    for arm in arms:
        arm_settings(arm)
    calibrated = {} if args.no_calibration else calibrations(args, args.targets, out)
    jobs = [(args, t, arm, s) for t in args.targets for arm in arms for s in range(args.seeds)]
    start = time.perf_counter()
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            for done in pool.imap_unordered(run_one, jobs):
                print(done, flush=True)
    else:
        for job in jobs:
            print(run_one(job), flush=True)
    print(f"searches: {time.perf_counter() - start:.0f} s", flush=True)
    results = analyse(args, arms, budgets, out, calibrated)
    (out / "planted.json").write_text(json.dumps(results, indent=1))
    print(tables(results, arms, budgets))
    if args.plot:
        plot(results, arms, args.plot)


def analyse(args, arms: list[str], budgets: list[int], out: Path, calibrated: dict) -> dict:
    from afos.run.rundir import Run

    cache: dict = {}
    runs = {}
    for target in args.targets:
        for arm in arms:
            for seed in range(args.seeds):
                run = Run.open(out / "runs" / slug(target) / f"{arm.replace(':', '_')}-s{seed}")
                steps = trajectory(run)
                runs[f"{target}|{arm}|{seed}"] = {
                    "target": target, "arm": arm, "seed": seed,
                    "best": {str(b): best_at(steps, b) for b in budgets},
                    "recovered_at": recovered_at([s for s in steps if s[0] <= args.budget], target, cache),
                    "curve": [[spent, _recovers(expr, target, cache) if expr else False] for spent, expr, _ in steps
                              if spent <= args.budget],
                }
    for target in args.targets:
        found = [r["best"][str(b)] for r in runs.values() if r["target"] == target for b in budgets]
        losses = validate(args, target, found, out)
        for r in (r for r in runs.values() if r["target"] == target):
            r["regret"] = {b: regret(losses, e, target) for b, e in r["best"].items()}
    return {"targets": args.targets, "arms": arms, "budgets": budgets, "seeds": args.seeds, "budget": args.budget,
            "options": args.options, "calibration": calibrated, "runs": runs}


def per_target(results: dict, arm: str, budget: int) -> list[float]:
    """Per target, the share of its seeds whose best after ``budget`` trainings recovers it."""
    rates = []
    for target in results["targets"]:
        hits = [r["recovered_at"] is not None and r["recovered_at"] <= budget
                for r in results["runs"].values() if r["target"] == target and r["arm"] == arm]
        rates.append(float(np.mean(hits)))
    return rates


def paired(results: dict, arm: str, budget: int) -> str:
    """Wilcoxon signed-rank over targets of ``arm``'s recovery rates against random's (one-sided)."""
    from scipy.stats import wilcoxon

    if arm == "random" or "random" not in results["arms"]:
        return "-"
    a, r = np.array(per_target(results, arm, budget)), np.array(per_target(results, "random", budget))
    wins, ties, losses = int(np.sum(a > r)), int(np.sum(a == r)), int(np.sum(a < r))
    if wins + losses == 0:
        return f"p = 1 ({wins}/{ties}/{losses})"
    p = wilcoxon(a, r, alternative="greater", zero_method="wilcox").pvalue
    return f"p = {p:.3g} ({wins}/{ties}/{losses})"


def tables(results: dict, arms: list[str], budgets: list[int]) -> str:
    lines = ["| arm | trainings | recovery rate | targets recovered at least once | median regret (seed std) | "
             "trainings to recovery (median of the recovered) | vs random: Wilcoxon over targets (wins/ties/losses) |",
             "|---|---|---|---|---|---|---|"]
    for arm in arms:
        for b in budgets:
            runs = [r for r in results["runs"].values() if r["arm"] == arm]
            hit = [r["recovered_at"] is not None and r["recovered_at"] <= b for r in runs]
            when = [r["recovered_at"] for r in runs if r["recovered_at"] is not None and r["recovered_at"] <= b]
            rates = per_target(results, arm, b)
            regrets = [r["regret"][str(b)] for r in runs]
            lines.append(f"| {arm} | {b} | {np.mean(hit):.0%} ({sum(hit)}/{len(hit)}) | "
                         f"{sum(x > 0 for x in rates)}/{len(rates)} | {np.median(regrets):.1f} | "
                         f"{np.median(when) if when else '-'} | {paired(results, arm, b)} |")
    lines += ["", "| target | margin | " + " | ".join(arms) + " |", "|---|---|" + "---|" * len(arms)]
    for target in results["targets"]:
        cal = results["calibration"].get(target)
        margin = "-" if cal is None else f"{cal['margin']:.1f}"
        cells = []
        for arm in arms:
            runs = [r for r in results["runs"].values() if r["target"] == target and r["arm"] == arm]
            cells.append(" ".join("-" if r["recovered_at"] is None else str(r["recovered_at"]) for r in runs))
        lines.append(f"| {target} | {margin} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, arms: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = np.arange(1, results["budget"] + 1)
    for arm in arms:
        runs = [r for r in results["runs"].values() if r["arm"] == arm]
        rate = [np.mean([r["recovered_at"] is not None and r["recovered_at"] <= x for r in runs]) for x in xs]
        ax.plot(xs, rate, label=arm)
    ax.set_xlabel("trainings")
    ax.set_ylabel("recovery rate (targets x seeds)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{len(results['targets'])} planted targets, {results['seeds']} search seeds each")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


if __name__ == "__main__":
    sys.exit(main())
