"""Benchmark mode: activation lists, presets, resuming, and the acceptance run on digits."""

import json
import re

import numpy as np
import pytest
import scipy.stats

from afos import config as config_lib
from afos.cli import main
from afos.errors import AfosWarning, BenchError
from afos.ga.front import FrontEntry
from afos.run.files import read_jsonl
from afos.run.rundir import Run
from afos.study import bench, presets, runner, stats

TINY = ["--train-size", "64", "--val-size", "64", "--test-size", "64", "--epochs", "1"]


def fake_run(tmp_path, expressions):
    """A run directory with a front (no training): what `RUN_DIR:topK` reads."""
    run = Run.create(tmp_path / "run-a", config_lib.Config())
    run.write_front([FrontEntry(e, acc, c, 0.5, 1, f"fp{c}", "t") for e, acc, c in expressions])
    return run.path


def test_split_top_level_keeps_commas_inside_calls():
    assert bench.split_top_level("relu, max(x, 0),-x*erf(exp(-x)),run:top3") == [
        "relu", "max(x, 0)", "-x*erf(exp(-x))", "run:top3"]
    with pytest.raises(bench.BenchError, match="unbalanced"):
        bench.split_top_level("max(x, 0")
    with pytest.raises(bench.BenchError, match="empty item"):
        bench.split_top_level("relu,,elu")


def test_activation_list_from_names_expressions_and_a_run(tmp_path):
    run = fake_run(tmp_path, [("tanh(x)", 0.7, 1), ("Max(x, tanh(x))", 0.8, 2), ("x*sigmoid(x)", 0.9, 3)])
    acts = bench.parse_activations(f"relu,max(x, 0.1*x),{run}:top2")
    assert [a.label for a in acts] == ["relu", "max(x, 0.1*x)", "run-a#1", "run-a#2"]
    assert acts[0].expression == "max(x, 0)" and acts[0].source == "standard"
    assert acts[2].expression == "x*sigmoid(x)" and acts[3].expression == "Max(x, tanh(x))"
    assert acts[2].source == f"{run} rank 1"
    assert [a.label for a in bench.parse_activations([str(run)])] == ["run-a#1"]  # no suffix: the best one
    assert len(bench.parse_activations([f"{run}:all"])) == 3
    with pytest.warns(AfosWarning, match=f"{run}:top5: top 5 is past the end: the front of {run} has 3 entries, so all "
                      "3 are benchmarked"):
        assert len(bench.parse_activations([f"{run}:top5"])) == 3


@pytest.mark.parametrize(
    "items, fragment",
    [
        ("relu,relu", "listed twice"),
        ("relu,foo(x)", "neither a standard name"),
        ("relu,__import__('os')", "neither a standard name"),
        ("nowhere:top2", "nowhere: no such directory"),
    ],
)
def test_bad_activation_lists_give_one_line_errors(items, fragment):
    with pytest.raises(bench.BenchError, match=re.escape(fragment)):
        bench.parse_activations(items)


def test_model_options_reach_the_fitness_settings():
    m = bench.parse_model("mlp:topology=64x32")
    assert m.name == "mlp" and m.label == "mlp:topology=64x32" and m.options == (("topology", (64, 32)),)
    spec = bench.make_spec({"models": [{"name": "mlp", "label": "small", "options": {"topology": [16]}}],
                            "seeds": 1})
    assert bench.cells(spec)[0].settings.topology == (16,)
    with pytest.raises(bench.BenchError, match="unknown model 'nope'"):
        bench.parse_model("nope")
    with pytest.raises(bench.BenchError, match="model option 'widths' is not a setting"):
        bench.parse_model("mlp:widths=3")


@pytest.mark.parametrize("item, options", [
    ("cnn-small:batch_size=16", (("batch_size", 16),)),
    ("mlp:learning_rate=0.01;topology=32x16", (("learning_rate", 0.01), ("topology", (32, 16)))),
    ("mlp:train_size=32;val_size=16", (("train_size", 32), ("val_size", 16))),
])
def test_model_options_take_the_type_of_their_setting(item, options):
    model = bench.parse_model(item)
    assert model.options == options
    assert all(type(v) is type(dict(options)[k]) for k, v in model.options)
    spec = bench.make_spec({"models": [item], "seeds": 1, "activations": "relu"})
    settings = bench.cells(spec)[0].settings
    assert all(getattr(settings, k) == v for k, v in options)


