import warnings

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from kerastrain.layers import ResidualBlock, stochastic_depth_rates
from kerastrain.models import resnet, valid_depths
from kerastrain.models.resnet import blocks_per_stage
from tests.support import to_numpy


def cifar_resnet_parameters(n, width=16, channels=3, classes=10,
                            shortcut=True):
    """All parameters (batch-norm statistics included) of the CIFAR ResNet
    with basic blocks and projection shortcuts, counted by hand."""
    bn = 4  # gamma, beta, moving mean, moving variance per channel
    total = 9 * channels * width + bn * width  # stem conv (no bias) + BN
    c_in = width
    for stage in range(3):
        f = width * 2**stage
        for i in range(n):
            total += 9 * c_in * f + bn * f + 9 * f * f + bn * f
            if shortcut and c_in != f:
                total += c_in * f + bn * f  # 1x1 projection + BN
            c_in = f
    return total + c_in * classes + classes  # dense logits


def test_resnet20_has_about_0_27_million_parameters():
    model = resnet((32, 32, 3), num_classes=10, depth=20)
    assert model.count_params() == cifar_resnet_parameters(3)
    # He et al., table 6: 0.27 M (their identity shortcuts pad with zeros;
    # the two projections here add 2.6 k parameters).
    assert round(model.count_params() / 1e6, 2) == 0.27


@pytest.mark.parametrize("depth", [8, 14, 32])
def test_depth_gives_6n_plus_2_layers(depth):
    n = (depth - 2) // 6
    model = resnet((16, 16, 3), num_classes=7, depth=depth)
    blocks = [l for l in model.layers if isinstance(l, ResidualBlock)]
    assert len(blocks) == 3 * n
    assert [b.strides for b in blocks] == ([1] * n + [2] + [1] * (n - 1)
                                           + [2] + [1] * (n - 1))
    assert [b.filters for b in blocks] == [16] * n + [32] * n + [64] * n
    # Weighted layers: stem + 2 per block + classifier.
    convs = sum(len(b.convs) for b in blocks)
    assert 1 + convs + 1 == depth
    assert model.count_params() == cifar_resnet_parameters(n, classes=7)
    assert tuple(model.output.shape) == (None, 7)


def test_bottleneck_depth_is_9n_plus_2():
    model = resnet((16, 16, 3), num_classes=10, depth=20, bottleneck=True,
                   width=8)
    blocks = [l for l in model.layers if isinstance(l, ResidualBlock)]
    assert len(blocks) == 6
    assert 1 + sum(len(b.convs) for b in blocks) + 1 == 20
    assert blocks[-1].out_channels == 4 * 8 * 4


def test_plain_net_is_the_same_net_without_skips():
    with_skips = resnet((16, 16, 3), 10, depth=14)
    plain = resnet((16, 16, 3), 10, depth=14, shortcut=False)
    blocks = [l for l in plain.layers if isinstance(l, ResidualBlock)]
    assert not any(b.shortcut or b.projection for b in blocks)
    assert plain.count_params() == cifar_resnet_parameters(2,
                                                           shortcut=False)
    assert with_skips.count_params() > plain.count_params()


def test_drop_path_rates_follow_the_linear_rule():
    model = resnet((8, 8, 1), 10, depth=14, drop_path_rate=0.3, seed=5)
    blocks = [l for l in model.layers if isinstance(l, ResidualBlock)]
    np.testing.assert_allclose([b.drop_path_rate for b in blocks],
                               stochastic_depth_rates(6, 0.3))
    assert len({b.seed for b in blocks}) == 6


def test_activation_and_groups_reach_the_stem_and_every_block():
    # The blocks' arithmetic with them is checked against torch in
    # tests/layers/test_residual_block.py.
    model = resnet((8, 8, 1), 10, depth=14, width=6, norm="group",
                   groups=4, activation="gelu")
    blocks = [l for l in model.layers if isinstance(l, ResidualBlock)]
    assert model.get_layer("stem_act").activation is (
        keras.activations.gelu)
    assert all(b.activation is keras.activations.gelu for b in blocks)
    # gcd(channels, 4): 2 groups of the stem's and first stage's 6
    # channels, 4 of the 12 and 24 of the later stages.
    assert model.get_layer("stem_norm").groups == 2
    assert [b.norms[0].groups for b in blocks] == [2, 2, 4, 4, 4, 4]


@pytest.mark.parametrize("norm", ["batch", "instance", "layer", "group",
                                  None])
