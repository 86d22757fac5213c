"""Gradients of a model's compiled loss on one batch, outside `fit`.

Keras 3 has no backend-neutral gradient function (the train step uses each
backend's own autodiff), so this is the one place in kerastrain that calls
TensorFlow, JAX and PyTorch directly. It runs in a callback, between
training steps, never inside the compiled step.
"""

import keras
import numpy as np


def loss_gradients(model, x, y):
    """Gradient of the compiled loss (at inference: dropout off, batch-norm
    statistics untouched) on `(x, y)`, with respect to each trainable
    variable, as NumPy arrays."""
    backend = keras.backend.backend()
    variables = model.trainable_variables
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            y_pred = model(x, training=False)
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred,
                                      training=False)
        grads = tape.gradient(loss, [v.value for v in variables])
    elif backend == "jax":
        import jax

        grad_fn = jax.grad(model.compute_loss_and_updates, has_aux=True)
        grads, _ = grad_fn([v.value for v in variables],
                           [v.value for v in model.non_trainable_variables],
                           [v.value for v in model.metrics_variables],
                           x, y, None, False)
    elif backend == "torch":
        import torch

        with torch.enable_grad():
            y_pred = model(x, training=False)
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred,
                                      training=False)
            grads = torch.autograd.grad(loss, [v.value for v in variables],
                                        allow_unused=True)
    else:
        raise NotImplementedError(
            f"Gradients are not available on the {backend} backend.")
    return [np.zeros(v.shape, "float32") if g is None
            else np.asarray(keras.ops.convert_to_numpy(g)) for g, v in
            zip(grads, variables)]
