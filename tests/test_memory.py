"""The fitness memory shared across runs (afos.run.memory, pools.Remembering): reuse under the same protocol
only, no lost line under two writers, exact resumes, one-line errors. Fake screen and training: no JAX training."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import NamedTuple

import pytest
from fakes import FakeTraining, fake_describe

from afos import config, types
from afos.cli import main
from afos.config import FitnessSettings
from afos.errors import ConfigError, RunError
from afos.run import driver, rundir
from afos.run import memory as memory_lib
from afos.run.memory import FitnessMemory, protocol_key, run_protocol
from afos.run.rundir import Run

FIXTURES = Path(__file__).parent / "fixtures"
BASE, _ = config.load_stored(FIXTURES / "fake_v1" / rundir.CONFIG)  # population 6, 3 generations, 2 + 2 seeds


class Counting(FakeTraining):
    """tests/fakes.py's training (accuracy from the text and the seed, a few failures), counting requests."""

    def __init__(self):
        self.calls: list[tuple[tuple[str, ...], tuple[int, ...], int | None]] = []

    def evaluate(self, candidates, seeds, epochs=None):
        self.calls.append((tuple(c.text for c in candidates), tuple(seeds), epochs))
        return super().evaluate(candidates, seeds, epochs)

    def individuals(self, cfg: config.Config) -> list[str]:
        """The functions trained as new individuals: on the search's seeds (anchors train on all four) and for
        the search's own epochs (promotions train longer)."""
        seeds = tuple(config.search_seeds(cfg.fitness, cfg.protocol.fitness_seeds))
        return [t for texts, s, e in self.calls if s == seeds and e in (None, cfg.fitness.epochs) for t in texts]


def _with_memory(cfg: config.Config, memory: Path | str, **sections) -> config.Config:
    return config.override(cfg, evaluator={"memory": str(memory)}, **sections)


def _search(cfg: config.Config, run_dir: Path) -> Counting:
    training = Counting()
    driver.run(cfg, run_dir, evaluator=training, describe=fake_describe)
    return training


def _lines(run_dir: Path) -> list:
    return Run.open(run_dir).records()


def _measured(line) -> tuple:
    return line.val_accuracy, line.val_loss, line.val_accuracy_std, line.seed_accuracies, line.reason


# --- reuse ----------------------------------------------------------------------------------------------


class Filled(NamedTuple):
    """The fixture's search (search seed 11) run with a fresh memory: its directory, training and memory."""

    run: Path
    training: Counting
    memory: Path

    def copy(self, to: Path) -> Path:
        """A copy of the memory as the run left it (closed: no journal beside it)."""
        return Path(shutil.copy(self.memory, to))


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Filled:
    where = tmp_path_factory.mktemp("filled")
    training = _search(_with_memory(BASE, where / "memory.db"), where / "run")
    return Filled(where / "run", training, where / "memory.db")


def test_a_second_run_of_the_same_protocol_trains_nothing_the_first_trained(tmp_path, filled):
    cfg = _with_memory(BASE, filled.copy(tmp_path / "memory.db"))
    second = _search(cfg, tmp_path / "b")
    assert len(filled.training.individuals(cfg)) > 5 and second.individuals(cfg) == []
    a, b = _lines(filled.run), _lines(tmp_path / "b")
    assert [r.identity for r in a] == [r.identity for r in b]
    for x, y in zip(a, b, strict=True):
        assert _measured(x) == _measured(y) and x.expr == y.expr
        if x.status in (types.OK, types.FAILED):  # every trained individual came from the memory
            assert (y.status, y.seconds) == (types.CACHED, 0.0) and y.seeds == x.seeds
        else:  # anchors, re-scorings, reuses within the run: as without a memory
            assert (y.status, y.seconds) == (x.status, x.seconds)
    assert (filled.run / rundir.PARETO).read_text() == (tmp_path / "b" / rundir.PARETO).read_text()
    assert Run.open(tmp_path / "b").ranked() == Run.open(filled.run).ranked()
    trained = {r.fingerprint for r in a if r.generation >= 0 and r.status in (types.OK, types.FAILED)}
    memory = FitnessMemory(tmp_path / "memory.db")
    seeds = config.search_seeds(cfg.fitness, cfg.protocol.fitness_seeds)
    entries = memory.entries(protocol_key(cfg.fitness, seeds))
    assert {e.fingerprint for e in entries} == trained and len(memory) == len(trained)  # no anchor, no re-scoring
    assert all(e.fitness.status in (types.OK, types.FAILED) for e in entries)
    memory.close()


def test_with_a_new_memory_a_run_is_what_it_always_was(filled):
    for name in (rundir.EVALUATIONS, rundir.PARETO, rundir.CHECKPOINT):
        assert (filled.run / name).read_text() == (FIXTURES / "fake_v1" / name).read_text(), name


