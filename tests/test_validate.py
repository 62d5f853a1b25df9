"""Held-out confirmation: fresh seeds, the test split only after the search, numbers as scipy computes them."""

import csv
import json

import numpy as np
import pytest
from scipy import stats as sps

from afos import config, export
from afos.cli import main
from afos.fitness import data
from afos.run import driver
from afos.run.records import VALIDATION_COLUMNS
from afos.run.rundir import VALIDATION, Run
from afos.study import bench, validate


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """A tiny search whose every dataset load is recorded, then `validate` on it."""
    loaded = []
    original = data.load

    def recording_load(*args, **kwargs):
        ds = original(*args, **kwargs)
        loaded.append(ds)
        return ds

    mp = pytest.MonkeyPatch()
    mp.setattr(data, "load", recording_load)
    cfg = config.override(config.Config(), search={"population": 4, "generations": 0, "seed": 2},
                          fitness={"train_size": 128, "val_size": 64, "seed": 2},
                          protocol={"anchors": ["relu"]})
    run_dir = tmp_path_factory.mktemp("validate") / "run"
    try:
        driver.run(cfg, run_dir)
        search_loads = list(loaded)
        rows = validate.validate(run_dir, top=1, seeds=3, epochs=1)
    finally:
        mp.undo()
    return cfg, run_dir, search_loads, loaded[len(search_loads):], rows


@pytest.mark.slow
def test_the_search_never_reads_the_test_split(validated):
    _, _, search_loads, validation_loads, _ = validated
    assert search_loads and all(ds.test_reads == 0 for ds in search_loads)
    assert validation_loads and all(ds.test_reads > 0 for ds in validation_loads)  # the counter does count


def test_validation_seeds_are_disjoint_from_the_search_seeds(validated):
    cfg, run_dir, _, _, rows = validated
    used = {cfg.fitness.seed}  # the data split and the one initialisation seed
    assert validate.used_seeds(cfg) == used
    fresh = {int(s) for s in rows[0]["seeds"].split()}
    assert len(fresh) == 3 and not fresh & used
    spec = bench.read_spec(Run.open(run_dir).validation_dir)
    assert set(spec.seeds) == fresh
    # a search whose seeds reach into the benchmark range pushes validation above them
    late = config.override(cfg, fitness={"seed": bench.FIRST_SEED}, protocol={"race_seeds": 5})
    seeds = validate.validation_seeds(late, 4)
    assert min(seeds) > max(validate.used_seeds(late)) and not set(seeds) & validate.used_seeds(late)


def test_validation_csv_has_the_columns_and_scipy_numbers(validated):
    _, run_dir, _, _, _ = validated
    with open(run_dir / VALIDATION) as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == VALIDATION_COLUMNS
        rows = {r["activation"]: r for r in reader}
    assert set(rows) == {"front#1", "relu"}
    assert rows["front#1"]["expression"] == Run.open(run_dir).best().expression
    records = [json.loads(line) for line in (Run.open(run_dir).validation_dir / bench.RESULTS).open()]
    acc = {(r["activation"], r["seed"]): r["final"]["test_accuracy"] for r in records}
    seeds = sorted({s for _, s in acc})
    for label in ("front#1",):
        own, base = np.array([acc[label, s] for s in seeds]), np.array([acc["relu", s] for s in seeds])
        row = rows[label]
        assert float(row["test_accuracy_mean"]) == pytest.approx(own.mean())
        assert float(row["test_accuracy_std"]) == pytest.approx(own.std(ddof=1))
        d = own - base
        assert float(row["diff_vs_relu"]) == pytest.approx(d.mean())
        if d.std() > 0:
            low, high = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
            assert (float(row["diff_ci_low"]), float(row["diff_ci_high"])) == pytest.approx((low, high))
            assert float(row["wilcoxon_p"]) == pytest.approx(sps.wilcoxon(d).pvalue)
    assert float(rows["relu"]["diff_vs_relu"]) == 0.0 and float(rows["relu"]["wilcoxon_p"]) == 1.0


def test_paired_difference_matches_scipy():
    a, b = [0.91, 0.90, 0.93, 0.92, 0.95], [0.90, 0.90, 0.91, 0.90, 0.92]
    out = validate.paired_difference(a, b)
    d = np.subtract(a, b)
    low, high = sps.t.interval(0.95, 4, loc=d.mean(), scale=sps.sem(d))
    assert out["diff_vs_relu"] == pytest.approx(d.mean())
    assert (out["diff_ci_low"], out["diff_ci_high"]) == pytest.approx((low, high))
    assert out["wilcoxon_p"] == pytest.approx(sps.wilcoxon(d).pvalue)


def test_validating_again_resumes_and_trains_nothing(validated):
    _, run_dir, _, _, rows = validated
    results = Run.open(run_dir).validation_dir / bench.RESULTS
    before = results.read_text()
    assert validate.validate(run_dir, top=1, seeds=3, epochs=1) == rows
    assert main(["validate", str(run_dir), "--top", "1", "--seeds", "3", "--epochs", "1"]) == 0
    assert results.read_text() == before


