"""The fitness problem: what is trained and how it is scored, as one object the evaluators call.

A ``FitnessProblem`` is a dataset, a model of the zoo and the training settings. The data is split by
the settings' seed; a training is seeded by the seed it is asked for (initialisation and batch order),
so the K seeds of a noise-aware fitness train K networks on the same data. Every backend trains through
it: the exact path calls ``score``; the batched path builds one model around an interpreted activation
(``model``) and trains it with the same optimizer, batch order and loop (``optimizer``, ``batches``,
``afos.fitness.train.run_epochs``). This is the seam where a user's own model, data or objective plugs in.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import optax
from flax import nnx

from afos.config import FitnessSettings
from afos.errors import DataError
from afos.fitness import data as data_lib
from afos.fitness import own, train, zoo
from afos.fitness.layers import Act


def load_data(settings: FitnessSettings) -> data_lib.Dataset:
    """The dataset of ``settings``: its validation split carved by ``settings.seed``."""
    options = {k: getattr(settings, k) for k in data_lib.DATA_SETTINGS if k != "dataset"}
    return data_lib.load(settings.dataset, **options)


class FitnessProblem:
    """Short training of ``settings.model`` on ``settings.dataset`` with a candidate activation, or the user's
    own objective (``settings.objective``: it trains what it likes and returns a score).

    Args:
        settings: the fitness settings (model, data, epochs, batch size, learning rate).
        dataset: the data, if already loaded (else loaded from ``settings`` on first use).
    """

    def __init__(self, settings: FitnessSettings, dataset: data_lib.Dataset | None = None):
        # the user's objects travel with the problem (to Ray workers too: by value where they have no module)
        self.objective = own.objective(settings.objective) if settings.objective else None
        self.factory = None
        if self.objective is not None:
            settings = own.with_direction(settings, self.objective)
        else:
            zoo.check(settings.model, self.model_options(settings))
            self.factory = None if settings.model in zoo.MODELS else own.factory(settings.model)
        self.settings = settings
        self._dataset = None if dataset is None else self._fitting(dataset)
        self._longer: dict[int, FitnessProblem] = {}

    @staticmethod
    def model_options(settings: FitnessSettings) -> dict:
        return {"topology": tuple(settings.topology)} if settings.topology else {}

    @property
    def dataset(self) -> data_lib.Dataset:
        if self.objective is not None:
            raise DataError(f"objective {self.settings.objective!r} brings its own data: afos loads none")
        if self._dataset is None:
            self._dataset = self._fitting(load_data(self.settings))
        return self._dataset

    def _fitting(self, dataset: data_lib.Dataset) -> data_lib.Dataset:
        """``dataset`` once the model takes its inputs (``zoo.check_input``: a CNN needs images), checked where the
        data is loaded, before any training."""
        if self.objective is None:
            zoo.check_input(self.settings.model, dataset.input_shape, self.settings.dataset)
        return dataset

    def prepare(self) -> None:
        """Loads the data now (an objective loads its own), so that bad data fails before any work."""
        if self.objective is None:
            self.dataset  # noqa: B018 - loading is the point

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input (empty for an objective: afos sees no inputs)."""
        return () if self.objective is not None else self.dataset.input_shape

    def with_epochs(self, epochs: int | None) -> FitnessProblem:
        """This problem trained for ``epochs`` epochs (None or its own: itself), on the same data (loaded once)."""
        if epochs is None or epochs == self.settings.epochs:
            return self
        if epochs not in self._longer:
            self._longer[epochs] = self._derived(dataclasses.replace(self.settings, epochs=epochs), self._dataset)
        return self._longer[epochs]

    def without_test(self) -> FitnessProblem:
        """This problem with an empty test split: what is shipped to workers (selection never reads it)."""
        if self.objective is not None:
            return self
        return self._derived(self.settings, data_lib.without_test(self.dataset))

    def _derived(self, settings: FitnessSettings, dataset: data_lib.Dataset) -> FitnessProblem:
        """A problem of the same model (the factory object, not its name: a Ray worker may not import it)."""
        out = copy.copy(self)
        out.settings, out._dataset, out._longer = settings, dataset, {}
        return out

    def model(self, act: Act, seed: int, selu: bool | None = None) -> nnx.Module:
        """The network with activation ``act``, initialised from ``seed`` (``selu``: None decides by ``act``)."""
        ds, options = self.dataset, self.model_options(self.settings)
        if self.factory is not None:
            return own.build(self.settings.model, self.factory, act, ds.input_shape, ds.num_classes, seed, **options)
        return zoo.build(self.settings.model, act, ds.input_shape, ds.num_classes, seed, selu=selu, **options)

    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.settings.learning_rate)

    def batches(self, seed: int) -> list:
        """The index batches of every epoch of a training seeded by ``seed``."""
        s = self.settings
        return train.batch_order(len(self.dataset.train), s.batch_size, s.epochs, seed)

    def score(self, act: Act, seed: int, on_epoch: train.EpochHook | None = None) -> train.TrainResult:
        """Trains the network with ``act`` from ``seed`` and scores it on the validation split (an objective:
        its validation score ranked, ``own.call_objective``, as the accuracy; its own value as the loss).

        Raises:
            own.ObjectiveFailedError: the user's objective failed (the evaluators record a failed line).
        """
        if self.objective is not None:
            (rank, raw), _ = self.score_objective(act, seed)
            return train.TrainResult(rank, raw, float("nan"), False)
        model = self.model(act, seed)
        graphdef, state = nnx.split(model)  # the whole state: parameters, batch statistics, dropout RNG
        tx = self.optimizer()
        opt_state = tx.init(nnx.state(model, nnx.Param))
        steps = train.make_steps(graphdef, tx)
        return train.run_epochs(steps, state, opt_state, self.dataset, self.batches(seed), on_epoch)

    def score_programs(self, programs: Sequence[Any], seed: int) -> Iterator[tuple[int, train.TrainResult | str]]:
        """The objective's training of many interpreted activations at once (``own.call_programs``; only for an
        objective that ``own.takes_programs``): per program, its result as ``score`` gives it, or why it failed."""
        for i, out in own.call_programs(self.objective, programs, seed, self.settings):
            if isinstance(out, own.ObjectiveFailedError):
                yield i, str(out)
            else:
                (rank, raw), _ = out
                yield i, train.TrainResult(rank, raw, float("nan"), False)

    def score_objective(self, act: Act, seed: int) -> tuple[own.Score, own.Score | None]:
        """The user's objective of ``act`` from ``seed``: (validation, test) scores (``own.call_objective``)."""
        return own.call_objective(self.objective, act, seed, self.settings)
