import math

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from keras.src import testing

from kerastrain.layers import ResidualBlock
from tests.support import to_numpy


def _randomize(block, seed=0):
    """Gives every weight of the block a random, non-default value (moving
    variances stay positive) so that the reference check sees them all."""
    rng = np.random.default_rng(seed)
    for weight in block.weights:
        shape = tuple(weight.shape)
        if "variance" in weight.path:
            weight.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        else:
            weight.assign((rng.standard_normal(shape) * 0.3).astype(
                "float32"))


def _t(variable):
    return torch.from_numpy(to_numpy(variable))


def _conv_same(x, conv, kernel_size, stride):
    """Keras `padding="same"` by TensorFlow's documented rule: pad
    `max((out - 1) * stride + k - in, 0)` in total, the extra pixel after.
    The kernel size and the stride are the specification's, not the
    layer's: the kernel's shape must agree with them."""
    kernel = _t(conv.kernel).permute(3, 2, 0, 1)
    assert tuple(kernel.shape[-2:]) == (kernel_size, kernel_size)
    k, size = kernel_size, x.shape[-1]
    total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
    before = total // 2
    x = F.pad(x, (before, total - before, before, total - before))
    bias = _t(conv.bias) if conv.use_bias else None
    return F.conv2d(x, kernel, bias, stride=stride)


def _norm(norm, layer, x, groups=32):
    """The normalization the block was asked for (`norm`, its argument, not
    the type of the layer it built) on NCHW `x`, with `layer`'s weights;
    `groups` as the block was given it, reduced to a divisor of the
    channels as documented."""
    if norm is None:
        return x
    if norm == "group":
        return F.group_norm(x, math.gcd(x.shape[1], groups), _t(layer.gamma),
                            _t(layer.beta), eps=layer.epsilon)
    if norm == "layer":
        # Over the channels of each pixel, as in ConvNeXt.
        nhwc = x.permute(0, 2, 3, 1)
        out = F.layer_norm(nhwc, nhwc.shape[-1:], _t(layer.gamma),
                           _t(layer.beta), eps=layer.epsilon)
        return out.permute(0, 3, 1, 2)
    if norm == "batch":
        return F.batch_norm(x, _t(layer.moving_mean),
                            _t(layer.moving_variance), _t(layer.gamma),
                            _t(layer.beta), training=False,
                            eps=layer.epsilon)
    assert norm == "instance"
    return F.instance_norm(x, weight=_t(layer.gamma), bias=_t(layer.beta),
                           eps=layer.epsilon)


def branch_spec(bottleneck, strides):
    """(kernel size, stride) of each branch convolution, as ResNet (and the
    block's docstring) specify: the stride sits on the 3x3 convolution,
    the first of a basic block, the middle one of a 1x1-3x3-1x1
    bottleneck."""
    if bottleneck:
        return [(1, 1), (3, strides), (1, 1)]
    return [(3, strides), (3, 1)]


def assert_convs_follow_the_spec(block):
    spec = branch_spec(block.bottleneck, block.strides)
    assert [(c.kernel_size, c.strides) for c in block.convs] == [
        ((k, k), (s, s)) for k, s in spec]
    if block.projection is not None:
        # A 1x1 convolution of stride 1 on every strides-th pixel, which
        # is what one of that stride computes (torch_reference convolves
        # with the stride itself).
        assert block.projection.kernel_size == (1, 1)
        assert block.projection.strides == (1, 1)


def torch_reference(block, x_nhwc, norm, branch_scale=1.0,
                    activation=F.relu, groups=32):
    """The block in inference mode, rewritten with torch.nn.functional:
    activation(branch_scale * branch(x) + shortcut(x)), with each
    convolution's kernel size and stride taken from `branch_spec` and the
    normalization `norm` names."""
    spec = branch_spec(block.bottleneck, block.strides)
    assert len(block.convs) == len(block.norms) == len(spec)
    x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)
    h = x
    for i, (conv, layer, (k, stride)) in enumerate(
            zip(block.convs, block.norms, spec)):
        h = _norm(norm, layer, _conv_same(h, conv, k, stride), groups)
        if i < len(spec) - 1:
            h = activation(h)
    if block.shortcut:
        skip = x
        if block.projection is not None:
            skip = _norm(norm, block.projection_norm,
                         _conv_same(x, block.projection, 1, block.strides),
                         groups)
        h = branch_scale * h + skip
    return activation(h).permute(0, 2, 3, 1).numpy()


