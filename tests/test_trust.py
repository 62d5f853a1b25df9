"""A run directory from someone else: no command imports or runs what it names without the user's consent
(--trust-run, trust_run=True, or the names given again), and never from the directory `python -m` puts on the
path (issue 21, item 2)."""

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
        assert line.endswith("give --trust-run (trust_run=True in Python) or the names again (--trust hostile:load)")
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
