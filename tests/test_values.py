"""Values read back from files are checked where they are read, by one judge (``types.value_problem``): a fitness
memory's row that afos would not write is not believed (the function is trained again, with a warning); a log
line or a ``pareto.csv`` row that holds one is damage, reported by ``afos check`` and never believed by resume,
show or export (issue 21, item 3). Fake screen and training: no JAX training."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import sqlite3
import warnings
from pathlib import Path

import pytest
from fakes import FakeTraining, fake_describe

from afos import config, types
from afos.cli import main
from afos.errors import AfosWarning, RunError
from afos.run import driver, rundir
from afos.run.memory import FitnessMemory, run_protocol
from afos.run.rundir import Run

FIXTURES = Path(__file__).parent / "fixtures"
BASE, _ = config.load_stored(FIXTURES / "fake_v1" / rundir.CONFIG)  # population 6, 3 generations, 2 + 2 seeds


# --- the judge ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, value, why", [
    ("val_accuracy", 5.0, "val_accuracy 5.0 is outside [0, 1]"),
    ("val_accuracy", "0.9", "val_accuracy '0.9' is text, not a number"),
    ("val_accuracy", math.nan, "val_accuracy nan is not a finite number"),
    ("val_accuracy", True, "val_accuracy True is a bool, not a number"),
    ("seed_accuracies", -0.1, "seed_accuracies -0.1 is outside [0, 1]"),
    ("val_loss", -1.0, "val_loss -1.0 is below 0"),
    ("val_loss", math.inf, "val_loss inf is not a finite number"),
    ("complexity", 2.0, "complexity 2.0 is not an integer"),
    ("complexity", -1, "complexity -1 is below 0"),
    ("gain", 0.0, "gain 0.0 is not above 0"),
    ("seconds", None, "seconds None is null, not a number"),  # an accuracy, a gain, epochs may be None
    ("seeds", [1], "seeds [1] is list, not a number"),
])
def test_a_value_afos_never_writes_is_named_with_the_reason(name, value, why):
    assert types.value_problem(name, value) == why


@pytest.mark.parametrize("name, value", [("val_accuracy", 0.0), ("val_accuracy", 1), ("val_loss", 3.5),
                                         ("complexity", 0), ("generation", -1), ("predicted", -2.5),
                                         ("val_accuracy", None), ("gain", 1.7)])
def test_what_afos_writes_is_believed(name, value):
    assert types.value_problem(name, value) is None


def test_an_objective_to_maximise_has_its_score_as_the_loss_in_0_1():
    score = config.override(BASE, fitness={"objective": "charlm", "direction": "max"}).fitness
    loss = config.override(BASE, fitness={"objective": "charlm", "direction": "min"}).fitness
    assert types.value_problem("val_loss", 3.0, loss) is None
    assert types.value_problem("val_loss", 3.0, score) == "val_loss 3.0 is outside [0, 1]"
    assert types.value_problem("val_loss", 3.0, BASE.fitness) is None  # a cross-entropy


# --- the fitness memory ---------------------------------------------------------------------------------


class Counting(FakeTraining):
    """tests/fakes.py's training, recording the new individuals it trained (on the search's seeds: anchors and
    re-scorings train on more, and never come from a memory)."""

    def __init__(self):
        self.trained: list[str] = []

    def evaluate(self, candidates, seeds, epochs=None):
        if list(seeds) == config.search_seeds(BASE.fitness, BASE.protocol.fitness_seeds):
            self.trained += [c.text for c in candidates]
        return super().evaluate(candidates, seeds, epochs)


def _search(memory: Path, run_dir: Path) -> Counting:
    training = Counting()
    driver.run(config.override(BASE, evaluator={"memory": str(memory)}), run_dir, evaluator=training,
               describe=fake_describe)
    return training


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> tuple[Path, Path]:
    """A run of the fixture's search with a fresh memory: (its directory, the memory it filled)."""
    where = tmp_path_factory.mktemp("filled")
    _search(where / "memory.db", where / "run")
    return where / "run", where / "memory.db"


def _poison(memory: Path, fingerprint: str, change) -> None:
    with sqlite3.connect(memory) as db:
        (text,) = db.execute("SELECT fitness FROM fitness WHERE fingerprint = ?", (fingerprint,)).fetchone()
        db.execute("UPDATE fitness SET fitness = ? WHERE fingerprint = ?", (change(json.loads(text)), fingerprint))
    db.close()


