"""How fitness throughput grows with Ray workers: candidates per minute for 1, 2, ... workers.

For each worker count, a fresh ``RayPool`` (what ``--backend ray`` uses) scores a warm-up generation
(workers start, import afos, compile) and then ``--generations`` timed generations of new random
candidates of the default space. The same candidates are scored locally without Ray (the
``--worker-backend`` evaluator in this process) for the baseline. Prints a table, writes JSON and,
with ``--plot``, a PNG figure.

CPU (docs/SCALING.md):
  python benchmarks/ray_scaling.py --workers 1,2 --plot docs/scaling_cpu.png
GPU machine (one worker per GPU):
  python benchmarks/ray_scaling.py --workers 1 --dataset fashion_mnist --batch-size 128 --population 32
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import ray

from afos import config as config_lib
from afos.config import FitnessSettings
from afos.fitness import plan
from afos.fitness.cluster import RayPool
from afos.fitness.problem import FitnessProblem
from afos.ga.strategy import Search


def generations(population: int, count: int, seed: int) -> list[list]:
    """``count`` disjoint generations of ``population`` accepted random candidates of the default space."""
    search = Search(config_lib.override(config_lib.Config(), search={"population": 8 * population * count,
                                                                     "seed": seed}).resolved())
    seen, out = set(), []
    for ind in search.ask(search.init()):
        a = search.candidate(ind)
        if a.accepted and a.fingerprint not in seen:
            seen.add(a.fingerprint)
            out.append(a)
    if len(out) < population * count:
        raise SystemExit(f"only {len(out)} distinct candidates drawn; lower --population or --generations")
    return [out[i * population:(i + 1) * population] for i in range(count)]


def timed(scorer, gens: list[list]) -> float:
    """Seconds per generation, mean over ``gens`` (after a warm-up generation scored before)."""
    start = time.perf_counter()
    for g in gens:
        n = sum(1 for _ in scorer.evaluate(g, [0]))
        assert n == len(g)
    return (time.perf_counter() - start) / len(gens)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2", help="worker counts to measure, e.g. 1,2,4")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--model", default="cnn-small")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-size", type=int, default=0, help="0: the whole training split")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--generations", type=int, default=2, help="timed generations after the warm-up one")
    p.add_argument("--worker-backend", default="auto")
    p.add_argument("--worker-cpus", type=float, default=1.0)
    p.add_argument("--worker-gpus", type=float, default=-1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--plot", default=None, help="write a PNG figure of candidates per minute here")
    p.add_argument("--plot-with", nargs="*", default=[], metavar="JSON", help="earlier --json results drawn beside")
    p.add_argument("--plot-only", action="store_true", help="only draw --plot-with into --plot, measure nothing")
    args = p.parse_args()
    if args.plot_only:
        plot([json.loads(Path(f).read_text()) for f in args.plot_with], args.plot)
        return

    settings = FitnessSettings(dataset=args.dataset, model=args.model, batch_size=args.batch_size,
                               train_size=args.train_size)
    problem = FitnessProblem(settings)
    dataset = problem.dataset
    warm, *gens = generations(args.population, 1 + args.generations, args.seed)
    total = args.population * (1 + args.generations)
    print(f"{args.dataset} / {args.model}, batch {args.batch_size}, {len(dataset.train)} training images, "
          f"population {args.population}, {os.cpu_count()} CPUs", flush=True)

    # Ray first: its local instance forks, which JAX, once started in this process, warns against.
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    local_settings = config_lib.EvaluatorSettings(backend=args.worker_backend)
    local = plan.build(plan.make_plan(local_settings, problem, total), problem, local_settings)
    list(local.evaluate(warm, [0]))
    rows = [{"workers": 0, "seconds_per_generation": timed(local, gens)}]
    print(f"  local (no Ray): {rows[0]['seconds_per_generation']:.1f} s per generation", flush=True)

    for workers in (int(w) for w in args.workers.split(",")):
        evaluator = config_lib.EvaluatorSettings(backend="ray", worker_backend=args.worker_backend, workers=workers,
                                                 worker_cpus=args.worker_cpus, worker_gpus=args.worker_gpus)
        pool = RayPool(evaluator, problem, total)
        start = time.perf_counter()
        list(pool.evaluate(warm, [0]))
        warmup = time.perf_counter() - start
        seconds = timed(pool, gens)
        pool.close()
        rows.append({"workers": workers, "seconds_per_generation": seconds, "warmup_seconds": warmup})
        print(f"  {workers} worker(s): {seconds:.1f} s per generation (warm-up generation {warmup:.1f} s)", flush=True)
    ray.shutdown()

    base = rows[1]["seconds_per_generation"]
    print("\n| workers | s / generation | candidates / min | vs 1 worker |\n|---|---|---|---|")
    for r in rows:
        r["candidates_per_minute"] = 60 * args.population / r["seconds_per_generation"]
        label = "local, no Ray" if r["workers"] == 0 else str(r["workers"])
        print(f"| {label} | {r['seconds_per_generation']:.1f} | {r['candidates_per_minute']:.1f} | "
              f"{base / r['seconds_per_generation']:.2f}x |")
    result = {"args": vars(args), "cpus": os.cpu_count(), "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        plot([result] + [json.loads(Path(f).read_text()) for f in args.plot_with], args.plot)


def plot(results: list[dict], path: str) -> None:
    """Candidates per minute against workers, one line per measurement (``main``'s JSON results)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for k, result in enumerate(results):
        color = f"C{k}"
        rows = [r for r in result["rows"] if r["workers"] > 0]
        xs = [r["workers"] for r in rows]
        label = f"worker backend {result['args']['worker_backend']}"
        ax.plot(xs, [r["candidates_per_minute"] for r in rows], "o-", color=color, label=f"ray, {label}")
        ax.plot(xs, [rows[0]["candidates_per_minute"] * w for w in xs], ":", color=color, alpha=0.5)
        ax.axhline(result["rows"][0]["candidates_per_minute"], color=color, ls="--", alpha=0.6,
                   label=f"local, no Ray, {label}")
        ax.set_xticks(xs)
    a = results[0]["args"]
    ax.set_xlabel("Ray workers (dotted: linear scaling)")
    ax.set_ylabel("candidates per minute")
    ax.set_title(f"{a['dataset']} / {a['model']}, population {a['population']}, {results[0]['cpus']} CPUs", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
