"""Evaluation spread over local devices and Ray workers gives the results of a local run, loses nothing."""

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from afos import config
from afos.cli import main
from afos.errors import DistributedError, RunError
from afos.fitness import cluster as distributed
from afos.fitness import plan, pools
from afos.run import driver
from afos.run.rundir import CONFIG, EVALUATIONS, PARETO, Run

pytestmark = pytest.mark.slow  # Ray instances and device pools: `python -m pytest -m "not slow"` leaves it out

ARGS = ["--population", "4", "--generations", "1", "--train-size", "128", "--val-size", "96", "--seed", "7"]
RAY = [sys.executable, "-m", "ray.scripts.scripts"]
# Ray >= 2.59 turns token authentication on for `ray start`; a driver given an explicit address needs the
# same mode and token. The test cluster has a token of its own (not the user's ~/.ray/auth_token).
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0"}


def _lines(run_dir: Path) -> list[dict]:
    """The run's lines in (generation, index) order, timings aside: Ray appends them as they return."""
    lines = [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in Run.open(run_dir).records()]
    return sorted(lines, key=lambda r: (r["generation"], r["index"]))


def _assert_same_results(run_dir: Path, reference: Path) -> None:
    lines = _lines(run_dir)
    keys = [(r["generation"], r["index"]) for r in lines]
    assert len(keys) == len(set(keys)), "duplicated evaluation lines"
    assert lines == _lines(reference)
    assert (run_dir / PARETO).read_text() == (reference / PARETO).read_text()
    assert Run.open(run_dir).checkpoint() == Run.open(reference).checkpoint()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same search, run locally with the exact sequential backend."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    assert main(["search", "--run-dir", str(run_dir), *ARGS, "--backend", "sequential"]) == 0
    return run_dir


def test_split_covers_every_index_once():
    assert pools.split(0, 3) == []
    assert pools.split(5, 2) == [[0, 1, 2], [3, 4]]
    assert pools.split(5, 8) == [[0], [1], [2], [3], [4]]
    assert pools.split(7, 2, size=3) == [[0, 1, 2], [3, 4, 5], [6]]


def test_auto_shards_over_several_accelerators_only(tiny_config):
    from afos.fitness.problem import FitnessProblem

    class Device:
        def __init__(self, platform):
            self.platform = platform

    problem = FitnessProblem(tiny_config.fitness)
    for devices, pool in [([Device("gpu")] * 2, "sharded"), ([Device("gpu")], "local"), ([Device("cpu")] * 4, "local")]:
        assert plan.make_plan(tiny_config.evaluator, problem, 112, devices).pool == pool


@pytest.mark.parametrize("settings, cluster, expected", [
    ({}, {"CPU": 2.0}, (2, 1.0, 0.0)),  # a CPU cluster: one worker per CPU
    ({}, {"CPU": 16.0, "GPU": 4.0}, (4, 1.0, 1.0)),  # one per GPU
    ({"worker_gpus": 0.5}, {"CPU": 16.0, "GPU": 2.0}, (4, 1.0, 0.5)),  # two per GPU
    ({"workers": 3, "worker_cpus": 2.0}, {"CPU": 8.0}, (3, 2.0, 0.0)),
])
def test_workers_follow_the_cluster_resources(settings, cluster, expected):
    assert distributed._worker_resources(config.EvaluatorSettings(**settings), cluster) == expected


def test_more_workers_than_the_cluster_holds_is_refused():
    with pytest.raises(DistributedError, match="3 Ray worker.s. with 1 GPU.s. each need 3 GPUs, the cluster has 2"):
        distributed._worker_resources(config.EvaluatorSettings(workers=3, worker_gpus=1.0), {"CPU": 8.0, "GPU": 2.0})