POISONS = {  # what a row of another program (or a hand) may hold, and what the warning says of it
    "accuracy 5.0": (lambda d: json.dumps(d | {"val_accuracy": 5.0}), "val_accuracy 5.0 is outside"),
    "accuracy as text": (lambda d: json.dumps(d | {"val_accuracy": "0.9"}), "val_accuracy '0.9' is text"),
    "NaN": (lambda d: json.dumps(d | {"val_accuracy": math.nan}), "val_accuracy nan is not a finite number"),
    "a bool": (lambda d: json.dumps(d | {"val_accuracy": True}), "val_accuracy True is a bool"),
    "a seed's accuracy": (lambda d: json.dumps(d | {"seed_accuracies": [0.5, 7]}), "seed_accuracies 7 is outside"),
    "invalid JSON": (lambda d: json.dumps(d)[:30], "its fitness is not valid JSON"),
    "another status": (lambda d: json.dumps(d | {"status": "cached"}), "status 'cached' is not 'ok' or 'failed'"),
    "a number": (lambda d: 0.9, "its fitness is not an object of status, val_accuracy"),  # stored as '0.9'
    "bytes": (lambda d: json.dumps(d).encode(), "its fitness is bytes, not text"),
}


@pytest.mark.parametrize("poison", list(POISONS))
def test_a_poisoned_memory_row_is_trained_again_with_a_warning_not_believed(tmp_path, filled, poison):
    first_run, filled_memory = filled
    memory = Path(shutil.copy(filled_memory, tmp_path / "memory.db"))
    first = Run.open(first_run).records()
    victim = next(r for r in first if r.generation == 0 and r.status == types.OK)
    change, why = POISONS[poison]
    _poison(memory, victim.fingerprint, change)
    with pytest.warns(AfosWarning, match=rf"memory.db: ignoring the row of fingerprint '{victim.fingerprint}' "
                                         rf"\(protocol \w{{12}}, '{re.escape(victim.expr)}'\): {why}.*trained instead"):
        training = _search(memory, tmp_path / "run")
    assert training.trained == [victim.expr]  # only the poisoned function: every other one came from the memory
    second = Run.open(tmp_path / "run").records()
    line = next(r for r in second if r.identity == victim.identity)
    assert line.status == types.OK and line.val_accuracy == victim.val_accuracy and line.seconds > 0
    assert sorted((r.identity, r.val_accuracy, r.val_loss, r.seed_accuracies) for r in second) == \
        sorted((r.identity, r.val_accuracy, r.val_loss, r.seed_accuracies) for r in first)  # the same search
    assert (tmp_path / "run" / rundir.PARETO).read_text() == (first_run / rundir.PARETO).read_text()


def test_a_poisoned_row_is_left_out_of_the_entries_and_the_surrogate_prior(tmp_path, filled):
    first_run, filled_memory = filled
    memory = Path(shutil.copy(filled_memory, tmp_path / "memory.db"))
    victim = next(r for r in Run.open(first_run).records() if r.generation == 0 and r.status == types.OK)
    _poison(memory, victim.fingerprint, POISONS["accuracy 5.0"][0])
    store = FitnessMemory(memory)
    with pytest.warns(AfosWarning, match="val_accuracy 5.0 is outside") as caught:
        entries = store.entries(run_protocol(BASE), BASE.fitness)
        prior = store.prior(BASE)
    assert len(caught) == 1  # once per row
    assert victim.fingerprint not in {e.fingerprint for e in entries} | {p["fingerprint"] for p in prior}
    assert len(entries) == len(prior) == len(store) - 1 and all(p["value"] <= 1 for p in prior)
    store.close()


# --- the log --------------------------------------------------------------------------------------------


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "fake_v1", tmp_path / "run"))


def _poison_line(run_dir: Path, **values) -> tuple[int, dict]:
    """Gives the first scored individual's line ``values``; returns its line number (from 1) and the line."""
    lines = (run_dir / rundir.EVALUATIONS).read_text().splitlines(keepends=True)
    number, data = next((n, d) for n, d in enumerate(map(json.loads, lines), start=1)
                        if d["status"] == types.OK and d["generation"] == 0)
    lines[number - 1] = json.dumps(data | values) + "\n"
    (run_dir / rundir.EVALUATIONS).write_text("".join(lines))
    return number, data


@pytest.mark.parametrize("value, why", [(5.0, "val_accuracy 5.0 is outside"), ("0.9", "val_accuracy '0.9' is text"),
                                        (True, "val_accuracy True is a bool")])
