"""Gradients of a model's compiled loss on one batch, outside `fit`.

Keras 3 has no backend-neutral gradient function (the train step uses each
backend's own autodiff), so this is the one place in kerastrain that calls
TensorFlow, JAX and PyTorch directly. It runs in a callback, between
training steps, never inside the compiled step.
"""

import keras
import numpy as np


class GradientFunction:
    """`fn(x, y)` -> the gradient of `model`'s compiled loss on `(x, y)`
    (at inference: dropout off, batch-norm statistics untouched) with
    respect to each trainable variable, as NumPy arrays.

    Compiled on first use on JAX (`jax.jit`) and TensorFlow
    (`tf.function`), so that calling it once per epoch costs one forward
    and backward pass, not a trace.
    """

    def __init__(self, model):
        self.model = model
        self._compiled = None

    def __call__(self, x, y):
        if self._compiled is None:
            self._compiled = getattr(
                self, f"_{keras.backend.backend()}")()
        variables = self.model.trainable_variables
        grads = self._compiled(x, y)
        return [np.zeros(v.shape, "float32") if g is None
                else np.asarray(keras.ops.convert_to_numpy(g))
                for g, v in zip(grads, variables)]

    def _tensorflow(self):
        import tensorflow as tf

        model = self.model

        @tf.function(reduce_retracing=True)
        def grads(x, y):
            with tf.GradientTape() as tape:
                y_pred = model(x, training=False)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred,
                                          training=False)
            return tape.gradient(loss, [v.value for v in
                                        model.trainable_variables])

        return grads

    def _jax(self):
        import jax

        model = self.model
        grad_fn = jax.jit(jax.grad(model.compute_loss_and_updates,
                                   has_aux=True), static_argnums=(6,))

        def grads(x, y):
            values, _ = grad_fn(
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                [v.value for v in model.metrics_variables],
                x, y, None, False)
            return values

        return grads

    def _torch(self):
        import torch

        model = self.model

        def grads(x, y):
            with torch.enable_grad():
                y_pred = model(x, training=False)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred,
                                          training=False)
                return torch.autograd.grad(
                    loss, [v.value for v in model.trainable_variables],
                    allow_unused=True)

        return grads
