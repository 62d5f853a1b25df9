import dataclasses
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from afos import config as config_lib
from afos.cli import main
from afos.cli.commands import parse_topology
from afos.expr import STANDARD_ACTIVATIONS, parse
from afos.expr.compile import to_jax
from afos.fitness import data, layers, train
from afos.fitness import zoo as models
from afos.fitness.problem import FitnessProblem


def _conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def _dense(din, dout):
    return din * dout + dout


def _bn(c):
    return 2 * c  # scale and bias (the running statistics are not parameters)


# parameter counts on 8x8x1 inputs with 10 classes, from each architecture's layer list
EXPECTED_PARAMS = {
    "cnn-small": _conv(3, 1, 32) + _conv(3, 32, 64) + _dense(4 * 4 * 64, 128) + _dense(128, 10),
    "mlp": _dense(64, 128) + _dense(128, 64) + _dense(64, 10),
    # valid convs: 8 -> 6 -> 4, pool -> 2x2x64
    "mnist-cnn": _conv(3, 1, 32) + _conv(3, 32, 64) + _dense(2 * 2 * 64, 128) + _dense(128, 10),
    # resized to 10x10 (min_input): 10 -> 8 -> pool 4 -> 2 -> pool 1
    "keras-cifar10-cnn": _conv(3, 1, 32) + _conv(3, 32, 32) + _conv(3, 32, 64) + _conv(3, 64, 64)
    + _dense(64, 512) + _dense(512, 10),
    "afos-vgg": _conv(3, 1, 32) + _conv(1, 32, 32) + _conv(3, 32, 64) + _conv(1, 64, 64) + _conv(3, 64, 128)
    + _conv(1, 128, 128) + _dense(128, 10),
    "resnet20": _conv(3, 1, 16, False) + _bn(16)
    + 3 * 2 * (_conv(3, 16, 16, False) + _bn(16))
    + (_conv(3, 16, 32, False) + _conv(3, 32, 32, False) + _conv(1, 16, 32, False) + 3 * _bn(32))
    + 2 * 2 * (_conv(3, 32, 32, False) + _bn(32))
    + (_conv(3, 32, 64, False) + _conv(3, 64, 64, False) + _conv(1, 32, 64, False) + 3 * _bn(64))
    + 2 * 2 * (_conv(3, 64, 64, False) + _bn(64))
    + _dense(64, 10),
    "vgg-small": _conv(3, 1, 32) + _conv(3, 32, 32) + _conv(3, 32, 64) + _conv(3, 64, 64) + _conv(3, 64, 128)
    + _conv(3, 128, 128) + _dense(128, 256) + _dense(256, 10),
    "mobilenet-small": _conv(3, 1, 32, False) + _bn(32)
    + sum(9 * cin + _bn(cin) + cin * cout + _bn(cout) for cin, cout in ((32, 64), (64, 128), (128, 128), (128, 256)))
    + _dense(256, 10),
    # resized to 16x16: three 3x3/2 pools leave 1x1x64
    "alexnet-small": _conv(5, 1, 32) + _conv(5, 32, 64) + _conv(3, 64, 96) + _conv(3, 96, 96) + _conv(3, 96, 64)
    + _dense(64, 256) + _dense(256, 128) + _dense(128, 10),
    # tokenizer, 16 positional embeddings, 2 x (2 layer norms, attention q/k/v/out, MLP 64-128-64), norm, pool
    "cct-small": _conv(3, 1, 64, False) + 16 * 64
    + 2 * (2 * 128 + 4 * _dense(64, 64) + _dense(64, 128) + _dense(128, 64)) + 128 + _dense(64, 1) + _dense(64, 10),
}

CUSTOM = "-x*erf(exp(-x))"


def test_every_model_has_an_expected_parameter_count():
    assert set(EXPECTED_PARAMS) == set(models.MODELS)


@pytest.mark.parametrize("name", list(models.MODELS))
def test_model_output_shape_and_parameter_count(name):
    act = to_jax(parse(CUSTOM))
    # abstract (shapes only): nothing is initialised or compiled
    abstract = nnx.eval_shape(lambda: models.build(name, act, (8, 8, 1), 10, seed=0, selu=False))
    assert sum(p.size for p in jax.tree.leaves(nnx.state(abstract, nnx.Param))) == EXPECTED_PARAMS[name]
    out = jax.eval_shape(lambda: models.build(name, act, (8, 8, 1), 10, seed=0, selu=False)(jnp.ones((5, 8, 8, 1))))
    assert out.shape == (5, 10)


