import keras
import numpy as np
import pytest

from kerastrain.optimizers import SGD
from kerastrain.schedules import OneCycle, schedule_values
from tests.optimizers import linear

STEPS = 30


def keras_sgd_in_numpy(lrs, momenta, nesterov):
    """keras.optimizers.SGD's update with a per-step rate and momentum."""
    def update(t, weights, grads, velocities):
        velocities = velocities or [np.zeros_like(w) for w in weights]
        for w, g, v in zip(weights, grads, velocities):
            v[...] = momenta[t] * v - lrs[t] * g
            w += momenta[t] * v - lrs[t] * g if nesterov else v
        return velocities
    return update


@pytest.mark.parametrize("nesterov", [False, True])
def test_one_cycle_momentum_training_matches_numpy(nesterov):
    one_cycle = OneCycle(0.05, STEPS)
    ours = linear.fit(SGD(one_cycle, one_cycle.momentum_schedule,
                          nesterov=nesterov), STEPS)
    expected = linear.numpy_fit(keras_sgd_in_numpy(
        schedule_values(one_cycle, STEPS),
        schedule_values(one_cycle.momentum_schedule, STEPS), nesterov), STEPS)
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)
    # The momentum really moved: a constant 0.9 ends elsewhere.
    constant = linear.numpy_fit(keras_sgd_in_numpy(
        schedule_values(one_cycle, STEPS), [0.9] * STEPS, nesterov), STEPS)
    assert np.abs(constant[0] - expected[0]).max() > 1e-3


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False),
                                                (0.8, True)])
def test_constant_momentum_is_keras_sgd_exactly(momentum, nesterov):
    ours = linear.fit(SGD(0.02, momentum, nesterov=nesterov), 10)
    keras_sgd = linear.fit(keras.optimizers.SGD(0.02, momentum, nesterov), 10)
    linear.assert_same_as_keras_built_in(ours, keras_sgd)


def test_config_round_trip_keeps_the_schedule():
    one_cycle = OneCycle(0.1, 100, three_phase=True)
    optimizer = SGD(one_cycle, one_cycle.momentum_schedule, nesterov=True,
                    clipnorm=1.0)
    restored = SGD.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    steps = np.arange(100)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored.momentum(steps)),
        keras.ops.convert_to_numpy(one_cycle.momentum_schedule(steps)))
    assert restored.nesterov and restored.clipnorm == 1.0


@pytest.mark.parametrize("momentum, error", [
    (1.5, ValueError), (-0.1, ValueError), ("0.9", TypeError),
    (float("nan"), ValueError)])
def test_bad_momentum(momentum, error):
    with pytest.raises(error, match="momentum"):
        SGD(0.1, momentum)


def test_nesterov_must_be_a_bool():
    with pytest.raises(TypeError, match="nesterov"):
        SGD(0.1, 0.9, nesterov="no")  # would read as True


@pytest.mark.parametrize("weight_decay, error", [
    (float("nan"), ValueError), (-0.01, ValueError), ("0.01", TypeError),
    (1e40, ValueError)])
def test_bad_weight_decay(weight_decay, error):
    # Keras passes it to the update unchecked: NaN trained to NaN weights.
    with pytest.raises(error, match="weight_decay"):
        SGD(0.1, 0.9, weight_decay=weight_decay)


def test_a_decay_float32_cannot_hold_fails_keras_sgd_late_or_trains_to_inf():
    # Why it is refused: Keras' SGD takes it, then TensorFlow fails deep in
    # the update, and JAX and torch train the weights to inf. None,
    # Keras' default, is taken (no decay).
    variable = keras.Variable(np.ones(2, "float32"))
    optimizer = keras.optimizers.SGD(0.01, weight_decay=1e40)
    if keras.backend.backend() == "tensorflow":
        with pytest.raises(ValueError, match="out of range"):
            optimizer.apply([keras.ops.zeros(2)], [variable])
    else:
        optimizer.apply([keras.ops.zeros(2)], [variable])
        assert not np.isfinite(keras.ops.convert_to_numpy(variable)).any()
    assert SGD(0.1, weight_decay=None).weight_decay is None
