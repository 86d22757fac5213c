import gc

import keras
import pytest


@pytest.fixture(autouse=True, scope="module")
def _freeze_what_outlives_each_file():
    """Before each file's tests, once the previous file's fixtures are
    gone: resets Keras' global state, collects the garbage, then moves
    every object still alive out of the garbage collector's sight
    (`gc.freeze`). What is alive then mostly stays alive (TensorFlow,
    Keras, graphs TensorFlow keeps of earlier tests' models), and every
    full collection, two per KerasTuner trial among them, scanned it all
    again: a quarter of the TensorFlow process's time (README, Tests)."""
    keras.backend.clear_session(free_memory=False)
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _seed_everything():
    """Each test starts from the same global seeds on every backend."""
    keras.utils.set_random_seed(1234)
    yield