@pytest.mark.parametrize("item, fragment", [
    ("mlp:epochs=3", "model option 'epochs' is not a setting model 'mlp' takes"),
    ("cnn-small:topology=64", "model option 'topology' is not a setting model 'cnn-small' takes"),
    ("mlp:batch_size=big", "model option batch_size='big': must be an integer"),
    ("mlp:topology=64xa", "model option topology='64xa': must be widths such as 64x32"),
])
def test_bad_model_options_are_named_with_what_is_allowed(item, fragment):
    with pytest.raises(BenchError) as err:
        bench.parse_model(item)
    message = str(err.value)
    assert fragment in message and "\n" not in message
    if "settings:" in message:
        assert "epochs" not in message.split("settings:")[1]  # what is refused is never listed as allowed


def test_a_model_option_that_changes_the_data_changes_the_data_its_cells_train_on(tmp_path, data_loads):
    spec = bench.make_spec({"activations": "relu", "models": ["mlp:train_size=32", "mlp"], "seeds": 1, "epochs": 1,
                            "train_size": 64, "val_size": 32, "test_size": 32})
    records = runner.run(spec, tmp_path / "b")
    assert sorted((kw["train_size"], len(ds.train)) for kw, ds in data_loads) == [(32, 32), (64, 64)]
    assert len(records) == 2 and len({r["key"] for r in records}) == 2


def test_spec_checks_and_round_trip():
    spec = bench.make_spec({"activations": "elu,gelu,tanh", "seeds": 2})
    assert spec.baseline == "elu"  # no relu: the first activation
    assert spec.seeds == (bench.FIRST_SEED, bench.FIRST_SEED + 1)
    assert bench.spec_from_dict(bench.spec_to_dict(spec)) == spec
    with pytest.raises(bench.BenchError, match="baseline 'relu' is not among"):
        bench.make_spec({"activations": "elu,gelu", "baseline": "relu"})
    with pytest.raises(bench.BenchError, match="unknown key"):
        bench.make_spec({"epoch": 3})
    with pytest.raises(bench.BenchError, match="unknown metric"):
        bench.make_spec({"metric": "f1"})


@pytest.mark.parametrize("name", ["elu-vs-relu", "lrelu-vs-relu-epochs", "six-activations-cnn", "mlp-small-large",
                                  "afos-friedman"])
def test_presets_resolve_in_full_and_quick_form(name):
    assert name in presets.preset_names()
    full = bench.make_spec(presets.load_preset(name))
    quick = bench.make_spec(presets.load_preset(name, quick=True))
    assert full.epochs > 1 and quick.epochs <= 2 and quick.training.train_size == 128
    assert len(quick.seeds) <= 2 and not any(d.startswith("tfds:") for d in quick.datasets)
    if any(d.startswith("tfds:") for d in full.datasets):
        assert any("replaced by" in n for n in quick.notes)


def test_quick_fallback_is_explicit_and_noted():
    values = presets.load_preset("elu-vs-relu", quick=True)
    assert values["datasets"] == ["fashion_mnist"]
    assert any("tfds:cifar10 replaced by fashion_mnist" in n for n in values["notes"])
    with pytest.raises(bench.BenchError, match="unknown preset 'nope'"):
        presets.load_preset("nope")


class Interrupt(runner.SilentReporter):
    def __init__(self, after):
        self.after, self.trained, self.started_with = after, 0, None

    def started(self, total, done):
        self.started_with = (total, done)

    def cell_finished(self, record):
        self.trained += 1
        if self.trained == self.after:
            raise KeyboardInterrupt


def test_an_interrupted_benchmark_resumes_where_it_stopped(tmp_path):
    spec = bench.make_spec({"activations": "relu,tanh", "models": ["mlp"], "seeds": 1, "epochs": 2,
                            "train_size": 64, "val_size": 64, "test_size": 64})
    with pytest.raises(KeyboardInterrupt):
        runner.run(spec, tmp_path, Interrupt(after=1))
    first = read_jsonl(tmp_path / bench.RESULTS)
    assert len(first) == 1
    with open(tmp_path / bench.RESULTS, "a") as f:
        f.write('{"key": "cut off mid-wri')  # a line the kill cut short
    again = Interrupt(after=0)
    records = runner.run(spec, tmp_path, again)
    assert again.started_with == (2, 1) and again.trained == 1
    assert [r["activation"] for r in records] == ["relu", "tanh"]
    assert records[0] == first[0]
    history = records[1]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"):
        assert all(isinstance(h[key], float) for h in history), key


