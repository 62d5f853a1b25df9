"""Known functions are named wherever a function is shown: scaled relu, swish, gelu and tanh are no discoveries."""

import pytest

from afos import config, export, types
from afos.cli import main
from afos.cli.display import anchor_verdict
from afos.expr import names, parse
from afos.expr.names import known_as, label
from afos.ga.front import FrontEntry
from afos.run.records import Evaluation
from afos.run.rundir import Run


@pytest.mark.parametrize("text, name", [
    ("Max(0, 2*x)", "2*relu(x)"),
    ("3*x*sigmoid(x)", "3*swish(x)"),
    ("x*erf(x) + x", "sqrt(2)*gelu(sqrt(2)*x)"),
    ("tanh(2*x)/2", "tanh(2*x)/2"),
    ("x/(1 + exp(-x))", "swish(x)"),
    ("2*max(x, 0.01*x)", "2*leaky_relu(x)"),
    ("x*tanh(softplus(x))", "mish(x)"),
    ("max(x, 0) + min(0, exp(x) - 1)", "elu(x)"),
    ("sigmoid(3*x)", "sigmoid(3*x)"),
    ("-max(x, 0)", "-relu(x)"),
])
def test_standard_activations_are_named_up_to_input_and_output_scale(text, name):
    assert known_as(parse(text)) == name
    assert label(text) == (text if text == name else f"{text} (= {name})")  # not "tanh(x) (= tanh(x))"


@pytest.mark.parametrize("text", ["x**2", "sinh(x)", "asinh(x)", "max(-x, 0)", "x*sigmoid(x) + 0.01*x**2",
                                  "max(x, tanh(x))", "-x*erf(exp(-x))"])
def test_other_functions_are_not_named(text):
    assert known_as(parse(text)) is None and label(text) == text


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
