"""Fitness by short training: data, the model zoo, the training loop, the fitness problem and its evaluators.

``problem`` (what is trained and how it is scored), ``evaluator`` (the one protocol and the exact backend),
``batched`` and ``interpreter`` (one compiled step for every candidate), ``pools`` (sharding, replay),
``cluster`` (Ray), ``plan`` (``auto`` resolved once), ``data``, ``layers``, ``zoo`` and ``train``.
This package loads JAX; importing it alone does not (its modules do).
"""