# (bottleneck, strides, input channels): identity and projection shortcuts.
SHAPES = [(False, 1, 4), (False, 1, 6), (False, 2, 4), (True, 1, 16),
          (True, 1, 6), (True, 2, 16)]


@pytest.mark.parametrize("norm", [None, "instance", "batch"])
@pytest.mark.parametrize("bottleneck, strides, channels", SHAPES)
def test_matches_torch_reference(norm, bottleneck, strides, channels):
    block = ResidualBlock(4, strides=strides, bottleneck=bottleneck,
                          norm=norm)
    x = np.random.default_rng(1).standard_normal((2, 8, 8, channels))
    x = x.astype("float32")
    block.build(x.shape)
    _randomize(block)
    expects_projection = strides != 1 or channels != block.out_channels
    assert (block.projection is not None) == expects_projection
    assert_convs_follow_the_spec(block)
    np.testing.assert_allclose(to_numpy(block(x, training=False)),
                               torch_reference(block, x, norm), atol=1e-5)


# Keras' "gelu" is the exact one, torch's default; "silu" is swish.
ACTIVATIONS = {"gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh}


@pytest.mark.parametrize("norm, groups", [("group", 2), ("group", 3),
                                          ("layer", 32)])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("bottleneck, strides, channels",
                         [(False, 2, 4), (True, 1, 6)])
def test_norms_and_activations_match_torch(norm, groups, activation,
                                           bottleneck, strides, channels):
    # 4 filters (16 out of a bottleneck): 3 groups become gcd(ch, 3) = 1.
    block = ResidualBlock(4, strides=strides, bottleneck=bottleneck,
                          norm=norm, groups=groups, activation=activation)
    x = np.random.default_rng(4).standard_normal((2, 8, 8, channels))
    x = x.astype("float32")
    block.build(x.shape)
    _randomize(block)
    expected = torch_reference(block, x, norm,
                               activation=ACTIVATIONS[activation],
                               groups=groups)
    np.testing.assert_allclose(to_numpy(block(x, training=False)),
                               expected, atol=1e-5)


@pytest.mark.parametrize("channels", [2, 4, 8])
def test_the_projections_kernel_gradient_is_numpys(channels):
    """torch 2.13's CPU build (oneDNN 3.12) gets the kernel gradient of a
    strided 1x1 convolution wrong for 2 to 4 input channels on two threads
    (off by up to twice its size, differently at every call): the block's
    projection trained wrongly there. With a linear activation and no
    norm, d sum(block(x) * g) / d kernel is the sum over the pixels the
    projection reads of x * g."""
    block = ResidualBlock(8, strides=2, norm=None, activation="linear")
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((8, 8, 8, channels)).astype("float32")
    g = rng.standard_normal((8, 4, 4, 8)).astype("float32")
    block.build(x.shape)
    expected = np.einsum("nhwc,nhwo->co", x[:, ::2, ::2].astype("float64"),
                         g.astype("float64"))
    for _ in range(3):  # the wrong gradient changed from call to call
        np.testing.assert_allclose(
            gradient(block, block.projection.kernel, x, g)[0, 0], expected,
            rtol=1e-4, atol=1e-4)


def gradient(layer, variable, x, g):
    """d sum(layer(x) * g) / d variable (a trainable variable of `layer`),
    by the backend's own autodiff."""
    backend = keras.backend.backend()
    x = keras.ops.convert_to_tensor(x)
    if backend == "torch":
        with torch.enable_grad():
            (out,) = torch.autograd.grad(
                (layer(x) * torch.from_numpy(g)).sum(), variable.value)
        return out.numpy()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) * g)
        return tape.gradient(loss, variable.value).numpy()
    import jax

    values = [v.value for v in layer.trainable_variables]
    at = [v is variable for v in layer.trainable_variables].index(True)

    def loss(value):
        out, _ = layer.stateless_call(
            values[:at] + [value] + values[at + 1:],
            [v.value for v in layer.non_trainable_variables], x)
        return (out * g).sum()

    # Compiled: op by op, JAX's gradient took 3 s a call here.
    return np.asarray(jax.jit(jax.grad(loss))(values[at]))


@pytest.mark.parametrize("bottleneck", [False, True])
def test_plain_block_has_no_shortcut(bottleneck):
    block = ResidualBlock(4, strides=2, bottleneck=bottleneck, norm=None,
                          shortcut=False)
    x = np.random.default_rng(2).standard_normal((2, 8, 8, 3)).astype(
        "float32")
    block.build(x.shape)
    _randomize(block)
    assert block.projection is None
    assert_convs_follow_the_spec(block)
    np.testing.assert_allclose(to_numpy(block(x)),
                               torch_reference(block, x, None), atol=1e-5)