@pytest.mark.parametrize("evaluator, message", [
    ({"backend": "spark"}, "evaluator.backend: unknown backend 'spark'"),
    ({"worker_backend": "ray"}, "evaluator.worker_backend: unknown backend 'ray'"),
    ({"worker_gpus": -0.5}, "evaluator.worker_gpus must be at least 0"),
    ({"workers": -1}, "evaluator.workers and evaluator.group_size must be at least 0"),
])
def test_bad_evaluator_settings_are_named(evaluator, message):
    with pytest.raises(config.ConfigError, match=message):
        config.override(config.Config(), evaluator=evaluator)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_cluster_is_a_one_line_error(tmp_path, capsys):
    start = time.monotonic()
    code = main(["search", "--run-dir", str(tmp_path / "run"), *ARGS, "--ray-address", f"127.0.0.1:{_free_port()}"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err.startswith("afos search: error: cannot reach the Ray cluster at 127.0.0.1:")
    assert "Connection refused" in err
    assert time.monotonic() - start < 60
    assert not (tmp_path / "run").exists()  # nothing was created: the same command works once the cluster is up


def test_auto_pointing_at_a_dead_cluster_is_a_quick_one_line_error(monkeypatch):
    dead = f"127.0.0.1:{_free_port()}"
    monkeypatch.setenv("RAY_ADDRESS", dead)  # as a stale record of an earlier `ray start` would
    start = time.monotonic()
    with pytest.raises(DistributedError) as err:
        distributed.connect("auto")
    port = dead.rpartition(":")[2]  # Ray reads 127.0.0.1 as this machine's own address
    assert re.match(rf"cannot reach the Ray cluster at [0-9.]+:{port} \(what --ray-address auto found\) "
                    r"\(Connection refused\)", str(err.value))
    assert time.monotonic() - start < 30  # Ray alone retries for minutes


@pytest.mark.parametrize("args, message", [
    (["--ray-address", "somewhere"], "--ray-address 'somewhere': expected auto or HOST:PORT"),
    (["--backend", "batched", "--ray-address", "auto"], "--ray-address is for --backend ray, not --backend batched"),
])
def test_bad_ray_options_are_one_line_errors(tmp_path, capsys, args, message):
    assert main(["search", "--run-dir", str(tmp_path / "run"), *ARGS, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("afos search: error: ") and message in err


def test_missing_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(DistributedError, match=r"--backend ray needs Ray: pip install 'afos\[ray\]'"):
        distributed.connect("")


def test_a_refused_connection_is_one_line_with_the_token_hint(monkeypatch):
    class FakeRay:
        def is_initialized(self):
            return False

        def init(self, **options):
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.5:6379\n(a long Ray traceback)")

    monkeypatch.setattr(distributed, "_ray", FakeRay)
    monkeypatch.setattr(distributed, "_check_reachable", lambda *address: None)  # something answers there
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(DistributedError) as err:
        distributed.connect("10.0.0.5:6379")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("cannot connect to the Ray cluster at 10.0.0.5:6379: Failed to connect")
    assert "RAY_AUTH_MODE=token" in message


# --- several devices of one host (two CPU devices stand in for GPUs) ---------------------------------

SHARDED = textwrap.dedent("""
    import sys
    import jax
    from afos.config import FitnessSettings
    from afos.expr import analyse, parse
    from afos.fitness.evaluator import Sequential
    from afos.fitness.pools import Sharded
    from afos.fitness.problem import FitnessProblem

    assert len(jax.local_devices()) == 2
    problem = FitnessProblem(FitnessSettings(train_size=128, val_size=96))
    candidates = [analyse(parse(t)) for t in ["tanh(x)", "x*sigmoid(x)", "max(x, 0)", "sin(x) + x", "x*erf(x)"]]
    seen = {}
    original = Sequential.evaluate
    def spy(self, group, seeds, epochs=None):  # where each group really runs
        for j, fit in original(self, group, seeds, epochs):
            seen[group[j].text] = str(jax.numpy.zeros(()).devices())
            yield j, fit
    Sequential.evaluate = spy
    pool = Sharded(lambda: Sequential(problem), jax.local_devices())
    sharded = dict(pool.evaluate(candidates, [0, 1]))
    pool.close()
    Sequential.evaluate = original
    local = dict(Sequential(problem).evaluate(candidates, [0, 1]))
    assert sorted(sharded) == list(range(5))
    for i in range(5):
        assert sharded[i].seed_accuracies == local[i].seed_accuracies, (i, sharded[i], local[i])
    assert len(set(seen.values())) == 2, seen
    print("ok", sorted(set(seen.values())))
""")


def test_device_pool_spreads_the_population_over_devices_with_unchanged_results():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok")


def test_sharded_search_equals_the_local_search(tmp_path, reference):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "afos", "search", "--run-dir", str(run_dir), *ARGS,
                           "--backend", "sharded", "--worker-backend", "sequential"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_results(run_dir, reference)


# --- a real local Ray cluster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray head node with 2 CPUs on this machine, reached at 127.0.0.1."""
    port = _free_port()
    log = tmp_path_factory.mktemp("ray") / "head.log"
    with log.open("w") as out:
        head = subprocess.Popen([*RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
                                 "--include-dashboard=false", "--disable-usage-stats", "--block"],
                                env=RAY_ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert head.poll() is None, log.read_text()[-3000:]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    time.sleep(2)  # the GCS answers a moment before the raylet has registered
    yield address
    head.terminate()  # `ray start --block` stops the processes it started (seconds; the whole group: 30 s)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)  # whatever is left of the session it led


def _search(run_dir: Path, address: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "afos", "search", "--run-dir", str(run_dir), *ARGS,
                             "--ray-address", address, "--worker-backend", "sequential", *extra],
                            env=RAY_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _worker_pids(state: str = "") -> list[int]:
    """Processes whose title Ray set to the afos actor (``.evaluate`` while it runs a group)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if title.startswith(f"ray::FitnessWorker{state}"):
            pids.append(int(proc.name))
    return pids


def test_ray_search_equals_the_local_search(tmp_path, cluster, reference):
    run_dir = tmp_path / "run"
    proc = _search(run_dir, cluster, "--workers", "2")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    _assert_same_results(run_dir, reference)
    stored = config.load(run_dir / CONFIG).evaluator
    assert (stored.backend, stored.ray_address, stored.workers) == ("ray", cluster, 2)


def test_backend_ray_without_an_address_runs_on_a_local_instance(tmp_path, reference):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-m", "afos", "search", "--run-dir", str(run_dir), *ARGS,
                           "--backend", "ray", "--worker-backend", "sequential"],
                          env=env | {"RAY_USAGE_STATS_ENABLED": "0"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_results(run_dir, reference)


def test_a_worker_killed_mid_task_loses_and_duplicates_nothing(tmp_path, cluster, reference):
    run_dir = tmp_path / "run"
    cfg = tmp_path / "afos.toml"
    cfg.write_text("[evaluator]\ngroup_size = 1\n")  # many short tasks: the kill lands inside one
    proc = _search(run_dir, cluster, "--config", str(cfg))
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        busy = _worker_pids(".evaluate")
        if busy and (run_dir / EVALUATIONS).exists():  # past the first results: mid-search
            os.kill(busy[0], signal.SIGKILL)
            killed = busy[0]
        time.sleep(0.05)
    _, err = proc.communicate(timeout=600)
    assert killed is not None, "no busy worker was seen"
    assert proc.returncode == 0, err[-3000:]
    _assert_same_results(run_dir, reference)
    assert killed not in _worker_pids()


def test_a_killed_driver_resumes_on_the_cluster(tmp_path, cluster, reference):
    run_dir = tmp_path / "run"
    proc = _search(run_dir, cluster)
    log = run_dir / EVALUATIONS
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if log.exists() and log.read_text().count("\n") >= 6:
            break
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    resumed = subprocess.run([sys.executable, "-m", "afos", "resume", str(run_dir), "--ray-address", cluster],
                             env=RAY_ENV, capture_output=True, text=True, timeout=600)  # a run's cluster: consented
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_results(run_dir, reference)


def test_resume_may_move_a_run_but_not_change_its_results(tmp_path, reference):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    stored = config.load(run_dir / CONFIG)
    moved = config.override(stored, evaluator={"ray_address": "10.0.0.5:6379", "workers": 8, "group_size": 2})
    state = driver.resume(run_dir, config=moved)  # the run is finished: nothing to place, nothing refused
    assert state.generation == stored.search.generations + 1
    changed = config.override(stored, evaluator={"worker_backend": "batched"})
    with pytest.raises(RunError, match="evaluator.worker_backend: 'auto' -> 'batched'"):
        driver.resume(run_dir, config=changed)


def test_a_users_own_model_reaches_the_ray_workers_through_the_runtime_env(tmp_path, cluster):
    from conftest import USER_MODULE

    folder = tmp_path / "user"  # on the driver's path only: the cluster's workers were started without it
    folder.mkdir()
    (folder / "raynets.py").write_text(USER_MODULE)
    run_dir = tmp_path / "run"
    env = RAY_ENV | {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "afos", "search", "--run-dir", str(run_dir), "--model",
                           "raynets:TinyNet", "--dataset", "raynets:blobs", "--population", "2", "--generations", "0",
                           "--ray-address", cluster, "--worker-backend", "sequential"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = Run.open(run_dir).records()
    assert [r.status for r in lines if r.generation == 0] == ["ok", "ok"], [r.reason for r in lines]
