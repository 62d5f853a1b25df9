import os
import tempfile

# A persistent XLA compilation cache shared by the test process and the afos processes the tests start:
# the same candidates are compiled again and again across runs, resumes and subprocesses. Set before
# anything imports jax.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="afos-test-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest

from afos import config as config_lib

TINY = {"train_size": 256, "val_size": 128, "batch_size": 32}


@pytest.fixture
def tiny_config():
    """A search that finishes in seconds on a CPU: small population, small data subset."""
    return config_lib.override(
        config_lib.Config(),
        search={"population": 4, "generations": 1, "seed": 3},
        fitness=TINY,
    )
