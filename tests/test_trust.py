"""A run directory from someone else: no command imports or runs what it names without the user's consent
(--trust-run, trust_run=True, or the names given again), and never from the directory `python -m` puts on the
path (issue 21, item 2)."""

import contextlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import afos
from afos.errors import RunError
from afos.run import start
from afos.run.rundir import SOURCES, Run

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = textwrap.dedent('''
    import pathlib

    pathlib.Path(__file__).with_name("MARKER").write_text("imported")


    def load():
        raise SystemExit(7)
''')
COMMANDS = {
    "resume": ["resume", "run"],
    "validate": ["validate", "run", "--top", "1", "--seeds", "1", "--epochs", "1"],
    "show": ["show", "run"],
    "check": ["check", "run"],
    "export": ["export", "run", "--format", "numpy"],
    "report": ["report", "run"],
}


def _afos(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m afos ARGS`` run from ``cwd``: Python puts that directory first on its path."""
    return subprocess.run([sys.executable, "-m", "afos", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _errors(out: subprocess.CompletedProcess) -> list[str]:
    """The error lines of a command's standard error (besides them it says only which run it opens)."""
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert all(": error: " in line or line.startswith("afos resume: run directory ") for line in lines), out.stderr
    return [line for line in lines if ": error: " in line]


def _run_naming(folder: Path, dataset: str, sources: dict) -> Path:
    """A finished run (the format 1 fixture) whose config.toml names ``dataset`` and whose sources.json
    names ``sources``, beside a module ``hostile`` that leaves a marker when imported."""
    run_dir = shutil.copytree(FIXTURES / "run_v1", folder / "run")
    config = run_dir / "config.toml"
    config.write_text(config.read_text().replace('dataset = "digits"', f'dataset = "{dataset}"', 1))
    (run_dir / SOURCES).write_text(json.dumps(sources))
    (folder / "hostile.py").write_text(HOSTILE)
    return run_dir


@pytest.fixture
def hostile(tmp_path):
    _run_naming(tmp_path, "hostile:load", {"dataset": {"name": "hostile:load", "reference": "hostile:load"},
                                           "model": {"name": "hostile:load", "reference": "hostile:load"}})
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_imports_what_a_hostile_run_names_without_consent(hostile, command):
    out = _afos(hostile, *COMMANDS[command])
    assert not (hostile / "MARKER").exists(), out.stderr
    if command in ("resume", "validate"):
        assert out.returncode == 2
        (line,) = _errors(out)
        assert line.startswith(f"afos {command}: error: run would import code it names: dataset 'hostile:load' "
                               "(module hostile, only in the current directory, which afos does not search")
        assert line.endswith("if you trust whoever wrote the run, put the current directory on PYTHONPATH "
                             "(PYTHONPATH=. afos ...) and give --trust-run (trust_run=True in Python) or the names "
                             "again (--trust hostile:load)")
    else:
        assert out.returncode in (0, 1), out.stderr  # check says 1 for a run it finds unhealthy


def test_trust_does_not_search_the_current_directory_python_m_put_on_the_path(hostile):
    out = _afos(hostile, "resume", "run", "--trust-run")
    assert not (hostile / "MARKER").exists()
    assert out.returncode == 2
    (line,) = _errors(out)
    assert "cannot import module 'hostile'" in line and "module hostile lies in the current directory" in line


def test_a_name_given_again_is_consent_and_searched_where_the_user_is(hostile):
    out = _afos(hostile, "resume", "run", "--trust", "hostile:load")
    assert out.returncode == 0, out.stderr  # the run is finished: nothing is trained, so load() is never called
    assert (hostile / "MARKER").exists()
    assert "importing the run's dataset 'hostile:load' (module hostile" in out.stdout + out.stderr
    with pytest.raises(RunError, match=r"^\S+ was started with dataset 'hostile:load', not 'digits'$"):
        start.consent(Run.open(hostile / "run"), given={"dataset": "digits"})


def test_a_name_to_trust_that_the_run_does_not_use_is_refused(hostile, capsys):
    from afos.cli import main

    assert main(["validate", str(hostile / "run"), "--trust", "hostile:lod"]) == 2
    assert capsys.readouterr().err.strip() == (f"afos validate: error: --trust hostile:lod: {hostile / 'run'} trains "
                                               "with no such name (its model 'cnn-small', dataset 'hostile:load')")
    assert not (hostile / "MARKER").exists()


def test_a_standard_library_function_is_never_imported_from_a_run(tmp_path):
    _run_naming(tmp_path, "os:abort", {})
    with pytest.raises(RunError, match=r"would import code it names: dataset 'os:abort' \(module os, "):
        start.consent(Run.open(tmp_path / "run"))
    trusted = _afos(tmp_path, "resume", "run", "--trust-run")
    assert trusted.returncode == 2, trusted.stderr  # not -6, SIGABRT
    assert _errors(trusted) == ["afos resume: error: run cannot go on here: dataset 'os:abort' names 'os' of "
                                "Python's standard library, not a loader of a package: afos does not import it "
                                "from a run"]


def test_sources_json_is_a_record_and_imports_nothing(tmp_path):
    """A run of afos's own model and data whose sources.json names code: nothing is imported, it is said."""
    from afos.run import driver

    run_dir = _run_naming(tmp_path, "digits", {"dataset": {"name": "hostile:load", "reference": "hostile:load"}})
    sys.path.insert(0, str(tmp_path))  # where a search of sys.path would find it
    try:
        said = []
        Run.open(run_dir).check_sources(said.append)
        assert said == ["sources.json records dataset 'hostile:load', which config.toml does not use: ignored"]
        driver.resume(run_dir)  # the run is finished: it opens, checks and says so
    finally:
        sys.path.remove(str(tmp_path))
    assert "hostile" not in sys.modules and not (tmp_path / "MARKER").exists()


@pytest.mark.slow
def test_a_run_of_the_users_objective_resumes_with_consent_only(tmp_path, user_module):
    run = afos.search(None, tmp_path / "run", objective="usernets:score", population=2, generations=0)
    with pytest.raises(RunError, match=r"would import code it names: objective 'usernets:score' \(module usernets, "
                                       r".*trust_run=True"):
        afos.resume(run.path, generations=1)
    assert max(r.generation for r in run.records()) == 0
    trusted = _afos(tmp_path, "resume", "run", "--generations", "1", "--trust-run")
    assert trusted.returncode == 0, trusted.stderr
    assert "importing the run's objective 'usernets:score'" in trusted.stderr + trusted.stdout
    assert max(r.generation for r in Run.open(run.path).records()) == 1
    assert max(r.generation for r in afos.resume(run.path, generations=2, trust_run=True).records()) == 2
    import usernets

    assert max(r.generation for r in afos.resume(run.path, generations=3, objective=usernets.score).records()) == 3


# --- the places a run names: a Ray cluster to join, a memory to write (issue 21, item 2) ---------------------

HOSTILE_CLUSTER = "127.0.0.1:9"


class JoinedError(Exception):
    """Raised by the fake cluster connection: the resume got as far as joining a cluster."""


@pytest.fixture
def connections(monkeypatch):
    """Every address a resume connects Ray to (the fake connection stops the resume there); Ray itself is a
    fake whose ``init`` is recorded too, so no real Ray starts and nothing is contacted."""
    from types import SimpleNamespace

    from afos.fitness import cluster

    addresses = []

    def connect(address, py_modules=()):
        addresses.append(address)
        raise JoinedError(address)

    fake_ray = SimpleNamespace(is_initialized=lambda: False, init=lambda **kw: addresses.append(("init", kw)))
    monkeypatch.setattr(cluster, "connect", connect)
    monkeypatch.setattr(cluster, "_ray", lambda: fake_ray)
    return addresses


def _placed(tmp_path: Path, **evaluator: str) -> Path:
    """The finished fake run (3 generations) whose config.toml places its work as ``evaluator`` says."""
    run_dir = shutil.copytree(FIXTURES / "fake_v1", tmp_path / "run")
    config = run_dir / "config.toml"
    lines = [f"{key} = {json.dumps(value)}" for key, value in evaluator.items()]
    text = config.read_text().replace('backend = "sequential"\n', "").replace('ray_address = ""\n', "")
    lines += [f"{key} = {json.dumps(value)}" for key, value in (("backend", "sequential"), ("ray_address", ""))
              if key not in evaluator]
    config.write_text(text.replace("[evaluator]\n", "[evaluator]\n" + "\n".join(lines) + "\n"))
    return run_dir


def test_a_ray_cluster_a_run_names_is_joined_only_with_consent(tmp_path, connections, capsys):
    from afos.cli import main
    from afos.run import driver

    run_dir = _placed(tmp_path, backend="ray", ray_address=HOSTILE_CLUSTER)
    with pytest.raises(RunError) as err:
        driver.resume(run_dir, generations=4)
    assert str(err.value) == (f"{run_dir} would use the Ray cluster at {HOSTILE_CLUSTER}: its results come back "
                              "as pickles, which can run code here; if you trust whoever wrote the run, give "
                              "--trust-run (trust_run=True in Python) or the same settings again (--ray-address "
                              f'{HOSTILE_CLUSTER}); --ray-address "" runs it on a local Ray instance instead')
    assert main(["resume", str(run_dir), "--generations", "4"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"afos resume: error: {err.value}"
    with pytest.raises(RunError, match="would use the Ray cluster"):
        afos.resume(run_dir, generations=4, workers=2)  # another placement is no consent to the address
    assert connections == []  # never contacted, Ray never initialised
    for consented in (lambda: driver.resume(run_dir, generations=4, trust_run=True),
                      lambda: afos.resume(run_dir, generations=4, ray_address=HOSTILE_CLUSTER),
                      lambda: main(["resume", str(run_dir), "--generations", "4", "--trust-run"]),
                      lambda: main(["resume", str(run_dir), "--generations", "4", "--ray-address", HOSTILE_CLUSTER])):
        with contextlib.suppress(JoinedError):
            consented()
    assert connections == [HOSTILE_CLUSTER] * 4
    said = capsys.readouterr()
    assert f"using the run's Ray cluster at {HOSTILE_CLUSTER}: its results come back" in said.out + said.err
    connections.clear()
    with contextlib.suppress(JoinedError):  # run here instead: a local instance, no consent needed
        main(["resume", str(run_dir), "--generations", "4", "--ray-address", ""])
    with contextlib.suppress(JoinedError):
        afos.resume(run_dir, generations=4, ray_address="")
    assert connections == ["", ""]
    with pytest.raises(afos.ConfigError, match="population cannot change on a resume"):
        afos.resume(run_dir, population=3)
    assert Run.open(run_dir).records() == Run.open(FIXTURES / "fake_v1").records()


def test_a_local_ray_instance_or_an_evaluator_given_needs_no_consent(tmp_path, connections):
    from fakes import FakeTraining, fake_describe

    from afos.run import driver

    local = _placed(tmp_path, backend="ray")  # ray_address '': a local instance
    with contextlib.suppress(JoinedError):
        driver.resume(local, generations=4)
    assert connections == [""]
    hostile = _placed(tmp_path / "other", backend="ray", ray_address=HOSTILE_CLUSTER)
    driver.resume(hostile, generations=4, evaluator=FakeTraining(), describe=fake_describe)  # Ray is not used
    assert connections == [""] and max(r.generation for r in Run.open(hostile).records()) == 4


@pytest.mark.parametrize("what", ["missing", "empty", "text", "sqlite"])
def test_a_memory_path_a_run_names_is_written_only_if_it_is_a_memory_or_with_consent(tmp_path, what):
    """A memory path from the run's config.toml that is not an afos fitness memory is neither created nor
    touched without consent; one that is an afos memory is used as it was (test below)."""
    import sqlite3

    from fakes import FakeTraining, fake_describe

    from afos.run import driver

    path = tmp_path / "precious"
    if what == "empty":
        path.write_bytes(b"")
    elif what == "text":
        path.write_text("not a database\n" * 100)
    elif what == "sqlite":
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE notes (text TEXT)")
    before = path.read_bytes() if path.exists() else None
    run_dir = _placed(tmp_path, memory=str(path))
    with pytest.raises(RunError) as err:
        driver.resume(run_dir, generations=4, evaluator=FakeTraining(), describe=fake_describe)
    assert str(err.value) == (f"{run_dir} would use the memory {path}, not yet an afos fitness memory, which it "
                              "would create or write into; if you trust whoever wrote the run, give --trust-run "
                              f"(trust_run=True in Python) or the same settings again (--memory {path}); "
                              '--memory "" runs it without a memory')
    assert (path.read_bytes() if path.exists() else None) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", *(["precious"] if before is not None else [])])
    assert Run.open(run_dir).records() == Run.open(FIXTURES / "fake_v1").records()
    driver.resume(run_dir, generations=4, evaluator=FakeTraining(), describe=fake_describe,
                  config=afos.config.override(Run.open(run_dir).config, evaluator={"memory": ""}))
    assert max(r.generation for r in Run.open(run_dir).records()) == 4  # run without it: no consent needed


def test_a_memory_a_run_names_that_is_an_afos_memory_is_used_and_consent_creates_one(tmp_path):
    from fakes import FakeTraining, fake_describe

    from afos.run import driver
    from afos.run.memory import FitnessMemory, is_memory, run_protocol

    mine = tmp_path / "mine.db"
    FitnessMemory(mine).close()
    assert is_memory(mine) and sorted(p.name for p in tmp_path.iterdir()) == ["mine.db"]
    run_dir = _placed(tmp_path, memory=str(mine))
    driver.resume(run_dir, generations=4, evaluator=FakeTraining(), describe=fake_describe)
    assert len(FitnessMemory(mine).entries(run_protocol(Run.open(run_dir).config))) > 0
    new = tmp_path / "new.db"
    other = _placed(tmp_path / "other", memory=str(new))
    driver.resume(other, generations=4, evaluator=FakeTraining(), describe=fake_describe, trust_run=True)
    assert is_memory(new)
