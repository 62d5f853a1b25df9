"""The genetic algorithm: search spaces, genomes, the strategy (``init / ask / tell``), its memo, racing.

Nothing here trains or imports JAX: the strategy is told fitness values by its caller (``afos.run.driver``).
Modules: ``space`` (search space files), ``genome`` (DEAP trees), ``strategy`` (``Search``), ``memo``
(what is known of every scored function), ``front`` (the Pareto front and its ranking), ``racing``.
"""
