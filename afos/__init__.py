"""afos: discover activation functions for neural networks with a genetic algorithm."""

__version__ = "0.1.0"
