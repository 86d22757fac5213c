import math

import keras
import numpy as np
import pytest
from keras.src import testing

from kerastrain.layers import DropPath, stochastic_depth_rates
from tests.support import to_numpy


def _per_sample_factors(layer, x):
    """Runs the layer in training mode and returns, per sample, the single
    factor it applied (asserting that there is exactly one)."""
    y = to_numpy(layer(x, training=True))
    factors = y.reshape(len(x), -1) / x.reshape(len(x), -1)
    np.testing.assert_allclose(
        factors, np.broadcast_to(factors[:, :1], factors.shape), rtol=1e-6)
    return factors[:, 0]


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("shape", [(2000, 3), (2000, 4, 4, 2)])
def test_keeps_whole_samples_with_probability_one_minus_rate(rate, shape):
    x = np.random.default_rng(0).uniform(0.5, 1.5, shape).astype("float32")
    factors = _per_sample_factors(DropPath(rate, seed=7), x)
    # Every sample is either dropped or scaled by exactly 1 / (1 - rate).
    kept = factors != 0
    np.testing.assert_allclose(factors[kept], 1 / (1 - rate), rtol=1e-6)
    # The kept fraction is Binomial(n, 1 - rate) / n: within 5 sigma.
    n = len(x)
    sigma = math.sqrt(rate * (1 - rate) / n)
    assert abs(kept.mean() - (1 - rate)) < 5 * sigma


def test_is_the_identity_at_inference_and_for_rate_zero():
    x = np.random.default_rng(1).standard_normal((16, 5, 5, 3)).astype(
        "float32")
    np.testing.assert_array_equal(to_numpy(DropPath(0.5)(x)), x)
    np.testing.assert_array_equal(
        to_numpy(DropPath(0.5)(x, training=False)), x)
    np.testing.assert_array_equal(
        to_numpy(DropPath(0.0)(x, training=True)), x)


def test_seeded_layers_draw_the_same_masks():
    x = np.ones((256, 3), dtype="float32")
    a, b, c = DropPath(0.5, seed=3), DropPath(0.5, seed=3), DropPath(
        0.5, seed=4)
    draws_a = [_per_sample_factors(a, x) for _ in range(3)]
    draws_b = [_per_sample_factors(b, x) for _ in range(3)]
    for first, second in zip(draws_a, draws_b):
        np.testing.assert_array_equal(first, second)
    # Successive calls draw new masks, and another seed other masks.
    assert not np.array_equal(draws_a[0], draws_a[1])
    assert not np.array_equal(draws_a[0], _per_sample_factors(c, x))


def test_masks_vary_per_step_inside_a_compiled_fit():
    # In a compiled train step the seed state must advance: a model whose
    # only randomness is DropPath sees different masks on each batch. The
    # learning rate is 0, so the weights stay put and only the masks can
    # move the loss: with all-ones inputs and kernel, a kept sample outputs
    # 4 * 2 = 8 against a target of 0, so each epoch's (single batch) MSE is
    # 64 * kept / 64, the number of samples kept.
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    model = keras.Model(inputs, dense(DropPath(0.5, seed=0)(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x = np.ones((64, 4), dtype="float32")
    y = np.zeros((64, 1), dtype="float32")
    history = model.fit(x, y, batch_size=64, epochs=6, verbose=0,
                        shuffle=False)
    np.testing.assert_array_equal(to_numpy(dense.kernel), np.ones((4, 1)))
    kept = np.array(history.history["loss"])
    np.testing.assert_allclose(kept, np.round(kept), atol=1e-4)
    assert ((kept > 0) & (kept < 64)).all()
    # With a frozen seed every batch would keep the same samples.
    assert len(set(np.round(kept).astype(int))) > 1


@pytest.mark.parametrize(
    "rate, error",
    [(-0.1, ValueError), (1.0, ValueError), (1.5, ValueError),
     (float("nan"), ValueError), ("0.5", TypeError), (None, TypeError)],
)
def test_bad_rate(rate, error):
    with pytest.raises(error, match="rate"):
        DropPath(rate)


def test_noise_shape_is_refused_not_ignored():
    # Dropout's argument: DropPath took it and drew per sample all the same.
    with pytest.raises(TypeError, match="no `noise_shape` argument"):
        DropPath(0.5, noise_shape=(None, 4, 4, 2))


def test_bad_seed():
    with pytest.raises(TypeError, match="seed"):
        DropPath(0.1, seed=1.5)
    for seed in (-1, 2**31):  # Keras: an OverflowError at the first call
        with pytest.raises(ValueError, match="seed"):
            DropPath(0.1, seed=seed)


@pytest.mark.parametrize("num_blocks, final_rate", [(1, 0.5), (9, 0.2),
                                                    (54, 0.5)])
def test_stochastic_depth_rates_follow_the_linear_rule(num_blocks,
                                                       final_rate):
    rates = stochastic_depth_rates(num_blocks, final_rate)
    # Huang et al.: p_l = 1 - l / L * (1 - p_L) survival, l = 1..L.
    survival = 1 - np.arange(1, num_blocks + 1) / num_blocks * final_rate
    np.testing.assert_allclose(1 - np.array(rates), survival, rtol=1e-12)
    assert rates[-1] == pytest.approx(final_rate)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(num_blocks=0, final_rate=0.1), ValueError, "num_blocks"),
        (dict(num_blocks=2.0, final_rate=0.1), TypeError, "num_blocks"),
        (dict(num_blocks=3, final_rate=1.0), ValueError, "final_rate"),
        (dict(num_blocks=3, final_rate=-0.2), ValueError, "final_rate"),
    ],
)
def test_stochastic_depth_rates_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        stochastic_depth_rates(**kwargs)


class DropPathContractTest(testing.TestCase):
    def test_layer_contract(self):
        self.run_layer_test(
            DropPath,
            init_kwargs={"rate": 0.25, "seed": 1},
            input_shape=(4, 3, 3, 2),
            expected_output_shape=(4, 3, 3, 2),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            supports_masking=True,
        )

    def test_config_round_trips_without_noise_shape(self):
        config = DropPath(0.3, seed=5, name="dp").get_config()
        self.assertNotIn("noise_shape", config)
        self.assertEqual(DropPath.from_config(config).get_config(), config)
