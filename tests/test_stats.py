"""Statistics on known numbers: they must equal scipy's and follow Demsar's definitions."""

import numpy as np
import pytest
import scipy.stats

from afos.study import bench, stats

ACTS = ["relu", "elu", "gelu", "tanh"]


def make_spec(**changes):
    values = {"activations": ACTS, "models": ["cnn-small", "mlp"], "datasets": ["digits"], "seeds": 3, "epochs": 2}
    return bench.make_spec(values | changes)


def synthetic_records(spec, rng, missing=()):
    """Records with two epochs of history; elu is made a little better than relu everywhere."""
    out = []
    shift = {"relu": 0.0, "elu": 0.03, "gelu": 0.01, "tanh": -0.05}
    for cell in bench.cells(spec):
        if (cell.activation.label, cell.seed) in missing:
            continue
        acc = 0.8 + shift[cell.activation.label] + rng.normal(0, 0.01)
        history = [{"epoch": e, "test_accuracy": acc - 0.1 / e, "test_loss": 1.0 - acc + 0.1 / e} for e in (1, 2)]
        out.append({"key": cell.key, "activation": cell.activation.label, "model": cell.model.label,
                    "dataset": cell.dataset, "seed": cell.seed, "history": history, "diverged": False})
    return out


def test_scores_array_holds_the_last_epoch_and_case_epochs():
    spec = make_spec(case_epochs=[1])
    records = synthetic_records(spec, np.random.default_rng(0))
    s = stats.scores(spec, records)
    assert s.cases == ["cnn-small/digits", "cnn-small/digits@1", "mlp/digits", "mlp/digits@1"]
    assert s.values.shape == (4, 4, 3)
    r = records[0]
    a, seed = ACTS.index(r["activation"]), spec.seeds.index(r["seed"])
    assert s.values[a, s.cases.index(f"{r['model']}/digits"), seed] == r["history"][-1]["test_accuracy"]
    assert s.values[a, s.cases.index(f"{r['model']}/digits@1"), seed] == r["history"][0]["test_accuracy"]


def test_friedman_equals_scipy_and_ranks_are_one_for_the_best():
    spec = make_spec()
    a = stats.compare(spec, synthetic_records(spec, np.random.default_rng(1)))
    assert a.matrix.shape == (6, 4)  # 2 cases x 3 seeds, one block per run
    expected = scipy.stats.friedmanchisquare(*a.matrix.T)
    assert a.friedman.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert a.friedman.pvalue == pytest.approx(expected.pvalue, rel=1e-12)
    ranks = scipy.stats.rankdata(-a.matrix, axis=1).mean(axis=0)
    assert list(a.friedman.ranks.values()) == pytest.approx(list(ranks))
    assert a.friedman.ranks["elu"] == 1.0 and a.friedman.ranks["tanh"] == 4.0


def test_case_blocks_average_over_seeds():
    spec = make_spec(blocks="case")
    records = synthetic_records(spec, np.random.default_rng(2))
    a = stats.compare(spec, records)
    assert a.block_labels == ["cnn-small/digits", "mlp/digits"]
    assert a.matrix == pytest.approx(np.nanmean(stats.scores(spec, records).values, axis=2).T)


def test_lower_is_better_metrics_rank_the_smallest_first():
    ranks = stats.average_ranks(np.array([[0.1, 0.2, 0.3], [0.2, 0.1, 0.3]]), higher_is_better=False)
    assert list(ranks) == [1.5, 1.5, 3.0]


def test_nemenyi_critical_difference_agrees_with_the_posthoc_pvalues():
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(30, 5)) + np.linspace(0, 1.2, 5)
    labels = list("abcde")
    f = stats.friedman(matrix, labels, higher_is_better=True, alpha=0.05)
    k, n = 5, 30
    q = scipy.stats.studentized_range.ppf(0.95, k, np.inf) / np.sqrt(2)
    assert f.critical_difference == pytest.approx(q * np.sqrt(k * (k + 1) / (6 * n)))
    checked = 0
    for x in labels:
        for y in labels:
            if x < y:
                apart = abs(f.ranks[x] - f.ranks[y]) > f.critical_difference
                assert apart == (f.nemenyi_pvalues[x][y] < 0.05)
                checked += apart
    assert checked >= 1  # the data are made so that some pairs differ