def test_learns_digits_with_every_norm(norm):
    # A small ResNet on 8x8 digits must do far better than chance (10%)
    # after a few epochs: gradients reach every layer and the net works.
    digits = load_digits()
    x = (digits.images[:600, :, :, None] / 16.0).astype("float32")
    y = digits.target[:600]
    model = resnet((8, 8, 1), 10, depth=8, width=8, norm=norm)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(x[:500], y[:500], batch_size=50, epochs=6,
                        verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    _, accuracy = model.evaluate(x[:500], y[:500], verbose=0)
    assert accuracy > 0.6


@pytest.mark.parametrize("bottleneck, depth, listed", [
    (False, 21, "8, 14, 20, 26"),
    (False, 2, "8, 14, 20, 26"),
    (True, 20 + 1, "11, 20, 29, 38"),
    (True, 14, "11, 20, 29, 38"),
])
def test_wrong_depth_lists_the_valid_ones(bottleneck, depth, listed):
    with pytest.raises(ValueError, match=f"depth.*{listed}"):
        resnet((8, 8, 1), 10, depth=depth, bottleneck=bottleneck)


def test_valid_depths():
    assert valid_depths()[:5] == [6 * n + 2 for n in range(1, 6)]
    assert 110 in valid_depths() and 164 in valid_depths(bottleneck=True)


@pytest.mark.parametrize("kwargs, error", [
    ({"bottleneck": "no"}, TypeError),  # would list bottleneck depths
    ({"up_to": 50.0}, TypeError),
    ({"up_to": -5}, ValueError),  # would list none
])
def test_valid_depths_refuses_bad_arguments_naming_them(kwargs, error):
    name = next(iter(kwargs))
    with pytest.raises(error, match=f"`{name}`"):
        valid_depths(**kwargs)


@pytest.mark.parametrize("depth, bottleneck, n", [
    (1202, False, 200),  # ResNet-1202 of He et al., section 4.2
    (206, False, 34),    # beyond valid_depths' default listing (200)
    (1001, True, 111),   # pre-activation ResNet-1001
    (8, False, 1),
    (11, True, 1),
])
def test_every_depth_of_the_form_is_accepted(depth, bottleneck, n):
    assert depth == (9 if bottleneck else 6) * n + 2
    assert blocks_per_stage(depth, bottleneck) == n


def test_a_deep_resnet_gets_past_the_depth_check():
    # Building ResNet-206 costs seconds; a misspelt activation, checked
    # right after the depth, stops it first and shows the depth passed.
    with pytest.raises(ValueError, match="activation"):
        resnet((8, 8, 1), 10, depth=206, activation="relux")


@pytest.mark.parametrize("depth, bottleneck", [
    (9, False), (1201, False), (1202, True), (2, False), (0, True),
    (-4, False),
])
def test_other_depths_are_rejected(depth, bottleneck):
    with pytest.raises(ValueError, match=f"Received: depth={depth}$"):
        blocks_per_stage(depth, bottleneck)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(input_shape=(8, 8)), ValueError, "input_shape"),
        (dict(input_shape=(8, 8, None)), ValueError, "input_shape"),
        (dict(input_shape=(8, 8, 0)), ValueError, "input_shape"),
        (dict(input_shape=(0, 8, 1)), ValueError, "input_shape"),
        (dict(input_shape=(8, 8, True)), ValueError, "input_shape"),
        (dict(input_shape=8), TypeError, "input_shape"),
        # The last stage would be 1x1: instance norm outputs its offset,
        # and so does group norm with one channel a group (4 * 8 channels
        # in 32 groups), and layer norm over the stem's one channel.
        (dict(input_shape=(4, 4, 3), norm="instance"), ValueError,
         r"norm`='instance' does not suit .*in stage 3 \(1x1\)"),
        (dict(input_shape=(4, 4, 3), norm="group", width=8), ValueError,
         r"norm`='group' does not suit width=8, groups=32 .*stage 3"),
        (dict(input_shape=(1, 1, 3), norm="group", width=2, groups=2),
         ValueError, r"groups=2 .*in the stem\. .*one channel in each"),
        (dict(norm="layer", width=1), ValueError,
         r"norm`='layer' does not suit width=1.*in the stem"),
        (dict(groups=0), ValueError, "groups"),
        (dict(num_classes=0), ValueError, "num_classes"),
        (dict(width=0), ValueError, "width"),
        (dict(norm="batchnorm"), ValueError, "norm"),
        (dict(drop_path_rate=1.2), ValueError, "drop_path_rate"),
        (dict(drop_path_rate=0.1, shortcut=False), ValueError, "shortcut"),
        (dict(activation="relux"), ValueError, "activation"),
        (dict(activation=keras.layers.PReLU()), TypeError,
         "`activation` must be a name or a function"),
        (dict(depth="20"), TypeError, "depth"),
        (dict(bottleneck="no"), TypeError, "bottleneck"),
        (dict(shortcut="no"), TypeError, "shortcut"),
        (dict(seed=-1, drop_path_rate=0.1), ValueError, "seed"),
        (dict(kernel_initializer="nope"), ValueError, "kernel_initializer"),
        (dict(kernel_initializer=np.int64(8)), ValueError,
         "`kernel_initializer` must be a name.*not a number"),
        (dict(kernel_regularizer="l3"), ValueError, "kernel_regularizer"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = dict(input_shape=(8, 8, 1), num_classes=10)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        resnet(**arguments)


@pytest.mark.parametrize("initializer", [
    "he_normal", keras.initializers.HeNormal(seed=0),
    keras.initializers.HeNormal(seed=keras.random.SeedGenerator(1))])
def test_every_convolution_starts_from_its_own_draw(initializer):
    """21 convolutions in ResNet-20, 21 different initial kernels (one
    initializer shared by same-shaped convolutions drew the same values:
    14 distinct with the default, 8 with a seeded initializer, also one
    seeded with a `SeedGenerator`)."""
    model = resnet((32, 32, 3), 10, depth=20, width=16,
                   kernel_initializer=initializer)
    kernels = [to_numpy(v).tobytes() for v in model.weights
               if v.name == "kernel" and len(v.shape) == 4]
    assert len(kernels) == 21 and len(set(kernels)) == 21


@pytest.mark.parametrize("kwargs", [
    dict(norm="group", width=16),           # 2 channels a group at 1x1
    dict(norm="group", width=8, groups=16),
    dict(norm="layer", width=2),
])
def test_a_norm_that_reads_a_1x1_map_is_accepted(kwargs):
    """The refusals are no wider than the cases: these logits depend on
    the image."""
    model = resnet((4, 4, 3), 3, depth=8, **kwargs)
    images = np.random.default_rng(0).standard_normal((2, 4, 4, 3))
    logits = to_numpy(model(images.astype("float32")))
    assert np.abs(logits[0] - logits[1]).max() > 1e-3


def test_height_and_width_may_be_unknown():
    model = resnet((None, None, 1), 3, depth=8, width=4, norm="instance")
    assert model.predict(np.zeros((2, 12, 10, 1), "float32"),
                         verbose=0).shape == (2, 3)


def test_built_channels_last_whatever_the_global_image_format(tmp_path):
    """The norms and the blocks work on the last axis; a global
    `channels_first` made the convolutions read the height as channels,
    and a file saved before could not be loaded under it."""
    keras.utils.set_random_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reference = resnet((16, 16, 3), 10, depth=8, width=8)
    assert not [w for w in caught if "channels-last" in str(w.message)]
    x = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype(
        "float32")
    expected = to_numpy(reference.predict(x, verbose=0))
    reference.save(tmp_path / "resnet.keras")
    keras.config.set_image_data_format("channels_first")
    try:
        # (3, 16, 16) would build a net of 16 x 3 images: it warns.
        with pytest.warns(UserWarning, match=r"channels-last.*"
                          r"input_shape=\(16, 16, 3\)"):
            model = resnet((16, 16, 3), 10, depth=8, width=8)
        block = ResidualBlock(8)
        out = block(np.zeros((2, 16, 16, 3), "float32"))
        loaded = keras.saving.load_model(tmp_path / "resnet.keras")
        got = to_numpy(loaded.predict(x, verbose=0))
    finally:
        keras.config.set_image_data_format("channels_last")
    assert model.count_params() == reference.count_params()
    assert tuple(out.shape) == (2, 16, 16, 8)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_seeded_initializer_near_the_top_of_the_seed_range_builds():
    # Each convolution gets seed + offset, which overflowed JAX's uint32.
    initializer = keras.initializers.HeNormal(seed=2**32 - 1)
    model = resnet((8, 8, 1), 10, depth=8, width=4,
                   kernel_initializer=initializer)
    kernels = [to_numpy(v).tobytes() for v in model.weights
               if v.name == "kernel" and len(v.shape) == 4]
    assert len(set(kernels)) == len(kernels)
