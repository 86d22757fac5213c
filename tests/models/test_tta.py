import keras
import numpy as np
import pytest

from kerastrain.models import resnet, tta
from tests.support import (confident_half_precision_model,
                           models_without_inputs, shift_views, softmax,
                           to_numpy)


def images(shape=(5, 8, 6, 2), seed=0):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype(
        "float32")


@pytest.mark.parametrize("shift", [1, 2])
def test_averages_the_softmax_over_the_image_and_four_shifts(tmp_path,
                                                             shift):
    keras.utils.set_random_seed(0)
    model = resnet((8, 6, 2), 4, depth=8, width=4)
    x = images()
    expected = np.mean([softmax(to_numpy(model.predict(v, verbose=0)))
                        for v in shift_views(x, shift)], axis=0)
    combined = tta(model, shift=shift)
    got = to_numpy(combined.predict(x, verbose=0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The weights are the model's own, not a copy.
    assert {id(w) for w in combined.weights} == {id(w)
                                                 for w in model.weights}

    path = str(tmp_path / "tta.keras")
    combined.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(reloaded.predict(x, verbose=0)), got,
                               atol=1e-6)


def test_probabilities_are_averaged_as_they_are():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3),
                              keras.layers.Softmax()])
    x = images((3, 4, 4, 1))
    expected = np.mean([to_numpy(model.predict(v, verbose=0))
                        for v in shift_views(x)], axis=0)
    got = to_numpy(tta(model, from_logits=False).predict(x, verbose=0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_bad_arguments_are_clear_errors():
    model = keras.Sequential([keras.Input((4, 3, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="`model` must be a Keras model"):
        tta("model.keras")
    # Keras' `inputs` raised a bare AttributeError.
    for bad in models_without_inputs((4, 3, 1)):
        with pytest.raises(TypeError, match=r"Argument `model` takes "
                           r"functional or Sequential Keras models.*"
                           r"Received: model=<"):
            tta(bad)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="`shift` must be an integer "
                           ">= 1"):
            tta(model, shift=bad)
    for bad in (1.5, True, "1"):
        with pytest.raises(TypeError, match="`shift` must be an integer"):
            tta(model, shift=bad)
    with pytest.raises(ValueError, match=r"smaller than .* shift=3 for "
                       r"images of \(4, 3\)"):
        tta(model, shift=3)
    with pytest.raises(TypeError, match="`from_logits` must be True or "
                       "False"):
        tta(model, from_logits="yes")
    with pytest.raises(ValueError, match="`data_format` must be one of "
                       ".*channels_last"):
        tta(model, data_format="NHWC")
    mixed = keras.Sequential([
        keras.Input((4, 4, 1)),
        keras.layers.ZeroPadding2D(1, data_format="channels_last"),
        keras.layers.Conv2D(2, 1, data_format="channels_first"),
        keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="both image layouts; pass "
                       "`data_format`"):
        tta(mixed)
    flat = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError,
                       match=r"one input of images .*\(None, 6\)"):
        tta(flat)


def test_probabilities_stay_float32_under_mixed_precision():
    # Keras' Average follows the global policy: it rounded the float32
    # softmax to float16, 1e-17 to 0.
    try:
        model = confident_half_precision_model(0)
        combined = tta(model)
    finally:
        keras.config.set_dtype_policy("float32")
    x = images((4, 8, 8, 1))
    expected = np.mean([softmax(to_numpy(model.predict(v, verbose=0))
                                .astype("float64"))
                        for v in shift_views(x)], axis=0)
    got = to_numpy(combined.predict(x, verbose=0))
    assert got.dtype == np.float32 and expected.min() < 1e-8
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=0)


def test_resnet_is_shifted_channels_last_under_a_global_channels_first():
    """`resnet` is channels-last whatever the global format; its views
    shifted the width and the channels under `channels_first`."""
    keras.utils.set_random_seed(0)
    model = resnet((8, 6, 3), 4, depth=8, width=4)
    x = images((5, 8, 6, 3))
    expected = np.mean([softmax(to_numpy(model.predict(v, verbose=0)))
                        for v in shift_views(x, 2)], axis=0)
    keras.config.set_image_data_format("channels_first")
    try:
        got = to_numpy(tta(model, shift=2).predict(x, verbose=0))
    finally:
        keras.config.set_image_data_format("channels_last")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def to_channels_first(x):
    return np.transpose(x, (0, 3, 1, 2))


@pytest.mark.parametrize("declared", ["argument", "layers"])
def test_channels_first_models_are_shifted_along_height_and_width(declared):
    """Told by `data_format`, or read off a layer's own `data_format`."""
    flatten = (keras.layers.Reshape((-1,)) if declared == "argument" else
               keras.layers.Flatten(data_format="channels_first"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2, 8, 6)), flatten,
                              keras.layers.Dense(3)])
    x = images((4, 8, 6, 2))
    expected = np.mean([softmax(to_numpy(model.predict(
        to_channels_first(v), verbose=0))) for v in shift_views(x)], axis=0)
    kwargs = {"data_format": "channels_first"} if (
        declared == "argument") else {}
    got = to_numpy(tta(model, **kwargs).predict(to_channels_first(x),
                                                verbose=0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_single_logit_gets_a_sigmoid():
    # A softmax over one logit is 1 whatever the image.
    keras.utils.set_random_seed(0)
    model = resnet((8, 6, 2), 1, depth=8, width=4)
    x = images()
    expected = np.mean([1 / (1 + np.exp(-to_numpy(model.predict(
        v, verbose=0)).astype("float64"))) for v in shift_views(x, 1)],
        axis=0)
    got = to_numpy(tta(model).predict(x, verbose=0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.ptp(got) > 0


def test_a_default_flatten_after_channels_first_layers_does_not_vote():
    """`Flatten` takes the global `data_format` unless given one; it only
    orders what it flattens, so a channels-first image layer says the
    layout (the model was refused as of both layouts). Padding: TensorFlow
    has no channels-first convolution on CPU."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((2, 8, 6)),
        keras.layers.ZeroPadding2D((1, 2), data_format="channels_first"),
        keras.layers.Flatten(), keras.layers.Dense(3)])
    x = images((4, 8, 6, 2))
    expected = np.mean([softmax(to_numpy(model.predict(
        to_channels_first(v), verbose=0))) for v in shift_views(x)], axis=0)
    got = to_numpy(tta(model).predict(to_channels_first(x), verbose=0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_nested_models_say_their_layout():
    """An `ensemble` of `resnet`s has no image layer at its top level: the
    layout is read from its members (under a global `channels_first`, the
    views shifted the width and the channels)."""
    from kerastrain.models import ensemble

    keras.utils.set_random_seed(0)
    members = [resnet((8, 6, 3), 4, depth=8, width=4) for _ in range(2)]
    x = images((5, 8, 6, 3))
    expected = np.mean([np.mean([softmax(to_numpy(m.predict(v, verbose=0)))
                                 for m in members], axis=0)
                        for v in shift_views(x)], axis=0)
    keras.config.set_image_data_format("channels_first")
    try:
        combined = tta(ensemble(members), from_logits=False)
    finally:
        keras.config.set_image_data_format("channels_last")
    got = to_numpy(combined.predict(x, verbose=0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

