"""`fit` over finite tf.data pipelines from one iterator per `fit`."""

import keras

from kerastrain._validation import (check_callbacks, check_epochs,
                                    check_targets, is_dataset)

# Arguments `fit_passes` sets itself.
_SET = ("steps_per_epoch", "validation_steps")


def passes(name, dataset):
    """The number of batches in one pass of `dataset`, a finite
    `tf.data.Dataset` of known length; a `TypeError` or `ValueError` naming
    argument `name` otherwise."""
    if not is_dataset(dataset):
        raise TypeError(
            f"Argument `{name}` must be a finite tf.data.Dataset of known "
            f"length. Received: {name} of type {type(dataset).__name__}")
    batches = int(dataset.cardinality())
    if batches < 1:  # 0 empty, -1 infinite, -2 unknown
        what = {0: "empty", -1: "infinite"}.get(batches, "of unknown length")
        raise ValueError(
            f"Argument `{name}` must be a finite tf.data.Dataset of known "
            f"length, with at least one batch; this one is {what} "
            f"(cardinality {batches}). Call `model.fit` itself, with "
            f"`steps_per_epoch`. Received: {name}={dataset!r}")
    return batches


def _passes_before_resume(callbacks, start):
    """How many passes a `fit` that resumes from a backup (a
    `CheckpointEarlyStopping` with `backup_dir` among `callbacks`, a
    list) starts past its `initial_epoch`, `start`: 0 without one."""
    for callback in callbacks:
        resume = getattr(callback, "resume_epoch", None)
        epoch = resume() if callable(resume) else None
        if epoch is not None and epoch > start:
            return epoch - start
    return 0


def fit_passes(model, x, validation_data, **kwargs):
    """`model.fit(x, validation_data=validation_data, **kwargs)`, a pass of
    each pipeline per epoch, read from one iterator each per `fit`.

    Keras starts a finite tf.data pipeline anew at every epoch, and on
    jax each start cost 50-90 ms, now and then stalling for half a second:
    a third of a warm run of the digits recipe. `fit_passes` hands `fit`
    the pipelines repeated, with `steps_per_epoch` and `validation_steps`
    their lengths. The batches are those of passes started anew when the
    pipeline reshuffles and redraws at every pass, as
    `kerastrain.data.image_pipeline` and `tf.data`'s `shuffle` (by default)
    do.

    A model's first `fit` reads a batch to build its compiled loss and
    metrics from an iterator of its own, then drops it. Keras' random
    layers keep one state for all iterators of a pipeline, so a dropped
    iterator of a repeated pipeline, still reading ahead, would draw from
    it beside the one that trains (runs of one seed then differed, 2 in 4
    under load). So `fit_passes` builds them first, by evaluating the
    model on the first validation batch.

    A `fit` that resumes from the backup of a `CheckpointEarlyStopping`
    among `callbacks` reads the training pipeline from the pass of the
    epoch it resumes at, as the uninterrupted run did: the passes before
    it are read and dropped (tf.data's shuffles and Keras' random layers
    keep no state a backup could hold). With a pipeline built anew from
    its seed (a restarted script), the resumed epochs train on the
    uninterrupted run's batches.

    Args:
        model: A compiled `keras.Model`.
        x: The training pipeline, a finite `tf.data.Dataset` of known
            length (`cardinality()`) giving batches: `(inputs, targets)`
            where the model has a compiled loss.
        validation_data: The validation pipeline, likewise.
        **kwargs: Other arguments of `model.fit` (`epochs`,
            `initial_epoch`, `callbacks`, ...), not `steps_per_epoch` or
            `validation_steps`.

    Returns:
        The `History` that `model.fit` returns.

    Example:

    ```python
    train = image_pipeline(x, y, batch_size=64, num_classes=10, seed=0)
    val = image_pipeline(x_val, y_val, batch_size=64, num_classes=10,
                         training=False)
    history = fit_passes(model, train, val, epochs=40)
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a keras.Model. Received: "
            f"model={model!r}")
    steps, validation_steps = (passes("x", x),
                               passes("validation_data", validation_data))
    # Checked before the evaluation that builds the model's metrics, which
    # an epoch that will not train would pay for nothing (Keras' `fit`
    # took epochs=0 and initial_epoch >= epochs as no training at all).
    check_epochs(kwargs.get("epochs", 1), kwargs.get("initial_epoch", 0))
    callbacks = check_callbacks(kwargs.get("callbacks"))
    check_targets("x", x, model)
    check_targets("validation_data", validation_data, model)
    given = [name for name in _SET if name in kwargs]
    if given:
        raise ValueError(
            f"fit_passes sets {' and '.join(f'`{n}`' for n in given)} to "
            "one pass of each pipeline; do not pass "
            f"{'them' if len(given) > 1 else 'it'}. Received: "
            f"{', '.join(f'{n}={kwargs[n]!r}' for n in given)}")
    model.evaluate(validation_data.take(1), verbose=0)
    train = x.repeat()
    skipped = _passes_before_resume(callbacks,
                                    kwargs.get("initial_epoch", 0))
    if skipped:
        train = train.skip(skipped * steps)
    return model.fit(train, validation_data=validation_data.repeat(),
                     steps_per_epoch=steps,
                     validation_steps=validation_steps, **kwargs)
