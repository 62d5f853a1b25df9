"""Datasets by name, as train / validation / test arrays.

Names: ``digits`` (bundled with scikit-learn, the default), ``fashion_mnist`` (the real gzipped IDX
files) and ``tfds:NAME`` for any TFDS image-classification dataset that has been prepared in
``array_record`` format (read with ``tfds.data_source``, which needs no TensorFlow; afos never
downloads); and the user's own: a loader registered by an installed package under ``afos.datasets`` or
named ``package.module:loader`` (``afos.plugins``), returning train and test arrays.

Images are NHWC float32 in [0, 1]; labels int32. The test split is fixed per dataset (the official
test split where there is one, else a stratified 20% held out with a fixed seed, independent of the
run's seed) and only reachable through ``Dataset.test()``, which counts its callers: the search
never calls it. Validation is carved from the training data with the run's seed, stratified.

Decoded arrays (uint8) are cached on disk as ``.npz`` under ``$AFOS_CACHE_DIR`` (default
``~/.cache/afos``), keyed by the dataset name, the image size and the path, size and modification
time of every source file, so a second load skips parsing and decoding.

The sizes of the splits are known before loading for afos's own datasets (``split_sizes``), so that a subset
larger than its split is refused before any work (``subset_sizes``). This module is longer than 400 lines:
the loaders, their cache and the sizes of what they load are one concept, the datasets.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import inspect
import json
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from afos import plugins
from afos.errors import AfosError, DataError, first_line

# The fitness settings that decide which data a training sees (afos.config.FitnessSettings).
DATA_SETTINGS = ("dataset", "seed", "val_fraction", "train_size", "val_size", "data_dir")
TEST_SPLIT_SEED = 0  # the test split never moves, so results stay comparable across runs
CACHE_VERSION = 1  # bump when the cached arrays change meaning
DEFAULT_IMAGE_SIZE = 64  # side that variable-size images (imagenette, ...) are resized to by default
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    num_classes: int
    _test: Split = field(repr=False)
    test_reads: int = 0

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def test(self) -> Split:
        """The held-out test split: for `validate` and `benchmark` only, never for selection."""
        self.test_reads += 1
        return self._test


def _head(split: Split, size: int) -> Split:
    return Split(split.x[:size], split.y[:size]) if size > 0 else split


def without_test(dataset: Dataset) -> Dataset:
    """The dataset with an empty test split: what is shipped to workers (selection never reads the test split)."""
    empty = Split(np.zeros((0, *dataset.input_shape), dataset.train.x.dtype), np.zeros((0,), dataset.train.y.dtype))
    return dataclasses.replace(dataset, _test=empty)


class Raw(NamedTuple):
    """A dataset as its loader returns it: full training data, the fixed test split, the class count.

    Images are uint8 in [0, 255] (normalised after subsetting) or float32 already in [0, 1].
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held) with ``fraction`` of every class held out, shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        held.append(idx[: int(round(fraction * len(idx)))])
    held_idx = np.sort(np.concatenate(held))
    mask = np.ones(len(y), bool)
    mask[held_idx] = False
    rest_idx = np.flatnonzero(mask)
    return rng.permutation(rest_idx), rng.permutation(held_idx)


def _carve_test(x: np.ndarray, y: np.ndarray, num_classes: int) -> Raw:
    """A dataset without a test split: a fixed stratified 20% becomes one."""
    train_idx, test_idx = _stratified_split(y, 0.2, TEST_SPLIT_SEED)
    return Raw(x[train_idx], y[train_idx], x[test_idx], y[test_idx], num_classes)


def _to_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


# ---------------------------------------------------------------- the on-disk cache


def cache_dir() -> Path:
    return Path(os.environ.get("AFOS_CACHE_DIR") or Path.home() / ".cache" / "afos")


