import gzip

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import write_idx as _write_idx

from afos.fitness import data


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test gets its own empty cache and no $AFOS_DATA_DIR of the machine."""
    monkeypatch.setenv("AFOS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AFOS_DATA_DIR", raising=False)
    return tmp_path / "cache"


def test_digits_splits_are_disjoint_and_test_is_fixed():
    a, b = data.load("digits", seed=0), data.load("digits", seed=1)
    assert len(a.train) + len(a.val) == len(b.train) + len(b.val) == 1438
    assert len(a.test()) == 359 and a.test_reads == 1
    np.testing.assert_array_equal(a.test().x, b.test().x)
    assert not np.array_equal(a.val.y, b.val.y)
    with pytest.raises(ValueError, match="unknown dataset 'mnist2' \\(available: digits, fashion_mnist, tfds:NAME"):
        data.load("mnist2")


def test_fashion_mnist_from_idx_files_is_normalised_split_and_cached(tiny_fashion, monkeypatch, cache_dir):
    root, arrays = tiny_fashion
    ds = data.load("fashion_mnist", seed=3, val_fraction=0.2, data_dir=str(root))
    assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
    assert (len(ds.train), len(ds.val)) == (80, 20)
    assert np.bincount(ds.val.y).tolist() == [2] * 10  # stratified
    assert ds.train.x.dtype == np.float32 and ds.train.x.min() >= 0.0 and ds.train.x.max() <= 1.0
    test = ds.test()
    np.testing.assert_allclose(test.x[..., 0], arrays["x_test"] / 255.0, rtol=1e-6)  # the official test split
    np.testing.assert_array_equal(test.y, arrays["y_test"])
    # every training image is one of the files' training images, each used once
    flat = {img.tobytes() for img in (arrays["x_train"] / 255.0).astype(np.float32)}
    seen = [img[..., 0].tobytes() for img in np.concatenate([ds.train.x, ds.val.x])]
    assert set(seen) == flat and len(seen) == len(flat)

    assert len(list(cache_dir.glob("fashion_mnist-*.npz"))) == 1
    monkeypatch.setattr(data, "_read_idx", lambda path: pytest.fail("the second load parsed the files"))
    again = data.load("fashion_mnist", seed=3, val_fraction=0.2, data_dir=str(root))
    np.testing.assert_array_equal(again.train.x, ds.train.x)
    other = data.load("fashion_mnist", seed=4, train_size=10, val_size=5, data_dir=str(root))
    assert (len(other.train), len(other.val)) == (10, 5) and not np.array_equal(other.val.y, ds.val.y[:5])


def test_fashion_mnist_cache_follows_the_source_files(tiny_fashion, cache_dir, monkeypatch):
    root, _ = tiny_fashion
    monkeypatch.setenv("AFOS_DATA_DIR", str(root))  # found through the environment this time
    data.load("fashion_mnist")
    _write_idx(root / data.FASHION_MNIST_FILES["y_test"], np.zeros(30))  # the files changed
    assert set(data.load("fashion_mnist").test().y.tolist()) == {0}
    assert len(list(cache_dir.glob("fashion_mnist-*.npz"))) == 2


def test_fashion_mnist_missing_files_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(data.DataError) as err:
        data.load("fashion_mnist", data_dir=str(tmp_path))
    message = str(err.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message and "train-images-idx3-ubyte.gz" in message


def test_a_file_that_is_not_idx_is_a_clear_error(tiny_fashion):
    root, _ = tiny_fashion
    with gzip.open(root / data.FASHION_MNIST_FILES["x_train"], "wb") as f:
        f.write(b"\x12\x34\x56\x78 not idx")
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.gz: not an unsigned-byte IDX file"):
        data.load("fashion_mnist", data_dir=str(root))


def test_real_fashion_mnist_files():
    """The real files (``.ci/run`` installs Debian's dataset-fashion-mnist)."""
    ds = data.load("fashion_mnist", seed=0, train_size=500, val_size=200)
    assert (len(ds.train), len(ds.val)) == (500, 200)
    test = ds.test()
    assert test.x.shape == (10_000, 28, 28, 1) and np.bincount(test.y).tolist() == [1000] * 10
    assert ds.train.x.dtype == np.float32 and ds.train.x.max() == 1.0 and ds.train.x.min() == 0.0


def test_tfds_dataset_through_data_source_with_its_own_test_split():
    with tfds.testing.mock_data(num_examples=20):
        ds = data.load("tfds:mnist", seed=0, val_fraction=0.25)
    assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
    assert len(ds.train) + len(ds.val) == 20 and len(ds.test()) == 20
    assert ds.train.x.dtype == np.float32 and ds.train.x.min() >= 0.0 and ds.train.x.max() <= 1.0
    assert ds.train.x.max() > 0.5  # normalised from uint8, not left at 0..255 nor crushed


def test_tfds_variable_size_images_are_resized_to_one_size():
    with tfds.testing.mock_data(num_examples=12):
        ds = data.load("tfds:imagenette", val_size=2)
        small = data.load("tfds:imagenette", image_size=16)
    assert ds.input_shape == (data.DEFAULT_IMAGE_SIZE, data.DEFAULT_IMAGE_SIZE, 3)
    assert small.input_shape == (16, 16, 3) and small.test().x.shape[1:] == (16, 16, 3)


def test_resizing_keeps_a_constant_image_constant_and_averages_when_shrinking():
    flat = np.full((37, 50, 3), 200, np.uint8)
    stripes = np.zeros((8, 8, 1), np.uint8)
    stripes[:, ::2] = 255
    out = data._resize_images([flat, flat[:20, :9]], 5)
    assert out.shape == (2, 5, 5, 3) and np.all(out == 200)
    halved = data._resize_images([stripes], 4).astype(int)
    assert np.all(np.abs(halved[0, :, 1:3] - 128) <= 1)  # antialiased: stripes average to grey (edges aside)


def test_tfds_problems_are_one_line_errors(tmp_path):
    with pytest.raises(data.DataError, match="unknown TFDS dataset 'no_such_dataset_xyz'"):
        data.load("tfds:no_such_dataset_xyz", data_dir=str(tmp_path))
    with pytest.raises(data.DataError) as err:
        data.load("tfds:mnist", data_dir=str(tmp_path))  # nothing prepared there, and afos never downloads
    message = str(err.value)
    assert "\n" not in message and "not prepared" in message and f"--data_dir {tmp_path}" in message
