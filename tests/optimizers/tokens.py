"""A bag of tokens (an `Embedding`, the mean over positions, a `Dense`)
trained by `model.fit`, and its exact gradient in NumPy. Tokens repeat in
the batch, so on TensorFlow the embedding's gradient comes as a row per
occurrence of each token (`IndexedSlices`)."""

import keras
import numpy as np

from tests.optimizers import linear
from tests.support import to_numpy

TOKENS = np.array([[1, 1, 2, 3], [1, 4, 4, 2], [0, 0, 5, 1]])
VOCABULARY, FEATURES = 6, 3


def targets():
    return np.random.default_rng(0).normal(size=(len(TOKENS), 1)).astype(
        "float32")


def initial_weights():
    rng = np.random.default_rng(1)
    return [rng.normal(size=(VOCABULARY, FEATURES)).astype("float32"),
            rng.normal(size=(FEATURES, 1)).astype("float32")]


def fit(optimizer, steps):
    """Trains the bag of tokens on the whole batch for `steps` updates;
    returns the final [table, head]."""
    inputs = keras.Input((TOKENS.shape[1],), dtype="int32")
    outputs = keras.layers.Dense(1, use_bias=False)(
        keras.layers.GlobalAveragePooling1D()(
            keras.layers.Embedding(VOCABULARY, FEATURES)(inputs)))
    model = keras.Model(inputs, outputs)
    model.set_weights(initial_weights())
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(TOKENS, targets(), batch_size=len(TOKENS), epochs=steps,
              shuffle=False, verbose=0)
    return [to_numpy(w) for w in model.weights]


def gradients(table, head):
    """Gradient of Keras' mean squared error with respect to each weight:
    a token's row gets the sum over its occurrences."""
    pooled = table[TOKENS].mean(axis=1)
    y = targets().astype("float64")
    residual = 2 * (pooled @ head - y) / y.size
    table_gradient = np.zeros_like(table)
    np.add.at(table_gradient, TOKENS,
              residual[:, :, None] * head[:, 0] / TOKENS.shape[1])
    return [table_gradient, pooled.T @ residual]


def numpy_fit(update, steps):
    """`linear.numpy_fit` for the bag of tokens."""
    return linear.numpy_fit(update, steps, initial_weights, gradients)
