import keras
import pytest


@pytest.fixture(autouse=True)
def _seed_everything():
    """Each test starts from the same global seeds on every backend."""
    keras.utils.set_random_seed(1234)
    yield
