"""Exported code, run in its own framework, computes what afos measured: values and gradients.

Every array target is imported from a file written to tmp_path and compared with
``afos.compile.to_jax`` (jitted, as afos trains it) on random points that include
large |x|, kinks and zeros of denominators. torch and tensorflow-cpu are part of
the dev extra: these tests are not skipped.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy
import tensorflow as tf
import torch

from afos import config as config_lib
from afos import export
from afos.errors import AfosError
from afos.export import EXPORTERS, ExportError, Item, export_latex
from afos.export.codegen import WALKER_HELPERS
from afos.expr import ExpressionError, ir, parse
from afos.expr.compile import to_jax
from afos.expr.primitives import sigmoid, softplus
from afos.run import driver

ARRAY_FORMATS = ("jax", "flax", "numpy", "torch", "tensorflow")

EXPRESSIONS = [
    "-x*erf(exp(-x))",  # the AFOS paper's example
    "x*sigmoid(x)",
    "max(x, tanh(x))",
    "Max(0, x, tanh(x)/2)",  # n-ary max, folded
    "max(x, 0) + min(x, 0)/4",  # jnp.maximum/minimum split the gradient at ties (x = 0 is a test point)
    "Abs(x) + x*tanh(x)",  # jnp.abs has gradient +1 at 0
    "min(x, sin(x)) + x",
    "sin(x)/(x - 1)",  # a denominator that crosses zero (x = 1 is a test point)
    "x**-2 + cos(x)",  # negative integer power: safe denominator
    "sqrt(Abs(x)) + x",
    "log(1 + Abs(x))*x",
    "log(x) + x",  # safe log of negative arguments
    "sinh(x)/1000",
    "cosh(x) - x",
    "softplus(x) - sigmoid(x)**2",
    "sign(x)*x**2 + x",
    "tan(x)*atan(x)",
    "log(1 + x**4*exp(x))",  # log of ~1e37 at x = 69, 71: TF's own log gradient is off by 1e-4 there
    "asinh(x)*erfc(x)",
    "x*exp(x)",  # exp clipped at 70
    "x**3/(1 + x**16)",  # x**16 overflows float32 at |x| = 1e4: compared where afos is finite
    "Abs(x)**1.5 - x**0.3",  # non-integer numeric powers
    "2**x - x**x",  # general powers
    "exp(2*pi)*x/1000 + E*tanh(x)",  # constant sub-expressions
    "gelu(x)",
    "selu(x)",
    "mish(x)",
]


def _points() -> np.ndarray:
    rng = np.random.default_rng(0)
    moderate = rng.uniform(-6.0, 6.0, 48)
    large = rng.choice([-1.0, 1.0], 48) * 10.0 ** rng.uniform(-3.0, 4.0, 48)  # |x| from 1e-3 to 1e4
    special = [0.0, 1.0, -1.0, 0.5, 69.0, 71.0, -71.0, 100.0, -100.0, 1e4, -1e4, 1.0000001]
    return np.concatenate([moderate, large, special]).astype(np.float32)


XS = _points()


@functools.cache
def _afos(text: str, gain: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Values and gradients of afos's jitted JAX function: what a fitness evaluation trains with (``gain * f``
    at unit gain)."""
    return _jax_values_and_grads(to_jax(ir.scaled(ir.lower(parse(text)), gain)))


def _jax_values_and_grads(fn) -> tuple[np.ndarray, np.ndarray]:
    def both(x):
        values, vjp = jax.vjp(fn, x)
        return values, vjp(jnp.ones_like(values))[0]

    values, grads = jax.jit(both)(jnp.asarray(XS))
    return np.asarray(values), np.asarray(grads)


def _load(source: str, path: Path):
    """Imports generated source the way a user would: a file on disk, through importlib."""
    path.write_text(source)
    name = f"afos_exported_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _assert_agrees(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Where afos is finite the export is finite and within 1e-5 relative (1e-6 absolute: float32 rounding near 0)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    finite = np.isfinite(want)
    assert finite.sum() >= len(want) // 2, f"{what}: afos is mostly non-finite, a useless comparison"
    bad = finite & ~np.isfinite(got)
    assert not bad.any(), f"{what}: non-finite at x = {XS[bad][:5]} where afos is finite"
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-6, err_msg=what)


