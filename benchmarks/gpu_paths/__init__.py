"""Prototypes of fast GPU fitness paths (issue 14), timed side by side by ``benchmarks/fitness_throughput.py``.

Nothing here is part of afos: a design enters ``afos/`` only once a GPU run has measured it faster than
the batched backend and as exact (docs/PERFORMANCE.md, GPU (pending)).
"""
