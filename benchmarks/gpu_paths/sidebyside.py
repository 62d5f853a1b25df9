"""The side-by-side driver of ``fitness_throughput.py --designs``: each design in its own process, one table.

Every child process draws the same candidates (``candidates(P, 1)`` and ``(P, 2)``) and trains them from
the same seed, so accuracies compare candidate by candidate. A child that fails or outlives its cap is a
row with its reason; the results file is rewritten after every child, so a run stopped from outside keeps
what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CACHE_ENV = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
CHILD_ARGS = ("dataset", "data_dir", "model", "batch_size", "epochs", "train_size", "val_size", "mode",
              "sequential_generations")


def jobs(args: argparse.Namespace, cache_dir: str) -> list[dict]:
    """(label, design, population, extra environment) of every child, most important first."""
    out = []
    for design in args.designs.split(","):
        if design == "cache":  # the persistent compilation cache: the same compilations, cold then warm
            env = {"JAX_COMPILATION_CACHE_DIR": cache_dir, **CACHE_ENV}
            p = min(args.cache_population, args.population)
            for k in ("cold", "warm"):
                out.append({"label": f"cache-{k}", "design": "sequential", "population": p, "env": env})
        else:
            out.append({"label": design, "design": design, "population": args.population, "env": {}})
    for design in filter(None, args.scaling.split(",")):
        for p in map(int, args.scaling_populations.split(",")):
            if p != args.population:
                out.append({"label": f"{design}:P={p}", "design": design, "population": p, "env": {}})
    return out


def run_child(script: Path, args: argparse.Namespace, job: dict, timeout: float, tmp: Path) -> dict:
    path = tmp / f"{len(list(tmp.iterdir()))}.json"
    argv = [sys.executable, str(script), "--only", job["design"], "--population", str(job["population"]),
            "--out", str(path)]
    for name in CHILD_ARGS:
        value = getattr(args, name)
        if value not in (None, ""):
            argv += [f"--{name.replace('_', '-')}", str(value)]
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"} | job["env"]
    if job["design"] == "sequential" and not job["label"].startswith("cache"):
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"  # the exact reference pays its compilations
    start = time.perf_counter()
    print(f"== {job['label']} (P={job['population']}, cap {timeout:.0f} s)", flush=True)
    try:
        rc = subprocess.run(argv, env=env, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return {"error": f"stopped at its cap of {timeout:.0f} s"}
    wall = time.perf_counter() - start
    if rc != 0 or not path.exists():
        return {"error": f"exit status {rc}", "wall": wall}
    return json.loads(path.read_text()) | {"wall": wall}


def agreement(exact: dict, fast: dict) -> dict:
    """Candidate by candidate, generation 1: statuses and validation accuracies of ``fast`` against ``exact``."""
    n = min(len(exact["status"]), len(fast["status"]))
    both = [i for i in range(n) if exact["status"][i] == fast["status"][i] == "ok"]
    diffs = np.array([abs(exact["accuracy"][i] - fast["accuracy"][i]) for i in both])
    return {"compared": len(both), "same_status": sum(exact["status"][i] == fast["status"][i] for i in range(n)),
            "of": n, "max_abs_acc_diff": float(diffs.max(initial=0.0)),
            "median_abs_acc_diff": float(np.median(diffs)) if len(diffs) else 0.0}


def spearman(a: dict, b: dict) -> float | None:
    import scipy.stats

    ok = [i for i in range(min(len(a["status"]), len(b["status"]))) if a["status"][i] == b["status"][i] == "ok"]
    if len(ok) < 3:
        return None
    return float(scipy.stats.spearmanr([a["accuracy"][i] for i in ok], [b["accuracy"][i] for i in ok]).statistic)


def compare_rows(rows: dict) -> None:
    """Adds each row's agreement with sequential and, for ``@precision`` rows, the rank correlation."""
    exact = rows.get("sequential", {})
    name = "batched@highest" if "batched@highest" in rows else "batched"
    reference = rows.get(name, {})
    for label, row in rows.items():
        if not row.get("status"):
            continue
        if label != "sequential" and exact.get("status") and row["population"] == exact["population"]:
            row["agreement"] = agreement(exact, row)
        if "@" in label and reference is not row and reference.get("status"):
            row["spearman_vs_" + name] = spearman(reference, row)


def table(rows: dict) -> str:
    floor = {r["population"]: r["seconds"][-1] for r in rows.values()
             if r.get("design") == "floor" and r.get("seconds")}
    lines = [f"{'design':22s} {'P':>4s} {'gen 1 s':>8s} {'gen 2 s':>8s} {'s/cand':>7s} {'/floor':>7s} "
             f"{'max|dacc|':>9s} {'same st':>8s} {'spearman':>8s}  note"]
    for label, r in rows.items():
        if "error" in r and not r.get("seconds"):
            lines.append(f"{label:22s} {r['population']:4d} {'-':>8s} {'-':>8s}{'':43s}  {r['error']}")
            continue
        secs, p = r["seconds"], r["population"]
        last = secs[-1]
        ratio = f"{last / floor[p]:7.2f}" if p in floor else f"{'-':>7s}"
        ag = r.get("agreement", {})
        acc = f"{ag['max_abs_acc_diff']:9.4f}" if ag else f"{'-':>9s}"
        same = f"{ag['same_status']}/{ag['of']}" if ag else "-"
        rho = next((v for k, v in r.items() if k.startswith("spearman_vs_")), None)
        rho_s = f"{rho:8.3f}" if rho is not None else f"{'-':>8s}"
        second = f"{secs[1]:8.2f}" if len(secs) > 1 else f"{'-':>8s}"
        note = f"traces {r['step_traces']}" if "step_traces" in r else ""
        lines.append(f"{label:22s} {p:4d} {secs[0]:8.2f} {second} {last / p:7.3f} {ratio} {acc} {same:>8s} {rho_s}"
                     f"  {note}")
    return "\n".join(lines)


def side_by_side(args: argparse.Namespace, script: Path) -> dict:
    """Every job of ``jobs`` within ``args.budget`` seconds; the merged results (also in ``args.out``)."""
    start = time.perf_counter()
    results: dict = {"settings": {k: getattr(args, k) for k in (*CHILD_ARGS, "population", "budget")}, "rows": {}}
    with tempfile.TemporaryDirectory(prefix="afos-sbs-") as tmp:
        cache_dir = str(Path(tmp) / "xla-cache")
        children = Path(tmp) / "children"
        children.mkdir()
        for job in jobs(args, cache_dir):
            left = args.budget - (time.perf_counter() - start)
            if left < 10:
                results["rows"][job["label"]] = {"error": "skipped: budget spent", "population": job["population"]}
                continue
            row = run_child(script, args, job, min(args.design_timeout, left), children)
            results["rows"][job["label"]] = {"population": job["population"], **row}
            compare_rows(results["rows"])
            results["table"] = table(results["rows"])
            if args.out:
                Path(args.out).write_text(json.dumps(results, indent=1))
            print(results["table"], flush=True)
    results["seconds_total"] = time.perf_counter() - start
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return results
