"""Helpers shared by the tests: NumPy references, backend autodiff,
backend subprocesses and a simulated crash."""

import os
import subprocess
import sys

import keras
import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CrashAt(keras.callbacks.Callback):
    """Interrupts `fit` (KeyboardInterrupt, as a Ctrl-C) in epoch `epoch`:
    after its batch `batch`, or at its end (after the callbacks listed
    before this one, such as a backup) when `batch` is None."""

    def __init__(self, epoch, batch=None):
        super().__init__()
        self.epoch, self.batch = epoch, batch

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self._epoch, batch) == (self.epoch, self.batch):
            raise KeyboardInterrupt("simulated crash")

    def on_epoch_end(self, epoch, logs=None):
        if self.batch is None and epoch == self.epoch:
            raise KeyboardInterrupt("simulated crash")


class Batches(keras.callbacks.Callback):
    """The training and validation batches of each epoch."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.counts = dict(train=0, test=0)

    def on_train_batch_end(self, batch, logs=None):
        self.counts["train"] += 1

    def on_test_batch_end(self, batch, logs=None):
        self.counts["test"] += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self.counts)


class Reconstructs(keras.Sequential):
    """An autoencoder by Keras' documented hook for a loss of one's own,
    `compute_loss`: the compiled loss compares the outputs with the
    inputs, so batches of inputs alone train it (it needs no targets)."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        return super().compute_loss(x, x, y_pred, sample_weight, training)


class ActivityLoss(keras.layers.Layer):
    """Its inputs' mean square as an `add_loss`: a model trained by it
    alone, without a compiled loss, needs no targets."""

    def call(self, inputs):
        self.add_loss(keras.ops.mean(inputs ** 2))
        return inputs


class Subclassed(keras.Model):
    """A subclassed model: built, it predicts, but has no symbolic
    `inputs`."""

    def __init__(self):
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return self.dense(self.flatten(x))


def models_without_inputs(input_shape):
    """A built `Subclassed` model of inputs `input_shape` and a Sequential
    without an `Input`, never called: neither has symbolic `inputs`."""
    model = Subclassed()
    model(np.zeros((1, *input_shape), "float32"))
    return [model, keras.Sequential([keras.layers.Flatten(),
                                     keras.layers.Dense(3)])]


def two_output_model(features):
    """A compiled model of `features` inputs with two scalar outputs, `a`
    and `b`, each with its own mean squared error: Keras then tracks a
    loss per output besides the total."""
    inputs = keras.Input((features,))
    hidden = keras.layers.Dense(3)(inputs)
    model = keras.Model(inputs, {
        "a": keras.layers.Dense(1, name="a")(hidden),
        "b": keras.layers.Dense(1, name="b")(hidden)})
    model.compile(keras.optimizers.SGD(0.01), {"a": "mse", "b": "mse"})
    return model


def confident_half_precision_model(seed):
    """Built under `mixed_float16`: 8x8x1 images to 3 float16 logits far
    apart, so that its softmax spans 1e-17 to 1 (what float16 cannot
    hold). The caller restores the global policy."""
    keras.config.set_dtype_policy("mixed_float16")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal((64, 3)).astype("float32") / 10,
                       np.array([0.0, 20.0, 40.0], "float32")])
    return model


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def softmax(z):
    """NumPy's softmax over the last axis."""
    z = z - z.max(axis=-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)


def shifted(x, dy, dx):
    """`x` (N, H, W, C) moved `dy` rows down and `dx` columns right, the
    vacated pixels zero: written out index by index."""
    out = np.zeros_like(x)
    height, width = x.shape[1:3]
    for i in range(height):
        for j in range(width):
            if 0 <= i - dy < height and 0 <= j - dx < width:
                out[:, i, j] = x[:, i - dy, j - dx]
    return out


def shift_views(x, shift=1):
    """`x` and its four copies `shifted` by `shift` pixels down, up, right
    and left: the views `kerastrain.models.tta` averages over."""
    return [x] + [shifted(x, dy, dx) for dy, dx in (
        (shift, 0), (-shift, 0), (0, shift), (0, -shift))]


def input_grad(fn, x):
    """Gradient of `sum(fn(x))` with respect to the NumPy array `x`,
    computed by the current backend's own autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = keras.ops.sum(fn(x))
        return tape.gradient(total, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: keras.ops.sum(fn(v)))(x))
    import torch

    x = torch.tensor(x, requires_grad=True)
    keras.ops.sum(fn(x)).backward()
    return x.grad.numpy()


def run_python(backend, code, timeout=600):
    """Runs `code` in a fresh Python with `KERAS_BACKEND=backend`; returns
    its stdout, or fails the test with its stderr."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"subprocess on {backend} failed:\n{proc.stderr[-4000:]}")
    return proc.stdout


def other_backends():
    return [b for b in BACKENDS if b != keras.backend.backend()]
