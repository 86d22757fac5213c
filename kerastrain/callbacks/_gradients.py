"""Gradients of a model's compiled loss on one batch, outside `fit`.

Keras 3 has no backend-neutral gradient function (the train step uses each
backend's own autodiff), so this is the one place in kerastrain that calls
TensorFlow, JAX and PyTorch directly. It runs in a callback, between
training steps, never inside the compiled step.
"""

import collections

import keras
import numpy as np

GradientState = collections.namedtuple(
    "GradientState", ["paths", "trainable", "non_trainable", "metrics"])
GradientState.__doc__ = """What a gradient depends on, copied at one
moment (`GradientFunction.state`): the trainable variables' paths (the
gradients' names) and the values of the trainable, non-trainable and
metric variables."""


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


def _signature(data):
    """The shapes and dtypes of the arrays in `data`."""
    return [(np.shape(a), keras.backend.standardize_dtype(a.dtype))
            for a in keras.tree.flatten(data)]


def unique_paths(variables):
    """The variables' paths, each made unique: Keras' are not (two
    sub-models that each hold a layer named "d" both give `d/kernel`),
    and the weights' histograms, pictures and gradient norms are keyed
    by them. The k-th repeat of a path gets `#k` after its layer's name
    (`d#2/kernel`, `d#2/bias`), which keeps a layer's weights together."""
    seen = collections.Counter()
    paths = []
    for variable in variables:
        path = variable.path
        seen[path] += 1
        if seen[path] > 1:
            layer, _, name = path.rpartition("/")
            path = f"{layer}#{seen[path]}/{name}"
        paths.append(path)
    return paths


class GradientFunction:
    """`fn(x, y)` -> the gradient of `model`'s compiled loss on `(x, y)`
    (at inference: dropout off, batch-norm statistics untouched) with
    respect to each trainable variable, as NumPy arrays.

    Compiled on first use on JAX (`jax.jit`) and TensorFlow
    (`tf.function`), so that calling it once per epoch costs one forward
    and backward pass, not a trace. On JAX, `start(x, y)` traces at once
    and compiles on a worker thread, beside training: XLA's compiler runs
    no Python and reads no Keras state, and it takes most of the time
    (about 1.2 s of 1.4 s for a small ResNet on two CPU cores).
    """

    def __init__(self, model):
        self.model = model
        self._compiled = None

    def start(self, x, y):
        """Starts compiling for batches like `(x, y)` where that can run
        beside training (JAX). Returns whether it did; a later call then
        waits for the compilation only if it has not finished."""
        if keras.backend.backend() != "jax" or self._compiled is not None:
            return False
        self._compiled = self._jax(x, y)
        return True

    def state(self):
        """A `GradientState` of the model now, for `fn(x, y, state)`
        later: copies, since JAX's train step reuses the buffers of the
        values it replaces. The gradient at a state needs nothing else
        from the model, so it holds after the model is recompiled or
        some of its layers are frozen."""
        model = self.model
        return GradientState(
            unique_paths(model.trainable_variables),
            *([np.array(keras.ops.convert_to_numpy(v)) for v in variables]
              for variables in (model.trainable_variables,
                                model.non_trainable_variables,
                                model.metrics_variables)))

    def __call__(self, x, y, state=None):
        shapes = ([v.shape for v in state.trainable] if state else
                  [v.shape for v in self.model.trainable_variables])
        if not shapes:
            return []  # all frozen (torch's autograd refuses no inputs)
        if self._compiled is None:
            self._compiled = getattr(
                self, f"_{keras.backend.backend()}")(x, y)
        if state is not None and keras.backend.backend() != "jax":
            raise NotImplementedError(
                "A gradient at a saved state is computed on JAX only.")
        saved = _metric_values(self.model)
        grads = self._compiled(x, y, state)
        _put_back_metrics(self.model, saved)
        return [np.zeros(shape, "float32") if g is None
                else np.asarray(keras.ops.convert_to_numpy(g))
                for g, shape in zip(grads, shapes)]

    def _tensorflow(self, x, y):
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

        return lambda x, y, state: grads(x, y)

    def _jax(self, x, y):
        from concurrent.futures import ThreadPoolExecutor

        import jax

        model = self.model

        def arguments(x, y, state):
            values = state[1:] if state else (
                [v.value for v in variables] for variables in (
                    model.trainable_variables,
                    model.non_trainable_variables,
                    model.metrics_variables))
            return (*values, x, y, None)

        jitted = jax.jit(
            jax.grad(model.compute_loss_and_updates, has_aux=True),
            static_argnums=(6,))
        lowered = jitted.lower(*arguments(x, y, None), False)
        pool = ThreadPoolExecutor(1)
        compiling = pool.submit(lowered.compile)
        pool.shutdown(wait=False)  # its thread ends with the compilation
        signature = _signature((x, y))

        def grads(x, y, state):
            if _signature((x, y)) == signature:
                values, _ = compiling.result()(*arguments(x, y, state))
            else:  # `jit` traces and compiles for other batches
                values, _ = jitted(*arguments(x, y, state), False)
            return values

        return grads

    def _torch(self, x, y):
        import torch

        model = self.model

        def grads(x, y, state):
            with torch.enable_grad():
                y_pred = model(x, training=False)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred,
                                          training=False)
                return torch.autograd.grad(
                    loss, [v.value for v in model.trainable_variables],
                    allow_unused=True)

        return grads
