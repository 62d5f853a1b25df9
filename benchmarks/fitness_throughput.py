"""Fitness-evaluation throughput: seconds per generation for afos sequential, afos batched and the floor.

Scores two generations of random candidates of the default search space (the same candidates for
every method) and prints, per method, the seconds of generation 1 (with compilation) and generation 2,
then the per-candidate agreement of validation accuracy between sequential and batched.

  floor       relu models, one compiled step for all, trained like the batched mode trains (loop on
              CPUs, vmapped population with epochs as lax.scan on accelerators): the training work itself.

Reference config of issue 6 (run on the GPU, beside the yardstick, in the same device call):
  python benchmarks/fitness_throughput.py --dataset fashion_mnist --population 32 --batch-size 128
CPU variant:
  python benchmarks/fitness_throughput.py --dataset digits --population 16

Side by side (issue 14): ``--designs`` times every design of ``gpu_paths.designs`` (and ``floor``, and
``cache``: sequential twice in fresh processes over one persistent compilation cache) on the same
candidates and seeds, each in its own process under a time cap (a design that fails or hangs costs its
cap, not the run), then prints one table with each design's agreement with sequential and writes ``--out``:
  python benchmarks/fitness_throughput.py --dataset fashion_mnist --batch-size 128 --population 32 \
      --designs floor,sequential,batched,pallas,unrolled,pipelined,batched@highest,batched@bfloat16,cache \
      --scaling floor,batched,pallas --scaling-populations 8,128 --budget 420 --out results.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from afos import config as config_lib
from afos import types
from afos.config import FitnessSettings
from afos.fitness import train
from afos.fitness.batched import Batched, default_mode
from afos.fitness.evaluator import Sequential
from afos.fitness.problem import FitnessProblem
from afos.ga.strategy import Search


def candidates(population: int, seed: int) -> list:
    """``population`` accepted random candidates of the default space, drawn with ``seed``."""
    search = Search(config_lib.override(config_lib.Config(), search={"population": 4 * population,
                                                                     "seed": seed}).resolved())
    out = [c for c in (search.candidate(ind) for ind in search.ask(search.init())) if c.accepted]
    return out[:population]


def timed(evaluator, population, label: str, seed: int) -> tuple[float, dict[int, object]]:
    start = time.perf_counter()
    rows = dict(evaluator.evaluate(population, [seed]))
    seconds = time.perf_counter() - start
    print(f"  {label}: {seconds:.2f} s", flush=True)
    return seconds, rows


def floor(problem: FitnessProblem, size: int, mode: str) -> float:
    """Seconds to train ``size`` relu models (one compiled step, no interpreter) and score them.

    The steps are compiled on the first call for a problem and reused after it (as the batched backend
    reuses its step), so a second call times the training alone.
    """
    dataset, seed = problem.dataset, problem.settings.seed
    state, opt, step, eval_step, epoch, veval = _floor_steps(problem, size)
    epochs = problem.batches(seed)
    start = time.perf_counter()
    if mode == "loop":
        for _ in range(size):
            s, o = state, opt
            for batches in epochs:
                for idx in batches:
                    s, o, loss = step(s, o, dataset.train.x[idx], dataset.train.y[idx])
            train.evaluate_split(eval_step, s, dataset.val)
        return time.perf_counter() - start
    stack = jax.tree.map(lambda a: jnp.broadcast_to(a, (size, *jnp.shape(a))), (state, opt))
    x, y = jnp.asarray(dataset.train.x), jnp.asarray(dataset.train.y)
    for batches in epochs:
        stack = epoch(stack, x, y, jnp.asarray(np.stack(batches)))
    jax.block_until_ready(veval(stack[0], dataset.val.x[:1024], dataset.val.y[:1024]))
    return time.perf_counter() - start


_FLOOR: dict[tuple[int, int], tuple] = {}


def _floor_steps(problem: FitnessProblem, size: int) -> tuple:
    """The relu model's state, optimizer state and jitted steps (loop and vmapped), kept per problem."""
    key = (id(problem), size)
    if key not in _FLOOR:
        model = problem.model(jax.nn.relu, problem.settings.seed, selu=False)
        graphdef, state = nnx.split(model)
        tx = problem.optimizer()
        opt = tx.init(nnx.state(model, nnx.Param))
        step, eval_step = train.make_steps(graphdef, tx)
        vstep = jax.vmap(step, in_axes=(0, 0, None, None))

        @jax.jit
        def epoch(carry, x, y, idx):
            return jax.lax.scan(lambda c, i: (vstep(*c, x[i], y[i])[:2], None), carry, idx)[0]

        veval = jax.jit(jax.vmap(eval_step, in_axes=(0, None, None)))
        _FLOOR[key] = (state, opt, step, eval_step, epoch, veval)
    return _FLOOR[key]


