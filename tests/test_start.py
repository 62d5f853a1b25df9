"""The start of a new search: inputs refused before any work, warm starts screened, sizes decided once."""

import errno
import os

import pytest

from afos import config as config_lib
from afos.errors import ConfigError, DataError
from afos.fitness import data
from afos.run import files, start
from afos.run.rundir import Run


def _prepared(messages=None, **fitness_and_search):
    search = {k: v for k, v in fitness_and_search.items() if k in ("init_exprs", "population")}
    fitness = {k: v for k, v in fitness_and_search.items() if k not in search}
    config = config_lib.override(config_lib.Config(), search=search, fitness=fitness)
    return start.prepare(config, (messages if messages is not None else []).append)


def test_a_warm_start_the_screen_rejects_is_dropped_with_a_message():
    messages = []
    config = _prepared(messages, init_exprs=["x", "x*sigmoid(x)", "2*x"])
    assert config.search.init_exprs == ["x*sigmoid(x)"]
    assert messages == ["init expression 'x' dropped: the screen rejects it (linear on [-10, 10])",
                        "init expression '2*x' dropped: the screen rejects it (linear on [-10, 10])"]
    assert start.prepare(config, messages.append) == config and len(messages) == 2  # idempotent


def test_warm_starts_beyond_the_population_are_dropped_with_a_message():
    messages = []
    config = _prepared(messages, population=2, init_exprs=["x*sigmoid(x)", "tanh(x)", "x*tanh(x)"])
    assert config.search.init_exprs == ["x*sigmoid(x)", "tanh(x)"]
    assert messages == ["init expressions beyond the population of 2 dropped: 'x*tanh(x)'"]


def test_an_unknown_dataset_is_refused_and_a_tfds_one_is_not_loaded_to_be_checked(monkeypatch):
    with pytest.raises(DataError, match=r"^unknown dataset 'nope' \(available: digits, fashion_mnist, tfds:NAME;"):
        _prepared(dataset="nope", val_size=100)  # with a val_size, nothing would have counted the dataset
    monkeypatch.setitem(data.PREFIXES, "tfds", lambda *a, **k: pytest.fail("loaded to be checked"))
    assert _prepared(dataset="tfds:mnist").fitness.dataset == "tfds:mnist"


@pytest.mark.parametrize("train_size, val_size, expected", [
    (0, 0, 287),  # no subset: the whole validation split, stored as its size
    (256, 0, 64),  # a training subset shrinks validation in proportion: 287 * 256 / 1151
    (256, 100, 100),  # unless val_size is given
    (1, 0, 1),  # never below one example
])
def test_a_new_run_stores_an_explicit_validation_size(train_size, val_size, expected):
    config = _prepared(train_size=train_size, val_size=val_size)
    assert (config.fitness.train_size, config.fitness.val_size) == (train_size, expected)
    assert start.describe_sizes(config) == f"{train_size or 1151} training and {expected} validation images"


def test_a_stored_run_keeps_what_its_sizes_meant(tmp_path):
    """val_size = 0 in a stored config means the whole validation split (a resume never re-resolves it); a
    negative size, which earlier versions took silently, meant the whole split too."""
    config = config_lib.override(config_lib.Config(), fitness={"train_size": 256}).resolved()
    text = config_lib.dumps(config).replace("train_size = 256", "train_size = -5")
    (tmp_path / "config.toml").write_text(text)
    stored = Run.open(tmp_path).config.fitness
    assert (stored.train_size, stored.val_size) == (0, 0)


def test_the_bounds_hold_for_new_input_never_for_a_stored_run(tmp_path):
    """A run stored before the bounds existed opens and resumes as it is; new input past them is refused."""
    text = config_lib.dumps(config_lib.Config().resolved()).replace("population = 16", "population = 20000")
    (tmp_path / "config.toml").write_text(text)
    stored = Run.open(tmp_path).config
    assert stored.search.population == 20000
    assert config_lib.override(stored, search={"generations": 9}).search.population == 20000
    with pytest.raises(ConfigError, match="search.population must be at most 10000, got 20000"):
        start.prepare(stored, [].append)
    with pytest.raises(ConfigError, match="search.generations must be at most 100000, got 1000000"):
        config_lib.override(stored, search={"generations": 10**6})


@pytest.mark.parametrize("fraction", [0.2, 0.35])
def test_split_sizes_of_afos_datasets_are_known_before_loading(fraction):
    ds = data.load("digits", val_fraction=fraction)
    assert data.split_sizes("digits", fraction, count=False) == (len(ds.train), len(ds.val))
    val = 10 * round(6000 * fraction)  # 6000 images of each of 10 classes, split per class
    assert data.split_sizes("fashion_mnist", fraction, count=False) == (60000 - val, val)


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "config.toml"
    for write in (lambda: files.write_text_atomic(target, "x"), lambda: files.append_jsonl(target, {"a": 1})):
        with pytest.raises(OSError, match="No space left on device") as err:
            write()
        assert str(target) in str(err.value) and err.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind (the append's file stays)
