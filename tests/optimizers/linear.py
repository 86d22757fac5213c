"""A linear regression trained by `model.fit`, and its exact gradient in
NumPy, for checking optimizers update by update against NumPy."""

import keras
import numpy as np

from tests.support import to_numpy

N, D, UNITS = 16, 3, 2


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D)).astype("float32")
    y = (x @ rng.standard_normal((D, UNITS)) + 0.5).astype("float32")
    return x, y


def initial_weights():
    rng = np.random.default_rng(1)
    return [rng.standard_normal((D, UNITS)).astype("float32"),
            rng.standard_normal((UNITS,)).astype("float32")]


def fit(optimizer, steps, weights=None):
    """Trains Dense(UNITS) on the full batch for `steps` updates from
    `weights` (default `initial_weights()`); returns the final
    [kernel, bias]."""
    model = keras.Sequential([keras.Input((D,)), keras.layers.Dense(UNITS)])
    model.set_weights(initial_weights() if weights is None else weights)
    model.compile(optimizer=optimizer, loss="mse")
    x, y = data()
    model.fit(x, y, batch_size=N, epochs=steps, shuffle=False, verbose=0)
    return [to_numpy(w) for w in model.weights]


def assert_same_as_keras_built_in(ours, built_in):
    """Bit for bit; on torch within float32 rounding, because there Keras
    swaps its exact built-in classes (not subclasses) for fused
    `torch._foreach_*` versions that round in another order."""
    for got, want in zip(ours, built_in):
        if keras.backend.backend() == "torch":
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(got, want)


def gradients(kernel, bias):
    """Gradient of Keras' mean squared error with respect to each weight."""
    x, y = (a.astype("float64") for a in data())
    residual = x @ kernel + bias - y
    scale = 2.0 / residual.size
    return [scale * x.T @ residual, scale * residual.sum(axis=0)]


def numpy_fit(update, steps, initial=initial_weights, gradient=gradients):
    """Runs `update(t, weights, grads, state) -> state` in float64 from the
    same initial weights (`initial()`, here the linear regression's), the
    gradients `gradient(*weights)`; `weights` are updated in place."""
    weights = [w.astype("float64") for w in initial()]
    state = None
    for t in range(steps):
        state = update(t, weights, gradient(*weights), state)
    return weights
