import math

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kerastrain.layers import InstanceNormalization
from kerastrain.layers.normalization import (NORMALIZATIONS, check_norm,
                                             constant_output, normalization)
from tests.support import to_numpy


def _inputs(channels, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((3, 5, 4, channels)) * 2 + 1).astype(
        "float32")


def _randomize_affine(layer, seed=1):
    rng = np.random.default_rng(seed)
    layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype(
        "float32"))
    layer.beta.assign(rng.standard_normal(layer.beta.shape).astype(
        "float32"))
    return torch.from_numpy(to_numpy(layer.gamma)), torch.from_numpy(
        to_numpy(layer.beta))


@pytest.mark.parametrize("channels, groups, expected", [
    (64, 32, 32),  # Wu and He's 32 groups where they divide the channels
    (16, 32, 16),  # fewer channels than groups: one channel per group
    (48, 32, 16),
    (12, 8, 4),
    (7, 32, 1),    # a prime channel count: layer norm over all channels
])
def test_group_count_is_the_gcd_and_matches_torch(channels, groups,
                                                  expected):
    layer = normalization("group", channels, groups)
    assert isinstance(layer, keras.layers.GroupNormalization)
    assert layer.groups == expected == math.gcd(channels, groups)
    x = _inputs(channels)
    layer.build(x.shape)
    weight, bias = _randomize_affine(layer)
    want = F.group_norm(torch.from_numpy(x).permute(0, 3, 1, 2), expected,
                        weight, bias, eps=layer.epsilon).permute(0, 2, 3, 1)
    np.testing.assert_allclose(to_numpy(layer(x)), want.numpy(), rtol=1e-4,
                               atol=1e-5)


def test_layer_norm_normalizes_the_channel_axis_as_torch():
    layer = normalization("layer", 6)
    assert isinstance(layer, keras.layers.LayerNormalization)
    x = _inputs(6, seed=2)
    layer.build(x.shape)
    weight, bias = _randomize_affine(layer, seed=3)
    want = F.layer_norm(torch.from_numpy(x), (6,), weight, bias,
                        eps=layer.epsilon)
    np.testing.assert_allclose(to_numpy(layer(x)), want.numpy(), rtol=1e-4,
                               atol=1e-5)


def test_batch_norm_moving_statistics_move_as_torch_momentum_0_1():
    layer = normalization("batch", 5)
    assert isinstance(layer, keras.layers.BatchNormalization)
    assert layer.momentum == pytest.approx(0.9)
    x = _inputs(5, seed=4)
    torch_norm = torch.nn.BatchNorm2d(5, momentum=0.1)
    torch_norm.train()
    x_torch = torch.from_numpy(x).permute(0, 3, 1, 2)
    for _ in range(3):
        layer(x, training=True)
        torch_norm(x_torch)
    np.testing.assert_allclose(to_numpy(layer.moving_mean),
                               torch_norm.running_mean.numpy(), rtol=1e-5)
    # PyTorch's running variance uses the unbiased batch variance, Keras'
    # the biased one: same momentum, 0.9 ** 3 of the initial 1 left.
    variance = x.reshape(-1, 5).astype("float64").var(axis=0)
    np.testing.assert_allclose(to_numpy(layer.moving_variance),
                               0.9 ** 3 + (1 - 0.9 ** 3) * variance,
                               rtol=1e-5)


def test_instance_none_and_layer_arguments():
    layer = normalization("instance", 8, name="norm_a", dtype="float32")
    assert isinstance(layer, InstanceNormalization)
    assert layer.name == "norm_a"
    assert normalization(None, 8) is None
    # Each call gives a fresh layer.
    assert normalization("batch", 8) is not normalization("batch", 8)
    assert [check_norm(n) for n in NORMALIZATIONS] == list(NORMALIZATIONS)


@pytest.mark.parametrize("norm, channels, groups, height, width", [
    ("layer", 1, 32, 3, 3), ("layer", 2, 32, 1, 1),
    ("group", 32, 32, 1, 1), ("group", 16, 32, 1, 1),
    ("group", 64, 32, 1, 1), ("group", 7, 32, 1, 1),
    ("group", 32, 32, 2, 1), ("group", 1, 32, 1, 2),
    ("batch", 1, 32, 1, 1), ("instance", 3, 32, 2, 1),
])
def test_constant_output_names_exactly_the_layers_that_ignore_the_input(
        norm, channels, groups, height, width):
    """Checked on the layer itself: with random offsets and scales, two
    different inputs give the same output exactly where `constant_output`
    says so (batch norm in training, over the batch)."""
    layer = normalization(norm, channels, groups)
    a, b = (_inputs(channels, seed)[:, :height, :width] for seed in (5, 6))
    layer.build(a.shape)
    _randomize_affine(layer)
    # Keras' group norm leaves rounding (~1e-5) where there is nothing to
    # normalize; a layer that reads its input differs by about 1.
    same = np.allclose(to_numpy(layer(a, training=True)),
                       to_numpy(layer(b, training=True)), atol=1e-3)
    reason = constant_output(norm, channels, groups, height * width)
    assert same == (reason is not None)
    if norm == "layer":  # judged without the feature map too
        assert constant_output(norm, channels, groups) == reason
    else:
        assert constant_output(norm, channels, groups) is None


def test_instance_norm_at_one_position_is_named_as_the_layer_refuses_it():
    assert "instance norm at one position" in constant_output(
        "instance", 3, positions=1)
    with pytest.raises(ValueError, match="more than one spatial element"):
        normalization("instance", 3).build((2, 1, 1, 3))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(norm="batchnorm"), ValueError,
     r"Argument `norm` must be one of 'batch', 'instance', 'layer', "
     r"'group', None\. Received: norm='batchnorm'"),
    (dict(norm="Batch"), ValueError, "Received: norm='Batch'"),
    (dict(norm=""), ValueError, "Received: norm=''"),
    (dict(norm="group", channels=0), ValueError, "channels"),
    (dict(norm="group", channels=2.0), TypeError, "channels"),
    (dict(norm="group", groups=0), ValueError, "groups"),
    # Checked whatever the norm, so a typo fails before it matters.
    (dict(norm=None, groups=-1), ValueError, "groups"),
])
def test_bad_arguments(kwargs, error, match):
    arguments = {"channels": 8, **kwargs}
    with pytest.raises(error, match=match):
        normalization(**arguments)
