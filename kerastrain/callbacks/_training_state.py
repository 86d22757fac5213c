"""What the callbacks share about a model in the middle of `fit`."""

import keras
import numpy as np


def retrace(model):
    """Makes the next train step rebuild its compiled function.

    Python values that the step reads when it is traced (the optimizer's
    `gradient_accumulation_steps`, its learning-rate object) are frozen into
    the compiled function on TensorFlow and JAX; after changing one, the
    function must be traced again. Keras' `fit` looks the function up on
    the model at every step, so rebuilding it between steps takes effect at
    once.
    """
    model.make_train_function(force=True)


def iterations(optimizer):
    """The optimizer's raw step count (micro-batches when accumulating)."""
    return int(keras.ops.convert_to_numpy(optimizer._iterations))


def snapshot(model):
    """Copies of every model and optimizer variable, and the learning-rate
    object, for `restore`."""
    optimizer = model.optimizer
    if not optimizer.built:  # as BackupAndRestore does: all slots exist
        optimizer.build(model.trainable_variables)
    return {
        "model": [np.array(keras.ops.convert_to_numpy(v))
                  for v in model.variables],
        "optimizer": [np.array(keras.ops.convert_to_numpy(v))
                      for v in optimizer.variables],
        "learning_rate": optimizer._learning_rate,
    }


def restore(model, state):
    """Puts back what `snapshot` took, bit for bit."""
    optimizer = model.optimizer
    for variable, value in zip(model.variables, state["model"]):
        variable.assign(value)
    for variable, value in zip(optimizer.variables, state["optimizer"]):
        variable.assign(value)
    restore_learning_rate(model, state)


def restore_learning_rate(model, state):
    """Puts back the learning-rate object `snapshot` took, if it was
    swapped, and retraces the train step for it."""
    optimizer = model.optimizer
    if optimizer._learning_rate is not state["learning_rate"]:
        # The public setter refuses to put a variable back over a schedule.
        optimizer._learning_rate = state["learning_rate"]
        retrace(model)