def _run_torch(module, fn_name: str = "activation"):
    # XLA flushes float32 subnormals to zero (so does TF); torch on CPU keeps them unless asked. Near the top
    # of the float32 range (x**3*exp(70) ~ 1e38) that decides whether 1/value is 0 or a subnormal.
    assert torch.set_flush_denormal(True)
    try:
        x = torch.tensor(XS, requires_grad=True)
        y = getattr(module, fn_name)(x)
        y.backward(torch.ones_like(y))
    finally:
        torch.set_flush_denormal(False)
    return y.detach().numpy(), x.grad.numpy()


def _run_tensorflow(module, fn_name: str = "activation"):
    x = tf.constant(XS)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = getattr(module, fn_name)(x)
    return y.numpy(), tape.gradient(y, x).numpy()


def _run_jax(module, fn_name: str = "activation"):
    return _jax_values_and_grads(getattr(module, fn_name))


def _run_numpy(module, fn_name: str = "activation"):
    return getattr(module, fn_name)(XS), None


RUNNERS = {"jax": _run_jax, "flax": _run_jax, "numpy": _run_numpy, "torch": _run_torch, "tensorflow": _run_tensorflow}


def _check_array_export(fmt: str, module, text: str, fn_name: str = "activation", gain: float | None = None) -> None:
    want_values, want_grads = _afos(text, gain)
    values, grads = RUNNERS[fmt](module, fn_name)
    assert np.asarray(values).dtype == np.float32, f"{fmt} {text}: computes in float32 like afos"
    _assert_agrees(values, want_values, f"{fmt} {text}: values")
    if grads is not None:
        _assert_agrees(grads, want_grads, f"{fmt} {text}: gradients")


def test_every_operation_of_the_intermediate_form_has_an_implementation_in_every_array_dialect():
    from afos.export import export_jax, export_numpy, export_tensorflow, export_torch

    for module in (export_jax, export_numpy, export_tensorflow, export_torch):
        assert set(module.DIALECT.functions) == set(ir.HEADS.values()), module.__name__
        assert set(WALKER_HELPERS) <= set(module.DIALECT.helpers), module.__name__


def test_the_registry_lists_every_target():
    assert set(EXPORTERS) == {"jax", "flax", "numpy", "torch", "tensorflow", "latex", "sympy"}
    assert all(e.name == name for name, e in EXPORTERS.items())


@pytest.mark.parametrize("fmt", ARRAY_FORMATS)
def test_exported_code_agrees_with_afos_in_value_and_gradient(tmp_path, fmt):
    for i, text in enumerate(EXPRESSIONS):
        source = export.export_source(fmt, expr=text)
        assert "afos" not in [line.split()[1].split(".")[0] for line in source.splitlines()
                              if line.startswith(("import ", "from "))], "exported code must not import afos"
        module = _load(source, tmp_path / f"{fmt}_{i}.py")
        _check_array_export(fmt, module, text)


def test_flax_module_and_act_field(tmp_path):
    from flax import nnx

    module = _load(export.export_source("flax", expr="-x*erf(exp(-x))"), tmp_path / "flax_act.py")
    x = jnp.asarray(XS[:8])
    np.testing.assert_array_equal(module.Activation()(x), module.activation(x))

    class Mlp(nnx.Module):
        def __init__(self, act, rngs):
            self.act, self.dense = act, nnx.Linear(8, 2, rngs=rngs)

        def __call__(self, x):
            return self.dense(self.act(x))

    ours = Mlp(module.activation, nnx.Rngs(0))(x[None, :])
    afos = Mlp(to_jax(parse("-x*erf(exp(-x))")), nnx.Rngs(0))(x[None, :])
    np.testing.assert_allclose(ours, afos, rtol=1e-6)


