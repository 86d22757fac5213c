import keras
import numpy as np
import pytest
import torch
from keras.src import testing

from kerastrain.layers import InstanceNormalization
from tests.support import input_grad, to_numpy

TORCH_NORMS = {1: torch.nn.InstanceNorm1d, 2: torch.nn.InstanceNorm2d,
               3: torch.nn.InstanceNorm3d}
SPATIAL = {1: (12,), 2: (6, 7), 3: (4, 5, 3)}
CHANNELS = 5


def _case(dims, axis, offset=3.0, std=2.0, seed=0, epsilon=1e-5):
    """Input in the layer's layout, affine weights, and PyTorch's output
    (PyTorch is channels-first) in the same layout, plus the torch module
    and its input."""
    rng = np.random.default_rng(seed)
    shape_cf = (3, CHANNELS) + SPATIAL[dims]
    x_cf = (rng.standard_normal(shape_cf) * std + offset).astype("float32")
    gamma = rng.standard_normal(CHANNELS).astype("float32")
    beta = rng.standard_normal(CHANNELS).astype("float32")
    module = TORCH_NORMS[dims](CHANNELS, affine=True, eps=epsilon)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(gamma))
        module.bias.copy_(torch.from_numpy(beta))
    x_torch = torch.from_numpy(x_cf).requires_grad_(True)
    y_cf = module(x_torch)
    to_last = (0,) + tuple(range(2, dims + 2)) + (1,)
    if axis == 1:
        return x_cf, gamma, beta, y_cf, x_torch
    return (np.transpose(x_cf, to_last), gamma, beta,
            y_cf.permute(*to_last), x_torch)


