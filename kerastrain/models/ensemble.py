"""One Keras model that averages the predicted probabilities of several."""

import keras

from kerastrain._validation import check_bool, check_model_inputs


def probabilities(logits):
    """The probabilities of symbolic `logits`, in float32 (under mixed
    precision too): a softmax, or for one logit (a binary classifier) a
    sigmoid, where a softmax would be 1 whatever the input. One logit per
    sample may also come as a vector `(batch,)`, as Keras' binary losses
    take it: a softmax over its last axis would mix the batch's samples."""
    if len(logits.shape) < 2 or logits.shape[-1] == 1:
        return keras.layers.Activation("sigmoid", dtype="float32")(logits)
    return keras.layers.Softmax(dtype="float32")(logits)


def ensemble(models, from_logits=True, name="ensemble"):
    """Averages the softmax outputs of `models` in one Keras model.

    The result is a functional model: it predicts, evaluates and saves as
    `.keras` like any other (and loads back after `import kerastrain` when
    the members use kerastrain layers). Members must take the same input
    shape and give the same output shape. A member whose name an earlier
    one holds (the snapshots of one run all share a name) is renamed
    `<name>_<i>`, `i` its place in `models` or the next number no member
    holds, since Keras needs unique names inside a model.

    It is meant for inference. Train the members, not the ensemble, on the
    torch backend: members built alike (the snapshots of one run) have
    variables of the same paths, Keras 3.15's torch backend keys a model's
    parameters by path, and `fit` on the ensemble then never clears the
    gradients of all but the last of them, which add up from step to step.

    Args:
        models: A list of Keras models, e.g. loaded `SnapshotEnsemble`
            snapshots.
        from_logits: Whether the members output logits (softmax is applied;
            a sigmoid to a single logit) or probabilities already (averaged
            as they are).
        name: Name of the ensemble model.

    Returns:
        A `keras.Model` with the members' input, giving probabilities.

    Example:

    >>> import keras, numpy as np
    >>> members = [keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    ...            for _ in range(3)]
    >>> model = ensemble(members)
    >>> model.predict(np.ones((2, 4)), verbose=0).sum(axis=1).round(5)
    array([1., 1.], dtype=float32)
    """
    received = models
    try:
        models = list(models)
    except TypeError:  # None, or one model rather than a list of them
        models = []
    check_bool("from_logits", from_logits)
    if not models or not all(isinstance(m, keras.Model) for m in models):
        raise TypeError(
            "Argument `models` must be a non-empty list of Keras models. "
            f"Received: models={received!r}")
    single = all(len(check_model_inputs("models", m)) == 1
                 and len(m.outputs) == 1 for m in models)
    if not single or len({_signature(m) for m in models}) != 1:
        raise ValueError(
            "Argument `models` must hold single-input, single-output models "
            "with the same input shape and dtype and the same output shape. "
            "Received (input shape, dtype, output shape): "
            f"{[_signature(m) for m in models]}")
    _rename_clashes(models)
    # The members' input dtype too: token ids must stay integers.
    inputs = keras.Input(shape=models[0].inputs[0].shape[1:],
                         dtype=models[0].inputs[0].dtype)
    outputs = [m(inputs) for m in models]
    if from_logits:
        outputs = [probabilities(o) for o in outputs]
    # float32, as the softmax: under mixed precision Keras' Average would
    # round the probabilities to float16 (1e-8 to 0, 0.99988 to 1); a
    # single member's float16 probabilities are cast.
    averaged = (keras.layers.Average(dtype="float32")(outputs)
                if len(outputs) > 1
                else keras.layers.Activation("linear",
                                             dtype="float32")(outputs[0]))
    return keras.Model(inputs, averaged, name=name)


def _rename_clashes(models):
    """Renames each model whose name an earlier, other model holds to
    `<name>_<i>`, from `i` its place on to the first name no model holds
    (`<name>_<i>` itself may be another member's name: a clash Keras
    refused, after the member was renamed). The same model twice is one
    layer of the ensemble, under its own name."""
    taken = {model.name for model in models}
    owners = {}
    for i, model in enumerate(models):
        if owners.setdefault(model.name, model) is model:
            continue
        while f"{model.name}_{i}" in taken:
            i += 1
        model.name = f"{model.name}_{i}"
        taken.add(model.name)
        owners[model.name] = model


def _signature(model):
    """(input shape, input dtype, output shape) of a model's first input
    and output, batch axis left out."""
    return (tuple(model.inputs[0].shape[1:]), model.inputs[0].dtype,
            tuple(model.outputs[0].shape[1:]))
