import keras
import numpy as np
import tensorflow as tf

from kerastrain.data._equalization import count_bins_once


def in_tf_data(layer, images):
    """`layer` applied to `images` inside a tf.data pipeline, where Keras
    computes with TensorFlow whatever the global backend."""
    dataset = tf.data.Dataset.from_tensors(images).map(layer)
    return np.asarray(next(iter(dataset)))


def test_the_histogram_is_numpys_bincount_on_the_layers_own_backend():
    layer = count_bins_once(keras.layers.Equalization(value_range=(0, 1)))
    # Keras scales a channel to [0, 255] before counting.
    values = np.random.default_rng(0).uniform(0, 255, (4, 5, 5)).astype(
        "float32")
    values[0, 0, :2] = (0.0, 255.0)  # both ends of the range
    expected = np.bincount(values.astype(int).ravel(), minlength=256)
    layer.backend.set_backend("tensorflow")  # as inside tf.data
    counted = layer._custom_histogram_fixed_width(
        tf.constant(values), (0, 255), 256)
    np.testing.assert_array_equal(np.asarray(counted), expected)


def test_equalized_images_are_those_of_keras_own_counting():
    images = np.random.default_rng(1).beta(
        2, 5, (3, 8, 8, 1)).astype("float32")  # a skewed histogram
    keras_own = keras.layers.Equalization(value_range=(0, 1))
    counted_once = count_bins_once(
        keras.layers.Equalization(value_range=(0, 1)))
    expected = in_tf_data(keras_own, images)
    np.testing.assert_allclose(in_tf_data(counted_once, images), expected,
                               atol=1e-6)
    assert not np.allclose(expected, images, atol=0.05)  # it equalized
