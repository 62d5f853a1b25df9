import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from afos import data, models, train
from afos.compile import to_jax
from afos.expr import parse

EXPECTED_PARAMS = {
    # conv 1->32 (3*3*1*32+32) + conv 32->64 (3*3*32*64+64) + dense 4*4*64->128 + dense 128->10
    "cnn-small": (9 * 32 + 32) + (9 * 32 * 64 + 64) + (1024 * 128 + 128) + (128 * 10 + 10),
    "mlp": (64 * 128 + 128) + (128 * 64 + 64) + (64 * 10 + 10),
}


@pytest.mark.parametrize("name", list(models.MODELS))
def test_model_shapes_params_and_custom_activation(name):
    act = to_jax(parse("-x*erf(exp(-x))"))
    model = models.build(name, act, (8, 8, 1), 10, seed=0)
    x = jnp.ones((5, 8, 8, 1))
    assert model(x).shape == (5, 10)
    params = nnx.state(model, nnx.Param)
    assert sum(p.size for p in jax.tree.leaves(params)) == EXPECTED_PARAMS[name]

    graphdef, params = nnx.split(model, nnx.Param)
    step, _ = train.make_steps(graphdef, optax.adam(1e-3))
    y = jnp.arange(5) % 10
    grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
        nnx.merge(graphdef, p)(x), y).mean())(params)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("name", list(models.MODELS))
def test_one_training_step_lowers_the_loss_on_a_fixed_batch(name):
    ds = data.load("digits", train_size=64)
    model = models.build(name, jax.nn.relu, ds.input_shape, ds.num_classes, seed=0)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(1e-3)
    step, eval_step = train.make_steps(graphdef, tx)
    x, y = ds.train.x[:64], ds.train.y[:64]
    before, _ = eval_step(params, x, y)
    params, _, _ = step(params, tx.init(params), x, y)
    after, _ = eval_step(params, x, y)
    assert float(after) < float(before)


def test_unknown_model_names_the_available():
    with pytest.raises(ValueError, match="unknown model 'resnet9000' \\(available: cnn-small"):
        models.build("resnet9000", jax.nn.relu, (8, 8, 1), 10, seed=0)


def test_digits_splits_are_disjoint_and_test_is_fixed():
    a, b = data.load("digits", seed=0), data.load("digits", seed=1)
    assert len(a.train) + len(a.val) == len(b.train) + len(b.val) == 1438
    assert len(a.test()) == 359 and a.test_reads == 1
    np.testing.assert_array_equal(a.test().x, b.test().x)
    assert not np.array_equal(a.val.y, b.val.y)
    with pytest.raises(ValueError, match="unknown dataset 'mnist2'"):
        data.load("mnist2")