CHANGES = {  # a setting that changes a fitness, in the section that holds it
    "dataset": {"fitness": {"dataset": "fashion_mnist"}},
    "data split and seeds": {"fitness": {"seed": 12}},
    "model": {"fitness": {"model": "mlp"}},
    "topology": {"fitness": {"model": "mlp", "topology": (8,)}},
    "epochs": {"fitness": {"epochs": 2}},
    "batch_size": {"fitness": {"batch_size": 16}},
    "learning_rate": {"fitness": {"learning_rate": 0.01}},
    "val_fraction": {"fitness": {"val_fraction": 0.25}},
    "train_size": {"fitness": {"train_size": 48}},
    "val_size": {"fitness": {"val_size": 16}},
    "gain": {"fitness": {"gain": "unit"}},
    "fitness seeds": {"protocol": {"fitness_seeds": 3, "race_seeds": 4}},
}


def _from_memory(run_dir: Path) -> list:
    """The lines that took a fitness from the memory: cached, of a function not scored earlier in the run."""
    seen, out = set(), []
    for r in _lines(run_dir):
        if r.status == types.CACHED and r.fingerprint not in seen:
            out.append(r)
        seen.add(r.fingerprint)
    return out


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_the_memory_is_not_used_when_a_fitness_setting_differs(tmp_path, filled, change):
    changed = config.override(BASE, search={"generations": 1}, **change)
    training = _search(_with_memory(changed, filled.copy(tmp_path / "memory.db")), tmp_path / "run")
    assert _from_memory(tmp_path / "run") == []
    assert set(training.individuals(changed)) >= {"x*sigmoid(x)", "tanh(x)"}  # the warm start, trained again
    again = _search(_with_memory(changed, tmp_path / "memory.db"), tmp_path / "again")  # its own protocol: reused
    assert again.individuals(changed) == [] and len(_from_memory(tmp_path / "again")) > 3


def test_where_the_data_is_found_and_longer_rungs_do_not_change_the_protocol(tmp_path, filled):
    memory = filled.copy(tmp_path / "memory.db")
    moved = _search(_with_memory(config.override(BASE, fitness={"data_dir": str(tmp_path)}), memory), tmp_path / "b")
    assert moved.individuals(BASE) == []
    halving = config.override(BASE, protocol={"rungs": (3,)})  # rung 0 trains fitness.epochs, as the first run did
    training = _search(_with_memory(halving, memory), tmp_path / "second")
    trained = set(training.individuals(halving))
    assert trained and not trained & set(filled.training.individuals(BASE))
    assert any(e == 3 for _, _, e in training.calls)  # promotions are trained, never taken from the memory
    assert _from_memory(tmp_path / "second")


def test_every_fitness_setting_but_where_the_data_is_enters_the_key():
    base = FitnessSettings()
    keys = {protocol_key(base, [0]), protocol_key(base, [1]), protocol_key(base, [0, 1]), protocol_key(base, [0], 2)}
    assert len(keys) == 4 and protocol_key(base, [0], base.epochs) == protocol_key(base, [0])
    other = {str: "other", int: 7, float: 0.5, tuple: (3,), dict: {"target": "x*sin(x)"}}
    for field in dataclasses.fields(FitnessSettings):
        changed = dataclasses.replace(base, **{field.name: other[type(getattr(base, field.name))]})
        assert (protocol_key(changed, [0]) == protocol_key(base, [0])) == (field.name == "data_dir"), field.name


def test_memories_written_before_objective_options_keep_their_keys():
    """The keys the version before objective options computed (a memory written then is still read)."""
    assert protocol_key(FitnessSettings(), [0]) == "0c8e9d7990a631e9dc49f93bd7e8ffab0291f18ef7094c439b530f0ab689b074"
    charlm = FitnessSettings(objective="charlm", direction="min")
    assert protocol_key(charlm, [0, 1], 2) == "f3285bd3bf8ded976b71bf3438353251b335f4bfda7d12929371e1c943479975"
    planted = dataclasses.replace(charlm, objective="planted")
    options = [dataclasses.replace(planted, objective_options={"target": t}) for t in ("x*sin(x)", "sin(x)")]
    assert len({protocol_key(s, [0]) for s in (planted, *options)}) == 3


# --- two writers ----------------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    from afos.run.memory import FitnessMemory
    from afos.types import Fitness
    memory = FitnessMemory(sys.argv[1], run=sys.argv[2])
    for i in range(int(sys.argv[3])):
        fp = f"{sys.argv[2]}-{i}" if i % 2 else f"shared-{i}"  # half the keys both write
        memory.put("protocol", fp, f"x+{i}", None, Fitness("ok", i / 1000, 1.0, None, 0.1))
    memory.close()