@pytest.mark.parametrize("name", list(models.MODELS))
@pytest.mark.slow
def test_one_training_step_with_a_custom_activation_has_finite_gradients_and_lowers_the_loss(name):
    ds = data.load("digits", train_size=64)
    x, y = ds.train.x[:64], ds.train.y[:64]
    model = models.build(name, to_jax(parse(CUSTOM)), ds.input_shape, ds.num_classes, seed=0)
    graphdef, state = nnx.split(model)
    tx = optax.adam(1e-3)
    step, _ = train.make_steps(graphdef, tx)
    new_state, opt_state, before = step(state, tx.init(nnx.state(model, nnx.Param)), x, y)
    # Adam's first update is -lr * g / (|g| + eps) per parameter: finite new parameters <=> finite gradients
    old_params, rest = nnx.split_state(state, nnx.Param, ...)
    params, new_rest = nnx.split_state(new_state, nnx.Param, ...)
    assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(params))
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(old_params), jax.tree.leaves(params))]
    assert np.mean(changed) > 0.9  # nearly every parameter got a gradient
    # batch statistics and dropout RNG counts (where the model has them) moved on
    assert all(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(rest), jax.tree.leaves(new_rest))
               if not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key))
    # the same training-mode loss after the step: the RNG rewound gives the same dropout masks
    _, _, after = step(nnx.merge_state(params, rest), opt_state, x, y)
    assert float(after) < float(before)


def test_parameter_only_state_still_trains_models_without_dropout_or_batch_norm():
    ds = data.load("digits", train_size=64)
    model = models.build("mlp", jax.nn.relu, ds.input_shape, ds.num_classes, seed=0)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(1e-2)
    step, eval_step = train.make_steps(graphdef, tx)
    x, y = ds.train.x[:64], ds.train.y[:64]
    before, _ = eval_step(params, x, y)
    params, _, _ = step(params, tx.init(params), x, y)
    after, _ = eval_step(params, x, y)
    assert float(after) < float(before)


def test_dropout_model_trains_differently_each_step_but_evaluates_deterministically():
    ds = data.load("digits", train_size=64)
    model = models.build("mnist-cnn", jax.nn.relu, ds.input_shape, ds.num_classes, seed=0)
    graphdef, state = nnx.split(model)
    tx = optax.sgd(0.0)  # no update: only the dropout masks can change the loss
    step, eval_step = train.make_steps(graphdef, tx)
    x, y = ds.train.x[:64], ds.train.y[:64]
    opt_state = tx.init(nnx.state(model, nnx.Param))
    state1, _, loss1 = step(state, opt_state, x, y)
    _, _, loss2 = step(state1, opt_state, x, y)
    assert float(loss1) != float(loss2)  # the dropout RNG advanced
    assert float(eval_step(state, x, y)[0]) == float(eval_step(state1, x, y)[0])  # eval: no dropout


def test_selu_gets_lecun_normal_init_and_alpha_dropout():
    selu = to_jax(parse(STANDARD_ACTIVATIONS["selu"]))  # as a searched expression
    assert layers.is_selu(selu) and layers.is_selu(jax.nn.selu)
    assert not layers.is_selu(jax.nn.elu) and not layers.is_selu(jax.nn.relu)
    with_selu = models.build("mnist-cnn", selu, (28, 28, 1), 10, seed=0)
    plain = models.build("mnist-cnn", jax.nn.relu, (28, 28, 1), 10, seed=0)
    assert isinstance(with_selu.drop1, layers.AlphaDropout) and isinstance(plain.drop1, nnx.Dropout)
    # LeCun normal: std 1/sqrt(fan_in); the Keras default, Glorot uniform: std sqrt(2/(fan_in+fan_out))
    kernel = np.asarray(with_selu.dense1.kernel[...])
    assert abs(kernel.std() * np.sqrt(kernel.shape[0]) - 1.0) < 0.05
    glorot = np.asarray(plain.dense1.kernel[...])
    assert abs(glorot.std() - np.sqrt(2.0 / sum(glorot.shape))) < 0.05 * glorot.std()
    forced = models.build("mnist-cnn", jax.nn.relu, (28, 28, 1), 10, seed=0, selu=True)
    assert isinstance(forced.drop2, layers.AlphaDropout)


