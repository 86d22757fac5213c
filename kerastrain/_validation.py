"""Argument checks shared by every kerastrain constructor.

Each helper raises at construction time with the message shape Keras uses:
what the argument must be, then what was received, e.g.
"Argument `filters` must be an integer >= 1. Received: filters=0".
"""

import math
import numbers
import os
import re

import numpy as np

# The schedule names a `fit` on TensorFlow trains with (checked there):
# its nested name scopes take letters, digits and `_ . -`, and its node
# names `>` before a letter, digit or `.` only.
NAME = re.compile(r"(?:[A-Za-z0-9_.-]|>(?=[A-Za-z0-9.]))*")


def _received(name, value):
    return f"Received: {name}={value!r}"


def check_int(name, value, min_value=None):
    """Returns `value` if it is an integer (bools excluded) >= `min_value`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Argument `{name}` must be an integer. {_received(name, value)}"
        )
    if min_value is not None and value < min_value:
        raise ValueError(
            f"Argument `{name}` must be an integer >= {min_value}. "
            f"{_received(name, value)}"
        )
    return int(value)


# The optimizers count steps in an int32 on JAX and torch: a later step is
# never reached, and a larger count overflows where a schedule compares it
# with the step (a milestone of 3e9 changed the rate from the first step on
# torch, and failed the fit on JAX).
INT32_MAX = MAX_STEPS = 2**31 - 1
FLOAT32_MAX = float(np.finfo("float32").max)
# float32's smallest normal number: XLA flushes a smaller one to 0.
FLOAT32_TINY = float(np.finfo("float32").tiny)


def _check_int32(name, value, min_value, why):
    """Returns `value` if it is an integer from `min_value` to
    `INT32_MAX`; `why` ends the message of one that is larger."""
    value = check_int(name, value, min_value=min_value)
    if value > INT32_MAX:
        raise ValueError(
            f"Argument `{name}` must be at most 2**31 - 1 = {INT32_MAX}{why} "
            f"{_received(name, value)}")
    return value


def check_steps(name, value, min_value=1):
    """Returns `value` if it is an integer step count >= `min_value` that
    the optimizers' int32 step count reaches (`MAX_STEPS`)."""
    return _check_int32(name, value, min_value, ": the optimizers count "
                        "steps in an int32 on JAX and torch.")


# The largest size of one dimension (units, classes, filters, a batch):
# torch and JAX index a shape in int32 or int64, and 2**63 failed inside
# them with messages that named no argument.
MAX_SIZE = INT32_MAX


def check_size(name, value, min_value=1):
    """Returns `value` if it is an integer from `min_value` to `MAX_SIZE`:
    a size of one dimension of a model or a batch."""
    return _check_int32(name, value, min_value,
                        ", the largest size of a dimension.")


def check_epochs(epochs, initial_epoch, why=""):
    """`(epochs, initial_epoch)` of a `fit` if they leave an epoch to train
    (integers, 0 <= initial_epoch < epochs); `why` ends the message of ones
    that do not."""
    epochs = check_int("epochs", epochs, min_value=1)
    initial_epoch = check_int("initial_epoch", initial_epoch, min_value=0)
    if initial_epoch >= epochs:
        raise ValueError(
            "Arguments `epochs` and `initial_epoch` must leave an epoch to "
            f"train (initial_epoch < epochs){why}. Received: "
            f"epochs={epochs}, initial_epoch={initial_epoch}")
    return epochs, initial_epoch


def check_in_float32(name, value):
    """Returns `value` (a number) if float32 holds it: a larger magnitude
    is inf where the model or the update computes it."""
    if abs(value) > FLOAT32_MAX:
        raise ValueError(
            f"Argument `{name}` must be a number that float32 can hold "
            f"(magnitude <= {FLOAT32_MAX:.4g}), where it is computed. "
            f"{_received(name, value)}")
    return value


