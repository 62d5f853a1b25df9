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