""")


def test_two_processes_sharing_a_memory_lose_no_line(tmp_path):
    path, n = tmp_path / "memory.db", 300
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(n)], stderr=subprocess.PIPE,
                              text=True) for name in ("one", "two")]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
        assert p.stderr.read() == ""  # no warning: no write gave up
    memory = FitnessMemory(path)
    entries = {e.fingerprint: e for e in memory.entries("protocol")}
    want = {f"{name}-{i}" for name in ("one", "two") for i in range(1, n, 2)} | {f"shared-{i}" for i in range(0, n, 2)}
    assert set(entries) == want and len(memory) == len(want)
    assert all(entries[f"shared-{i}"].fitness.val_accuracy == i / 1000 for i in range(0, n, 2))
    memory.close()


def test_two_concurrent_runs_sharing_a_memory_lose_no_line(tmp_path):
    """Two searches at once (two threads, each run with its own connection), different search seeds, one
    memory: every function either trained is in it, once, with the fitness its line records."""
    memory = tmp_path / "memory.db"
    errors = []

    def one_run(seed: int) -> None:
        cfg = _with_memory(BASE, memory, search={"seed": seed, "generations": 4})
        try:
            _search(cfg, tmp_path / f"run{seed}")
        except BaseException as err:  # noqa: BLE001 - reported by the test's thread
            errors.append(err)

    threads = [threading.Thread(target=one_run, args=(seed,)) for seed in (11, 12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = FitnessMemory(memory)
    seeds = config.search_seeds(BASE.fitness, BASE.protocol.fitness_seeds)
    entries = {e.fingerprint: e.fitness for e in store.entries(protocol_key(BASE.fitness, seeds))}
    store.close()
    trained = [r for seed in (11, 12) for r in _lines(tmp_path / f"run{seed}")
               if r.generation >= 0 and r.status in (types.OK, types.FAILED)]
    assert len(trained) > 10 and {r.fingerprint for r in trained} == set(entries)
    for r in trained:
        fit = entries[r.fingerprint]
        assert _measured(r) == (fit.val_accuracy, fit.val_loss, fit.val_accuracy_std, fit.seed_accuracies, fit.reason)


# --- resume ---------------------------------------------------------------------------------------------


class StopError(Exception):
    pass


class StopAfter(driver.SilentReporter):
    """Raises after the ``n``-th line written: what a kill leaves (the line on disk, the memory not told)."""

    def __init__(self, n: int):
        self.n = n

    def evaluated(self, line) -> None:
        self.n -= 1
        if self.n == 0:
            raise StopError

    def message(self, text: str) -> None:
        if text.startswith("anchor"):
            self.evaluated(None)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, filled) -> Path:
    """A search of seed 12 with a memory holding seed 11's functions: some lines cached, some trained."""
    where = tmp_path_factory.mktemp("uninterrupted")
    _search(_with_memory(SEED_12, filled.copy(where / "memory.db")), where / "run")
    lines = _lines(where / "run")
    assert _from_memory(where / "run") and any(r.status == types.OK for r in lines if r.generation >= 0)
    return where / "run"


SEED_12 = config.override(BASE, search={"seed": 12})


@pytest.mark.parametrize("stop", [2, 9, 16, 24])
def test_a_run_stopped_anywhere_resumes_with_the_memory_to_the_uninterrupted_run(tmp_path, filled, uninterrupted,
                                                                                   stop):
    cfg = _with_memory(SEED_12, filled.copy(tmp_path / "memory.db"))
    with pytest.raises(StopError):
        driver.run(cfg, tmp_path / "run", StopAfter(stop), evaluator=Counting(), describe=fake_describe)
    assert 0 < len(_lines(tmp_path / "run")) < len(_lines(uninterrupted))
    driver.resume(tmp_path / "run", evaluator=Counting(), describe=fake_describe)
    for name in (rundir.EVALUATIONS, rundir.PARETO, rundir.CHECKPOINT):
        assert (tmp_path / "run" / name).read_text() == (uninterrupted / name).read_text(), name


def test_a_generation_the_memory_answered_resumes_as_recorded_without_the_memory(tmp_path, filled, uninterrupted):
    """The log keeps what the memory gave: a resume without it (or with another) does not train those again,
    and its lines of that generation are the uninterrupted run's."""
    lines = _lines(uninterrupted)
    g = 1
    last = max(k for k, r in enumerate(lines) if r in _from_memory(uninterrupted) and r.generation == g)
    with pytest.raises(StopError):
        driver.run(_with_memory(SEED_12, filled.copy(tmp_path / "memory.db")), tmp_path / "run", StopAfter(last + 1),
                   evaluator=Counting(), describe=fake_describe)
    training = Counting()
    driver.resume(tmp_path / "run", generations=g, config=_with_memory(SEED_12, ""), evaluator=training,
                  describe=fake_describe)
    through_g = [r for r in lines if r.generation <= g]
    assert _lines(tmp_path / "run") == through_g
    cached = {r.expr for r in _from_memory(uninterrupted) if r.generation == g}
    assert cached and not cached & set(training.individuals(SEED_12))


