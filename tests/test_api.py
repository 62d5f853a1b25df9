"""The Python API as a notebook uses it: a search shows its progress unless told not to, and ``run.best()`` is
the one most accurate function (issue 26, item 5). Trained by the fake training: every number exact, no JAX."""

from fakes import FakeTraining

import afos


def _lines(capsys) -> tuple[list[str], list[str]]:
    out = capsys.readouterr()
    return out.out.splitlines(), out.err.splitlines()


def test_a_search_and_a_resume_from_python_show_their_progress(tmp_path, capsys):
    run = afos.search(None, tmp_path / "run", evaluator=FakeTraining(), population=2, generations=1)
    out, err = _lines(capsys)
    assert out == [] and err[0].startswith("afos search: space default, dataset digits")
    assert any(line.startswith("afos search: anchor relu (") for line in err)
    assert [line.split()[:4] for line in err if line.startswith("gen ")] == [
        ["gen", "0", "(initial)", "2/2"], ["gen", "1/1", "2/2", "trained"]]
    afos.resume(run.path, generations=2, evaluator=FakeTraining())
    out, err = _lines(capsys)
    assert out == [] and [line.split()[:3] for line in err if line.startswith("gen ")] == [["gen", "2/2", "2/2"]]


def test_verbose_false_prints_nothing(tmp_path, capsys):
    run = afos.search(None, tmp_path / "run", evaluator=FakeTraining(), population=2, generations=0, verbose=False)
    afos.resume(run.path, generations=1, evaluator=FakeTraining(), verbose=False)
    assert _lines(capsys) == ([], [])
    assert max(r.generation for r in afos.Run.open(run.path).records()) == 1


def test_best_is_the_most_accurate_function_and_top_the_first_k(tmp_path):
    run = afos.search(None, tmp_path / "run", evaluator=FakeTraining(), population=4, generations=0, verbose=False)
    ranked = run.ranked()
    assert isinstance(run.best(), afos.FrontEntry) and run.best() == ranked[0]
    assert run.top(2) == ranked[:2] and run.top(len(ranked) + 5) == ranked
