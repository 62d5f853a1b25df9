"""Known functions are named wherever a function is shown: scaled relu, swish, gelu and tanh are no discoveries."""

import pytest

from afos import config, export, types
from afos.cli import main
from afos.cli.display import RichReporter, anchor_verdict
from afos.expr import STANDARD_ACTIVATIONS, names, parse, to_text
from afos.expr.names import known_as, label
from afos.ga.front import FrontEntry
from afos.run.records import Evaluation
from afos.run.rundir import Run
from afos.study import report


@pytest.mark.parametrize("text, name, shown", [
    ("Max(0, 2*x)", "2*relu(x)", "Max(0, 2*x) (= 2*relu(x))"),
    ("3*x*sigmoid(x)", "3*swish(x)", "3*x*sigmoid(x) (= 3*swish(x))"),
    ("x*erf(x) + x", "sqrt(2)*gelu(sqrt(2)*x)", "x*erf(x) + x (= sqrt(2)*gelu(sqrt(2)*x))"),
    ("tanh(2*x)/2", "tanh(2*x)/2", "tanh(2*x)/2"),  # not "tanh(2*x)/2 (= tanh(2*x)/2)"
    ("x/(1 + exp(-x))", "swish(x)", "x/(1 + exp(-x)) (= swish)"),
    ("2*max(x, 0.01*x)", "2*leaky_relu(x)", "2*Max(0.01*x, x) (= 2*leaky_relu(x))"),
    ("x*tanh(softplus(x))", "mish(x)", "x*tanh(softplus(x)) (= mish)"),
    ("max(x, 0) + min(0, exp(x) - 1)", "elu(x)", "Max(0, x) + Min(0, exp(x) - 1) (= elu)"),
    ("sigmoid(3*x)", "sigmoid(3*x)", "sigmoid(3*x)"),
    ("-max(x, 0)", "-relu(x)", "-Max(0, x) (= -relu(x))"),
    ("tanh(x)", "tanh(x)", "tanh(x)"),
    ("relu(x)", "relu(x)", "Max(0, x) (= relu)"),
])
def test_standard_activations_are_named_up_to_input_and_output_scale(text, name, shown):
    assert known_as(parse(text)) == name
    assert label(text) == shown


@pytest.mark.parametrize("text", ["x**2", "sinh(x)", "asinh(x)", "max(-x, 0)", "x*sigmoid(x) + 0.01*x**2",
                                  "max(x, tanh(x))", "-x*erf(exp(-x))"])
def test_other_functions_are_not_named(text):
    assert known_as(parse(text)) is None and label(text) == names.canonical(text)


def test_the_closing_sentence_never_calls_a_known_function_a_discovery():
    front = [FrontEntry("x*erf(x) + x", 0.98, 4, 0.1, 1, "f", "t")]
    anchor = Evaluation(-1, 0, "relu", "Max(0, x)", "k", "r", 2, types.ANCHOR, None, 0.9, 0.3, None, 1, (0.9,), 1.0)
    sentence = anchor_verdict(front, [anchor])
    assert "which is sqrt(2)*gelu(sqrt(2)*x): a known function, not a discovery" in sentence
    assert "not a discovery" not in anchor_verdict([FrontEntry("max(x, tanh(x))", 0.98, 4, 0.1, 1, "f", "t")],
                                                   [anchor])


def test_show_and_export_name_a_known_function(tmp_path, capsys):
    run = Run.create(tmp_path / "run", config.Config().resolved())
    run.write_front([FrontEntry("Max(0, 2*x)", 0.97, 3, 0.1, 1, "fp", "relu(add(x, x))", None, 1, 0.7071)])
    assert main(["show", str(run.path)]) == 0
    assert "2*relu(x)" in capsys.readouterr().out
    source = export.export_source("jax", run_dir=run.path)
    assert "Known function: 2*relu(x)" in source and "g = 0.7071" in source


RELU, GELU = "Max(0, x) (= relu)", "x*(erf(sqrt(2)*x/2) + 1)/2 (= gelu)"
OTHER_SPELLINGS = ("max(x, 0)", "relu(x)", "x*(1 + erf(x/sqrt(2)))/2")  # how relu and gelu were also shown


def _validated_run(tmp_path) -> Run:
    """A run whose front's best is relu as a search writes it, with the anchors relu and gelu as its log holds them
    and the validation rows `afos validate` writes (anchors spelt as ``STANDARD_ACTIVATIONS``, the front as stored)."""
    run = Run.create(tmp_path / "run", config.Config().resolved())
    run.write_front([FrontEntry("Max(0, x)", 0.97, 2, 0.1, 1, "fp", "relu(x)")])
    rows = []
    for i, name in enumerate(("relu", "gelu")):
        expr = to_text(parse(STANDARD_ACTIVATIONS[name]))
        run.append(Evaluation(-1, i, name, expr, "k", f"f{i}", 3, types.ANCHOR, None, 0.9, 0.3, None, 1, (0.9,), 1.0))
    for act, source, expression in (("front#1", "front rank 1", "Max(0, x)"),
                                    ("relu", "anchor", STANDARD_ACTIVATIONS["relu"]),
                                    ("gelu", "anchor", STANDARD_ACTIVATIONS["gelu"])):
        rows.append({"activation": act, "source": source, "expression": expression, "model": "mlp",
                     "dataset": "digits", "seeds": "101 102 103", "epochs": 1, "n": 3, "test_accuracy_mean": 0.9,
                     "test_accuracy_std": 0.01, "diff_vs_relu": 0.0, "diff_ci_low": -0.01, "diff_ci_high": 0.01,
                     "wilcoxon_p": 1.0})
    run.write_validation(rows)
    return run


