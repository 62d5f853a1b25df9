"""Search quality: does the genetic search beat random sampling of the same space, at equal training budget?

For every strategy (``ga``: NSGA-II selection and variation; ``random``: fresh random functions every generation),
gain mode (``unit``, ``none``) and search seed, one search runs into ``OUT/runs/`` (resumable: run the same
command again). After every generation the function the search would name best so far (the most accurate of its
front) is then retrained on fresh seeds for longer and scored on the test split: one benchmark per gain mode
(``OUT/validation-<gain>/``, resumable too), with relu, leaky_relu, gelu and swish beside, trained at the same
gain. The script prints, per strategy and gain, the final winners (with their known names), their test accuracy
against relu, and the trainings the searches spent, writes ``OUT/search_quality.json`` and, with ``--plot``, a
figure of the best validated test accuracy against trainings spent.

CPU (docs/SEARCH.md):
  python benchmarks/search_quality.py --dataset digits --out runs/sq-digits --plot docs/search_quality_digits.png
  python benchmarks/search_quality.py --dataset fashion_mnist --model mlp --train-size 6000 --val-size 1500 \\
      --population 12 --generations 5 --out runs/sq-fashion --plot docs/search_quality_fashion.png
GPU (one call; the same with the full data and a larger budget):
  python benchmarks/search_quality.py --dataset fashion_mnist --population 32 --generations 10 --seeds 5 \\
      --val-seeds 10 --out runs/sq-fashion-gpu --plot docs/search_quality_fashion_gpu.png
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from afos import config as config_lib
from afos import types
from afos.expr import STANDARD_ACTIVATIONS
from afos.expr.names import label
from afos.ga import memo
from afos.ga.front import ranked
from afos.run import driver
from afos.run.rundir import CHECKPOINT, Run
from afos.study import bench, runner

ANCHORS = ("relu", "leaky_relu", "gelu", "swish")


def search_config(args, strategy: str, gain: str, seed: int) -> config_lib.Config:
    """The search of one arm: ``ga``, ``random``, or either with a surrogate pre-screen (``ga+knn``)."""
    strategy, _, surrogate = strategy.partition("+")
    return config_lib.override(
        config_lib.Config(),
        search={"population": args.population, "generations": args.generations, "seed": seed,
                "strategy": strategy, "space": args.space, "surrogate": surrogate or "none",
                "oversample": args.oversample},
        fitness={"dataset": args.dataset, "model": args.model, "train_size": args.train_size,
                 "val_size": args.val_size, "data_dir": args.data_dir, "seed": seed, "gain": gain,
                 "batch_size": args.batch_size},
        evaluator={"backend": args.backend}, protocol={"anchors": list(ANCHORS)},
    ).resolved()


def run_search(args, run_dir: Path, cfg: config_lib.Config) -> Run:
    """The search of ``cfg`` in ``run_dir``: run, resumed where it stopped, or left as it is when finished."""
    if not (run_dir / CHECKPOINT).exists():
        print(f"search {run_dir.name}", flush=True)
        if run_dir.exists():
            driver.resume(run_dir)
        else:
            driver.run(cfg, run_dir)
    elif Run.open(run_dir).checkpoint()["generation"] <= cfg.search.generations:
        print(f"search {run_dir.name} (resumed)", flush=True)
        driver.resume(run_dir)
    return Run.open(run_dir)


def trajectory(run: Run) -> list[dict]:
    """Per generation: the trainings spent so far (in trainings of ``fitness.epochs``: a promotion to a rung of
    9 epochs counts 9 times one epoch) and the function the search would name best at that point."""
    lines, base = run.records(), run.config.fitness.epochs
    out, known, spent = [], {}, 0.0
    for g in range(max(line.generation for line in lines) + 1):
        now = [line for line in lines if line.generation == g]
        spent += sum((line.epochs or base) / base for line in now  # one seed each: no racing here
                     if line.status in (types.OK, types.FAILED, *types.RESCORINGS))
        memo.replay(known, now)
        best = ranked(memo.front_of(known, run.config.protocol.max_seeds))
        if best:
            out.append({"generation": g, "trainings": spent, "expression": best[0].expression,
                        "val_accuracy": best[0].val_accuracy})
    return out


def validate_all(args, gain: str, expressions: list[str], out: Path) -> dict[str, float]:
    """Test accuracy (mean over the validation seeds) of every expression and anchor, trained at ``gain``."""
    labels = {e: f"f{i}" for i, e in enumerate(sorted(expressions))}
    activations = [bench.Activation(name, STANDARD_ACTIVATIONS[name], "anchor") for name in ANCHORS]
    activations += [bench.Activation(label, e, "search") for e, label in labels.items()]
    training = config_lib.FitnessSettings(epochs=args.val_epochs, batch_size=args.batch_size,
                                          train_size=args.train_size, val_size=args.val_size,
                                          data_dir=args.data_dir, gain=gain)
    spec = bench.BenchSpec(
        activations=tuple(activations), models=(bench.ModelSpec(args.model, args.model),),
        datasets=(args.dataset,), seeds=tuple(range(bench.FIRST_SEED, bench.FIRST_SEED + args.val_seeds)),
        training=training, name=f"search quality validation ({gain} gain)")
    print(f"validating {len(activations)} functions at {gain} gain on {args.val_seeds} seeds", flush=True)
    records = runner.run(spec, out / f"validation-{gain}")
    scores = defaultdict(list)
    for r in records:
        scores[r["activation"]].append(r["final"]["test_accuracy"])
    by_label = {label: float(np.mean(v)) for label, v in scores.items()}
    return {e: by_label[label] for e, label in labels.items()} | {name: by_label[name] for name in ANCHORS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default="")
    p.add_argument("--model", default="cnn-small")
    p.add_argument("--space", default="default")
    p.add_argument("--train-size", type=int, default=0)
    p.add_argument("--val-size", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--seeds", type=int, default=3, help="search seeds per strategy and gain")
    p.add_argument("--strategies", default="ga,random",
                   help="arms: ga, random, and either with a surrogate pre-screen, e.g. ga+knn")
    p.add_argument("--oversample", type=int, default=4, help="children per place of a surrogate arm")
    p.add_argument("--gains", default="unit,none")
    p.add_argument("--val-seeds", type=int, default=5, help="fresh seeds each best function is retrained on")
    p.add_argument("--val-epochs", type=int, default=5)
    p.add_argument("--backend", default="auto")
    p.add_argument("--out", required=True)
    p.add_argument("--plot", default=None, help="write the figure here")
    args = p.parse_args()
    out = Path(args.out)
    results: dict = {"args": vars(args), "runs": {}}
    for gain in args.gains.split(","):
        paths = {}
        for strategy in args.strategies.split(","):
            for seed in range(args.seeds):
                name = f"{strategy}-{gain}-s{seed}"
                run = run_search(args, out / "runs" / name, search_config(args, strategy, gain, seed))
                paths[name] = trajectory(run)
        expressions = sorted({step["expression"] for steps in paths.values() for step in steps})
        test = validate_all(args, gain, expressions, out)
        for name, steps in paths.items():
            for step in steps:
                step["test_accuracy"] = test[step["expression"]]
            results["runs"][name] = steps
        results[f"anchors_{gain}"] = {name: test[name] for name in ANCHORS}
    (out / "search_quality.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    print(proxy_table(results, out))
    print(fidelity(results))
    if args.plot:
        plot(results, args.plot)


def table(results: dict) -> str:
    """Per strategy and gain: the winners, their test accuracy (mean and spread over search seeds), relu's."""
    groups = defaultdict(list)
    for name, steps in results["runs"].items():
        strategy, gain, _ = name.split("-")
        groups[strategy, gain].append(steps[-1])
    lines = ["| strategy | gain | trainings (mean) | winner test accuracy (mean ± std over search seeds) | "
             "relu at that gain | trainings to reach the plain GA's mean (per seed) | winners |",
             "|---|---|---|---|---|---|---|"]
    for (strategy, gain), finals in sorted(groups.items()):
        acc = np.array([f["test_accuracy"] for f in finals])
        relu = results[f"anchors_{gain}"]["relu"]
        winners = "; ".join(label(f["expression"]) for f in finals)
        lines.append(f"| {strategy} | {gain} | {np.mean([f['trainings'] for f in finals]):.0f} | "
                     f"{acc.mean():.4f} ± {acc.std(ddof=1) if len(acc) > 1 else math.nan:.4f} | {relu:.4f} | "
                     f"{reach(results, strategy, gain)} | {winners} |")
    return "\n".join(lines)