def cache_path(name: str, sources: list[Path], image_size: int = 0, origin: str = "") -> Path:
    """Where the arrays of ``name`` read from ``sources`` (in directory ``origin``) are cached.

    The name changes whenever any source file does (path, size, modification time).
    """
    stats = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(sources) if p.is_file()]
    key = json.dumps({"name": name, "version": CACHE_VERSION, "image_size": image_size, "origin": origin,
                      "sources": stats})
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return cache_dir() / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _cached(path: Path, build: Callable[[], Raw]) -> Raw:
    """``build()``'s arrays, read from ``path`` when it holds them, else built and written there."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return Raw(*(f[k] for k in Raw._fields[:4]), int(f["num_classes"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # no cache yet (or a damaged one): rebuild it
    raw = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **raw._asdict())
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs speed
    return raw


# ---------------------------------------------------------------- loaders


def _load_digits(data_dir: str = "", image_size: int = 0) -> Raw:
    from sklearn.datasets import load_digits

    del data_dir  # bundled with scikit-learn
    if image_size:
        raise DataError("digits is 8x8; image_size is not supported (models resize their input themselves)")
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return _carve_test(x, digits.target.astype(np.int32), 10)


def _read_idx(path: Path) -> np.ndarray:
    """One IDX file (gzipped) as a uint8 array: a big-endian header, then the raw bytes."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file (too short)")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: {body.size} bytes of data for shape {shape}")
    return body.reshape(shape)


def fashion_mnist_dirs(data_dir: str = "") -> list[Path]:
    """Where Fashion-MNIST files are looked for, in order."""
    roots = [Path(d) for d in (data_dir, os.environ.get("AFOS_DATA_DIR", "")) if d]
    return [d for root in roots for d in (root, root / "fashion-mnist")] + [FASHION_MNIST_SYSTEM_DIR]


def _load_fashion_mnist(data_dir: str = "", image_size: int = 0) -> Raw:
    if image_size:
        raise DataError("fashion_mnist is 28x28; image_size is not supported (models resize their input)")
    dirs = fashion_mnist_dirs(data_dir)
    found = next((d for d in dirs if all((d / f).is_file() for f in FASHION_MNIST_FILES.values())), None)
    if found is None:
        raise DataError(
            f"Fashion-MNIST files ({', '.join(FASHION_MNIST_FILES.values())}) not found in "
            f"{', '.join(map(str, dirs))}: install them with `apt-get install dataset-fashion-mnist` or download "
            "them from https://github.com/zalandoresearch/fashion-mnist into $AFOS_DATA_DIR or --data-dir"
        )
    paths = {key: found / name for key, name in FASHION_MNIST_FILES.items()}

    def build() -> Raw:
        arrays = {key: _read_idx(path) for key, path in paths.items()}
        x_train, x_test = arrays["x_train"][..., None], arrays["x_test"][..., None]
        return Raw(x_train, arrays["y_train"].astype(np.int32), x_test, arrays["y_test"].astype(np.int32), 10)

    return _cached(cache_path("fashion_mnist", list(paths.values())), build)