def test_wilcoxon_equals_scipy_and_holm_is_monotone():
    rng = np.random.default_rng(4)
    matrix = rng.normal(scale=0.3, size=(12, 4)) + np.array([0.0, 1.0, 0.0, -0.6])
    out = stats.wilcoxon_vs_baseline(matrix, ACTS, "relu", higher_is_better=True)
    assert [c.activation for c in out] == ["elu", "gelu", "tanh"]
    raw = [scipy.stats.wilcoxon(matrix[:, i], matrix[:, 0]).pvalue for i in (1, 2, 3)]
    assert [c.pvalue for c in out] == pytest.approx(raw, rel=1e-12)
    # Holm: sorted p-values times (m - i), made monotone, capped at 1
    order = np.argsort(raw)
    holm = np.minimum(1, np.maximum.accumulate([raw[j] * (3 - i) for i, j in enumerate(order)]))
    assert [out[j].pvalue_holm for j in order] == pytest.approx(list(holm))
    for c in out:
        assert c.pvalue_holm >= c.pvalue
    corrected = [out[j].pvalue_holm for j in order]
    assert corrected == sorted(corrected)
    assert out[0].verdict == "better" and out[0].significant
    assert out[1].verdict == "no significant difference"
    assert out[2].verdict == "worse"


def test_wins_ties_losses_use_seed_means_and_the_tolerance():
    spec = make_spec(activations=["relu", "elu", "tanh"], tie_tolerance=0.001)
    s = stats.Scores(["relu", "elu", "tanh"], ["a", "b", "c"], [0, 1],
                     np.array([[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]],
                               [[0.6, 0.6], [0.5, 0.5005], [0.4, 0.5]],
                               [[0.4, 0.4], [0.4, 0.4], [0.6, 0.6]]]), "test_accuracy", True)
    records = {r.activation: r for r in stats.wins_ties_losses(s, "relu", spec.tie_tolerance)}
    assert (records["elu"].wins, records["elu"].ties, records["elu"].losses) == (1, 1, 1)
    assert (records["tanh"].wins, records["tanh"].ties, records["tanh"].losses) == (1, 0, 2)
    assert records["tanh"].win_rate == pytest.approx(1 / 3)


def test_missing_cells_drop_their_blocks_and_two_activations_skip_friedman():
    spec = make_spec()
    records = synthetic_records(spec, np.random.default_rng(5), missing={("gelu", 1000)})
    a = stats.compare(spec, records)
    assert a.matrix.shape == (4, 4) and all("seed 1000" not in b for b in a.block_labels)
    two = make_spec(activations=["relu", "elu"])
    b = stats.compare(two, synthetic_records(two, np.random.default_rng(6)))
    assert isinstance(b.friedman, str) and "at least 3 activations" in b.friedman
    assert "Friedman test not run" in stats.markdown(b)
    assert b.comparisons[0].n == 6


def test_markdown_and_dict_hold_the_table():
    spec = make_spec()
    a = stats.compare(spec, synthetic_records(spec, np.random.default_rng(7)))
    text = stats.markdown(a)
    row = next(r for r in a.table if r["activation"] == "elu" and r["case"] == "mlp/digits")
    assert f"{row['mean']:.4f} ± {row['std']:.4f}" in text
    assert f"p = {a.friedman.pvalue:.4g}" in text
    d = a.to_dict()
    assert d["friedman"]["statistic"] == a.friedman.statistic
    assert d["wins_ties_losses"][0]["activation"] == "elu"
