import gc

import keras
import pytest


def pytest_configure(config):
    """On TensorFlow, turns off Grappler, its graph optimizer, for the
    tests (as the runner lowers XLA's optimization level for jax): each
    test traces new small functions and runs them a few steps, so
    optimizing every graph cost more than it saved (the tuning and
    checkpoint tests took 129 s with it, 110 s without; README, Tests).
    Users' runs, and the tests' subprocesses, keep it."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.optimizer.set_experimental_options(
            {"disable_meta_optimizer": True})


@pytest.fixture(autouse=True, scope="module")
def _clear_keras_state_per_file():
    """Resets Keras' global state before each file's tests, once the
    previous file's fixtures are gone: the TensorFlow process took 30-40 s
    less with it (README, Tests)."""
    keras.backend.clear_session(free_memory=False)


@pytest.fixture(autouse=True)
def _freeze_what_outlives_each_test():
    """Before each test: collects the garbage, then moves every object
    still alive out of the garbage collector's sight (`gc.freeze`). What
    is alive then mostly stays alive (TensorFlow, Keras, graphs TensorFlow
    keeps of earlier tests' models, a file's fixtures), and every full
    collection, two per KerasTuner trial among them, scanned it all
    again: a quarter of the TensorFlow process's time with no freeze.
    Frozen per file, the callback and tuning tests took 274-275 s on
    TensorFlow; per test, 256 s, for 4% more peak memory (6.3 GB against
    6.1 GB; README, Tests)."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _seed_everything():
    """Each test starts from the same global seeds on every backend."""
    keras.utils.set_random_seed(1234)
    yield
