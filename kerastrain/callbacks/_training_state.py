"""What the callbacks share about a model in the middle of `fit`."""

import math
import random
import sys

import keras
import numpy as np


# Set by `GradientAccumulation` on an optimizer whose
# `gradient_accumulation_steps` it drives, at each epoch end: the raw step
# count then and the number it was accumulated under.
ACCUMULATION_MARK = "_kerastrain_accumulation_steps"
# The functions `fit`, `evaluate` and `predict` trace and keep.
COMPILED_FUNCTIONS = ("train_function", "test_function", "predict_function")


def retrace(model):
    """Makes the next train step rebuild its compiled function.

    Python values that the step reads when it is traced (the optimizer's
    `gradient_accumulation_steps`, its learning-rate object) are frozen into
    the compiled function on TensorFlow and JAX; after changing one, the
    function must be traced again. Keras' `fit` looks the function up on
    the model at every step, so rebuilding it between steps takes effect at
    once. Hold no reference to the function it replaces: on JAX it jits
    the same bound `train_step` again, and jax reuses the trace of a jitted
    function still alive.
    """
    model.make_train_function(force=True)


def set_accumulation(model, steps):
    """Sets the number of batches per update of `model`'s optimizer, and
    traces the train step again where that changes it (the number is a
    Python value frozen into the compiled step; see `retrace`)."""
    optimizer = base_optimizer(model.optimizer)
    if optimizer.gradient_accumulation_steps != steps:
        optimizer.gradient_accumulation_steps = steps
        retrace(model)


def base_optimizer(optimizer):
    """The optimizer that holds the learning rate, the step count and the
    gradient accumulators: the inner one of a `LossScaleOptimizer` (which
    Keras puts around the optimizer under the `mixed_float16` policy), else
    `optimizer` itself."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def require_built(model, who):
    """Raises a clear error if `model` has no variables yet, as Keras'
    `BackupAndRestore` does: on TensorFlow, `fit` builds a model without an
    `Input` only after `on_train_begin`, too late to snapshot it."""
    if not model.built:
        raise ValueError(
            f"{who} needs a built model, and {model.name} is not built yet "
            "(on TensorFlow, `fit` builds it only after the callbacks "
            "start). Build it first: give it a `keras.Input`, or call it on "
            "a batch of data.")


def sync(model):
    """Writes back into the variables the state that JAX's `fit` keeps
    outside them during an epoch (a no-op elsewhere), so that a callback
    reads them as they are after the last batch."""
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()


def iterations(optimizer):
    """The optimizer's raw step count (micro-batches when accumulating)."""
    return int(keras.ops.convert_to_numpy(optimizer._iterations))


def snapshot(model):
    """Copies of every model and optimizer variable, the learning-rate
    object and the accumulation setting, for `restore`."""
    optimizer = model.optimizer
    if not optimizer.built:  # as BackupAndRestore does: all slots exist
        optimizer.build(model.trainable_variables)
    return {
        "model": [np.array(keras.ops.convert_to_numpy(v))
                  for v in model.variables],
        "optimizer": [np.array(keras.ops.convert_to_numpy(v))
                      for v in optimizer.variables],
        "learning_rate": base_optimizer(optimizer)._learning_rate,
        "accumulation": _accumulation(base_optimizer(optimizer)),
    }


def _accumulation(optimizer):
    """The number of batches per update, and the number a
    `GradientAccumulation` callback set last (None if none did): Python
    attributes, which the variables do not hold."""
    return (optimizer.gradient_accumulation_steps,
            getattr(optimizer, ACCUMULATION_MARK, None))


def restore(model, state):
    """Puts back what `snapshot` took, bit for bit."""
    optimizer = model.optimizer
    for variable, value in zip(model.variables, state["model"]):
        variable.assign(value)
    for variable, value in zip(optimizer.variables, state["optimizer"]):
        variable.assign(value)
    base = base_optimizer(optimizer)
    steps, mark = state["accumulation"]
    if mark is None:
        vars(base).pop(ACCUMULATION_MARK, None)
    else:
        setattr(base, ACCUMULATION_MARK, mark)
    set_accumulation(model, steps)
    restore_learning_rate(model, state)


def restore_learning_rate(model, state):
    """Puts back the learning-rate object `snapshot` took, if it was
    swapped, and retraces the train step for it."""
    optimizer = base_optimizer(model.optimizer)
    if optimizer._learning_rate is not state["learning_rate"]:
        # The public setter refuses to put a variable back over a schedule.
        optimizer._learning_rate = state["learning_rate"]
        retrace(model)