def reach(results: dict, strategy: str, gain: str) -> str:
    """Per search seed of ``strategy``, the trainings it spent until its best so far validated at least as well
    as the plain GA's final winners do on average ('-': never), as 'n / total'."""
    runs = {name: steps for name, steps in results["runs"].items() if name.split("-")[1] == gain}
    ga = [steps[-1]["test_accuracy"] for name, steps in runs.items() if name.split("-")[0] == "ga"]
    if not ga:
        return "-"
    level, out = float(np.mean(ga)), []
    for name, steps in sorted(runs.items()):
        if name.split("-")[0] == strategy:
            hit = next((s["trainings"] for s in steps if s["test_accuracy"] >= level), None)
            out.append(f"{'-' if hit is None else f'{hit:.0f}'} / {steps[-1]['trainings']:.0f}")
    return ", ".join(out)


def proxy_table(results: dict, out: Path) -> str:
    """What each arm trained, judged by the search's own proxy (validation accuracy of the short training):
    the share of its trainings (generations 1 on) within a point of the best anchor, their median, the best
    it found, and the trainings it spent to first match the best the plain GA found (per search seed)."""
    logs = {name: Run.open(out / "runs" / name).records() for name in results["runs"]}
    def trained(lines):
        return [r for r in lines if r.status in (types.OK, types.FAILED) and r.generation >= 1]
    def anchor(lines):
        return max(r.val_accuracy for r in lines if r.status == types.ANCHOR and r.val_accuracy is not None)
    level = {gain: max((max(r.val_accuracy or 0.0 for r in trained(lines) + [r for r in lines if r.generation == 0
                                                                         and r.scored])
                        for name, lines in logs.items() if name.split("-")[:2] == ["ga", gain]),
                       default=float("inf"))  # without a plain GA arm, nothing to match
             for gain in {name.split("-")[1] for name in logs}}
    groups = defaultdict(list)
    for name, lines in sorted(logs.items()):
        strategy, gain, _ = name.split("-")
        accs = [r.val_accuracy or 0.0 for r in trained(lines)]
        spent, hit = 0, None
        for r in lines:
            if r.status in (types.OK, types.FAILED):
                spent += 1
                if hit is None and (r.val_accuracy or 0.0) >= level[gain]:
                    hit = spent
        groups[strategy, gain].append((np.mean([a >= anchor(lines) - 0.01 for a in accs]), np.median(accs),
                                       max(r.val_accuracy for r in lines if r.scored and r.generation >= 0),
                                       "-" if hit is None else str(hit), spent))
    rows = ["| strategy | gain | trainings within 1 point of the best anchor (gen >= 1) | their median val accuracy | "
            "best val accuracy | trainings to match the plain GA's best val accuracy (per seed) |",
            "|---|---|---|---|---|---|"]
    for (strategy, gain), values in sorted(groups.items()):
        rows.append(f"| {strategy} | {gain} | {np.mean([v[0] for v in values]):.0%} | "
                    f"{np.mean([v[1] for v in values]):.4f} | {np.mean([v[2] for v in values]):.4f} | "
                    f"{', '.join(f'{v[3]} / {v[4]}' for v in values)} "
                    f"({'no ga arm' if level[gain] == float('inf') else f'GA best {level[gain]:.4f}'}) |")
    return "\n".join(rows)