def check_callbacks(callbacks):
    """The callbacks of `callbacks` as a list (the list itself, where it is
    one), if it is None, a list or tuple of Keras callbacks, or a
    `keras.callbacks.CallbackList`: what Keras documents for `fit`. A
    non-callback in the list failed inside Keras ("no attribute
    'set_model'"), and a callback alone where a list was iterated ("not
    iterable")."""
    import keras

    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks = callbacks.callbacks
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise TypeError(
            "Argument `callbacks` must be a list of callbacks, or None. "
            f"Received: callbacks={callbacks!r}")
    for callback in callbacks or ():
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError(
                "Argument `callbacks` must hold `keras.callbacks.Callback` "
                f"instances. Received: callbacks={callbacks!r}, holding "
                f"{callback!r}")
    return callbacks if isinstance(callbacks, list) else list(
        callbacks or ())


def check_bool(name, value):
    """Returns `value` if it is a bool (NumPy's included): a string such as
    `"no"` would otherwise read as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"Argument `{name}` must be True or False. "
            f"{_received(name, value)}")
    return bool(value)


def check_verbose(value):
    """Returns `verbose` as an int: an integer >= 0, or a bool (True is 1),
    as Keras' callbacks take it."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    return check_int("verbose", value, min_value=0)


def check_path(name, value):
    """Returns `value` as a string if it is a non-empty path (str or
    `os.PathLike`)."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise TypeError(
            f"Argument `{name}` must be a non-empty path (a string or "
            f"os.PathLike). {_received(name, value)}")
    return os.fspath(value)


def check_seed(name, value, high=None):
    """Returns `value` if it is None or an integer in [0, `high`) (None:
    unbounded), the seeds that NumPy and scikit-learn accept."""
    if value is None:
        return None
    bound = "" if high is None else f" below {high}"
    allowed = f"None or an integer >= 0{bound}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Argument `{name}` must be {allowed}. {_received(name, value)}")
    if value < 0 or (high is not None and value >= high):
        raise ValueError(
            f"Argument `{name}` must be {allowed}. {_received(name, value)}")
    return int(value)


def check_float(name, value, low=None, high=None, low_closed=True,
                high_closed=True, allow_inf=False):
    """Returns `float(value)` if it is a real number inside the interval.

    `low`/`high` of None mean unbounded; `*_closed` say whether the bound
    itself is allowed, and the message writes the interval the usual way,
    e.g. `[0, 1)`. NaN is always rejected, and so are infinities unless
    `allow_inf=True` (for arguments where `inf` means "no limit"): an
    unbounded side of the interval does not make `inf` a value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Argument `{name}` must be a number. {_received(name, value)}"
        )
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range, e.g. 10**400
        value = math.inf if value > 0 else -math.inf
    too_low = low is not None and (value < low or (value == low
                                                    and not low_closed))
    too_high = high is not None and (value > high or (value == high
                                                       and not high_closed))
    non_finite = not math.isfinite(value) and not (
        allow_inf and math.isinf(value))
    if too_low or too_high or non_finite:
        interval = "{}{}, {}{}".format(
            "[" if low_closed and low is not None else "(",
            "-inf" if low is None else f"{low:g}",
            "inf" if high is None else f"{high:g}",
            "]" if high_closed and high is not None else ")",
        )
        # "a finite number" only where that is what was wrong, so that a
        # finite value out of range reads as before.
        kind = "a finite number " if non_finite else ""
        raise ValueError(
            f"Argument `{name}` must be {kind}in {interval}. "
            f"{_received(name, value)}"
        )
    return value


def check_float_list(name, values):
    """Returns `values` as a list of floats if it is a sequence of finite
    real numbers (bools excluded); the message shows the whole sequence."""
    try:
        items = list(values)
    except TypeError:
        items = None
    if items is None or any(
            isinstance(v, bool) or not isinstance(v, numbers.Real)
            for v in items):
        raise TypeError(
            f"Argument `{name}` must be a list of numbers. "
            f"{_received(name, values)}"
        )
    try:
        items = [float(v) for v in items]
    except OverflowError:  # an int beyond float's range, e.g. 10**400
        items = [math.inf]
    if not all(math.isfinite(v) for v in items):
        raise ValueError(
            f"Argument `{name}` must hold finite numbers (no NaN or inf). "
            f"{_received(name, values)}"
        )
    return items


