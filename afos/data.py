"""Datasets by name, as train / validation / test arrays.

Images are NHWC float32 in [0, 1]; labels int32. The test split is fixed per
dataset (independent of the run's seed) and only reachable through
``Dataset.test()``, which counts its callers: the search never calls it.
Validation is carved from the training data with the run's seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

TEST_SPLIT_SEED = 0  # the test split never moves, so results stay comparable across runs


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


def _load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    train_idx, test_idx = _stratified_split(y, 0.2, TEST_SPLIT_SEED)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx], 10


# name -> loader returning (x_train_full, y_train_full, x_test, y_test, num_classes)
DATASETS: dict[str, Callable[[], tuple]] = {"digits": _load_digits}


def load(
    name: str,
    seed: int = 0,
    val_fraction: float = 0.2,
    train_size: int = 0,
    val_size: int = 0,
) -> Dataset:
    """Loads dataset ``name`` with a validation split carved from training data by ``seed``.

    Args:
        train_size, val_size: if positive, keep only that many examples (fast proxies).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (available: {', '.join(DATASETS)})")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    x, y, x_test, y_test, num_classes = DATASETS[name]()
    train_idx, val_idx = _stratified_split(y, val_fraction, seed)
    if train_size > 0:
        train_idx = train_idx[:train_size]
    if val_size > 0:
        val_idx = val_idx[:val_size]
    return Dataset(
        name=name,
        train=Split(x[train_idx], y[train_idx]),
        val=Split(x[val_idx], y[val_idx]),
        num_classes=num_classes,
        _test=Split(x_test, y_test),
    )