def unbuilt_compile_state(model):
    """What `unbuild` needs to make `model`'s compiled loss and metrics
    unbuilt again, if they are not built yet (a model never fitted or
    evaluated), and its compiled functions as they are.

    A model's first `fit` or `evaluate` reads one batch before its first
    step, to build them: an extra shuffle of NumPy data on JAX, an extra
    data-loader seed from torch's global generator. A range test that
    builds them takes that draw; unbuilt again, the next `fit` makes it as
    it would have.
    """
    parts = [part for part in (model._compile_loss, model._compile_metrics)
             if part is not None and not part.built]
    if not parts:
        # Nothing to put back, and no function kept: on jax, `retrace`
        # jits the same bound `train_step` again, and jax reuses the trace
        # of a jitted function still alive (a fitted model's range test
        # then trained at its own schedule, not at the ramp).
        return {"parts": [], "functions": {}}
    return {
        # The attributes as they are, and the items of each list among
        # them: building appends to some (a loss tracker per output).
        "parts": [(part, dict(vars(part)),
                   {key: list(value) for key, value in vars(part).items()
                    if isinstance(value, list)}) for part in parts],
        # Traced with the metrics' variables (TensorFlow captures them):
        # the next `fit` traces its functions anew with the new ones.
        "functions": {name: getattr(model, name, None)
                      for name in COMPILED_FUNCTIONS},
    }


def unbuild(model, saved):
    """Puts back what `unbuilt_compile_state` took, if it took any part."""
    if not saved["parts"]:
        return
    for part, attributes, lists in saved["parts"]:
        for key, items in lists.items():
            attributes[key][:] = items  # in place: trackers hold the list
        vars(part).clear()
        vars(part).update(attributes)
    for name, function in saved["functions"].items():
        setattr(model, name, function)


def _torch():
    """The torch module if something imported it (Keras' torch backend, or
    a torch `DataLoader` fed to `fit` on any backend), else None."""
    return sys.modules.get("torch")


def global_random_state():
    """The global random states that a `fit` draws from outside the
    model's own seed generators: NumPy's (Keras' JAX backend shuffles
    arrays with it), Python's (Keras shuffles a `PyDataset`'s batches
    with `random.shuffle`) and, where torch is imported, torch's (Keras'
    torch backend seeds each epoch's data loader from it and draws an
    unseeded Dropout's masks from it, and a torch `DataLoader` shuffles
    with it on any backend), its GPUs' too where CUDA is started. For
    `restore_global_random_state`."""
    saved = {"numpy": np.random.get_state(), "python": random.getstate()}
    torch = _torch()
    if torch is not None:
        saved["torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            saved["torch_cuda"] = torch.cuda.get_rng_state_all()
    return saved


def restore_global_random_state(saved):
    """Puts back what `global_random_state` took (or what
    `random_state_arrays` made of it): each state it holds."""
    np.random.set_state(saved["numpy"])
    if "python" in saved:
        random.setstate(saved["python"])
    torch = _torch()
    if torch is None:
        return
    if "torch" in saved:
        torch.set_rng_state(torch.as_tensor(saved["torch"]))
    cuda = saved.get("torch_cuda")
    if cuda is not None and torch.cuda.is_available() and (
            len(cuda) == torch.cuda.device_count()):
        torch.cuda.set_rng_state_all([torch.as_tensor(state)
                                      for state in cuda])


def random_state_arrays(saved):
    """What `global_random_state` took, as named NumPy arrays (for a
    file); `random_state_from_arrays` reads them back."""
    _, keys, position, has_gauss, gauss = saved["numpy"]
    version, internal, python_gauss = saved["python"]
    arrays = {"numpy_keys": keys,
              "numpy_position": np.array([position, has_gauss]),
              "numpy_gauss": np.array(gauss),
              "python_state": np.array([version, *internal], "int64"),
              # NaN for Python's None: no normal variate waiting.
              "python_gauss": np.array(
                  np.nan if python_gauss is None else python_gauss)}
    if "torch" in saved:
        arrays["torch"] = np.asarray(saved["torch"])
    for i, state in enumerate(saved.get("torch_cuda", [])):
        arrays[f"torch_cuda_{i}"] = np.asarray(state.cpu())
    return arrays


def random_state_from_arrays(arrays):
    """The state `random_state_arrays` wrote, for
    `restore_global_random_state`."""
    position, has_gauss = (int(n) for n in arrays["numpy_position"])
    saved = {"numpy": ("MT19937", np.asarray(arrays["numpy_keys"]),
                       position, has_gauss,
                       float(arrays["numpy_gauss"]))}
    if "python_state" in arrays:
        version, *internal = (int(n) for n in arrays["python_state"])
        gauss = float(arrays["python_gauss"])
        saved["python"] = (version, tuple(internal),
                           None if math.isnan(gauss) else gauss)
    if "torch" in arrays:
        saved["torch"] = np.asarray(arrays["torch"])
    cuda = sorted((int(name.rsplit("_", 1)[1]), np.asarray(array))
                  for name, array in arrays.items()
                  if name.startswith("torch_cuda_"))
    if cuda:
        saved["torch_cuda"] = [array for _, array in cuda]
    return saved


def seed_states(model):
    """The state variables of `model`'s seed generators (Dropout's,
    DropPath's, the random image layers'), in the model's order: in
    `model.variables` but not in its weights, so `save_weights` leaves
    them out."""
    weights = {id(weight) for weight in model.weights}
    return [variable for variable in model.variables
            if id(variable) not in weights]
