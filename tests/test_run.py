"""The run directory as one object, and run directories written before the redesign (tests/fixtures)."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
from fakes import FakeTraining, fake_describe

from afos import config, export, types
from afos.cli import main
from afos.errors import RunError
from afos.expr import Candidate, parse
from afos.fitness.evaluator import PerSeed
from afos.fitness.pools import Replay
from afos.run import driver, rundir
from afos.run.records import Evaluation
from afos.run.rundir import Run
from afos.study import bench
from afos.types import Fitness

FIXTURES = Path(__file__).parent / "fixtures"


def _copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(FIXTURES / name, dst)
    return dst


# --- the Run object ------------------------------------------------------------------------------


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing", "missing: no such directory"),
    (lambda tmp: tmp, "is not an afos run directory (no config.toml)"),
])
def test_open_refuses_what_is_not_a_run_with_one_error_type(tmp_path, make, message):
    with pytest.raises(RunError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Run.open(make(tmp_path))


def test_a_run_reads_its_lines_as_typed_records_and_knows_its_front(tmp_path):
    run = Run.open(_copy("fake_v1", tmp_path))
    records = run.records()
    assert all(isinstance(r, Evaluation) for r in records)
    assert {r.status for r in records} == {types.OK, types.CACHED, types.FAILED, types.ANCHOR, types.RESCORED}
    lines = (run.path / rundir.EVALUATIONS).read_text().splitlines()
    import json

    assert [r.to_json() for r in records] == [json.loads(line) for line in lines]  # read and written losslessly
    assert [r.tree for r in run.anchors()] == list(config.DEFAULT_ANCHORS)
    assert run.best() == run.ranked()[0] and run.top(2) == run.ranked()[:2]
    assert run.ranked()[0].val_accuracy == max(e.val_accuracy for e in run.front())
    assert run.recomputed_front() == run.front()  # the memo replayed from the log makes the front pareto.csv holds
    (run.path / rundir.PARETO).unlink()  # a run stopped before its first front: recomputed from the log
    assert Run.open(run.path).front() == run.front()


def test_append_keeps_what_the_log_holds(tmp_path):
    run = Run.open(_copy("fake_v1", tmp_path))
    old = next(r for r in run.records() if r.status == types.OK)
    import dataclasses

    again = dataclasses.replace(old, val_accuracy=0.0, seconds=99.0)  # recomputed differently
    assert run.append(again) is not again and run.append(again) == old  # the log wins
    assert len(run.records()) == len(Run.open(run.path).records())  # nothing was written
    with pytest.raises(RunError, match="holds ok .* but this run asks rejected"):
        run.append(dataclasses.replace(old, status=types.REJECTED))


def test_replay_answers_what_was_recorded_and_trains_the_rest():
    class Counting(PerSeed):
        def __init__(self):
            self.trained = []

        def evaluate_seed(self, candidates, seed, epochs=None):
            for i, c in enumerate(candidates):
                self.trained.append((c.text, seed))
                yield i, Fitness(types.OK, 0.5, 1.0, None, 1.0)

    cands = [Candidate(parse(t), t, t, f"fp-{t}", None) for t in ("tanh(x)", "sin(x)", "x**2")]
    recorded = Fitness(types.OK, 0.9, 0.1, None, 2.0)
    inner = Counting()
    replay = Replay(inner, {("fp-sin(x)", (0, 1), None): recorded})
    results = list(replay.evaluate(cands, [0, 1]))
    assert results[0] == (1, recorded)  # the recorded answer first, without training
    assert sorted(i for i, _ in results) == [0, 1, 2]
    assert {t for t, _ in inner.trained} == {"tanh(x)", "x**2"}
    assert list(replay.evaluate(cands[1:2], [0, 1]))[0][1].val_accuracy == 0.5  # an answer is used once


# --- a run written before the redesign: fake screen and training, so that every number is exact ----------


def _same_files(a: Path, b: Path) -> None:
    for name in (rundir.EVALUATIONS, rundir.PARETO, rundir.CHECKPOINT):
        assert (a / name).read_text() == (b / name).read_text(), name
    assert Run.open(a).config == Run.open(b).config  # the same settings (a new run also writes gain = "none")


def test_the_same_search_writes_the_same_run_as_the_version_before(tmp_path):
    """Lines, front and checkpoint byte for byte, and the same config: the redesign changed no behaviour."""
    cfg, run_format = config.load_stored(FIXTURES / "fake_v1" / rundir.CONFIG)
    assert run_format == 1 and cfg.fitness.gain == "none"  # written before gain normalisation existed
    driver.run(cfg, tmp_path / "run", evaluator=FakeTraining(), describe=fake_describe)
    _same_files(tmp_path / "run", FIXTURES / "fake_v1")


@pytest.mark.parametrize("keep", [3, 12, 16, 20, 22, 29])
def test_an_old_run_interrupted_anywhere_resumes_to_the_same_end(tmp_path, keep):
    """The directory an interruption after line ``keep`` left behind (inside the anchors, inside racing, inside
    a generation's individuals, between its racing and its checkpoint): the resume answers what the log
    recorded without training it again, and ends with the files the old version wrote."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(FIXTURES / "fake_v1" / rundir.CONFIG, run_dir)
    lines = (FIXTURES / "fake_v1" / rundir.EVALUATIONS).read_text().splitlines(keepends=True)
    (run_dir / rundir.EVALUATIONS).write_text("".join(lines[:keep]))
    kept = Run.open(run_dir).records()
    generation = max(0, kept[-1].generation)
    body = json.loads((FIXTURES / "fake_v1_checkpoints" / f"generation-{generation}.json").read_text())
    Run.open(run_dir).write_checkpoint(body)

    class Recording(FakeTraining):
        calls: list[tuple[str, int]] = []

        def evaluate_seed(self, candidates, seed, epochs=None):
            self.calls += [(c.text, seed) for c in candidates]
            return super().evaluate_seed(candidates, seed)

    driver.resume(run_dir, evaluator=Recording(), describe=fake_describe)
    _same_files(run_dir, FIXTURES / "fake_v1")
    first, *_ = config.search_seeds(config.load(run_dir / rundir.CONFIG).fitness, 1)
    for line in kept:  # nothing the log held was trained again
        if line.status in (types.OK, types.FAILED):
            assert (line.expr, first) not in Recording.calls, line
        if line.status == types.RESCORED:  # 2 -> 4 seeds: the third seed is what it added
            assert (line.expr, first + 2) not in Recording.calls, line
    assert len(Recording.calls) > 0


def test_an_old_run_opens_shows_exports_validates_and_resumes(tmp_path, capsys):
    run_dir = _copy("run_v1", tmp_path)
    before = (run_dir / rundir.EVALUATIONS).read_text()
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    front = Run.open(run_dir).front()
    assert front[0].expression in out and "Anchors" in out and "Validated on the test split" in out
    source = export.export_source("numpy", run_dir=run_dir)
    assert "accuracy 0.4694" in source  # the validation it holds
    results = run_dir / rundir.VALIDATION_DIR / bench.RESULTS
    validated = results.read_text()
    assert main(["validate", str(run_dir), "--top", "1", "--seeds", "2", "--epochs", "1"]) == 0
    assert results.read_text() == validated  # the same cells: nothing trained again
    assert main(["resume", str(run_dir), "--generations", "2"]) == 0
    after = (run_dir / rundir.EVALUATIONS).read_text()
    assert after.startswith(before) and after != before  # kept every line, added generation 2
    assert {r.generation for r in Run.open(run_dir).records()} == {-1, 0, 1, 2}
    assert Run.open(run_dir).checkpoint()["generation"] == 3


@pytest.mark.parametrize("damage, command, fragment", [
    (lambda d: (d / rundir.PARETO).write_text("expression,val_accuracy\nx,high\n"), "show", "pareto.csv: damaged"),
    (lambda d: (d / rundir.CONFIG).write_bytes(b"[search]\npopulation = 4 \xff\n"), "show",
     "config.toml: not UTF-8 text (byte 24 is 0xff)"),
    (lambda d: (d / rundir.EVALUATIONS).write_bytes(b'{"generation": 0\xfe}\n'), "export",
     "evaluations.jsonl: not UTF-8 text"),
])
def test_a_damaged_run_file_is_a_one_line_error_naming_it(tmp_path, capsys, damage, command, fragment):
    run_dir = _copy("run_v1", tmp_path)
    damage(run_dir)
    if command == "export":
        (run_dir / rundir.PARETO).unlink()  # the front is then recomputed from the log
    args = [command, str(run_dir)] + (["--format", "jax"] if command == "export" else [])
    assert main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"afos {command}: error: ") and fragment in line