def test_torch_module_and_training_step(tmp_path):
    module = _load(export.export_source("torch", expr="x*sigmoid(x)"), tmp_path / "torch_mod.py")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), module.Activation(), torch.nn.Linear(4, 1))
    silu = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.SiLU(), torch.nn.Linear(4, 1))
    silu.load_state_dict(net.state_dict())
    x = torch.randn(5, 3)
    net(x).sum().backward()
    silu(x).sum().backward()
    for a, b in zip(net.parameters(), silu.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_keras_layer_survives_save_and_load(tmp_path):
    import keras

    module = _load(export.export_source("tensorflow", expr="max(x, tanh(x))"), tmp_path / "tf_layer.py")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), module.Activation(), keras.layers.Dense(1)])
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert any(isinstance(layer, module.Activation) for layer in loaded.layers)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def _sympy_meaning(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with sigmoid and softplus written in exp/log, as the SymPy export writes them."""
    expr = expr.replace(sigmoid, lambda a: 1 / (1 + sympy.exp(-a)))
    return expr.replace(softplus, lambda a: sympy.log(1 + sympy.exp(a)))


def test_sympy_export_rebuilds_the_expression(tmp_path):
    for i, text in enumerate(EXPRESSIONS):
        module = _load(export.export_source("sympy", expr=text), tmp_path / f"sympy_{i}.py")
        assert module.expr == _sympy_meaning(parse(text)), text


@pytest.mark.parametrize(
    "text, latex",
    [
        ("x*sigmoid(x)", r"x \sigma\left(x\right)"),
        ("x*tanh(softplus(x))", r"x \tanh{\left(\operatorname{softplus}\left(x\right) \right)}"),
        ("sigmoid(x)**2", r"\sigma\left(x\right)^{2}"),
        ("-x*erf(exp(-x))", r"- x \operatorname{erf}{\left(e^{- x} \right)}"),
        ("max(x, tanh(x))", r"\max\left(x, \tanh{\left(x \right)}\right)"),
    ],
)
def test_latex(text, latex):
    source = export.export_source("latex", expr=text)
    assert source.splitlines()[-1] == latex
    assert all(line.startswith("%") for line in source.splitlines()[:-1])
    assert export_latex.latex(parse(text)) == latex


# --- a real run --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real, tiny search (the settings of conftest's tiny_config)."""
    config = config_lib.override(
        config_lib.Config(),
        search={"population": 4, "generations": 1, "seed": 3},
        fitness={"train_size": 256, "val_size": 128, "batch_size": 32},
    )
    path = tmp_path_factory.mktemp("export") / "run"
    driver.run(config, path)
    return path


@pytest.mark.slow
def test_top_functions_of_a_real_run_agree_in_every_format(run_dir, tmp_path):
    items = export.items_from_run(run_dir, top=3)
    assert [it.rank for it in items] == list(range(1, len(items) + 1))
    accuracies = [it.entry.val_accuracy for it in items]
    assert accuracies == sorted(accuracies, reverse=True)
    for fmt in ARRAY_FORMATS:
        source = export.render(items, fmt)
        for it in items:
            assert str(run_dir) in source and f"val_accuracy {it.entry.val_accuracy:.6g}" in source
        module = _load(source, tmp_path / f"run_{fmt}.py")
        for it in items:
            fn_name = "activation" if len(items) == 1 else f"activation_{it.rank}"
            _check_array_export(fmt, module, it.entry.expression, fn_name, it.gain)
    sympy_module = _load(export.render(items, "sympy"), tmp_path / "run_sympy.py")
    exprs = [sympy_module.expr] if len(items) == 1 else [getattr(sympy_module, f"expr_{it.rank}") for it in items]
    assert exprs == [sympy.Float(it.gain) * _sympy_meaning(it.expr) for it in items]  # a search's default: unit gain
    assert str(run_dir) in export.render(items, "latex")


def test_rank_selects_one_entry(run_dir):
    ranked = export.items_from_run(run_dir, top=100)
    (second,) = export.items_from_run(run_dir, rank=min(2, len(ranked)))
    assert second.entry == ranked[min(2, len(ranked)) - 1].entry
    assert export.items_from_run(run_dir)[0].entry == ranked[0].entry


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"rank": 99}, "rank 99 is out of range"),
        ({"rank": 0}, "rank 0 is out of range"),
        ({"top": 0}, "top must be at least 1"),
        ({"top": 1, "rank": 1}, "either top or rank"),
    ],
)
def test_bad_selection_of_a_run(run_dir, kwargs, fragment):
    with pytest.raises(ExportError, match=fragment):
        export.items_from_run(run_dir, **kwargs)


def test_bad_requests_give_one_line_errors(tmp_path):
    cases = [
        (lambda: export.export_source("cobol", expr="x"), "unknown format 'cobol' (allowed: jax, flax, numpy"),
        (lambda: export.export_source("jax", run_dir=tmp_path / "nope"), "nope: no such directory"),
        (lambda: export.export_source("jax", expr="x.__class__"), "Attribute is not allowed"),
        (lambda: export.export_source("jax"), "either an expression or a run directory"),
        (lambda: export.export_source("jax", expr="x", rank=2), "top and rank select entries of a run"),
        (lambda: export.render([Item(sympy.gamma(parse("x")))], "torch"), "no implementation for gamma"),
        (lambda: export.render([Item(parse("x") + sympy.Symbol("y"))], "jax"), "unknown symbol y"),
        (lambda: export.export_source("latex", expr="log(-abs(x) - 1)"),
         "'log(-abs(x) - 1)' is not an activation afos would train: constant on [-10, 10]; nothing exported"),
        (lambda: export.export_source("jax", expr="1/(x-x)"),
         "'1/(x-x)' (= zoo) is not an activation afos would train: constant zoo is not a finite real number"),
        (lambda: export.export_source("torch", expr="3*x + 1"), "linear on [-10, 10]"),
    ]
    for call, fragment in cases:
        with pytest.raises(AfosError) as info:  # what the command line prints as one line
            call()
        assert fragment in str(info.value) and "\n" not in str(info.value)
    assert issubclass(ExportError, ValueError) and issubclass(ExpressionError, ValueError)