@pytest.fixture(scope="module")
def acceptance(tmp_path_factory):
    """The issue's acceptance run: 3 activations x 2 models x 3 seeds on digits, through the CLI."""
    out = tmp_path_factory.mktemp("bench") / "b"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(["benchmark", "--activations", "relu,elu,max(x, tanh(x))", "--models", "cnn-small,mlp",
                     "--datasets", "digits", "--seeds", "3", "--out", str(out), *TINY])
    return code, out, buf.getvalue()


@pytest.mark.slow
def test_acceptance_benchmark_writes_results_table_and_statistics(acceptance):
    code, out, stdout = acceptance
    assert code == 0
    records = read_jsonl(out / bench.RESULTS)
    assert len(records) == 18
    assert {(r["activation"], r["model"], r["seed"]) for r in records} == {
        (a, m, s) for a in ("relu", "elu", "max(x, tanh(x))") for m in ("cnn-small", "mlp")
        for s in (1000, 1001, 1002)}
    # the Friedman statistic on the raw numbers, recomputed with scipy
    acts = ["relu", "elu", "max(x, tanh(x))"]
    blocks = sorted({(r["model"], r["seed"]) for r in records})
    value = {(r["activation"], r["model"], r["seed"]): r["history"][-1]["test_accuracy"] for r in records}
    matrix = np.array([[value[a, m, s] for a in acts] for m, s in blocks])
    expected = scipy.stats.friedmanchisquare(*matrix.T)
    saved = json.loads((out / "stats.json").read_text())
    assert saved["friedman"]["statistic"] == pytest.approx(expected.statistic)
    assert saved["friedman"]["pvalue"] == pytest.approx(expected.pvalue)
    wilcoxon = scipy.stats.wilcoxon(matrix[:, 1], matrix[:, 0]).pvalue
    assert saved["wilcoxon"][0]["activation"] == "elu"
    assert saved["wilcoxon"][0]["pvalue"] == pytest.approx(wilcoxon)
    assert f"p = {expected.pvalue:.4g}" in stdout
    relu_mlp = [value["relu", "mlp", s] for s in (1000, 1001, 1002)]
    assert stats.format_mean_std(np.mean(relu_mlp), np.std(relu_mlp, ddof=1)) in stdout
    assert "| activation | cnn-small/digits | mlp/digits | avg rank |" in stdout


def test_acceptance_benchmark_writes_plots_and_html(acceptance):
    _, out, stdout = acceptance
    for name in ("cd_diagram", "curves", "shapes"):
        png = (out / "plots" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "<th>cnn-small/digits</th>" in html and "Friedman test over 6 blocks" in html
    assert str(out / "report.html") in stdout


def test_rerunning_a_finished_benchmark_trains_nothing(acceptance, capsys):
    _, out, _ = acceptance
    spec = bench.read_spec(out)
    again = Interrupt(after=0)
    assert len(runner.run(spec, out, again)) == 18
    assert again.trained == 0 and again.started_with == (18, 18)


@pytest.mark.parametrize("name", ["elu-vs-relu", "lrelu-vs-relu-epochs", "six-activations-cnn", "mlp-small-large",
                                  "afos-friedman"])
@pytest.mark.slow
def test_every_preset_runs_in_quick_form(tmp_path, capsys, name):
    out = tmp_path / name
    assert main(["benchmark", "--preset", name, "--quick", "--out", str(out)]) == 0, capsys.readouterr().err
    spec, records = runner.read_results(out)
    assert len(records) == len(bench.cells(spec)) > 0
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert "Wins / ties / losses" in capsys.readouterr().out


@pytest.mark.slow
def test_benchmark_data_dir_reaches_every_cell(tmp_path, tiny_fashion, monkeypatch, capsys, data_loads):
    root, _ = tiny_fashion
    monkeypatch.setenv("AFOS_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "b"
    assert main(["benchmark", "--activations", "relu,tanh,elu", "--models", "mlp", "--datasets", "fashion_mnist",
                 "--data-dir", str(root), "--seeds", "1", "--epochs", "1", "--batch-size", "16",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    spec, records = runner.read_results(out)
    assert spec.training.data_dir == str(root) and len(records) == 3
    seen = [(kw["data_dir"], len(ds.test())) for kw, ds in data_loads]
    assert seen and all(entry == (str(root), 30) for entry in seen)  # the 30 test images of those files