def test_a_lock_file_that_names_no_process_is_taken_over(tmp_path):
    run_dir = _copy("fake_v1", tmp_path)
    (run_dir / rundir.LOCK).write_text('{"pid": "not a number", "host": 3}')
    messages = []

    class Recording(driver.SilentReporter):
        def message(self, text):
            messages.append(text)

    driver.resume(run_dir, evaluator=FakeTraining(), describe=fake_describe, reporter=Recording(), generations=4)
    assert any("taking over the stale lock" in m for m in messages)
    assert not (run_dir / rundir.LOCK).exists()


def test_a_checkpoint_that_is_not_an_object_falls_back_to_the_previous_one(tmp_path):
    run_dir = _copy("fake_v1", tmp_path)
    (run_dir / rundir.CHECKPOINT).write_text("[1, 2, 3]")
    with pytest.warns(UserWarning, match="not an afos checkpoint; using checkpoint.prev.json"):
        assert Run.open(run_dir).checkpoint()["generation"] == 3


# --- a run directory that heals (afos.run.health): the fixture damaged as users and crashes damage runs ------


def _lines_of(run_dir: Path) -> list[str]:
    return (run_dir / rundir.EVALUATIONS).read_text().splitlines(keepends=True)


def _write_lines(run_dir: Path, lines: list[str]) -> None:
    (run_dir / rundir.EVALUATIONS).write_text("".join(lines))