def fidelity(results: dict) -> str:
    """Per gain: how well the search's proxy (validation accuracy of one short training) ranks the functions
    that were validated (Spearman's rho against their validated test accuracy)."""
    from scipy.stats import spearmanr

    lines = []
    for gain in sorted({name.split("-")[1] for name in results["runs"]}):
        points = {step["expression"]: (step["val_accuracy"], step["test_accuracy"])
                  for name, steps in results["runs"].items() if name.split("-")[1] == gain for step in steps}
        proxy, test = zip(*points.values(), strict=True)
        rho = spearmanr(proxy, test)
        lines.append(f"proxy fidelity at {gain} gain: Spearman rho {rho.statistic:+.2f} (p = {rho.pvalue:.2f}) "
                     f"between search validation accuracy and validated test accuracy of {len(points)} functions")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    """Best validated test accuracy against trainings spent: mean over search seeds per strategy and gain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    for name, steps in results["runs"].items():
        strategy, gain, _ = name.split("-")
        groups[strategy, gain].append(steps)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles = {"ga": "-", "random": "--", "ga+knn": "-.", "ga+gp": "-.", "ga+forest": "-.", "random+knn": ":"}
    colours = {"unit": "C0", "none": "C1"}
    arms = sorted({strategy for strategy, _ in groups})
    by_arm = len({gain for _, gain in groups}) == 1  # one gain: a colour per arm reads better
    for (strategy, gain), runs in sorted(groups.items()):
        length = min(len(steps) for steps in runs)
        x = np.mean([[s["trainings"] for s in steps[:length]] for steps in runs], axis=0)
        y = np.array([[s["test_accuracy"] for s in steps[:length]] for steps in runs])
        colour = f"C{arms.index(strategy)}" if by_arm else colours[gain]
        ax.plot(x, y.mean(axis=0), styles.get(strategy, "-"), color=colour, marker="o", ms=3,
                label=f"{strategy}, gain {gain}")
        ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=colour, alpha=0.08)
    for gain, colour in colours.items():
        if f"anchors_{gain}" in results:
            ax.axhline(results[f"anchors_{gain}"]["relu"], color="grey" if by_arm else colour, ls=":", lw=1,
                       label=f"relu, gain {gain}")
    a = results["args"]
    ax.set_xlabel("trainings spent by the search")
    ax.set_ylabel(f"test accuracy of its best so far ({a['val_seeds']} seeds, {a['val_epochs']} epochs)")
    ax.set_title(f"{a['dataset']} / {a['model']}: population {a['population']}, {a['seeds']} search seeds "
                 "(band: min-max)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