def test_show_and_export_display_the_validated_numbers(validated, capsys):
    _, run_dir, _, _, rows = validated
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "Anchors" in out and "Validated on the test split" in out and "(baseline)" in out
    source = export.export_source("numpy", run_dir=str(run_dir), top=1)
    front_row = next(r for r in rows if r["activation"] == "front#1")
    assert f"accuracy {front_row['test_accuracy_mean']:.4f}" in source and "vs relu" in source


def test_validate_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 2
    assert "is not an afos run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_validation_trains_and_tests_on_the_data_the_search_used(tmp_path, tiny_fashion, monkeypatch, capsys,
                                                                 data_loads):
    """A search given --data-dir is validated on the same files (not on another copy found elsewhere)."""
    root, _ = tiny_fashion
    monkeypatch.setenv("AFOS_CACHE_DIR", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    assert main(["search", "--run-dir", str(run_dir), "--dataset", "fashion_mnist", "--data-dir", str(root),
                 "--model", "mlp", "--population", "2", "--generations", "0", "--batch-size", "16"]) == 0, \
        capsys.readouterr().err
    data_loads.clear()  # the search's loads
    assert main(["validate", str(run_dir), "--top", "1", "--seeds", "2", "--epochs", "1"]) == 0
    seen = [(kw["data_dir"], len(ds.test())) for kw, ds in data_loads]
    assert seen and all(entry == (str(root), 30) for entry in seen)  # the 30 test images of the search's files
    assert bench.read_spec(Run.open(run_dir).validation_dir).training.data_dir == str(root)


@pytest.mark.slow
def test_holm_is_the_method_statsmodels_implements():
    from statsmodels.stats.multitest import multipletests

    from afos.study.verdict import holm

    rng = np.random.default_rng(3)
    for _ in range(20):
        p = list(rng.uniform(0, 0.2, rng.integers(1, 8)))
        assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert np.isnan(holm([0.01, float("nan")])[1]) and holm([0.01, float("nan")])[0] == pytest.approx(0.01)


def test_few_seeds_cannot_conclude_and_say_so():
    from afos.study.verdict import cannot_conclude, smallest_p

    assert smallest_p(5) == pytest.approx(0.0625) and smallest_p(10) == pytest.approx(2 / 1024)
    assert "with 4 seeds the verdict cannot be 'better than relu'" in cannot_conclude(4)
    assert cannot_conclude(5) is not None and cannot_conclude(6) is None  # 2/64 < 0.05
    assert cannot_conclude(6, tests=3) is not None and cannot_conclude(10, tests=3) is None
    assert config.Config().protocol.validate_seeds == 10  # the default can conclude for a front of 3


def _row(activation, diff, low, high, p, source="front rank 1", n=10):
    return {"activation": activation, "source": source, "expression": "x", "model": "m", "dataset": "d", "n": n,
            "seeds": "", "epochs": 5, "diff_vs_relu": diff, "diff_ci_low": low, "diff_ci_high": high,
            "wilcoxon_p": p}


def test_one_verdict_per_function_of_the_front():
    from afos.study.verdict import BETTER, NOT_BETTER, UNDECIDED, judge

    rows = judge([_row("relu", 0.0, 0.0, 0.0, 1.0, "anchor"), _row("front#1", 0.02, 0.01, 0.03, 0.002),
                  _row("front#2", -0.01, -0.02, -0.001, 0.3), _row("front#3", 0.01, -0.01, 0.03, 0.02),
                  _row("gelu", 0.01, 0.005, 0.02, 0.002, "anchor")])
    verdicts = {r["activation"]: r["verdict"] for r in rows}
    assert verdicts == {"relu": "", "front#1": BETTER, "front#2": NOT_BETTER, "front#3": UNDECIDED, "gelu": BETTER}
    holm_p = {r["activation"]: r["wilcoxon_p_holm"] for r in rows}
    assert holm_p["front#1"] == pytest.approx(0.006) and holm_p["front#3"] == pytest.approx(0.04)  # 3 in the family
    assert holm_p["gelu"] == pytest.approx(0.002)  # the anchors are a family of their own


def test_a_validation_with_four_seeds_warns_and_the_run_leads_with_its_verdict(validated, capsys):
    _, run_dir, _, _, _ = validated
    assert main(["validate", str(run_dir), "--top", "1", "--seeds", "4", "--epochs", "1"]) == 0
    captured = capsys.readouterr()
    assert "warning: with 4 seeds the verdict cannot be 'better than relu'" in captured.err
    out = captured.out
    assert out.startswith("Verdict on the test split")
    assert "front#1" in out.splitlines()[1] and "UNDECIDED" in out
    assert "on validation accuracy" not in out  # the search's hint gives way to the verdict
    with open(run_dir / VALIDATION) as f:
        rows = list(csv.DictReader(f))
    assert {r["verdict"] for r in rows if r["activation"] == "front#1"} == {"undecided"}
    source = export.export_source("numpy", run_dir=str(run_dir), top=1)
    doc = source.split('"""')[1].splitlines()
    assert doc[2].startswith("Verdict on the test split (cnn-small/digits, 4 seeds, 1 epoch): undecided")
    from afos.study import report

    html = report.build(run_dir).html.read_text()
    assert html.index("Verdict on the test split") < html.index("Pareto front") < html.index("<h2>Anchors</h2>")
