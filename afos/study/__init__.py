"""Studies of activations: benchmarks (``bench``, ``runner``), their statistics (``stats``), the held-out
validation of a run (``validate``), figures (``plots``) and reports (``report``)."""
