"""The user's own network and data: named by import path or entry point, recorded, resumed, exported."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import USER_MODULE

import afos
from afos import config, plugins
from afos.errors import BenchError, DataError, ModelError, RunError
from afos.run import driver
from afos.run.rundir import SOURCES, Run

ARGS = ["--model", "usernets:TinyNet", "--dataset", "usernets:blobs", "--population", "2", "--generations", "1",
        "--seed", "3"]


def _afos(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "afos", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _lines(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in Run.open(run_dir).records()]


@pytest.mark.slow
def test_own_model_and_data_search_resume_after_kill_and_export(tmp_path, user_module):
    baseline = tmp_path / "baseline"
    driver.run(config.override_flat(config.Config(), model="usernets:TinyNet", dataset="usernets:blobs",
                                    population=2, generations=1, seed=3), baseline)
    sources = json.loads((baseline / SOURCES).read_text())
    assert sources["model"] == {"name": "usernets:TinyNet", "reference": "usernets:TinyNet",
                                "file": str(user_module / "usernets.py")}
    assert sources["dataset"]["reference"] == "usernets:blobs"

    run_dir = tmp_path / "killed"
    proc = _afos("search", "--run-dir", str(run_dir), *ARGS)
    log = run_dir / "evaluations.jsonl"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if log.exists() and log.read_text().count("\n") >= 5:  # anchors and the first individual are written
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    resumed = _afos("resume", str(run_dir), "--trust-run")  # the run names the user's code: consent
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert _lines(run_dir) == _lines(baseline)
    best = Run.open(run_dir).best().expression
    assert f"Expression: {best}\n" in afos.export_source("torch", run_dir=run_dir)

    del sys.modules["usernets"]
    sys.path.remove(str(user_module))
    with pytest.raises(RunError, match=r"^\S+ cannot go on here: (model|dataset) 'usernets:\w+': cannot import "
                                       r"module 'usernets' \(ModuleNotFoundError"):
        driver.resume(run_dir, generations=2, trust_run=True)


@pytest.mark.slow
def test_an_installed_package_registers_a_model_and_a_dataset(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "afos_demo_nets-1.2.dist-info").mkdir(parents=True)
    (site / "afos_demo_nets.py").write_text(USER_MODULE)
    info = site / "afos_demo_nets-1.2.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: afos-demo-nets\nVersion: 1.2\n")
    (info / "top_level.txt").write_text("afos_demo_nets\n")
    (info / "entry_points.txt").write_text("[afos.models]\ndemo-net = afos_demo_nets:linen_net\n\n"
                                           "[afos.datasets]\ndemo-blobs = afos_demo_nets:blobs\n\n"
                                           "[afos.objectives]\ndemo-score = afos_demo_nets:score\n")
    monkeypatch.syspath_prepend(str(site))
    try:
        assert {"demo-net"} <= set(plugins.registered("model"))
        assert plugins.resolve("objective", "demo-score").__name__ == "score"
        run_dir = tmp_path / "run"
        driver.run(config.override_flat(config.Config(), model="demo-net", dataset="demo-blobs", population=2,
                                        generations=0), run_dir)
        run = Run.open(run_dir)
        assert all(r.status in ("ok", "anchor") for r in run.records())
        assert run.sources()["model"] == {"name": "demo-net", "reference": "afos_demo_nets:linen_net",
                                          "distribution": "afos-demo-nets", "version": "1.2"}
        (site / "afos_demo_nets-1.2.dist-info" / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: afos-demo-nets\nVersion: 1.3\n")
        warnings = []
        run.check_sources(warnings.append)
        assert warnings and "afos-demo-nets 1.2" in warnings[0] and "1.3" in warnings[0]
    finally:
        sys.modules.pop("afos_demo_nets", None)


def test_data_as_arrays_from_python_and_a_resume_that_needs_them_again(tmp_path, user_module):
    import usernets

    arrays = usernets.blobs()
    run = afos.search(None, tmp_path / "run", model=usernets.TinyNet, dataset=arrays, population=2, generations=0)
    assert run.config.fitness.model == "usernets:TinyNet"
    assert run.config.fitness.dataset == "arrays:" + plugins.digest(arrays)
    assert run.best().expression
    assert f"Expression: {run.best().expression}\n" in run.export("torch") and "import torch" in run.export("torch")
    plugins._GIVEN.clear()  # a new Python process
    with pytest.raises(RunError, match="handed over as arrays in another Python process"):
        afos.resume(run.path, generations=1, model=usernets.TinyNet)  # the model given again: consent
    with pytest.raises(RunError, match="was started with dataset"):
        afos.resume(run.path, generations=1, dataset=(arrays[0][:-1], *arrays[1:]))
    resumed = afos.resume(run.path, generations=1, model=usernets.TinyNet, dataset=arrays)
    assert max(r.generation for r in resumed.records()) == 1


@pytest.mark.parametrize(("model", "dataset", "error", "message"), [
    ("usernets:no_rngs", "usernets:blobs", ModelError, "must take the keyword argument rngs"),
    ("usernets:nothing", "usernets:blobs", ModelError, "module 'usernets' has no attribute 'nothing'"),
    ("usernets:TinyNet", "usernets:ragged", DataError, "one integer label per input"),
    ("usernets:TinyNet", "usernets:broken", DataError, "the loader raised OSError: disk on fire"),
    ("nets", "digits", ModelError, "or your own as package.module:factory"),
])
def test_a_bad_model_or_dataset_is_one_line_naming_it(tmp_path, user_module, model, dataset, error, message):
    from afos.fitness.problem import FitnessProblem

    settings = config.override_flat(config.Config(), model=model, dataset=dataset).fitness
    with pytest.raises(error, match=message):
        FitnessProblem(settings).dataset  # noqa: B018 - loading is what fails


def test_a_factory_that_returns_no_module_is_refused(user_module):
    import jax

    from afos.fitness.problem import FitnessProblem

    settings = config.override_flat(config.Config(), model="usernets:not_a_module", dataset="usernets:blobs").fitness
    with pytest.raises(ModelError, match="returned an object of type int, not a Flax nnx"):
        FitnessProblem(settings).score(jax.nn.relu, 0)


def test_a_linen_model_trains_and_is_seeded(user_module):
    import jax

    from afos.fitness.problem import FitnessProblem

    settings = config.override_flat(config.Config(), model="usernets:linen_net", dataset="usernets:blobs",
                                    epochs=2).fitness
    problem = FitnessProblem(settings)
    a, b, c = problem.score(jax.nn.relu, 0), problem.score(jax.nn.relu, 0), problem.score(jax.nn.relu, 1)
    assert a.val_loss == b.val_loss != c.val_loss
    assert np.isfinite(a.val_loss)


def test_a_benchmark_names_the_users_model_with_options(user_module):
    from afos.study import bench

    spec = bench.parse_model("usernets:TinyNet:batch_size=16")
    assert (spec.name, dict(spec.options)) == ("usernets:TinyNet", {"batch_size": 16})
    with pytest.raises(BenchError, match="cannot import module 'nothere'"):
        bench.parse_model("nothere:Net")


# --- the user's own objective -----------------------------------------------------------------------------


def test_an_objective_runs_the_whole_protocol_search_racing_and_validate(tmp_path, user_module):
    from afos.study.validate import validate

    run = afos.search(None, tmp_path / "run", objective="usernets:score", population=4, generations=1,
                      race_seeds=2, fitness_seeds=1)
    assert run.config.fitness.direction == "max"
    lines = run.records()
    assert {r.status for r in lines} >= {"anchor", "ok"} and all(r.status != "failed" for r in lines)
    assert run.sources()["objective"]["reference"] == "usernets:score"
    relu = next(r for r in lines if r.tree == "relu")
    import usernets

    seeds = config.search_seeds(run.config.fitness, relu.seeds)
    expected = np.mean([usernets.score(lambda x: np.maximum(x, 0) * relu.gain, s, None)["val"] for s in seeds])
    assert relu.val_accuracy == pytest.approx(expected, rel=1e-5)  # the anchor is scored by the objective
    rows = validate(run, top=1, seeds=6, epochs=1, trust_run=True)
    row = next(r for r in rows if r["activation"] == "relu")
    seeds = [int(s) for s in row["seeds"].split()]
    tests = [usernets.score(lambda x: np.maximum(x, 0) * relu.gain, s, None)["test"] for s in seeds]
    assert row["test_accuracy_mean"] == pytest.approx(np.mean(tests), rel=1e-5)  # validate reads the test score


def test_a_loss_to_minimise_is_ranked_as_exp_minus_loss_and_the_direction_is_stored(tmp_path, user_module):
    run = afos.search(None, tmp_path / "run", objective="usernets:loss", population=2, generations=0)
    assert run.config.fitness.direction == "min"  # declared by the function, stored by the run
    import usernets

    relu = next(r for r in run.records() if r.tree == "relu")
    loss = usernets.loss(lambda x: np.maximum(x, 0) * relu.gain, 0, None)
    assert (relu.val_loss, relu.val_accuracy) == pytest.approx((loss, np.exp(-loss)), rel=1e-5)


@pytest.mark.parametrize(("name", "reason"), [
    ("raises", "objective raised RuntimeError: out of memory"),
    ("gives_nan", "objective returned a non-finite validation score (nan)"),
    ("gives_text", "objective 'usernets:gives_text' returned 'high' (a str) as its validation score, not a real "
                   "number"),
    ("gives_two", "objective returned the validation score 2, outside [0, 1]"),
])
def test_an_objective_that_fails_is_a_failed_line_with_its_reason(tmp_path, user_module, name, reason):
    run = afos.search(None, tmp_path / "run", objective=f"usernets:{name}", population=2, generations=0)
    lines = run.records()
    assert lines and all(r.val_accuracy is None and r.status in ("failed", "rejected", "anchor") for r in lines)
    anchors = [r for r in lines if r.status == "anchor"]
    assert anchors and all(r.reason.startswith(reason) for r in anchors), {r.reason for r in anchors}
    assert any(r.status == "failed" and r.reason.startswith(reason) for r in lines)


@pytest.mark.slow
def test_the_language_model_example_learns(monkeypatch):
    import jax

    from afos.examples import charlm

    monkeypatch.setattr(charlm, "STEPS_PER_EPOCH", 20)
    train, val, test, vocab = charlm.corpus()
    assert len(train) > 30000 and len(val) > 3000 and 40 < vocab < 150
    settings = config.override_flat(config.Config(), objective="afos.examples.charlm:objective").fitness
    out = charlm.objective(jax.nn.relu, 0, settings)
    assert 0 < out["val"] < np.log(vocab) and 0 < out["test"] < np.log(vocab)  # better than uniform guessing


def test_a_benchmark_compares_activations_on_an_objective(tmp_path, user_module):
    import usernets

    from afos.cli import main
    from afos.study.runner import read_results

    out = tmp_path / "bench"
    assert main(["benchmark", "--objective", "usernets:score", "--activations", "relu,tanh", "--seeds", "2",
                 "--out", str(out)]) == 0
    records = read_results(out)[1]
    assert len(records) == 4
    for r in records:
        act = (lambda x: np.maximum(x, 0)) if r["activation"] == "relu" else np.tanh
        assert r["final"]["test_accuracy"] == pytest.approx(usernets.score(act, r["seed"], None)["test"], rel=1e-5)