def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights, widened when shrinking (antialiasing, as jax.image.resize)."""
    scale = n_out / n_in
    centres = (np.arange(n_out) + 0.5) / scale - 0.5  # output pixel centres in input coordinates
    distance = (np.arange(n_in)[None, :] - centres[:, None]) * min(scale, 1.0)
    weights = np.maximum(0.0, 1.0 - np.abs(distance))
    return weights / weights.sum(axis=1, keepdims=True)


def _resize_images(images: list[np.ndarray], size: int) -> np.ndarray:
    """uint8 HWC images of any sizes as one (n, size, size, c) uint8 array.

    Separable weight matrices in NumPy rather than ``jax.image.resize``: datasets such as imagenette
    have hundreds of distinct image shapes, and JAX would compile once per shape.
    """
    out = np.empty((len(images), size, size, images[0].shape[-1]), np.uint8)
    for i, image in enumerate(images):
        wy, wx = _resize_weights(image.shape[0], size), _resize_weights(image.shape[1], size)
        resized = np.einsum("ih,hwc,jw->ijc", wy, image.astype(np.float64), wx, optimize=True)
        out[i] = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
    return out


def _read_tfds_split(source, image_key: str, label_key: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    examples = [source[i] for i in range(len(source))]
    images = [np.asarray(e[image_key], np.uint8) for e in examples]
    images = [im[..., None] if im.ndim == 2 else im for im in images]
    labels = np.asarray([int(e[label_key]) for e in examples], np.int32)
    if image_size or len({im.shape for im in images}) > 1:
        return _resize_images(images, image_size or DEFAULT_IMAGE_SIZE), labels
    return np.stack(images), labels


def _load_tfds(name: str, data_dir: str = "", image_size: int = 0) -> Raw:
    """A TFDS dataset prepared in array_record format, through ``tfds.data_source`` (no TensorFlow)."""
    import tensorflow_datasets as tfds

    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"unknown TFDS dataset {name!r} (see https://www.tensorflow.org/datasets/catalog)") from None
    info = builder.info
    image_key, label_key = info.supervised_keys or ("image", "label")
    if image_key not in info.features or not hasattr(info.features[label_key], "num_classes"):
        raise DataError(f"TFDS dataset {name!r} is not an image-classification dataset ({image_key!r}, {label_key!r})")
    # builders without metadata (a mocked one) list no splits: assume the usual train/test
    splits = list(info.splits) or ["train", "test"]
    test_split = next((s for s in ("test", "validation") if s in splits), None)
    wanted = ["train"] + ([test_split] if test_split else [])
    sources = [Path(builder.data_dir) / f for f in sorted(os.listdir(builder.data_dir))] \
        if os.path.isdir(builder.data_dir) else []

    def build() -> Raw:
        try:
            parts = tfds.data_source(name, split=wanted, data_dir=data_dir or None, download=False)
        except (NotImplementedError, AssertionError, FileNotFoundError, ValueError, KeyError):
            raise DataError(
                f"TFDS dataset {name!r} is not prepared in array_record format under {where}; "
                f"prepare it once with `tfds build {name} --data_dir {where} --file_format array_record` "
                "(afos never downloads)"
            ) from None
        arrays = [_read_tfds_split(p, image_key, label_key, image_size) for p in parts]
        num_classes = int(info.features[label_key].num_classes)
        if test_split is None:
            return _carve_test(*arrays[0], num_classes)
        return Raw(*arrays[0], *arrays[1], num_classes)

    return _cached(cache_path(f"tfds:{name}", sources, image_size, origin=str(builder.data_dir)), build)


# name -> loader(data_dir, image_size) returning a Raw
DATASETS: dict[str, Callable[..., Raw]] = {"digits": _load_digits, "fashion_mnist": _load_fashion_mnist}
# "prefix:NAME" -> loader(NAME, data_dir, image_size)
PREFIXES: dict[str, Callable[..., Raw]] = {"tfds": _load_tfds}


# Images per class of afos's own datasets, and whether a test split is carved from them (digits has none),
# so that their split sizes are known before anything is loaded (tests/test_data.py checks them).
CLASS_COUNTS: dict[str, tuple[tuple[int, ...], bool]] = {
    "digits": ((178, 182, 177, 183, 181, 182, 181, 179, 174, 180), True),
    "fashion_mnist": ((6000,) * 10, False),
}


class Sizes(NamedTuple):
    """The examples of a dataset's training and validation splits (``load`` with no subset)."""

    train: int
    val: int


def split_sizes(name: str, val_fraction: float = 0.2, data_dir: str = "", image_size: int = 0,
                count: bool = True) -> Sizes | None:
    """The sizes of ``name``'s training and validation splits: afos's own datasets' without loading them,
    another's by loading it (``count``; else None).

    The rounding is ``_stratified_split``'s, per class."""
    if name in CLASS_COUNTS:
        counts, carved = CLASS_COUNTS[name]
        counts = tuple(c - int(round(0.2 * c)) for c in counts) if carved else counts
        val = sum(int(round(val_fraction * c)) for c in counts)
        return Sizes(sum(counts) - val, val)
    if not count:
        return None
    raw = _raw(name, data_dir, image_size)
    if isinstance(raw, Dataset):
        return Sizes(len(raw.train), len(raw.val))
    val = sum(int(round(val_fraction * c)) for c in np.unique(raw.y_train, return_counts=True)[1])
    _check_carved(name, len(raw.y_train) - val, val, val_fraction)
    return Sizes(len(raw.y_train) - val, val)


def subset_sizes(name: str, sizes: Sizes, train_size: int, val_size: int) -> Sizes:
    """The examples a training on ``train_size`` and ``val_size`` of splits of ``sizes`` sees (0: all); a
    training subset shrinks the validation split in proportion unless ``val_size`` is given.

    Raises:
        DataError: a subset larger than its split.
    """
    for key, size, held in (("train_size", train_size, sizes.train), ("val_size", val_size, sizes.val)):
        if size > held:
            raise DataError(f"fitness.{key} {size} is more than {name} holds: {sizes.train} training and "
                            f"{sizes.val} validation examples (fitness.val_fraction splits them)")
    train = train_size or sizes.train
    val = val_size or max(1, round(sizes.val * train / sizes.train))
    return Sizes(train, val)


