import keras
import numpy as np
import pytest

from kerastrain.optimizers import AdamW
from kerastrain.schedules import OneCycle, schedule_values
from tests.optimizers import linear

STEPS = 30
BETA_2, EPSILON, DECAY = 0.999, 1e-7, 0.01


def keras_adamw_in_numpy(lrs, beta_1s):
    """keras.optimizers.AdamW's update (decoupled decay first, then Adam
    with epsilon outside the bias correction) with per-step beta_1."""
    def update(t, weights, grads, state):
        state = state or [(np.zeros_like(w), np.zeros_like(w))
                          for w in weights]
        lr, b1 = lrs[t], beta_1s[t]
        alpha = lr * np.sqrt(1 - BETA_2 ** (t + 1)) / (1 - b1 ** (t + 1))
        for w, g, (m, v) in zip(weights, grads, state):
            w -= w * DECAY * lr
            m += (g - m) * (1 - b1)
            v += (g * g - v) * (1 - BETA_2)
            w -= m * alpha / (np.sqrt(v) + EPSILON)
        return state
    return update


def test_one_cycle_beta_1_training_matches_numpy():
    one_cycle = OneCycle(0.05, STEPS)
    ours = linear.fit(AdamW(one_cycle, weight_decay=DECAY,
                            beta_1=one_cycle.momentum_schedule,
                            beta_2=BETA_2, epsilon=EPSILON), STEPS)
    expected = linear.numpy_fit(keras_adamw_in_numpy(
        schedule_values(one_cycle, STEPS),
        schedule_values(one_cycle.momentum_schedule, STEPS)), STEPS)
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_constant_beta_1_is_keras_adamw_exactly(amsgrad):
    ours = linear.fit(AdamW(0.01, 0.02, beta_1=0.8, amsgrad=amsgrad), 10)
    keras_adamw = linear.fit(keras.optimizers.AdamW(
        0.01, 0.02, beta_1=0.8, amsgrad=amsgrad), 10)
    linear.assert_same_as_keras_built_in(ours, keras_adamw)


def test_config_round_trip_keeps_the_schedule():
    one_cycle = OneCycle(0.01, 50)
    optimizer = AdamW(one_cycle, beta_1=one_cycle.momentum_schedule)
    restored = AdamW.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    assert float(restored.beta_1(0)) == pytest.approx(0.95)


@pytest.mark.parametrize("beta_1, error", [(1.5, ValueError),
                                           (1.0, ValueError),  # 0/0
                                           ([0.9], TypeError)])
def test_bad_beta_1(beta_1, error):
    with pytest.raises(error, match="beta_1"):
        AdamW(0.01, beta_1=beta_1)


@pytest.mark.parametrize("kwargs, error, name", [
    ({"beta_2": float("nan")}, ValueError, "beta_2"),
    ({"beta_2": 1.0}, ValueError, "beta_2"),
    ({"epsilon": float("nan")}, ValueError, "epsilon"),
    ({"epsilon": -1e-7}, ValueError, "epsilon"),
    ({"weight_decay": float("nan")}, ValueError, "weight_decay"),
    ({"weight_decay": -0.01}, ValueError, "weight_decay"),
    ({"weight_decay": "0.01"}, TypeError, "weight_decay"),
])
def test_bad_keras_arguments_are_refused_like_pytorch(kwargs, error, name):
    # Keras passes them to the update unchecked: NaN trained to NaN weights.
    with pytest.raises(error, match=name):
        AdamW(0.01, **kwargs)