def test_duplicated_lines_are_ignored_with_a_warning_and_the_run_goes_on_as_without_them(tmp_path):
    clean, damaged = _copy("fake_v1", tmp_path / "a"), _copy("fake_v1", tmp_path / "b")
    lines = _lines_of(damaged)
    _write_lines(damaged, lines[:10] + [lines[5]] + lines[10:] + [lines[7], lines[7]])  # inside and appended
    with pytest.warns(UserWarning, match=r"ignoring 3 duplicate lines \(line 11 repeats line 6 \(generation 0"):
        assert Run.open(damaged).records() == Run.open(clean).records()
    for run_dir in (clean, damaged):
        with pytest.warns(UserWarning) if run_dir == damaged else contextlib.nullcontext():
            driver.resume(run_dir, evaluator=FakeTraining(), describe=fake_describe, generations=5)
    with pytest.warns(UserWarning, match="duplicate"):
        assert Run.open(clean).records() == Run.open(damaged).records()
    assert (clean / rundir.PARETO).read_text() == (damaged / rundir.PARETO).read_text()


def test_a_line_that_contradicts_an_earlier_one_is_refused_by_resume(tmp_path):
    run_dir = _copy("fake_v1", tmp_path)
    lines = _lines_of(run_dir)
    other = json.loads(lines[6]) | {"tree": "sin(x)", "key": "0" * 16}
    _write_lines(run_dir, lines + [json.dumps(other) + "\n"])
    with pytest.warns(UserWarning), pytest.raises(RunError, match=r"line 33 holds ok 'sin\(x\)' for generation 0, "
                                                   r"index 2, which line 7 records as ok .*afos check --repair"):
        driver.resume(run_dir, evaluator=FakeTraining(), describe=fake_describe, generations=5)


@pytest.mark.parametrize("keep, missing", [
    (0, "lacks 4 of its 4 anchor lines; 24 lines of generations 0-3"),  # the log deleted
    (22, "lacks 10 lines of generations 2, 3"),  # cut short
])
def test_a_checkpoint_ahead_of_the_log_is_refused_saying_what_is_missing(tmp_path, keep, missing):
    run_dir = _copy("fake_v1", tmp_path)
    if keep:
        _write_lines(run_dir, _lines_of(run_dir)[:keep])
    else:
        (run_dir / rundir.EVALUATIONS).unlink()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(RunError, match=f"checkpoint is at generation 4 but evaluations.jsonl {missing}"):
        driver.resume(run_dir, evaluator=FakeTraining(), describe=fake_describe, generations=5)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # nothing trained, nothing written
    assert main(["check", str(run_dir)]) == 1