def test_a_resume_may_add_change_or_drop_the_memory_and_old_runs_have_none(tmp_path):
    stored, _ = config.load_stored(FIXTURES / "fake_v1" / rundir.CONFIG)
    assert stored.evaluator.memory == ""  # written before the setting existed: no memory, as it was
    assert config.differences(stored, _with_memory(stored, tmp_path / "m.db")) == []
    with pytest.raises(RunError, match="fitness.epochs"):
        driver.resume(shutil.copytree(FIXTURES / "fake_v1", tmp_path / "run"),
                      config=_with_memory(config.override(stored, fitness={"epochs": 2}), tmp_path / "m.db"))


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content, fragment", [
    (b"these are not the bytes of a database" * 40, "is not an afos fitness memory (file is not a database)"),
    (None, "is not an afos fitness memory (an SQLite file with tables notes)"),
])
def test_a_file_that_is_not_a_memory_is_a_one_line_error_naming_it_and_is_left_as_it_was(tmp_path, content,
                                                                                           fragment):
    path = tmp_path / "precious.db"
    if content is None:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (text TEXT)")
        db.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as err:
        FitnessMemory(path)
    assert str(err.value) == f"evaluator.memory: {path} {fragment}"
    assert path.read_bytes() == before and not Path(f"{path}-wal").exists()


def _damaged_memory(path: Path, cfg: config.Config) -> Path:
    """A memory of 400 functions under the protocol of ``cfg``'s run whose middle third of pages is garbage: its
    first page (the schema) reads, its rows do not."""
    FitnessMemory(path).close()
    fit = memory_lib._to_json(types.Fitness(types.OK, 0.5, 1.0, None, 1.0, 0.0, (0.5, 0.5)))
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany("INSERT INTO fitness VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(run_protocol(cfg), f"fp{i:04d}", f"x + {i}", None, fit, "elsewhere", i) for i in range(400)])
    data, page = bytearray(path.read_bytes()), 4096
    pages = len(data) // page
    start, stop = pages // 3 * page, 2 * pages // 3 * page
    data[start:stop] = random.Random(0).randbytes(stop - start)
    path.write_bytes(data)
    return path


def test_a_damaged_memory_is_refused_before_the_run_directory_is_made(tmp_path):
    path = _damaged_memory(tmp_path / "memory.db", BASE)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as err:
        driver.run(_with_memory(BASE, path), tmp_path / "run", evaluator=FakeTraining(), describe=fake_describe)
    assert str(err.value).startswith(f"evaluator.memory: {path} is damaged (")
    assert str(err.value).endswith('); replace it, or run without it: --memory ""') and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists() and path.read_bytes() == before
    run_dir = shutil.copytree(FIXTURES / "fake_v1", tmp_path / "old")  # a resume: refused before it locks the run
    files = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(ConfigError, match="is damaged"):
        driver.resume(run_dir, 4, _with_memory(BASE, path), evaluator=FakeTraining(), describe=fake_describe)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == files


def test_a_memory_that_cannot_be_written_says_so(tmp_path, monkeypatch):
    """A read-only file (opened read-only, as SQLite opens a file it may not write: root may write any file)."""
    path = tmp_path / "memory.db"
    FitnessMemory(path).close()
    connect = sqlite3.connect
    monkeypatch.setattr(memory_lib.sqlite3, "connect",
                        lambda where, **kw: connect(f"file:{where}?mode=ro", uri=True, **kw))
    with pytest.raises(ConfigError) as err:
        FitnessMemory(path)
    assert str(err.value) == (f"evaluator.memory: cannot write {path} (attempt to write a readonly database); "
                              'make it writable, or run without it: --memory ""')


@pytest.mark.parametrize("damage, fragment", [
    (lambda path: path.write_text("hello\n" * 200), "is not an afos fitness memory (file is not a database)"),
    (lambda path: _damaged_memory(path, config.Config()), "is damaged ("),
])
def test_the_command_line_names_a_bad_memory_before_creating_the_run(tmp_path, capsys, monkeypatch, damage,
                                                                     fragment):
    monkeypatch.setenv("AFOS_COMPILATION_CACHE", "0")
    bad = tmp_path / "bad.db"
    damage(bad)
    code = main(["search", "--memory", str(bad), "--run-dir", str(tmp_path / "run"), "--population", "2",
                 "--generations", "0", "--train-size", "64", "--val-size", "32"])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the line that describes the search
    assert code == 2 and err.startswith(f"afos search: error: evaluator.memory: {bad} {fragment}")
    assert not (tmp_path / "run").exists()