def check_name(value):
    """Returns `value` if it can name a schedule: a string that a `fit` on
    TensorFlow takes, which refuses the rest only from inside that `fit`
    (Keras' own scopes refuse `/` on every backend)."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ValueError(
            "Argument `name` must be a string of letters, digits and "
            "`_ . -`, with `>` only before a letter, digit or `.` "
            "(TensorFlow's names inside `fit` refuse the rest). "
            f"{_received('name', value)}")
    return value


def check_choice(name, value, choices):
    """Returns `value` if it is one of `choices`, else lists them."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"Argument `{name}` must be one of {allowed}. "
            f"{_received(name, value)}"
        )
    return value


def check_keras_identifier(name, value, getter):
    """Resolves `value` with a Keras `get` function (activations,
    initializers, regularizers), re-raising its error with the argument's
    name, so that `activation="rleu"` fails at construction and says where.
    A number or an array is refused: Keras' initializers take it as the one
    tensor the weight must equal, which fits no weight of another shape (a
    scalar fits no kernel), and fails only when the layer is built.
    """
    if isinstance(value, (numbers.Number, np.generic)) or hasattr(
            value, "shape"):
        raise ValueError(
            f"Argument `{name}` must be a name, a config or a Keras object, "
            "not a number or an array (for an initializer of a constant "
            f"value, use keras.initializers.Constant). "
            f"{_received(name, value)}")
    try:
        return getter(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"Argument `{name}` is not a known Keras identifier ({error}). "
            f"{_received(name, value)}"
        ) from None


def check_activation(value):
    """`value` resolved by `keras.activations.get`; a layer instance is
    refused: the one object would serve every place the activation goes,
    its weights (PReLU's) shared across shapes."""
    import keras

    if isinstance(value, keras.layers.Layer):
        raise TypeError(
            "Argument `activation` must be a name or a function, not a "
            "layer instance, which every activation of the network would "
            "share (with its weights, built for the first shape). "
            f"{_received('activation', value)}")
    return check_keras_identifier("activation", value,
                                  keras.activations.get)


def is_dataset(x):
    """Whether `x` is a `tf.data.Dataset`, without importing TensorFlow."""
    return type(x).__module__.startswith("tensorflow") and hasattr(
        x, "repeat")


def needs_targets(model):
    """Whether `model`'s training reads targets: it has a compiled loss and
    Keras' own `train_step` and `compute_loss` (a model's own may make its
    targets, as an autoencoder's from its inputs)."""
    import keras

    kind = type(model)
    return (getattr(model, "loss", None) is not None
            and kind.train_step is keras.Model.train_step
            and kind.compute_loss is keras.Model.compute_loss)


def check_targets(name, dataset, model):
    """A `ValueError` naming argument `name` where the `tf.data.Dataset`
    `dataset` gives batches without targets and `model` `needs_targets`:
    Keras' loss got None as its targets, deep in the first step ("None is
    not a valid value for jnp.array" on jax)."""
    spec = dataset.element_spec
    if (not needs_targets(model)
            or isinstance(spec, tuple) and len(spec) >= 2):
        return
    raise ValueError(
        f"Argument `{name}` must give (inputs, targets) batches for the "
        "model's compiled loss; this dataset's batches hold no targets. "
        f"Received: {name} with element_spec {spec}")


def check_model_inputs(name, model):
    """`model`'s symbolic `inputs`, or a `TypeError` naming argument
    `name` where it has none: a subclassed model, or a `Sequential`
    without an `Input` that was never built, which Keras' `inputs` then
    answered with a bare `AttributeError` ("'Net' object has no attribute
    'inputs'")."""
    try:
        return model.inputs
    except AttributeError:
        raise TypeError(
            f"Argument `{name}` takes functional or Sequential Keras "
            "models with defined inputs (made with `keras.Input`); a "
            "subclassed model, or a Sequential without an `Input` not yet "
            f"called, has none. Received: {name}={model!r}") from None
