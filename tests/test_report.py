"""`afos report`: self-contained HTML and markdown for benchmark and run directories."""

import base64
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from fakes import write_bench

from afos.cli import main
from afos.run.rundir import Run
from afos.study import bench, report, runner

FIXTURES = Path(__file__).parent / "fixtures"
TINY_SEARCH = ["--population", "2", "--generations", "1", "--train-size", "128", "--val-size", "64"]


@pytest.fixture
def bench_dir(tmp_path):
    """A finished benchmark written by hand (no training): 3 activations, 2 cases, 3 seeds, 3 epochs."""
    spec = bench.make_spec({"activations": "relu,elu,x*erf(x)", "models": ["cnn-small", "mlp"], "seeds": 3,
                            "epochs": 3, "name": "hand"})
    return write_bench(tmp_path, bench.spec_to_dict(spec))


def test_bench_report_is_self_contained_and_holds_the_statistics(bench_dir):
    files = report.build(bench_dir)
    html = files.html.read_text()
    images = html.split("data:image/png;base64,")[1:]
    assert len(images) == 3
    for chunk in images:
        assert base64.b64decode(chunk.split("'")[0])[:4] == b"\x89PNG"
    assert "<img" in html and "src='plots/" not in html  # embedded, not linked
    spec, records = runner.read_results(bench_dir)
    acts = spec.labels
    value = {(r["activation"], r["model"], r["seed"]): r["history"][-1]["test_accuracy"] for r in records}
    blocks = [(m.label, s) for m in spec.models for s in spec.seeds]
    matrix = np.array([[value[a, m, s] for a in acts] for m, s in blocks])
    expected = scipy.stats.friedmanchisquare(*matrix.T)
    assert f"p = {expected.pvalue:.4g}" in html
    assert json.loads(files.stats.read_text())["friedman"]["statistic"] == pytest.approx(expected.statistic)
    relu = [value["relu", "mlp", s] for s in spec.seeds]
    assert f"{np.mean(relu):.4f} ± {np.std(relu, ddof=1):.4f}" in html
    for fragment in ("<th>mlp/digits</th>", "x*erf(x)", "Provenance", "Seeds: 1000, 1001, 1002", "jax ",
                     "scikit-posthocs", "Report made on", "Wilcoxon", "outperforms in"):
        assert fragment in html, fragment


def test_bench_report_markdown_links_the_written_plots(bench_dir):
    files = report.build(bench_dir)
    md = files.markdown.read_text()
    assert {p.name for p in files.plots} == {"cd_diagram.png", "curves.png", "shapes.png"}
    for p in files.plots:
        assert p.read_bytes()[:4] == b"\x89PNG"
        assert f"(plots/{p.name})" in md
    assert "| activation | cnn-small/digits | mlp/digits | avg rank |" in md


def test_report_of_a_half_finished_benchmark_says_so(bench_dir):
    lines = (bench_dir / bench.RESULTS).read_text().splitlines()
    (bench_dir / bench.RESULTS).write_text("\n".join(lines[:9]) + "\n")
    html = report.build(bench_dir).html.read_text()
    assert "9 of 18 cells finished" in html


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "r"
    assert main(["search", "--run-dir", str(path), *TINY_SEARCH, "--seed", "3"]) == 0
    return path


@pytest.mark.slow
def test_run_report_shows_front_history_and_shapes(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    html = (run_dir / report.HTML_NAME).read_text()
    assert html.count("data:image/png;base64,") == 3
    front = Run.open(run_dir).front()
    for e in front:
        assert e.expression.replace("<", "&lt;").replace(">", "&gt;") in html
    assert "Fitness per generation" in html and "search 3, fitness 3" in html
    assert {p.name for p in (run_dir / report.PLOTS_DIR).iterdir()} == {"pareto.png", "history.png", "shapes.png"}
    assert str(run_dir / report.HTML_NAME) in capsys.readouterr().out


def test_report_of_a_directory_that_is_neither_gives_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is neither a benchmark directory (bench.toml) nor a run directory (config.toml)" in err
    assert len(err.strip().splitlines()) == 1


def test_report_of_a_run_without_scored_lines_warns_nothing(tmp_path, capsys):
    """An empty history has no lines to name: no legend, so no matplotlib warning leaks to the user."""
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "run_v1", run_dir)
    (run_dir / "evaluations.jsonl").write_text("")
    (run_dir / "pareto.csv").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning in the figures would raise out of the command
        assert main(["report", str(run_dir)]) == 0
    assert capsys.readouterr().err == ""
