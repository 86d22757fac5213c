import keras
import numpy as np
import pytest

from kerastrain.optimizers import AdamW
from kerastrain.schedules import OneCycle, schedule_values
from tests.optimizers import linear, tokens

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


@pytest.mark.parametrize("scheduled", [False, True])
def test_an_embeddings_variance_squares_each_tokens_whole_gradient(
        scheduled):
    """TensorFlow gives an Embedding's gradient as a row per occurrence of
    each token (IndexedSlices), and Keras 3.15's Adam squared the rows one
    by one, where jax and torch square their sum: a float `beta_1` and a
    schedule both gave other weights on TensorFlow than the paper's."""
    one_cycle = OneCycle(0.05, STEPS)
    beta_1 = one_cycle.momentum_schedule if scheduled else 0.9
    ours = tokens.fit(AdamW(one_cycle, weight_decay=DECAY, beta_1=beta_1,
                            beta_2=BETA_2, epsilon=EPSILON), STEPS)
    expected = tokens.numpy_fit(keras_adamw_in_numpy(
        schedule_values(one_cycle, STEPS),
        schedule_values(beta_1, STEPS) if scheduled else [0.9] * STEPS),
        STEPS)
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
                                           (0.99999999, ValueError),
                                           ([0.9], TypeError)])
def test_bad_beta_1(beta_1, error):
    with pytest.raises(error, match="beta_1"):
        AdamW(0.01, beta_1=beta_1)


@pytest.mark.parametrize("kwargs, error, name", [
    ({"beta_2": float("nan")}, ValueError, "beta_2"),
    ({"beta_2": 1.0}, ValueError, "beta_2"),
    ({"epsilon": float("nan")}, ValueError, "epsilon"),
    ({"epsilon": -1e-7}, ValueError, "epsilon"),
    ({"epsilon": 0.0}, ValueError, "epsilon"),
    ({"epsilon": 1e-50}, ValueError, "epsilon"),  # 0 in float32
    # Subnormal: XLA flushes it to 0 (NaN on JAX and TensorFlow).
    ({"epsilon": 1e-40}, ValueError, "epsilon"),
    ({"beta_2": 0.99999999}, ValueError, "beta_2"),  # 1 in float32
    ({"amsgrad": "no"}, TypeError, "amsgrad"),  # read as True
    ({"weight_decay": float("nan")}, ValueError, "weight_decay"),
    ({"weight_decay": -0.01}, ValueError, "weight_decay"),
    ({"weight_decay": "0.01"}, TypeError, "weight_decay"),
    # inf in float32, where the update computes.
    ({"weight_decay": 1e40}, ValueError, "`weight_decay` must be a number "
     "that float32 can hold"),
    # None reached the update: a backend's error in `fit`.
    ({"beta_2": None}, TypeError, "`beta_2` must be a number, not None"),
    ({"epsilon": None}, TypeError, "`epsilon` must be a number, not None"),
])
def test_bad_keras_arguments_are_refused_like_pytorch(kwargs, error, name):
    # Keras passes them to the update unchecked: NaN trained to NaN weights.
    with pytest.raises(error, match=name):
        AdamW(0.01, **kwargs)


@pytest.mark.parametrize("kwargs", [{"beta_1": 0.99999999},
                                    {"epsilon": 0.0}])
def test_what_is_refused_trains_keras_adamw_to_nan(kwargs):
    # Why the float32 checks: beta_1 rounds to 1 and Adam's bias correction
    # divides by zero; with no epsilon a weight without gradient is 0 / 0.
    variable = keras.Variable(np.ones(2, "float32"))
    gradient = keras.ops.convert_to_tensor(np.array([1.0, 0.0], "float32"))
    keras.optimizers.AdamW(0.01, **kwargs).apply([gradient], [variable])
    assert np.isnan(keras.ops.convert_to_numpy(variable)).any()


def test_good_neighbours_of_the_refused_values_are_taken():
    optimizer = AdamW(0.01, beta_1=0.9999999, beta_2=0.9999999,
                      epsilon=1e-30, amsgrad=np.True_)
    assert optimizer.amsgrad is True and optimizer.epsilon == 1e-30


def test_the_smallest_epsilon_taken_trains_a_weight_without_gradient():
    """float32's smallest normal number survives XLA, which flushes the
    subnormal ones below it to 0: a weight that got no gradient then
    moves by 0 / epsilon = 0, not 0 / 0."""
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(1, use_bias=False)])
    model.compile(AdamW(0.01, weight_decay=0.0,
                        epsilon=float(np.finfo("float32").tiny)), "mse")
    x = np.array([[1.0, 0.0]] * 4, "float32")  # no gradient for w[1]
    before = model.get_weights()[0].copy()
    model.fit(x, np.ones(4, "float32"), batch_size=2, epochs=2, verbose=0)
    after = model.get_weights()[0]
    assert np.isfinite(after).all()
    assert after[1] == before[1] and after[0] != before[0]