def test_header_survives_an_odd_run_path(tmp_path):
    """A run path with quotes and newlines cannot break the generated file (or inject code)."""
    from afos.ga.front import FrontEntry

    entry = FrontEntry("x*sigmoid(x)", 0.5, 2, None, 1, "f", "t")
    odd = 'runs/a"""\nimport os; os.system("touch pwned")\n\'b'
    source = export.render([Item(parse("x*sigmoid(x)"), 1, entry, odd)], "numpy")
    module = _load(source, tmp_path / "odd.py")
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert "val_accuracy 0.5" in module.__doc__
    np.testing.assert_allclose(module.activation(np.float32(2.0)), 2.0 / (1.0 + np.exp(-2.0)), rtol=1e-6)


def test_several_items_get_numbered_names(tmp_path):
    items = [Item(parse(t), rank=r) for r, t in enumerate(["x*sigmoid(x)", "tanh(x)*x"], start=1)]
    for fmt in ("torch", "sympy"):
        module = _load(export.render(items, fmt), tmp_path / f"many_{fmt}.py")
        assert {"activation_1", "activation_2"} <= set(vars(module)) or {"expr_1", "expr_2"} <= set(vars(module))


def test_generated_sources_are_deterministic():
    for fmt, text in itertools.product(EXPORTERS, EXPRESSIONS[:3]):
        assert export.export_source(fmt, expr=text) == export.export_source(fmt, expr=text)


# --- command line --------------------------------------------------------------------------


def test_cli_exports_a_run_and_an_expression(run_dir, tmp_path, capsys):
    from afos.cli import main

    out = tmp_path / "top2.py"
    assert main(["export", str(run_dir), "--top", "2", "--format", "torch", "-o", str(out)]) == 0
    module = _load(out.read_text(), out)
    items = export.items_from_run(run_dir, top=2)
    fn_name = "activation" if len(items) == 1 else "activation_1"
    _check_array_export("torch", module, items[0].entry.expression, fn_name, items[0].gain)
    assert main(["export", str(run_dir), "--rank", "1", "--format", "sympy"]) == 0
    assert "expr = " in capsys.readouterr().out
    assert main(["export", "--expr", "x*sigmoid(x)", "--format", "latex"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == r"x \sigma\left(x\right)"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["export", "nope", "--format", "jax"], "nope: no such directory"),
        (["export", "--expr", "log(-abs(x)-1)", "--format", "latex"], "not an activation afos would train"),
        (["export", "RUN", "--rank", "99", "--format", "jax"], "rank 99 is out of range"),
        (["export", "RUN", "--format", "cobol"], "unknown format 'cobol' (allowed: jax, flax, numpy, torch"),
        (["export", "--expr", "__import__('os')", "--format", "jax"], "unknown function '__import__'"),
        (["export", "--format", "jax"], "either an expression or a run directory"),
    ],
)
def test_cli_errors_are_one_line(run_dir, capsys, args, fragment):
    from afos.cli import main

    assert main([str(run_dir) if a == "RUN" else a for a in args]) == 2
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if "error:" in ln]
    assert fragment in line


@pytest.mark.parametrize("fmt", ARRAY_FORMATS)
def test_a_function_trained_at_unit_gain_is_exported_with_its_gain(tmp_path, fmt):
    from afos.expr import analyse

    for i, text in enumerate(["x*sigmoid(x)", "max(x, 0)", "x*erf(x) + x", "-x*erf(exp(-x))"]):
        candidate = analyse(parse(text), gain="unit")  # what a search with unit gain trains: g * f
        source = export.export_source(fmt, expr=text, gain="unit")
        assert f"g = {candidate.gain!r}" in source  # the export states it
        module = _load(source, tmp_path / f"gain_{fmt}_{i}.py")
        assert candidate.gain != 1.0
        _check_array_export(fmt, module, text, gain=candidate.gain)  # g * f, as trained
    assert r"1.414 \cdot \left(\max\left(0, x\right)\right)" in export.export_source("latex", expr="max(x, 0)",
                                                                                       gain="unit")
