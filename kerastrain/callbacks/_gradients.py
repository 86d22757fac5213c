"""Gradients of a model's compiled loss on one batch, outside `fit`.

Keras 3 has no backend-neutral gradient function (the train step uses each
backend's own autodiff), so this is the one place in kerastrain that calls
TensorFlow, JAX and PyTorch directly. It runs in a callback, between
training steps, never inside the compiled step.
"""

import keras
import numpy as np


def _metric_values(model):
    """`{id(variable): value}` of the model's metric variables."""
    return {id(v): keras.ops.convert_to_numpy(v)
            for v in model.metrics_variables}


def _put_back_metrics(model, saved):
    """Undoes what a call of `compute_loss` did to the metrics: on
    TensorFlow and torch it updates the compiled loss's trackers (one per
    output), and the epoch's logs must not count the probe. (JAX's is
    functional: its updates are dropped.) A metric it built (the first
    call, before any training step) is reset: it held nothing before."""
    for metric in model.metrics:
        if all(id(v) in saved for v in metric.variables):
            for variable in metric.variables:
                variable.assign(saved[id(variable)])
        else:
            metric.reset_state()


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
        saved = _metric_values(self.model)
        grads = self._compiled(x, y)
        _put_back_metrics(self.model, saved)
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
