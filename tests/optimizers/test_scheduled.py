import keras
import numpy as np
import pytest

from kerastrain.optimizers import LARS, SGD, AdamW
from kerastrain.schedules import OneCycle

OPTIMIZERS = [SGD, AdamW, LARS]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("learning_rate, error", [
    (float("nan"), ValueError), (float("inf"), ValueError),
    (-0.1, ValueError), (True, TypeError)])
def test_a_bad_learning_rate_is_refused_at_construction(optimizer,
                                                        learning_rate, error):
    with pytest.raises(error, match="learning_rate"):
        optimizer(learning_rate)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_good_learning_rates_reach_keras(optimizer):
    # An int, a NumPy float and zero are rates Keras takes; so is a
    # schedule.
    for rate in (1, np.float32(0.25), 0.0):
        assert float(optimizer(rate).learning_rate) == float(rate)
    schedule = OneCycle(0.1, 100)
    assert optimizer(schedule)._learning_rate is schedule


def test_a_nan_rate_would_have_trained_the_weights_to_nan():
    # Why the check: Keras itself takes the NaN and trains on it.
    variable = keras.Variable(np.ones(2, "float32"))
    gradient = keras.ops.ones(2)
    keras.optimizers.SGD(float("nan")).apply([gradient], [variable])
    assert np.isnan(keras.ops.convert_to_numpy(variable)).all()