def agreement(exact: dict, fast: dict) -> dict[str, float]:
    both = [i for i in exact if exact[i].status == fast[i].status == types.OK]
    diffs = np.array([abs(exact[i].val_accuracy - fast[i].val_accuracy) for i in both])
    same_status = sum(exact[i].status == fast[i].status for i in exact)
    return {"compared": len(both), "same_status": same_status, "max_abs_acc_diff": float(diffs.max(initial=0.0)),
            "median_abs_acc_diff": float(np.median(diffs)) if len(diffs) else 0.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default="")
    p.add_argument("--model", default="cnn-small")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-size", type=int, default=0, help="0: the whole training split")
    p.add_argument("--val-size", type=int, default=0)
    p.add_argument("--methods", default="sequential,batched,floor")
    p.add_argument("--mode", default=None, help="batched mode: loop or vmap (default: by platform)")
    p.add_argument("--sequential-generations", type=int, default=2, help="generations timed for sequential")
    p.add_argument("--designs", default="", help="side by side: designs to time, each in its own process")
    p.add_argument("--scaling", default="", help="designs timed again at --scaling-populations")
    p.add_argument("--scaling-populations", default="8,128")
    p.add_argument("--cache-population", type=int, default=8, help="candidates of the cache design")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for every design together")
    p.add_argument("--design-timeout", type=float, default=240.0, help="cap on one design's process")
    p.add_argument("--out", default="", help="JSON results (side by side: rewritten after every design)")
    p.add_argument("--only", default="", help=argparse.SUPPRESS)  # a child process: one design
    return p.parse_args(argv)


def settings_of(args: argparse.Namespace) -> FitnessSettings:
    return FitnessSettings(dataset=args.dataset, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                           train_size=args.train_size, val_size=args.val_size, data_dir=args.data_dir)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.only:
        return run_design(args)
    if args.designs:
        from gpu_paths.sidebyside import side_by_side

        return side_by_side(args, Path(__file__).resolve())
    return compare(args)


def run_design(args: argparse.Namespace) -> dict:
    """One design on generations 1 and 2 (sequential: ``--sequential-generations``), written to ``--out``."""
    from gpu_paths.designs import DESIGNS, split_name

    name, precision = split_name(args.only)
    problem = FitnessProblem(settings_of(args))
    mode = args.mode or default_mode()
    seed = problem.settings.seed
    out = {"design": args.only, "population": args.population, "mode": mode, "platform": jax.default_backend(),
           "train": len(problem.dataset.train), "seconds": [], "accuracy": None, "status": None}
    with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
        if name == "floor":
            out["seconds"] = [floor(problem, args.population, mode) for _ in range(2)]
        else:
            ev = DESIGNS[name](problem, mode)
            generations = args.sequential_generations if name == "sequential" else 2
            for k, seed_k in enumerate((1, 2)[:generations]):
                t, rows = timed(ev, candidates(args.population, seed_k), f"{args.only} generation {k + 1}", seed)
                out["seconds"].append(t)
                if k == 0:
                    out["accuracy"] = [rows[i].val_accuracy for i in sorted(rows)]
                    out["status"] = [rows[i].status for i in sorted(rows)]
            if hasattr(ev, "trainer"):
                out["step_traces"] = ev.trainer(seed).traces
    if args.out:
        Path(args.out).write_text(json.dumps(out))
    return out


def compare(args: argparse.Namespace) -> dict:
    settings = settings_of(args)
    problem = FitnessProblem(settings)
    dataset = problem.dataset
    mode = args.mode or default_mode()
    gens = [candidates(args.population, seed) for seed in (1, 2)]
    print(f"jax {jax.__version__} {jax.devices()} | {args.dataset} train {len(dataset.train)} val "
          f"{len(dataset.val)} | {args.model} batch {args.batch_size} epochs {args.epochs} | population "
          f"{args.population} | batched mode {mode}", flush=True)
    out: dict = {"population": args.population, "train": len(dataset.train), "mode": mode, "seconds": {}}
    rows = {}
    methods = args.methods.split(",")
    if "sequential" in methods:
        ev = Sequential(problem)
        times = []
        for k, g in enumerate(gens[: args.sequential_generations]):
            t, r = timed(ev, g, f"sequential generation {k + 1}", settings.seed)
            times.append(t)
            rows.setdefault("sequential", r)
        out["seconds"]["sequential"] = times
    if "batched" in methods:
        ev = Batched(problem, mode=mode)
        times = []
        for k, g in enumerate(gens):
            t, r = timed(ev, g, f"batched generation {k + 1}", settings.seed)
            times.append(t)
            rows.setdefault("batched", r)
        out["seconds"]["batched"] = times
        out["batched_step_traces"] = ev.trainer(settings.seed).traces
    if "floor" in methods:
        out["seconds"]["floor"] = [floor(problem, args.population, mode) for _ in range(2)]
        print(f"  floor: {out['seconds']['floor']}", flush=True)
    print(f"{'method':12s} {'gen 1 (s)':>10s} {'gen 2 (s)':>10s} {'s/candidate (last gen)':>24s}")
    for name, times in out["seconds"].items():
        second = f"{times[1]:10.2f}" if len(times) > 1 else f"{'-':>10s}"
        print(f"{name:12s} {times[0]:10.2f} {second} {times[-1] / args.population:24.3f}")
    if "sequential" in rows and "batched" in rows:
        out["agreement"] = agreement(rows["sequential"], rows["batched"])
        print("accuracy agreement, sequential vs batched (generation 1):", out["agreement"])
    print("JSON", json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