def test_drop_path_drops_whole_branches_per_sample():
    rate = 0.5
    block = ResidualBlock(3, norm=None, drop_path_rate=rate, seed=0)
    x = np.random.default_rng(3).standard_normal((64, 6, 6, 3)).astype(
        "float32")
    block.build(x.shape)
    _randomize(block)
    y = to_numpy(block(x, training=True))
    dropped = torch_reference(block, x, None, branch_scale=0.0)
    kept = torch_reference(block, x, None, branch_scale=1 / (1 - rate))
    is_dropped = np.all(np.isclose(y, dropped, atol=1e-5), axis=(1, 2, 3))
    is_kept = np.all(np.isclose(y, kept, atol=1e-5), axis=(1, 2, 3))
    assert np.all(is_dropped ^ is_kept)
    assert 0 < is_dropped.sum() < len(x)
    # At inference, the branch is always there, unscaled.
    np.testing.assert_allclose(to_numpy(block(x, training=False)),
                               torch_reference(block, x, None), atol=1e-5)


def _trainable_count(layer):
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


@pytest.mark.parametrize("bottleneck, strides, channels", SHAPES)
def test_shapes_and_parameter_counts(bottleneck, strides, channels):
    f = 4
    block = ResidualBlock(f, strides=strides, bottleneck=bottleneck)
    out = 4 * f if bottleneck else f
    y = block(np.zeros((2, 8, 8, channels), dtype="float32"))
    assert tuple(y.shape) == (2, 8 // strides, 8 // strides, out)
    # Convolutions without bias (a BN offset follows), 2 BN weights each.
    if bottleneck:
        expected = channels * f + 9 * f * f + f * out + 2 * (f + f + out)
    else:
        expected = 9 * channels * f + 9 * f * f + 2 * (f + f)
    if strides != 1 or channels != out:
        expected += channels * out + 2 * out
    assert _trainable_count(block) == expected


@pytest.mark.parametrize("norm", ["batch", "instance", "layer", "group",
                                  None])
def test_every_norm_trains_in_fit(norm):
    inputs = keras.Input((6, 6, 8))
    x = ResidualBlock(8, strides=2, norm=norm, drop_path_rate=0.1,
                      seed=1)(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 6, 6, 8)).astype("float32")
    y = (x[:, :3, :, :4].mean(axis=(1, 2, 3)) > 0).astype("int32")
    before = [to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0)
    changed = [not np.array_equal(b, to_numpy(w))
               for b, w in zip(before, model.trainable_weights)]
    assert all(changed), "some weights got no gradient"
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(filters=0), ValueError, "filters"),
        (dict(filters=2.5), TypeError, "filters"),
        (dict(filters=4, strides=0), ValueError, "strides"),
        (dict(filters=4, norm="bn"), ValueError, "norm"),
        (dict(filters=4, activation="rleu"), ValueError, "activation"),
        (dict(filters=4, kernel_initializer="nope"), ValueError,
         "kernel_initializer"),
        # Keras takes a number as the one tensor a weight must equal: an
        # AttributeError from inside the block, before.
        (dict(filters=4, kernel_initializer=np.float32(0.5)), ValueError,
         "`kernel_initializer` must be a name.*not a number.*Constant"),
        (dict(filters=4, kernel_initializer=np.ones((3, 3))), ValueError,
         "`kernel_initializer` must be a name.*not a number"),
        (dict(filters=4, drop_path_rate=1.0), ValueError, "drop_path_rate"),
        (dict(filters=4, drop_path_rate=0.1, shortcut=False), ValueError,
         "shortcut"),
        (dict(filters=4, groups=0), ValueError, "groups"),
        (dict(filters=4, bottleneck="no"), TypeError, "bottleneck"),
        (dict(filters=4, shortcut="no"), TypeError, "shortcut"),
        (dict(filters=4, seed=-3, drop_path_rate=0.1), ValueError, "seed"),
        # One instance at every activation: PReLU's weights, built for the
        # first shape, failed deep in a broadcast at the next.
        (dict(filters=4, activation=keras.layers.PReLU()), TypeError,
         "`activation` must be a name or a function, not a layer"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ResidualBlock(**kwargs)


@pytest.mark.parametrize("initializer", [
    "he_normal", keras.initializers.HeNormal(seed=0),
    keras.initializers.HeNormal(seed=keras.random.SeedGenerator(1))])
@pytest.mark.parametrize("bottleneck", [False, True])
def test_convolutions_do_not_start_identical(initializer, bottleneck):
    """Keras' random initializers draw the same values at every call: one
    object shared by the block's same-shaped convolutions started them
    identical (conv0 and conv1 of every basic block without a change of
    width; with a `SeedGenerator` too, each copy made from its config). A
    seeded initializer still builds the same block twice."""
    def kernels():
        block = ResidualBlock(16 if not bottleneck else 4,
                              bottleneck=bottleneck,
                              kernel_initializer=initializer)
        block.build((None, 8, 8, 16))
        return [to_numpy(v) for v in block.weights if v.name == "kernel"]

    first = kernels()
    assert len({k.tobytes() for k in first}) == len(first)
    if not isinstance(initializer, str):
        for a, b in zip(first, kernels()):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(2, 8, 3), (2, 8, 8, None)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="channels-last 2D"):
        ResidualBlock(4).build(shape)