def test_a_line_with_a_value_afos_never_writes_is_damage_not_a_result(tmp_path, capsys, value, why):
    run_dir = _copy(tmp_path)
    number, data = _poison_line(run_dir, val_accuracy=value)
    (run_dir / rundir.PARETO).unlink()  # show recomputes the front from the log
    assert main(["show", str(run_dir)]) == 0
    out, err = capsys.readouterr()
    assert "5.0000" not in out and "beats the best anchor 5" not in out
    (warning,) = err.splitlines()
    assert f"ignoring 1 damaged line (line {number} holds a value afos never writes ({why}" in warning
    with pytest.warns(AfosWarning, match="ignoring 1 damaged line"):
        assert data["fingerprint"] not in {e.fingerprint for e in Run.open(run_dir).recomputed_front()}
    with pytest.warns(AfosWarning), pytest.raises(RunError, match=rf"line {number} holds a value afos never writes "
                                                                  rf"\({why}.*`afos check --repair"):
        driver.resume(run_dir, evaluator=FakeTraining(), describe=fake_describe, generations=5)
    assert main(["check", str(run_dir)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert f"line {number} holds a value afos never writes ({why}" in out and "not healthy" in out
    main(["check", "--repair", str(run_dir)])  # as for any damaged line: moved aside, nothing believed or lost
    (aside,) = map(json.loads, (run_dir / "evaluations.set-aside.jsonl").read_text().splitlines())
    assert aside["line"] == number and json.loads(aside["text"])["val_accuracy"] == value
    out = " ".join(capsys.readouterr().out.split())  # a line of a finished generation: the history has a gap
    assert "moved 1 line" in out and "the checkpoint is ahead of the log, which lacks 1 line of generation 0" in out


def test_an_objective_run_s_log_is_judged_by_its_direction(tmp_path):
    run_dir = _copy(tmp_path)
    number, _ = _poison_line(run_dir, val_loss=3.0)  # a loss: fine for a cross-entropy, not for a score in [0, 1]
    assert Run.open(run_dir).log_problems() == []
    text = (run_dir / rundir.CONFIG).read_text().replace('data_dir = ""', 'data_dir = ""\nobjective = "x:y"\n'
                                                                            'direction = "max"')
    (run_dir / rundir.CONFIG).write_text(text)
    with pytest.warns(AfosWarning, match="ignoring 1 damaged line"):
        (problem,) = Run.open(run_dir).log_problems()
    assert problem.line == number and "val_loss 3.0 is outside [0, 1]" in problem.detail


# --- pareto.csv -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("column, text, why", [
    ("val_accuracy", "nan", "val_accuracy nan is not a finite number"),
    ("val_accuracy", "7", "val_accuracy 7.0 is outside [0, 1]"),
    ("complexity", "-3", "complexity -3 is below 0"),
    ("complexity", "True", "complexity 'True' is not an integer"),
    ("val_loss", "inf", "val_loss inf is not a finite number"),
])
def test_a_front_row_with_a_value_afos_never_writes_is_damage_not_exported(tmp_path, capsys, column, text, why):
    run_dir = _copy(tmp_path)
    good = (run_dir / rundir.PARETO).read_text()
    header, first, second = good.splitlines()
    cells = second.split(",")
    cells[header.split(",").index(column)] = text
    (run_dir / rundir.PARETO).write_text("\n".join([header, first, ",".join(cells)]) + "\n")
    with pytest.raises(RunError, match=rf"pareto.csv: damaged \(ValueError: line 3: {re.escape(why)}\)"):
        Run.open(run_dir).ranked()
    assert main(["export", str(run_dir), "--format", "numpy"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("afos export: error: ") and f"line 3: {why}" in line
    assert main(["check", str(run_dir)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert f"pareto.csv damaged (ValueError: line 3: {why})" in out and "not healthy" in out
    assert main(["check", "--repair", str(run_dir)]) == 0
    assert (run_dir / rundir.PARETO).read_text() == good


# --- surrogate_prior.jsonl ------------------------------------------------------------------------------


@pytest.mark.parametrize("row, why", [
    ({"expr": "tanh(x)", "gain": None, "value": 5.0, "fingerprint": "f"}, "value 5.0 is outside [0, 1]"),
    ({"expr": "tanh(x)", "gain": "2", "value": 0.5, "fingerprint": "f"}, "gain '2' is text, not a number"),
    ({"expr": "tanh(x)", "gain": None, "value": None, "fingerprint": "f"}, "value None is null, not a number"),
    ({"expr": 3, "gain": None, "value": 0.5, "fingerprint": "f"}, "its expr or fingerprint is not text"),
])
def test_a_surrogate_prior_row_afos_never_writes_stops_a_resume(tmp_path, capsys, row, why):
    run_dir = _copy(tmp_path)
    good = {"expr": "x*sigmoid(x)", "gain": None, "value": 0.7, "fingerprint": "0123"}
    (run_dir / rundir.PRIOR).write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    before = (run_dir / rundir.EVALUATIONS).read_text()
    with pytest.raises(RunError, match=rf"surrogate_prior.jsonl: row 2 holds a value afos never writes "
                                       rf"\({re.escape(why)}\)"):
        driver.resume(run_dir, evaluator=FakeTraining(), describe=fake_describe, generations=5)
    assert (run_dir / rundir.EVALUATIONS).read_text() == before
    assert main(["check", str(run_dir)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert f"problems: {run_dir / rundir.PRIOR}: row 2 holds a value afos never writes ({why})" in out
    (run_dir / rundir.PRIOR).write_text(json.dumps(good) + "\n")
    assert Run.open(run_dir).prior() == [good]
    assert main(["check", str(run_dir)]) == 0


def test_a_whole_last_line_with_a_bad_value_is_damage_not_a_cut_off_write(tmp_path):
    run_dir = _copy(tmp_path)
    lines = (run_dir / rundir.EVALUATIONS).read_text().splitlines()
    last = json.loads(lines[-1]) | {"val_accuracy": 5.0}
    (run_dir / rundir.EVALUATIONS).write_text("\n".join(lines[:-1] + [json.dumps(last)]))  # no newline after it
    with pytest.warns(AfosWarning, match="ignoring 1 damaged line"):
        (problem,) = Run.open(run_dir).log_problems()
    assert problem.kind == "damaged" and "val_accuracy 5.0 is outside [0, 1]" in problem.detail


# --- validation.csv -------------------------------------------------------------------------------------


@pytest.mark.parametrize("column, text, why", [
    ("test_accuracy_mean", "abc", "test_accuracy_mean 'abc' is not a number"),
    ("test_accuracy_mean", "nan", "test_accuracy_mean nan is not a finite number"),  # NaN is written as ""
    ("wilcoxon_p", "3", "wilcoxon_p 3.0 is outside [0, 1]"),
    ("n", "2.5", "n '2.5' is not an integer"),
])
def test_a_validation_row_with_a_value_afos_never_writes_is_a_one_line_error(tmp_path, capsys, column, text, why):
    run_dir = Path(shutil.copytree(FIXTURES / "run_v1", tmp_path / "run"))
    header, *rows = csv.reader((run_dir / rundir.VALIDATION).read_text().splitlines())
    rows[1][header.index(column)] = text
    with open(run_dir / rundir.VALIDATION, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    for command in (["show"], ["export", "--format", "numpy"]):
        assert main([command[0], str(run_dir), *command[1:]]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"afos {command[0]}: error: ") and "validation.csv: damaged" in line
        assert f"(line 3: {why}); `afos validate` writes it again" in line
    assert main(["check", str(run_dir)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert f"problems: {run_dir / rundir.VALIDATION}: damaged (line 3: {why})" in out and "not healthy" in out


# --- checkpoint.json ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fitness, why", [(["0.9", 2.0], "individual 0: fitness '0.9' is text, not a number"),
                                          ([math.nan, 2.0], "individual 0: fitness nan is not a finite number"),
                                          ([0.9], "individual 0 is not a tree and 2 fitness values")])
def test_a_checkpoint_with_a_fitness_afos_never_writes_is_unreadable_and_the_previous_one_is_used(tmp_path, fitness,
                                                                                                   why):
    clean, poisoned = (Path(shutil.copytree(FIXTURES / "fake_v1", tmp_path / name)) for name in ("a", "b"))
    body = json.loads((poisoned / rundir.CHECKPOINT).read_text())
    body["population"][0]["fitness"] = fitness
    (poisoned / rundir.CHECKPOINT).write_text(json.dumps(body))
    with pytest.warns(AfosWarning, match=rf"checkpoint.json: {re.escape(why)}; using checkpoint.prev.json"):
        assert Run.open(poisoned).checkpoint()["generation"] == 3
    for run_dir in (clean, poisoned):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fallback, said above
            driver.resume(run_dir, evaluator=FakeTraining(), describe=fake_describe, generations=5)
    for name in (rundir.EVALUATIONS, rundir.PARETO):  # generation 3 redone from its checkpoint: the same run
        assert (clean / name).read_text() == (poisoned / name).read_text()