def _prefixed(name: str) -> bool:
    """Whether ``name`` is ``prefix:NAME`` for one of ``PREFIXES`` (``tfds:mnist``)."""
    prefix, sep, rest = name.partition(":")
    return bool(sep and prefix in PREFIXES and rest)


def _unknown(name: str) -> DataError:
    available = [*DATASETS, *(f"{p}:NAME" for p in PREFIXES)]
    return DataError(f"unknown dataset {name!r} (available: {', '.join(available)}; "
                     f"{plugins.describe_forms('dataset')})")


def gives_images(name: str) -> bool:
    """Whether dataset ``name`` gives images, known without loading it: afos's own and TFDS's do; a user's inputs
    are known once it is loaded."""
    return name in DATASETS or _prefixed(name)


def check(name: str) -> None:
    """A DataError unless ``name`` is a dataset afos can load, without loading it: afos's own, ``tfds:NAME``
    (whether TFDS has it prepared is said when it loads), or the user's, whose loader is imported here."""
    if name not in DATASETS and not _prefixed(name) and plugins.resolve("dataset", name) is None:
        raise _unknown(name)


def _raw(name: str, data_dir: str, image_size: int) -> Raw | Dataset:
    if _prefixed(name):
        prefix, _, rest = name.partition(":")
        return PREFIXES[prefix](rest, data_dir=data_dir, image_size=image_size)
    if name in DATASETS:
        return DATASETS[name](data_dir=data_dir, image_size=image_size)
    loader = plugins.resolve("dataset", name)
    if loader is None:
        raise _unknown(name)
    if not callable(loader):  # arrays handed to the Python API
        return _checked(name, loader)
    accepted = inspect.signature(loader).parameters
    options = {k: v for k, v in (("data_dir", data_dir), ("image_size", image_size)) if k in accepted}
    try:
        out = loader(**options)
    except AfosError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's loader: its failure is named in one line
        raise DataError(f"dataset {name!r}: the loader raised {type(err).__name__}: {first_line(err)}") from None
    return _checked(name, out)


def _checked(name: str, out) -> Raw | Dataset:
    """A user loader's result as a ``Raw`` (or the ``Dataset`` it returned): ``(x_train, y_train, x_test, y_test)``
    with an optional fifth element, the number of classes (default: the largest label + 1), or a dict of
    those keys. Labels are integers from 0; inputs are float (used as they are) or uint8 (scaled to [0, 1]).

    Every split is checked here, once, before any training (``_check_split``): a search and ``afos validate``
    refuse the same data, so a search never accepts what its validation cannot score."""
    if isinstance(out, Dataset):
        splits = {"train": out.train, "validation": out.val, "test": out._test}
        _check_splits(name, splits, _class_count(name, out.num_classes))
        return out
    if isinstance(out, dict):
        out = tuple(out[k] for k in (*Raw._fields[:4], *(("num_classes",) if "num_classes" in out else ())))
    if not isinstance(out, tuple | list) or len(out) not in (4, 5):
        raise DataError(f"dataset {name!r} must give (x_train, y_train, x_test, y_test[, num_classes]), "
                        f"got {type(out).__name__}")
    x_train, y_train, x_test, y_test = (np.asarray(a) for a in out[:4])
    splits = {"train": Split(x_train, y_train), "test": Split(x_test, y_test)}
    for split_name, split in splits.items():
        _check_labels_per_input(name, split_name, split)
    labels = np.concatenate([y_train, y_test])
    # not given: the largest label + 1 (two at least, so that one class is said of the train split, below)
    num_classes = _class_count(name, out[4]) if len(out) == 5 else max(2, int(labels.max(initial=0)) + 1)
    _check_splits(name, splits, num_classes)
    return Raw(x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32), num_classes)


