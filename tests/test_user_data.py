"""A user's dataset is checked once, when it is loaded, before any training: a search and `afos validate`
refuse the same data with one line naming the split and the problem."""

import csv
import re
import sys

import jax
import numpy as np
import pytest

import afos
from afos import plugins
from afos.errors import DataError, ModelError
from afos.fitness import data, zoo
from afos.run.rundir import Run

LOADER = '''
import numpy as np


def load():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    x = (rng.normal(size=(3, 4, 4, 1))[y] * 3 + rng.normal(size=(200, 4, 4, 1))).astype(np.float32)
    return x[:160], y[:160], x[160:{end}], y[160:{end}]
'''


def _blobs(n: int = 200) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(3, 5))[y] * 3 + rng.normal(size=(n, 5))).astype(np.float32)
    cut = n * 4 // 5
    return x[:cut], y[:cut], x[cut:], y[cut:]


def _with(index: int, value) -> tuple:
    arrays = list(_blobs())
    arrays[index] = value
    return tuple(arrays)


def _nan_at(x: np.ndarray, example: int, dtype=np.float32) -> np.ndarray:
    x = x.astype(dtype)
    x[example, 2] = np.nan
    return x


x_train, y_train, x_test, y_test = _blobs()
BAD = {
    "empty test": ((x_train, y_train, x_test[:0], y_test[:0]), "the test split is empty"),
    "empty train": ((x_train[:0], y_train[:0], x_test, y_test), "the train split is empty"),
    "NaN train input": (_with(0, _nan_at(x_train, 7)), r"the train split has 1 input\(s\) with NaN or inf values "
                                                        r"\(as float32\), the first example 7"),
    "inf test input": (_with(2, np.where(np.arange(len(x_test))[:, None] == 3, np.inf, x_test)),
                       "the test split has 1 input.* the first example 3"),
    "beyond float32": (_with(0, np.where(np.arange(len(x_train))[:, None] == 0, 1e300, x_train.astype(np.float64))),
                       "the train split has 1 input"),
    "one class": ((x_train, np.zeros_like(y_train), x_test, y_test % 1), "the train split holds only class 0"),
    "negative label": (_with(3, y_test - 1), r"the test split has labels -1\.\.1, outside \[0, 3\)"),
    "label out of range": ((*_blobs(), 2), r"the train split has labels 0\.\.2, outside \[0, 2\)"),
    "one class count": ((*_blobs(), 1), "num_classes must be an integer of at least 2, got 1"),
    "bool class count": ((*_blobs(), True), "num_classes must be an integer of at least 2, got True"),
    "float labels": (_with(1, y_train.astype(np.float32)), "the train split needs one integer label per input"),
    "shapes": (_with(2, x_test[:, :4]), r"the test split: inputs of shape \(4,\) per example, the train split's "
                                        r"are \(5,\)"),
    "int inputs": (_with(0, x_train.astype(np.int64)), "the train split: inputs must be float or uint8"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_is_one_line_naming_the_split_and_the_problem(case):
    arrays, message = BAD[case]
    name = plugins.name_of("dataset", arrays)
    with pytest.raises(DataError, match=f"^dataset '{name}': {message}") as err:
        data.load(name)
    assert "\n" not in str(err.value)


def test_good_data_loads_and_a_loaders_own_raw_is_checked_too():
    assert len(data.load(plugins.name_of("dataset", _blobs())).test()) == 40
    plugins._GIVEN["mine"] = lambda: data.Raw(*_with(0, _nan_at(x_train, 5)), 3)
    with pytest.raises(DataError, match="^dataset 'mine': the train split has 1 input.* the first example 5"):
        data.load("mine")


def test_a_loaders_own_split_is_checked_validation_included():
    good = data.load(plugins.name_of("dataset", _blobs()))
    plugins._GIVEN["split"] = lambda: good
    assert data.load("split").num_classes == 3
    empty = data.Split(good.val.x[:0], good.val.y[:0])
    plugins._GIVEN["split"] = lambda: data.Dataset("split", good.train, empty, 3, good.test())
    with pytest.raises(DataError, match="^dataset 'split': the validation split is empty"):
        data.load("split")


def test_a_validation_split_carved_empty_is_refused():
    one_each = (x_train[:3], np.array([0, 1, 2]), x_test, y_test)
    name = plugins.name_of("dataset", one_each)
    with pytest.raises(DataError, match=f"^dataset '{name}': val_fraction 0.2 of 3 training examples leaves the "
                                        "validation split empty"):
        data.load(name)


def test_a_search_refuses_bad_data_before_its_run_directory_exists(tmp_path):
    bad = BAD["empty test"][0]
    with pytest.raises(DataError, match="the test split is empty"):
        afos.search(None, tmp_path / "run", model="mlp", dataset=bad, population=2, generations=0)
    assert not (tmp_path / "run").exists()


def test_validate_refuses_a_test_split_gone_empty_before_training(tmp_path, user_code):
    from afos.study.validate import validate

    folder = user_code("mydata", LOADER.format(end=""))
    run = afos.search(None, tmp_path / "run", model="mlp", dataset="mydata:load", population=2, generations=0,
                      topology=[8], epochs=1)
    (folder / "mydata.py").write_text(LOADER.format(end=160))  # the user's data changed since the search
    sys.modules.pop("mydata")
    with pytest.raises(DataError, match="^dataset 'mydata:load': the test split is empty"):
        validate(Run.open(run.path), top=1, seeds=2, epochs=1, trust_run=True)
    assert not list((run.path / "validation").glob("results.jsonl"))  # nothing was trained


def test_the_command_line_says_it_in_one_line(tmp_path, capsys, user_code):
    from afos.cli import main

    user_code("onedata", LOADER.format(end="").replace("integers(0, 3, 200)", "integers(0, 1, 200)"))
    assert main(["search", "--model", "mlp", "--dataset", "onedata:load", "--run-dir", str(tmp_path / "r"),
                 "--population", "2", "--generations", "0"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == [
        "afos search: error: dataset 'onedata:load': the train split holds only class 0: a classifier needs examples "
        "of at least two classes (every activation would score 1.0)"]


# 3 classes of Gaussian blobs in 10 dimensions, flat features (n, 10) as a user's CSV gives them: 320 training
# examples (256 train and 64 validation once carved) and 64 test
FLAT = '''
import numpy as np


def load():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 384)
    x = (rng.normal(size=(3, 10))[y] * 3 + rng.normal(size=(384, 10))).astype(np.float32)
    return x[:320], y[:320], x[320:], y[320:]
'''


@pytest.fixture
def flat(tmp_path, monkeypatch):
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "flatblobs.py").write_text(FLAT)
    monkeypatch.syspath_prepend(str(folder))
    yield "flatblobs:load"
    sys.modules.pop("flatblobs", None)


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "error" in line]


@pytest.mark.slow
def test_flat_features_are_searched_and_validated_with_the_mlp(tmp_path, flat, capsys):
    from afos.cli import main

    run_dir, config = tmp_path / "run", tmp_path / "relu.toml"
    config.write_text('[protocol]\nanchors = ["relu"]\n')
    # auto's choice of a backend read the inputs as an image's (IndexError)
    assert main(["search", "--config", str(config), "--model", "mlp", "--dataset", flat, "--run-dir", str(run_dir),
                 "--population", "4", "--generations", "0"]) == 0
    err = capsys.readouterr().err
    assert "dataset flatblobs:load (all training and all validation examples)" in err
    assert "evaluating with sequential: too few candidates" in err
    run = Run.open(run_dir)
    relu = next(e for e in run.anchors() if e.tree == "relu")
    assert run.config.fitness.gain == "unit" and relu.val_accuracy > 0.9  # the blobs are separable
    # an image model is refused before anything is written, although the mlp's cells come first in each seed
    assert main(["validate", str(run_dir), "--top", "1", "--seeds", "2", "--epochs", "1",
                 "--models", "mlp,mnist-cnn", "--trust-run"]) == 2
    assert _errors(capsys) == ["afos validate: error: model 'mnist-cnn' needs image inputs (n, h, w[, c]); "
                               "dataset 'flatblobs:load' gives (n, 10)"]
    assert not (run_dir / "validation").exists()
    assert main(["validate", str(run_dir), "--top", "1", "--seeds", "2", "--epochs", "1", "--trust-run"]) == 0
    rows = {r["activation"]: r for r in csv.DictReader((run_dir / "validation.csv").open())}
    assert float(rows["relu"]["test_accuracy_mean"]) > 0.9 and rows["relu"]["n"] == "2"


def test_an_image_model_refuses_flat_features_in_one_line_before_any_work(tmp_path, flat, capsys):
    from afos.cli import main

    run_dir = tmp_path / "run"
    assert main(["search", "--model", "cnn-small", "--dataset", flat, "--run-dir", str(run_dir), "--population",
                 "2", "--generations", "0"]) == 2
    assert _errors(capsys) == ["afos search: error: model 'cnn-small' needs image inputs (n, h, w[, c]); dataset "
                               "'flatblobs:load' gives (n, 10)"]
    assert not run_dir.exists()


@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_every_image_model_of_the_zoo_takes_images_only_and_the_mlp_takes_anything(name):
    for shape in ((8, 8), (8, 8, 3)):
        zoo.check_input(name, shape, "d")
    for shape, given in (((10,), "(n, 10)"), ((), "(n,)"), ((2, 3, 4, 5), "(n, 2, 3, 4, 5)")):
        if name == "mlp":
            zoo.check_input(name, shape, "d")
        else:
            with pytest.raises(ModelError, match=rf"^model '{name}' needs image inputs \(n, h, w\[, c\]\); "
                                                 rf"dataset 'd' gives {re.escape(given)}$"):
                zoo.check_input(name, shape, "d")


def test_a_grey_image_without_its_channel_axis_is_one_channel():
    x = np.random.default_rng(0).random((4, 8, 8), np.float32)
    grey = zoo.build("cnn-small", jax.nn.relu, (8, 8), 3, seed=0)
    channel = zoo.build("cnn-small", jax.nn.relu, (8, 8, 1), 3, seed=0)
    np.testing.assert_allclose(grey(x), channel(x[..., None]), rtol=1e-6)


def test_auto_counts_flat_features_as_the_pixels_of_an_image():
    from afos.config import FitnessSettings
    from afos.fitness import plan

    assert plan.choose_backend(FitnessSettings(model="mlp"), (10,), 16, "cpu") == (
        "batched", "a run of 16 candidates (all its generations) on batches of 32 10-feature examples (320 input "
        "values per batch) on the CPU")
    assert plan.choose_backend(FitnessSettings(model="mlp", batch_size=128), (784,), 112, "cpu") == (
        "sequential", "batches of 128 784-feature examples (100352 input values per batch): batched is faster only "
        "up to 4096")  # flat Fashion-MNIST


@pytest.mark.slow
def test_the_batched_backend_trains_flat_features_as_sequential_does():
    """The loop mode, a search's on a CPU (the vmap mode, an accelerator's, runs the same model and steps)."""
    from afos.config import FitnessSettings
    from afos.expr import analyse, parse
    from afos.fitness.batched import Batched
    from afos.fitness.evaluator import Sequential
    from afos.fitness.problem import FitnessProblem

    problem = FitnessProblem(FitnessSettings(model="mlp", dataset=plugins.name_of("dataset", _blobs())))
    candidates = [analyse(parse("x*sigmoid(x)"))]
    [(_, exact)] = Sequential(problem).evaluate(candidates, (0,))
    [(_, fast)] = Batched(problem, mode="loop").evaluate(candidates, (0,))
    assert exact.val_accuracy > 0.8 and abs(fast.val_accuracy - exact.val_accuracy) <= 1 / 32
