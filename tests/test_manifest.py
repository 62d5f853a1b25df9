"""A run's start comes into being whole, a resume goes on under the settings and files the run started with,
and a newer afos's run is refused."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import test_surrogate as t
from fakes import FakeTraining, fake_describe

from afos import config
from afos.errors import AfosError, RunError
from afos.run import driver, manifest, rundir
from afos.run.rundir import Run

# One process imports afos once, then forks a child per trial (no search runs in the parent, so nothing of JAX,
# scikit-learn or OpenMP is running when it forks). A child counts every step that creates or changes a file
# under ROOT (a file opened for writing, a rename, a new directory or lock file) and exits at once, as a kill -9
# would, before step KILL (0: never). Each trial: a search killed at one step, then what a user does next:
# `afos resume` where the directory holds a run; a new search where it holds none (after deleting the directory,
# where the start left one behind). It prints, per trial, what it found and what opening the directory said.
HARNESS = textwrap.dedent("""
    import builtins, io, json, os, shutil, sys
    sys.path.insert(0, os.environ["TESTS"])
    import sklearn.ensemble, sklearn.gaussian_process, sklearn.neighbors  # imported once, not in every child
    import test_surrogate as t
    from afos import config
    from afos.errors import AfosError
    from afos.run import driver
    from afos.run.rundir import Run

    root, first_memory, empty = sys.argv[1], sys.argv[2], sys.argv[3] == "empty"
    cfg = config.override(t._config(seed=11), search={"generations": 0})  # generation 0: ranked by the prior
    steps = []

    def step(path, what):
        path = os.path.abspath(os.fsdecode(path))
        if path.startswith(root):
            steps.append((what, os.path.basename(path)))
            if len(steps) == int(os.environ.get("KILL", "0")):
                os._exit(137)

    def patch():
        real_open, real_os_open = builtins.open, os.open
        real_replace, real_rename, real_mkdir = os.replace, os.rename, os.mkdir
        def open_(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+"):
                step(file, "open")
            return real_open(file, mode, *args, **kwargs)
        def os_open(path, flags, *args, **kwargs):
            if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
                step(path, "create")
            return real_os_open(path, flags, *args, **kwargs)
        def replace(src, dst, **kwargs):
            step(dst, "replace")
            return real_replace(src, dst, **kwargs)
        def rename(src, dst, **kwargs):
            step(dst, "rename")
            return real_rename(src, dst, **kwargs)
        def mkdir(path, *args, **kwargs):
            step(path, "mkdir")
            return real_mkdir(path, *args, **kwargs)
        builtins.open = io.open = open_
        os.open, os.replace, os.rename, os.mkdir = os_open, replace, rename, mkdir

    def search(run_dir, memory, kill=0):
        os.environ["KILL"] = str(kill)
        steps.clear()
        patch()
        driver.run(config.override(cfg, evaluator={"memory": memory}), run_dir, evaluator=t.ShapeTraining(),
                   describe=t.describe)
        with open(os.path.join(root, "steps.json"), "w") as f:
            json.dump(steps, f)

    def in_child(work, *args):
        pid = os.fork()
        if pid == 0:
            try:
                work(*args)
            except BaseException as err:
                print("child failed:", type(err).__name__, err, file=sys.stderr, flush=True)
                os._exit(1)
            os._exit(0)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    def resume(run_dir):
        driver.resume(run_dir, evaluator=t.ShapeTraining(), describe=t.describe)

    def warm_memory(name):  # the memory as the interrupted search found it
        shutil.copy(first_memory, os.path.join(root, name))
        return os.path.join(root, name)

    def fresh_dir(run_dir):
        if empty:
            os.mkdir(run_dir)
        return run_dir

    assert in_child(search, fresh_dir(os.path.join(root, "baseline")), warm_memory("baseline.sqlite")) == 0
    with open(os.path.join(root, "steps.json")) as f:
        made = json.load(f)  # every step of the search never killed
    log = [i for i, (what, name) in enumerate(made, 1) if name == "evaluations.jsonl"]
    # every step of the start and the first two lines of the log (in an existing directory, up to taking its lock:
    # from there on, both are the same)
    last = log[0] + 1 if not empty else [what for what, name in made].index("create") + 1
    for kill in range(1, last + 1):
        run_dir, memory = fresh_dir(os.path.join(root, f"kill{kill}")), warm_memory(f"kill{kill}.sqlite")
        assert in_child(search, run_dir, memory, kill) == 137, kill
        try:
            Run.open(run_dir)
            said, next_step = None, "resume"
        except AfosError as err:
            said, next_step = str(err), "search"
            shutil.rmtree(run_dir, ignore_errors=True)
            fresh_dir(run_dir)
        code = in_child(resume, run_dir) if next_step == "resume" else in_child(search, run_dir, memory)
        print(json.dumps({"kill": kill, "step": made[kill - 1], "said": said, "next": next_step, "code": code}))
""")


def _lines(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in Run.open(run_dir).records()]


@pytest.fixture(scope="module")
def warm_memory(tmp_path_factory):
    """A fitness memory that an earlier search of the protocol filled (what warms a surrogate)."""
    root = tmp_path_factory.mktemp("memory")
    memory = str(root / "memory.sqlite")
    driver.run(config.override(t._config(seed=3), search={"generations": 0}, evaluator={"memory": memory}),
               root / "first", evaluator=t.ShapeTraining(), describe=t.describe)
    return memory


@pytest.mark.parametrize("target", ["new", "empty"])
@pytest.mark.slow
def test_a_kill_at_any_step_of_the_start_then_resume_or_a_new_start_equals_the_uninterrupted_run(
        tmp_path, warm_memory, target):
    """With the surrogate on and a warm memory (whose prior the start writes into the run): a search killed before
    any of the steps that make its run directory, then resumed (or started again where the directory holds no
    run), writes the lines, front and checkpoint of the search never killed. A new directory comes into being
    whole; an existing empty one without its config.toml says that a start was interrupted there."""
    root = tmp_path / "root"
    root.mkdir()
    proc = subprocess.run([sys.executable, "-c", HARNESS, str(root), warm_memory, target], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "TESTS": str(Path(__file__).parent)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = [json.loads(line) for line in proc.stdout.splitlines()]
    baseline = root / "baseline"
    assert Run.open(baseline).prior() and any(r.generation == 0 and r.status == "screened"
                                              for r in Run.open(baseline).records())  # the prior ranked gen 0
    assert len(trials) >= {"new": 12, "empty": 6}[target]
    said = {"new": ("no such directory",), "empty": (
        "a search's start was interrupted here before it wrote config.toml, so it holds no run: delete the directory "
        "and start the search again", "is not an afos run directory (no config.toml)")}[target]
    for trial in trials:
        run_dir = root / f"kill{trial['kill']}"
        assert trial["code"] == 0, trial
        assert _lines(run_dir) == _lines(baseline), trial
        assert (run_dir / rundir.PARETO).read_text() == (baseline / rundir.PARETO).read_text(), trial
        assert json.loads((run_dir / rundir.CHECKPOINT).read_text()) == json.loads(
            (baseline / rundir.CHECKPOINT).read_text()), trial
        assert (run_dir / rundir.PRIOR).read_text() == (baseline / rundir.PRIOR).read_text(), trial
        # no run there (a new directory: none at all, never half a run): said in one line, then a new start
        assert trial["said"] is None or trial["said"].endswith(said), trial
    assert {t["next"] for t in trials} == {"resume", "search"}


def test_the_start_is_written_beside_the_run_directory_and_renamed_into_place(tmp_path, monkeypatch):
    """A failure while the start is written leaves no run directory and nothing beside it."""
    written = []
    real = rundir.create_directory.__globals__["write_text_atomic"]

    def failing(path, text):
        written.append(path)
        if path.name == rundir.CONFIG:
            raise OSError(28, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr("afos.run.files.write_text_atomic", failing)
    with pytest.raises(OSError, match="No space left"):
        Run.create(tmp_path / "runs" / "r", config.Config().resolved(), prior=[])
    assert [p.name for p in written] == [rundir.PRIOR, manifest.MANIFEST, rundir.CONFIG]
    assert all(p.parent.parent == tmp_path / "runs" and p.parent.name.startswith(".r.starting-") for p in written)
    assert list((tmp_path / "runs").iterdir()) == []


def _small_run(run_dir: Path, **search) -> Path:
    cfg, _ = config.load_stored(t.FIXTURES / "fake_v1" / rundir.CONFIG)
    cfg = config.override(cfg, search={"generations": 1, **search})
    driver.run(cfg, run_dir, evaluator=FakeTraining(), describe=fake_describe)
    return run_dir


def _resume(run_dir: Path, generations: int = 2) -> None:
    driver.resume(run_dir, generations=generations, evaluator=FakeTraining(), describe=fake_describe)


def _edit(run_dir: Path, old: str, new: str) -> None:
    path = run_dir / rundir.CONFIG
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_missing_prior_stops_a_resume_instead_of_warming_the_surrogate_with_nothing(tmp_path, warm_memory):
    run_dir = tmp_path / "run"
    driver.run(config.override(t._config(seed=11), search={"generations": 0}, evaluator={"memory": warm_memory}),
               run_dir, evaluator=t.ShapeTraining(), describe=t.describe)
    assert Run.open(run_dir).prior()
    (run_dir / rundir.PRIOR).unlink()
    with pytest.raises(RunError, match=f"{rundir.PRIOR} missing: the run's start wrote it"):
        driver.resume(run_dir, generations=1, evaluator=t.ShapeTraining(), describe=t.describe)


@pytest.mark.parametrize(("old", "new", "named"), [
    ("epochs = 1", "epochs = 3", "fitness.epochs is now 3;"),
    ("learning_rate = 0.001", "learning_rate = 0.01", "fitness.learning_rate is now 0.01;"),
    ("population = 6", "population = 4", "search.population is now 4;"),
    ("population = 6", "population = 8", "search.population is now 8;"),
    ("val_fraction = 0.2\n", "", "fitness.val_fraction was removed;"),
    ('"erf",\n', "", "space.unary changed;"),
])
def test_a_setting_edited_in_config_toml_stops_a_resume_naming_it(tmp_path, old, new, named):
    run_dir = _small_run(tmp_path / "run")
    before = (run_dir / rundir.EVALUATIONS).read_text()
    _edit(run_dir, old, new)
    with pytest.raises(RunError, match=re.escape(f"config.toml was edited after the run started: {named}")):
        _resume(run_dir)
    assert (run_dir / rundir.EVALUATIONS).read_text() == before  # nothing written


def test_a_setting_edited_in_config_toml_stops_a_validation_too(tmp_path):
    from afos.study import validate

    run_dir = _small_run(tmp_path / "run")
    _edit(run_dir, "epochs = 1", "epochs = 3")
    with pytest.raises(RunError, match=re.escape("config.toml was edited after the run started: fitness.epochs")):
        validate.validate(run_dir, top=1, seeds=2)
    assert not (run_dir / rundir.VALIDATION).exists() and not (run_dir / "validation").exists()


def test_what_a_resume_may_change_and_what_does_not_matter_are_not_edits(tmp_path):
    run_dir = _small_run(tmp_path / "run")
    _edit(run_dir, "generations = 1", "generations = 2")  # how far it goes: free on resume
    _edit(run_dir, "workers = 0", "workers = 3")  # where the work runs
    _edit(run_dir, "learning_rate = 0.001", "learning_rate = 1e-3  # the same number")
    _resume(run_dir)
    assert max(r.generation for r in Run.open(run_dir).records()) == 2


def test_an_old_run_without_a_manifest_resumes_and_an_edited_population_names_the_setting(tmp_path):
    """A run written before manifests resumes as it did; an edited population is named, not blamed on the log."""
    run_dir = _small_run(tmp_path / "run")
    (run_dir / manifest.MANIFEST).unlink()  # as an earlier afos wrote it
    _edit(run_dir, "population = 6", "population = 8")
    with pytest.raises(RunError, match=r"search\.population is 8 in its config but the run was written with 6 .*"
                                       r"put search\.population = 6 back"):
        _resume(run_dir)
    _edit(run_dir, "population = 8", "population = 4")
    with pytest.raises(RunError, match=r"search\.population is 4 in its config but the run was written with 6"):
        _resume(run_dir)
    _edit(run_dir, "population = 4", "population = 6")
    _resume(run_dir)
    assert max(r.generation for r in Run.open(run_dir).records()) == 2


def test_a_checkpoint_of_a_newer_afos_is_refused_and_left_as_it_is(tmp_path, capsys):
    from afos.cli import main

    run_dir = _small_run(tmp_path / "run")
    for name in (rundir.CHECKPOINT, rundir.PREVIOUS_CHECKPOINT):
        data = json.loads((run_dir / name).read_text())
        (run_dir / name).write_text(json.dumps({**data, "version": 7}))
    files = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(manifest.NewerFormatError, match=r"checkpoint\.json: written by a newer afos \(format 7\)"):
        _resume(run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == files  # nothing renamed aside, no lock left behind
    assert json.loads((run_dir / rundir.CHECKPOINT).read_text())["version"] == 7
    assert main(["check", str(run_dir)]) == 2
    assert "checkpoint.json: written by a newer afos (format 7)" in capsys.readouterr().err


def test_a_run_directory_of_a_newer_afos_is_refused_by_every_command(tmp_path, capsys):
    from afos.cli import main

    run_dir = _small_run(tmp_path / "run")
    data = json.loads((run_dir / manifest.MANIFEST).read_text())
    (run_dir / manifest.MANIFEST).write_text(json.dumps({**data, "version": manifest.RUN_FORMAT + 1}))
    for args in (["show"], ["check"], ["export", "--format", "numpy"], ["resume"]):
        assert main([args[0], str(run_dir), *args[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith(f"{run_dir}: written by a newer afos (format {manifest.RUN_FORMAT + 1}); upgrade afos "
                            "to use it") and "\n" not in err, err
    with pytest.raises(AfosError, match="newer afos"):
        Run.open(run_dir)


def test_a_damaged_manifest_stops_a_resume(tmp_path):
    run_dir = _small_run(tmp_path / "run")
    (run_dir / manifest.MANIFEST).write_text("{")
    with pytest.raises(RunError, match=r"run\.json: damaged"):
        _resume(run_dir)


def test_a_directory_where_a_start_was_interrupted_says_so(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / manifest.MANIFEST).write_text("{}")
    for call in (Run.open, Run.check_free):
        with pytest.raises(RunError, match="a search's start was interrupted here before it wrote config.toml"):
            call(run_dir)