def test_relu_and_gelu_are_spelt_one_way_in_show_validate_report_and_export(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # whole table cells: the spelling, not the terminal's width, is tested
    run = _validated_run(tmp_path)
    assert main(["show", str(run.path)]) == 0  # what `afos validate` prints too: the verdict, front, anchors, table
    out = capsys.readouterr().out
    assert not [s for s in OTHER_SPELLINGS if s in out], out
    assert f"front#1 {RELU}: " in out  # the verdict line
    lines = out.splitlines()
    assert [line for line in lines if RELU in line and "0.9700" in line]  # the front
    assert len([line for line in lines if RELU in line and "relu" in line.split()[:2]]) == 2  # anchors, validation
    assert len([line for line in lines if GELU in line]) == 2  # its anchor line and its validation row
    html = report.run_report(run.path)[0]
    text = str(html.blocks)
    assert RELU in text and GELU in text and not [s for s in OTHER_SPELLINGS if s in text]
    source = export.export_source("jax", run_dir=run.path)
    assert "Expression: Max(0, x)\n" in source and "Known function: relu\n" in source
    assert not [s for s in OTHER_SPELLINGS if s in source]


def test_a_standard_activation_as_written_is_named_without_a_fit(monkeypatch):
    """A run's anchors are named at no cost (no SciPy fit): ``afos show`` stays fast."""
    names.label.cache_clear()
    monkeypatch.setattr(names, "_fit", lambda *args: pytest.fail("fitted a standard activation"))
    for name in names.KNOWN:
        said = "" if name in ("sigmoid", "tanh", "softplus") else f" (= {name})"  # written as their names already
        assert names.label(STANDARD_ACTIVATIONS[name]) == names.canonical(STANDARD_ACTIVATIONS[name]) + said
    assert names.label(STANDARD_ACTIVATIONS["silu"]) == "x*sigmoid(x) (= swish)"
    names.label.cache_clear()


def test_the_progress_line_names_the_best_so_far():
    reporter = RichReporter(1)
    reporter.evaluated(Evaluation(0, 0, "relu(x)", "Max(0, x)", "k", "f", 2, types.OK, None, 0.9, 0.3, None, 1,
                                  (0.9,), 1.0))
    assert reporter._fields()["best"] == f"0.9000 {RELU}"


@pytest.mark.parametrize("text, said", [
    ("tanh(x)", "tanh"),
    ("relu(x)", "relu"),
    ("x*(1 + erf(x/sqrt(2)))/2", "gelu"),
    ("Max(0, 2*x)", "2*relu(x) (relu at another input or output scale)"),
    ("tanh(2*x)", "tanh(2*x) (tanh at another input or output scale)"),
])
def test_another_scale_is_said_only_where_the_scale_differs(text, said):
    source = export.export_source("numpy", expr=text)
    assert f"Known function: {said}\n" in source


def test_the_closing_sentence_names_a_known_function_at_its_own_scale_by_its_name():
    anchor = Evaluation(-1, 0, "relu", "Max(0, x)", "k", "r", 2, types.ANCHOR, None, 0.9, 0.3, None, 1, (0.9,), 1.0)
    sentence = anchor_verdict([FrontEntry("max(x, 0)", 0.98, 2, 0.1, 1, "f", "t")], [anchor])
    assert sentence.startswith("best of the front Max(0, x) (0.9800)")
    assert "which is relu: a known function, not a discovery" in sentence


@pytest.mark.parametrize("f, t", [
    ("3*sin(2*x + 1) - 1", "sin(x)"),  # every one of the four numbers
    ("cos(x)", "sin(x)"),  # a shift of the input by pi/2
    ("-x*sin(x)", "x*sin(x)"),  # the output negated
    ("sigmoid(-x)*sin(-x)", "sigmoid(x)*sin(x)"),  # the input negated
    ("x*sin(1.1*x)", "x*sin(x)"),  # an input scale and the output scale that undoes its x factor
    ("sigmoid(x)", "tanh(x)"),  # (tanh(x/2) + 1) / 2
    ("Max(2*x + 1, sin(2*x + 1))", "max(x, sin(x))"),
    ("exp(-abs(2*x - 1))", "exp(-abs(x))"),
])
def test_equal_up_to_affine_maps_of_input_and_output(f, t):
    fit = names.affine_fit(parse(f), parse(t))
    assert fit.equal and fit.error < 1e-6, fit
    assert names.recovers(parse(f), parse(t))


@pytest.mark.parametrize("f, t", [
    ("tanh(x)", "erf(x)"),  # close, but not the same shape (about 1e-2)
    ("x*sigmoid(x)", "x*(1 + erf(x/sqrt(2)))/2"),  # swish is not gelu at any scale
    ("x*sin(x) + 0.01*x**2", "x*sin(x)"),
    ("tanh(x)**3", "tanh(x**3)"),
    ("x**2", "cos(x)"),  # only in the limit of a vanishing input scale, which is not an equality
    ("sinh(sin(sin(x)))", "x*sin(x)"),
])
def test_near_misses_are_refused(f, t):
    fit = names.affine_fit(parse(f), parse(t))
    assert not fit.equal and fit.error > 10 * names.AFFINE_TOLERANCE, fit
    assert not names.recovers(parse(f), parse(t))


def test_the_affine_fit_gives_the_map():
    fit = names.affine_fit(parse("3*softplus(2*x - 0.5) + 1"), parse("softplus(x)"))  # unique: no symmetry
    assert (fit.a, fit.b, fit.c, fit.d) == pytest.approx((3.0, 2.0, -0.5, 1.0), abs=1e-5)