@pytest.mark.parametrize("keep", [3, 16, 22, 32])
def test_both_checkpoints_unreadable_the_log_is_replayed_to_the_uninterrupted_run(tmp_path, keep, capsys):
    """The log and the config determine the whole search: replaying it through the deterministic search
    rebuilds the state, and the run ends with the files an uninterrupted run wrote, training only what the log
    does not hold."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(FIXTURES / "fake_v1" / rundir.CONFIG, run_dir)
    kept = _lines_of(FIXTURES / "fake_v1")[:keep]
    _write_lines(run_dir, kept)
    (run_dir / rundir.CHECKPOINT).write_text('{"format": "afos-checkpoint", "gen')
    (run_dir / rundir.PREVIOUS_CHECKPOINT).write_text("\0\0\0")
    assert main(["check", str(run_dir)]) == 1
    out = capsys.readouterr().out
    assert "checkpoint: none readable (no readable checkpoint" in out and "rebuilds the search state" in out

    class Recording(FakeTraining):
        calls: list[tuple[str, int]] = []

        def evaluate_seed(self, candidates, seed, epochs=None):
            self.calls += [(c.text, seed) for c in candidates]
            return super().evaluate_seed(candidates, seed)

    messages = []

    class Messages(driver.SilentReporter):
        def message(self, text):
            messages.append(text)

    driver.resume(run_dir, evaluator=Recording(), describe=fake_describe, reporter=Messages())
    _same_files(run_dir, FIXTURES / "fake_v1")
    assert any("no readable checkpoint" in m and "replaying the log" in m for m in messages)
    first, *_ = config.search_seeds(config.load(run_dir / rundir.CONFIG).fitness, 1)
    for line in map(json.loads, kept):  # nothing the log held was trained again
        if line["status"] in (types.OK, types.FAILED, types.ANCHOR):
            assert (line["expr"], first) not in Recording.calls, line
    assert len(Recording.calls) > 0 or keep == len(_lines_of(FIXTURES / "fake_v1"))
    assert (run_dir / "checkpoint.damaged.json").read_text() == '{"format": "afos-checkpoint", "gen'
    assert (run_dir / "checkpoint.prev.damaged.json").read_bytes() == b"\0\0\0"


def test_garbage_in_the_middle_of_the_log_show_warns_check_repairs_and_nothing_is_lost(tmp_path, capsys):
    run_dir = _copy("fake_v1", tmp_path)
    lines = _lines_of(run_dir)
    damaged = lines[:20] + ['{"generation": 2, "ind\n'] + lines[20:]
    _write_lines(run_dir, damaged)
    assert main(["show", str(run_dir)]) == 0  # pareto.csv is intact: show works
    out, err = capsys.readouterr()
    assert "tanh(x)" in out
    (warning,) = err.splitlines()
    assert warning.startswith("afos show: warning: ")
    assert "ignoring 1 damaged line (line 21 is not valid JSON)" in warning
    with pytest.warns(UserWarning), pytest.raises(RunError, match="line 21 is not valid JSON; `afos check --repair"):
        driver.resume(run_dir, evaluator=FakeTraining(), describe=fake_describe, generations=5)
    assert main(["check", str(run_dir)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "line 21 is not valid JSON" in out and "not healthy" in out
    assert main(["check", "--repair", str(run_dir)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "moved 1 line of evaluations.jsonl into evaluations.set-aside.jsonl" in out
    assert _lines_of(run_dir) == lines  # the log as it was before the damage
    (backup,) = run_dir.glob("evaluations.jsonl.*.bak")
    assert backup.read_text() == "".join(damaged)
    (aside,) = map(json.loads, (run_dir / "evaluations.set-aside.jsonl").read_text().splitlines())
    assert aside["line"] == 21 and aside["text"] == '{"generation": 2, "ind' and aside["problem"] == "damaged"
    assert main(["check", str(run_dir)]) == 0


def test_check_repair_rewrites_a_damaged_front_from_the_log_and_keeps_the_damaged_one(tmp_path):
    run_dir = _copy("fake_v1", tmp_path)
    good = (run_dir / rundir.PARETO).read_text()
    (run_dir / rundir.PARETO).write_text("expression,val_accuracy\nx,high\n")
    assert main(["check", str(run_dir)]) == 1
    assert main(["check", "--repair", str(run_dir)]) == 0
    assert (run_dir / rundir.PARETO).read_text() == good
    assert (run_dir / "pareto.damaged.csv").read_text() == "expression,val_accuracy\nx,high\n"


def test_a_line_cut_off_by_a_kill_is_kept_aside_when_a_resume_cuts_it(tmp_path):
    run_dir = _copy("fake_v1", tmp_path)
    lines = _lines_of(run_dir)
    _write_lines(run_dir, lines[:30] + [lines[30][:50]])
    shutil.copy(FIXTURES / "fake_v1_checkpoints" / "generation-3.json", tmp_path / "g3.json")
    Run.open(run_dir).write_checkpoint(json.loads((tmp_path / "g3.json").read_text()))
    with pytest.warns(UserWarning, match="truncated last line"):
        driver.resume(run_dir, evaluator=FakeTraining(), describe=fake_describe)
    _same_files(run_dir, FIXTURES / "fake_v1")
    (aside,) = map(json.loads, (run_dir / "evaluations.set-aside.jsonl").read_text().splitlines())
    assert aside["problem"] == "truncated" and aside["text"] == lines[30][:50]