def test_alpha_dropout_keeps_zero_mean_and_unit_variance():
    layer = layers.AlphaDropout(0.3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (200_000,))
    out = np.asarray(layer(x))
    assert abs(out.mean()) < 0.02 and abs(out.std() - 1.0) < 0.02
    assert np.mean(out != np.asarray(x)) > 0.25  # it did drop units
    layer.eval()
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(x))


def test_small_inputs_are_resized_to_the_models_minimum():
    assert models.AlexNetSmall.input_hw((8, 8, 1)) == (16, 16)
    assert models.AlexNetSmall.input_hw((28, 14, 3)) == (32, 16)
    assert models.CNNSmall.input_hw((28, 28, 1)) == (28, 28)
    model = models.build("alexnet-small", jax.nn.relu, (8, 8, 1), 10, seed=0)
    x = jnp.ones((2, 8, 8, 1))
    assert model.fit_input(x).shape == (2, 16, 16, 1)
    np.testing.assert_allclose(np.asarray(model.fit_input(x)), 1.0, rtol=1e-6)


def test_mlp_topology_and_unknown_options():
    model = models.build("mlp", jax.nn.relu, (8, 8, 1), 10, seed=0, topology=(64, 32))
    assert [layer.kernel.shape for layer in model.hidden] == [(64, 64), (64, 32)]
    with pytest.raises(ValueError, match="model 'cnn-small' has no option 'topology'"):
        models.build("cnn-small", jax.nn.relu, (8, 8, 1), 10, seed=0, topology=(64,))
    with pytest.raises(ValueError, match="mlp topology must be one or more positive widths"):
        models.build("mlp", jax.nn.relu, (8, 8, 1), 10, seed=0, topology=(64, 0))
    with pytest.raises(ValueError, match="unknown model 'resnet9000' \\(available: cnn-small"):
        models.build("resnet9000", jax.nn.relu, (8, 8, 1), 10, seed=0)


def test_topology_round_trips_through_toml_and_reaches_fit():
    config = config_lib.override(config_lib.Config(), fitness={"model": "mlp", "topology": [16, 8],
                                                               "train_size": 64, "val_size": 32})
    assert config.fitness.topology == (16, 8)
    again = config_lib.from_dict(tomllib.loads(config_lib.dumps(config)))
    assert again.fitness == config.fitness
    with pytest.raises(config_lib.ConfigError, match="topology: must be a list of integers"):
        config_lib.override(config, fitness={"topology": ["a"]})
    with pytest.raises(config_lib.ConfigError, match="fitness.topology must be positive"):
        config_lib.override(config, fitness={"topology": [4, -1]})
    result = FitnessProblem(config.fitness).score(jax.nn.relu, config.fitness.seed)
    assert 0.0 <= result.val_accuracy <= 1.0 and not result.diverged
    broken = dataclasses.replace(config.fitness, model="cnn-small")
    with pytest.raises(ValueError, match="has no option 'topology'"):
        FitnessProblem(broken)


def test_cli_topology_parsing(capsys):
    assert parse_topology("64,32") == [64, 32] and parse_topology(None) is None
    for bad in ("64,,32", "a", "0", ""):
        with pytest.raises(ValueError, match="--topology must be comma-separated positive layer widths"):
            parse_topology(bad)
    assert main(["search", "--model", "mlp", "--topology", "64,x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--topology must be comma-separated" in err


def test_fit_trains_a_dropout_model_deterministically():
    problem = FitnessProblem(config_lib.FitnessSettings(model="mnist-cnn", epochs=2, train_size=256, val_size=64))
    first = problem.score(jax.nn.relu, 0)
    assert first == problem.score(jax.nn.relu, 0)  # the dropout RNG comes from the seed
    assert first.val_accuracy > 0.3 and not first.diverged
