import os
import tempfile

# A persistent XLA compilation cache shared by the test process and the afos processes the tests start:
# the same candidates are compiled again and again across runs, resumes and subprocesses. Set before
# anything imports jax.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="afos-test-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import contextlib
import gzip
import struct
import sys
import textwrap

import numpy as np
import pytest

from afos import config as config_lib

TINY = {"train_size": 256, "val_size": 128, "batch_size": 32}


@pytest.fixture
def tiny_config():
    """A search that finishes in seconds on a CPU: small population, small data subset."""
    return config_lib.override(
        config_lib.Config(),
        search={"population": 4, "generations": 1, "seed": 3},
        fitness=TINY,
    )


def write_idx(path, array: np.ndarray) -> None:
    """One gzipped IDX file of unsigned bytes, as Fashion-MNIST ships them."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_fashion(tmp_path):
    """Fashion-MNIST-shaped IDX files: 100 training and 30 test images of 28x28, 10 balanced classes."""
    from afos.fitness import data

    rng = np.random.default_rng(0)
    root = tmp_path / "files"
    root.mkdir()
    arrays = {
        "x_train": rng.integers(0, 256, (100, 28, 28)), "y_train": np.arange(100) % 10,
        "x_test": rng.integers(0, 256, (30, 28, 28)), "y_test": np.arange(30) % 10,
    }
    for key, name in data.FASHION_MNIST_FILES.items():
        write_idx(root / name, arrays[key])
    return root, arrays


@pytest.fixture
def data_loads(monkeypatch):
    """Every dataset loaded during the test, as (keyword arguments of ``data.load``, the Dataset)."""
    from afos.fitness import data

    loads = []
    original = data.load

    def recording(*args, **kwargs):
        dataset = original(*args, **kwargs)
        loads.append((kwargs, dataset))
        return dataset

    monkeypatch.setattr(data, "load", recording)
    return loads


@pytest.fixture
def stop_after():
    """``with stop_after(n):`` replaces Ctrl-C by a stop requested once ``n`` lines have been written to a
    run's log (the search then saves everything and raises ``SearchInterruptedError``)."""
    from afos.run import driver, rundir

    @contextlib.contextmanager
    def stopping(n_lines):
        written = [0]
        original = rundir.append_jsonl

        def counting(path, record):
            original(path, record)
            written[0] += 1

        @contextlib.contextmanager
        def stop(reporter, hint):
            yield lambda: written[0] >= n_lines

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(rundir, "append_jsonl", counting)
            mp.setattr(driver, "stop_on_sigint", stop)
            yield

    return stopping


# A user's module, outside afos: an nnx network, a linen one, data as arrays, and mistakes.
USER_MODULE = textwrap.dedent('''
    import numpy as np
    from flax import linen, nnx


    class TinyNet(nnx.Module):
        def __init__(self, act, input_shape, num_classes, *, rngs):
            self.act = act
            self.hidden = nnx.Linear(int(np.prod(input_shape)), 16, rngs=rngs)
            self.out = nnx.Linear(16, num_classes, rngs=rngs)

        def __call__(self, x):
            return self.out(self.act(self.hidden(x.reshape(x.shape[0], -1))))


    class LinenNet(linen.Module):
        act: object
        num_classes: int

        @linen.compact
        def __call__(self, x):
            return linen.Dense(self.num_classes)(self.act(linen.Dense(16)(x.reshape(x.shape[0], -1))))


    def linen_net(act, input_shape, num_classes, *, rngs):
        return LinenNet(act, num_classes)


    def blobs():
        rng = np.random.default_rng(0)
        y = rng.integers(0, 3, 400)
        x = (rng.normal(size=(3, 5))[y] * 3 + rng.normal(size=(400, 5))).astype(np.float32)
        return x[:320], y[:320], x[320:], y[320:]


    def no_rngs(act, input_shape, num_classes):
        return None


    def not_a_module(act, input_shape, num_classes, *, rngs):
        return 42


    def ragged():
        return np.zeros((10, 3), np.float32), np.zeros(9, np.int64), np.zeros((4, 3), np.float32), np.zeros(4, int)


    def broken():
        raise OSError("disk on fire")


    def score(act, seed, settings):  # an objective that trains nothing: instant, deterministic, seed-dependent
        x = np.linspace(-3, 3, 61, dtype=np.float32)
        value = float(np.mean(np.tanh(np.asarray(act(x))) ** 2))
        return {"val": 0.5 + 0.4 * value - 0.01 * (seed % 3), "test": 0.5 + 0.4 * value - 0.01 * (seed % 5)}


    def loss(act, seed, settings):
        return 2.0 - float(score(act, seed, settings)["val"])


    loss.direction = "min"


    def raises(act, seed, settings):
        raise RuntimeError("out of memory")


    def gives_nan(act, seed, settings):
        return float("nan")


    def gives_text(act, seed, settings):
        return "high"


    def gives_two(act, seed, settings):
        return 2.0
''')

@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """``write(name, source)``: the module ``name`` of a user's own code, in a folder on ``sys.path``
    (``tmp_path / "user"``, which it returns); every module it wrote is forgotten after the test."""
    folder = tmp_path / "user"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    written = []

    def write(name: str, source: str):
        (folder / f"{name}.py").write_text(source)
        written.append(name)
        return folder

    yield write
    for name in written:
        sys.modules.pop(name, None)


@pytest.fixture
def user_module(user_code, monkeypatch):
    folder = user_code("usernets", USER_MODULE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    return folder