def _class_count(name: str, value) -> int:
    """A loader's number of classes: an integer of at least 2 (a classifier of one class learns nothing)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer) or value < 2:
        raise DataError(f"dataset {name!r}: num_classes must be an integer of at least 2, got {value!r}")
    return int(value)


def _check_labels_per_input(name: str, split_name: str, split: Split) -> None:
    x, y = np.asarray(split.x), np.asarray(split.y)
    if y.ndim != 1 or len(x) != len(y) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"dataset {name!r}: the {split_name} split needs one integer label per input, got inputs "
                        f"{x.shape} and labels {y.shape} of {y.dtype}")


def _check_splits(name: str, splits: dict[str, Split], num_classes: int) -> None:
    """Each split of a user's data: one integer label per input, not empty, finite float or uint8 inputs of
    the training inputs' shape, labels in [0, num_classes); at least two classes to train on."""
    shape = np.shape(splits["train"].x)[1:]
    for split_name, split in splits.items():
        _check_split(name, split_name, split, shape, num_classes)
    classes = np.unique(splits["train"].y)
    if len(classes) < 2:
        raise DataError(f"dataset {name!r}: the train split holds only class {classes[0]}: a classifier needs "
                        "examples of at least two classes (every activation would score 1.0)")


def _check_split(name: str, split_name: str, split: Split, shape: tuple[int, ...], num_classes: int) -> None:
    x, y = np.asarray(split.x), np.asarray(split.y)
    where = f"dataset {name!r}: the {split_name} split"
    _check_labels_per_input(name, split_name, split)
    if not len(y):
        use = "afos validate and benchmarks score on it" if split_name == "test" else "afos trains and scores on it"
        raise DataError(f"{where} is empty ({use}: give it examples)")
    if not (np.issubdtype(x.dtype, np.floating) or x.dtype == np.uint8):
        raise DataError(f"{where}: inputs must be float or uint8, got {x.dtype}")
    if x.shape[1:] != shape:
        raise DataError(f"{where}: inputs of shape {x.shape[1:]} per example, the train split's are {shape}")
    if np.issubdtype(x.dtype, np.floating):
        with np.errstate(over="ignore"):  # float64 beyond float32's range is inf where afos trains
            bad = ~np.isfinite(x.astype(np.float32, copy=False)).reshape(len(x), -1).all(axis=1)
        if bad.any():
            raise DataError(f"{where} has {int(bad.sum())} input(s) with NaN or inf values (as float32), the "
                            f"first example {int(np.argmax(bad))}: a network cannot train or score on them")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise DataError(f"{where} has labels {low}..{high}, outside [0, {num_classes}) (labels are class "
                        "indices from 0)")


def _check_carved(name: str, train: int, val: int, val_fraction: float) -> None:
    """The training and validation splits carved from a dataset's training data are both non-empty."""
    for split_name, size in (("train", train), ("validation", val)):
        if size == 0:
            raise DataError(f"dataset {name!r}: val_fraction {val_fraction} of {train + val} training examples "
                            f"leaves the {split_name} split empty (each class needs enough examples for both)")


def load(
    name: str,
    seed: int = 0,
    val_fraction: float = 0.2,
    train_size: int = 0,
    val_size: int = 0,
    *,
    data_dir: str = "",
    image_size: int = 0,
) -> Dataset:
    """Loads dataset ``name`` with a validation split carved from training data by ``seed``.

    Args:
        name: ``digits``, ``fashion_mnist``, ``tfds:NAME``, or the user's (``afos.plugins``): a name registered
            under ``afos.datasets`` or ``package.module:loader`` (see ``_checked`` for what a loader returns).
        seed: shuffles the stratified train / validation split.
        val_fraction: share of each class held out for validation.
        train_size, val_size: if positive, keep only that many examples (fast proxies).
        data_dir: where dataset files are looked for first (Fashion-MNIST IDX files; the TFDS data dir).
        image_size: if positive, resize images to this square side (TFDS only; variable-size TFDS images
            default to ``DEFAULT_IMAGE_SIZE``).
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    raw = _raw(name, data_dir, image_size)
    if isinstance(raw, Dataset):  # a user's loader that split validation itself
        return dataclasses.replace(raw, name=name, train=_head(raw.train, train_size), val=_head(raw.val, val_size))
    train_idx, val_idx = _stratified_split(raw.y_train, val_fraction, seed)
    _check_carved(name, len(train_idx), len(val_idx), val_fraction)
    if train_size > 0:
        train_idx = train_idx[:train_size]
    if val_size > 0:
        val_idx = val_idx[:val_size]
    x, y = raw.x_train, raw.y_train
    return Dataset(
        name=name,
        train=Split(_to_float(x[train_idx]), y[train_idx]),
        val=Split(_to_float(x[val_idx]), y[val_idx]),
        num_classes=raw.num_classes,
        _test=Split(_to_float(raw.x_test), raw.y_test),
    )