@pytest.mark.parametrize("kwargs, groups", [
    (dict(norm="instance"), 32),
    (dict(norm="group"), 32),          # 4 channels: one per group
    (dict(norm="group", bottleneck=True), 4),  # 4 inner channels, 4 groups
])
def test_a_norm_over_one_value_on_a_1x1_map_is_refused(kwargs, groups):
    # A stride of 2 on 2x2 leaves one pixel: the block's output was the
    # same for every input.
    block = ResidualBlock(4, strides=2, groups=groups, **kwargs)
    with pytest.raises(ValueError, match=(
            rf"norm`='{kwargs['norm']}' does not suit .* 1x1 feature map\. "
            "It would apply .* at one position, which outputs its offset")):
        block.build((None, 2, 2, 3))


@pytest.mark.parametrize("norm", ["group", "instance"])
def test_sizes_left_open_are_checked_when_the_model_is_called(norm):
    """Built on `Input((None, None, 4))`, the block could not judge the
    map: fed 1x1 images, group norm of one channel a group (the default
    32 groups) output its offset whatever the input, on every backend
    (instance norm refused them itself); 2x2 images are read."""
    def model():
        inputs = keras.Input((None, None, 4))
        return keras.Model(inputs, ResidualBlock(4, norm=norm)(inputs))

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=(
            rf"norm`='{norm}' does not suit .* where a norm sees a 1x1 "
            "feature map. It would apply .* at one position")):
        model().predict(rng.standard_normal((2, 1, 1, 4)), verbose=0)
    # Another model: on jax, Keras' predict leaves the variables of a
    # model it raised in without their values.
    readable = model()
    a, b = (readable.predict(rng.standard_normal((2, 2, 2, 4)), verbose=0)
            for _ in range(2))
    assert np.abs(a - b).max() > 0.1


@pytest.mark.parametrize("bottleneck", [False, True])
def test_layer_norm_over_one_channel_is_refused_at_construction(bottleneck):
    with pytest.raises(ValueError, match=(
            "norm`='layer' does not suit .*filters=1.* layer norm over one "
            "channel")):
        ResidualBlock(1, norm="layer", bottleneck=bottleneck)


def test_group_norm_with_two_channels_a_group_on_a_1x1_map_reads_it():
    """The refusal is no wider than the case: with 2 channels a group the
    block builds, and its output depends on its input."""
    block = ResidualBlock(4, strides=2, norm="group", groups=2)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((2, 2, 2, 3)).astype("float32")
            for _ in range(2))
    assert np.abs(to_numpy(block(a)) - to_numpy(block(b))).max() > 0.1


class ResidualBlockContractTest(testing.TestCase):
    def test_layer_contract(self):
        self.run_layer_test(
            ResidualBlock,
            init_kwargs={"filters": 4, "strides": 2, "drop_path_rate": 0.1,
                         "seed": 1,
                         "kernel_regularizer": {"class_name": "L2",
                                                "config": {"l2": 1e-4}}},
            input_shape=(2, 8, 8, 3),
            expected_output_shape=(2, 4, 4, 4),
            # 3 convolutions, 3 batch norms (gamma, beta | mean, variance).
            expected_num_trainable_weights=9,
            expected_num_non_trainable_weights=6,
            expected_num_seed_generators=1,
            expected_num_losses=3,
            supports_masking=False,
        )

    def test_config_round_trips(self):
        block = ResidualBlock(8, strides=2, bottleneck=True, norm="group",
                              activation="gelu", groups=4, seed=3,
                              drop_path_rate=0.2, name="b")
        config = block.get_config()
        self.assertEqual(ResidualBlock.from_config(config).get_config(),
                         config)