def _layer(x, gamma, beta, axis, epsilon=1e-5):
    layer = InstanceNormalization(axis=axis, epsilon=epsilon)
    layer.build(x.shape)
    layer.set_weights([gamma, beta])
    return layer


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_matches_torch_instance_norm_in_training_and_inference(dims, axis):
    x, gamma, beta, expected, _ = _case(dims, axis)
    layer = _layer(x, gamma, beta, axis)
    expected = expected.detach().numpy()
    for training in (True, False):
        np.testing.assert_allclose(to_numpy(layer(x, training=training)),
                                   expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("epsilon", [1e-3, 0.1])
def test_epsilon_matches_torchs_eps(epsilon):
    # A std of 0.1 (variance 0.01) makes either epsilon move the output.
    x, gamma, beta, expected, _ = _case(2, -1, std=0.1, epsilon=epsilon)
    layer = _layer(x, gamma, beta, -1, epsilon=epsilon)
    np.testing.assert_allclose(to_numpy(layer(x)),
                               expected.detach().numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_input_gradient_matches_torch(dims, axis):
    x, gamma, beta, y_torch, x_torch = _case(dims, axis=axis, seed=1)
    weights = np.random.default_rng(2).standard_normal(x.shape).astype(
        "float32")
    layer = _layer(x, gamma, beta, axis=axis)
    grad = input_grad(lambda v: keras.ops.multiply(layer(v), weights), x)
    # `y_torch` and `weights` are in the layer's layout; torch's input
    # gradient is channels-first.
    (y_torch * torch.from_numpy(weights)).sum().backward()
    expected = x_torch.grad.numpy()
    if axis == -1:
        expected = expected.transpose((0,) + tuple(range(2, dims + 2)) +
                                      (1,))
    np.testing.assert_allclose(grad, expected, atol=1e-5, rtol=0)


def test_as_accurate_as_torch_on_inputs_with_a_large_mean():
    # Mean 10, std 0.1: E[x^2] - E[x]^2 cancels catastrophically in float32
    # (Keras' GroupNormalization is off by ~6e-3 here on the torch backend).
    # Against a float64 two-pass reference, the layer must do no worse than
    # PyTorch's own float32 kernel, with a 2x margin.
    x, gamma, beta, y_torch, _ = _case(2, axis=-1, offset=10.0, std=0.1)
    x64 = x.astype("float64")
    mean = x64.mean(axis=(1, 2), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    reference = (x64 - mean) / np.sqrt(var + 1e-5) * gamma + beta
    ours = np.abs(to_numpy(_layer(x, gamma, beta, -1)(x)) - reference).max()
    theirs = np.abs(y_torch.detach().numpy() - reference).max()
    assert ours <= 2 * theirs, (ours, theirs)


def test_output_has_zero_mean_unit_variance_without_affine():
    x = np.random.default_rng(3).gamma(2.0, size=(4, 9, 9, 3)).astype(
        "float32")
    y = to_numpy(InstanceNormalization(center=False, scale=False)(x))
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
    # Biased variance, minus the epsilon's share.
    var = x.var(axis=(1, 2))
    np.testing.assert_allclose(y.var(axis=(1, 2)), var / (var + 1e-5),
                               rtol=1e-4)


def test_mixed_precision_output_is_float16_and_close():
    x = np.random.default_rng(4).standard_normal((2, 6, 6, 3)).astype(
        "float32")
    full = to_numpy(InstanceNormalization()(x))
    half = InstanceNormalization(dtype="mixed_float16")(x)
    assert keras.backend.standardize_dtype(half.dtype) == "float16"
    np.testing.assert_allclose(to_numpy(half).astype("float32"), full,
                               atol=5e-3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(epsilon=0.0), ValueError, "epsilon"),
        (dict(epsilon=-1e-5), ValueError, "epsilon"),
        # inf in float32: every output 0.
        (dict(epsilon=1e40), ValueError, "`epsilon`.*float32"),
        (dict(axis=1.5), TypeError, "axis"),
        # The batch axis is refused before any input is seen.
        (dict(axis=0), ValueError, "`axis`.*batch axis.*Received: axis=0"),
        (dict(center="no"), TypeError, "center"),
        (dict(scale="no"), TypeError, "scale"),
        (dict(gamma_initializer="onez"), ValueError, "gamma_initializer"),
        # A scalar fits no (channels,) weight: it failed when built.
        (dict(gamma_initializer=np.float32(0.5)), ValueError,
         "`gamma_initializer` must be a name.*not a number"),
        (dict(beta_regularizer="l3"), ValueError, "beta_regularizer"),
        (dict(gamma_constraint="positive"), ValueError, "gamma_constraint"),
        (dict(groups=2), TypeError, "groups.*GroupNormalization"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        InstanceNormalization(**kwargs)


@pytest.mark.parametrize(
    "shape, axis, match",
    [
        ((4, 8), -1, "rank >= 3"),
        ((4, 8, 8, None), -1, "defined channel dimension"),
        ((4, 8, 8, 3), 0, "batch axis"),
        ((4, 8, 8, 3), 4, "channel axis"),
        # One value per channel: the output was the offset, whatever the
        # input (PyTorch refuses it too).
        ((4, 1, 1, 3), -1, "more than one spatial element"),
        ((4, 1, 3), -1, "more than one spatial element"),
        ((4, 3, 1, 1), 1, "more than one spatial element"),
    ],
)
def test_bad_inputs_fail_at_build(shape, axis, match):
    with pytest.raises(ValueError, match=match):
        InstanceNormalization(axis=axis).build(shape)


def test_one_spatial_element_fails_at_call_where_build_saw_none():
    """A model of open spatial sizes fed 1x1 images output its offset
    whatever the input (0 here), without a word. (After TensorFlow has
    traced other sizes, its graphs may leave them None: not checked.)"""
    def model():
        inputs = keras.Input((None, None, 3))
        return keras.Model(inputs, InstanceNormalization()(inputs))

    x = np.random.default_rng(0).standard_normal((2, 2, 1, 3))
    with pytest.raises(ValueError, match="more than one spatial element"):
        model().predict(x[:, :1], verbose=0)
    # Another model: on jax, Keras 3.15 leaves a model whose `predict`
    # raised from a layer (Keras' own `Reshape` too) unable to predict.
    opened = model()
    reference = (x - x.mean(axis=(1, 2), keepdims=True)) / np.sqrt(
        x.var(axis=(1, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(to_numpy(opened.predict(x, verbose=0)),
                               reference, rtol=1e-4, atol=1e-5)
    if keras.backend.backend() != "tensorflow":
        with pytest.raises(ValueError, match="more than one spatial"):
            opened.predict(x[:, :1], verbose=0)


def test_symbolic_input_with_unknown_channels_is_rejected():
    with pytest.raises(ValueError, match="defined channel dimension"):
        InstanceNormalization()(keras.Input(shape=(8, 8, None)))


class InstanceNormalizationContractTest(testing.TestCase):
    def test_layer_contract(self):
        # Shapes, weight counts, get_config/from_config, saving inside a
        # model, a training step and mixed precision, by Keras' own checker.
        self.run_layer_test(
            InstanceNormalization,
            init_kwargs={"axis": -1, "epsilon": 1e-3,
                         "gamma_initializer": "random_normal"},
            input_shape=(2, 5, 5, 3),
            expected_output_shape=(2, 5, 5, 3),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
        )

    def test_config_has_no_groups_and_round_trips(self):
        layer = InstanceNormalization(axis=1, epsilon=1e-4, center=False)
        config = layer.get_config()
        self.assertNotIn("groups", config)
        clone = InstanceNormalization.from_config(config)
        self.assertEqual(clone.get_config(), config)


def test_a_mask_leaves_the_padding_out_of_the_statistics():
    """Each sequence normalized over its own steps, as `InstanceNorm1d` on
    the sequence cut to its length; the mask passes on. The padding was
    counted in the mean and variance, and the mask passed on all the
    same."""
    rng = np.random.default_rng(0)
    lengths = [3, 6, 2]
    x = (rng.standard_normal((3, 6, CHANNELS)) * 2 + 3).astype("float32")
    mask = np.arange(6)[None, :] < np.array(lengths)[:, None]
    layer = InstanceNormalization(epsilon=1e-5)
    got = to_numpy(layer(x, mask=mask))
    module = torch.nn.InstanceNorm1d(CHANNELS, eps=1e-5)
    for sample, length in enumerate(lengths):
        cut = torch.from_numpy(np.ascontiguousarray(
            x[sample:sample + 1, :length].transpose(0, 2, 1)))
        expected = module(cut).detach().numpy().transpose(0, 2, 1)[0]
        np.testing.assert_allclose(got[sample, :length], expected,
                                   rtol=1e-5, atol=1e-5)
    assert np.isfinite(got).all()
    assert np.array_equal(to_numpy(layer.compute_mask(x, mask)), mask)
    # Inside a model: Keras hands the embedding's mask to the layer.
    tokens = keras.Input((6,), dtype="int32")
    embedded = keras.layers.Embedding(10, CHANNELS, mask_zero=True)(tokens)
    model = keras.Model(tokens, InstanceNormalization()(embedded))
    ids = np.array([[3, 1, 4, 0, 0, 0]])
    short = keras.Model(tokens, embedded).predict(ids, verbose=0)[:, :3]
    centered = short - short.mean(axis=1, keepdims=True)
    expected = centered / np.sqrt((centered ** 2).mean(axis=1,
                                                       keepdims=True) + 1e-5)
    np.testing.assert_allclose(model.predict(ids, verbose=0)[:, :3],
                               expected, rtol=1e-4, atol=1e-4)


def test_padding_in_front_keeps_the_precision_of_unpadded_data():
    """`pad_sequences` pads in front: the statistics were taken relative
    to that padding, far from data around 1000, and lost digits (1e-4
    off, where the same steps unpadded are 5e-7 off)."""
    rng = np.random.default_rng(1)
    real = (rng.standard_normal((2, 150, CHANNELS)) + 1000).astype(
        "float32")
    x = np.concatenate([np.zeros((2, 50, CHANNELS), "float32"), real], 1)
    mask = np.arange(200)[None, :] >= 50
    mask = np.repeat(mask, 2, axis=0)
    got = to_numpy(InstanceNormalization(epsilon=1e-5)(x, mask=mask))
    real64 = real.astype("float64")
    centered = real64 - real64.mean(axis=1, keepdims=True)
    expected = centered / np.sqrt((centered ** 2).mean(axis=1,
                                                       keepdims=True) + 1e-5)
    np.testing.assert_allclose(got[:, 50:], expected, atol=5e-6)


def test_a_mask_with_the_channels_first_is_refused():
    x = np.ones((2, CHANNELS, 6), "float32")
    with pytest.raises(ValueError, match=r"mask of one value per position"):
        InstanceNormalization(axis=1)(x, mask=np.ones((2, CHANNELS), bool))
