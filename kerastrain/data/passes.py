"""`fit` over finite tf.data pipelines from one iterator per `fit`."""

import keras

from kerastrain._validation import (check_callbacks, check_epochs,
                                    check_int, check_targets, is_dataset)

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


def _pipelines(x, start):
    """`x`, a pipeline or a dict `{epoch: pipeline}`, as the sorted
    `(epoch, pipeline, name)` triples of a `fit` from epoch `start`: the
    pipeline in force at `start` (keyed by it there), then those after
    it, each with the name of its argument (`x`, or `x[key]` by its own
    key); and the batches in a pass of each, checked to be one number."""
    if not isinstance(x, dict):
        return [(start, x, "x")], passes("x", x)
    if not x:
        raise ValueError(
            "Argument `x` must be a pipeline or a non-empty dict "
            f"{{epoch: pipeline}}. Received: x={x!r}")
    stages = sorted(((check_int(f"x (key {epoch!r})", epoch, min_value=0),
                      pipeline) for epoch, pipeline in x.items()),
                    key=lambda stage: stage[0])
    if stages[0][0] > start:
        raise ValueError(
            f"Argument `x` has no pipeline for epoch {start}, where the "
            f"fit starts (`initial_epoch`): its first key is "
            f"{stages[0][0]}. Received: x with keys {[e for e, _ in stages]}")
    lengths = {epoch: passes(f"x[{epoch}]", pipeline)
               for epoch, pipeline in stages}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            "Argument `x`'s pipelines must each give a pass of one number "
            "of batches: an epoch is a pass of whichever is in force, "
            f"`steps_per_epoch` one number. Received: x with {lengths} "
            "batches per pass ({epoch: batches})")
    current = max(i for i, (epoch, _) in enumerate(stages) if epoch <= start)
    named = [(epoch, pipeline, f"x[{epoch}]") for epoch, pipeline in stages]
    return ([(start, *named[current][1:]), *named[current + 1:]],
            lengths[stages[0][0]])


def _stream(stages):
    """The batches of the `(epoch, pipeline, name)` triples of
    `_pipelines` in turn: passes of each until the next one's epoch, the
    last repeated for ever."""
    stream = None
    for (epoch, pipeline, _), (until, *_) in zip(stages, stages[1:] + [
            (None, None, None)]):
        part = pipeline.repeat(None if until is None else until - epoch)
        stream = part if stream is None else stream.concatenate(part)
    return stream


def _check_one_kind_of_batch(stages):
    """Refuses pipelines in turn whose batches differ in structure, dtype
    or a known size (labels of 4 classes, then of 2): one stream of them
    failed inside tf.data, naming neither, or trained on. Batches of one
    size against those of any size are one kind (`drop_remainder`)."""
    import tensorflow as tf

    _, first, first_name = stages[0]
    for _, pipeline, name in stages[1:]:
        try:
            same = all(tf.nest.flatten(tf.nest.map_structure(
                lambda a, b: a.is_compatible_with(b), first.element_spec,
                pipeline.element_spec)))
        except (TypeError, ValueError):  # another structure
            same = False
        if not same:
            raise ValueError(
                "Argument `x`'s pipelines must give batches of one kind "
                "(structure, dtypes and sizes), since one stream reads them "
                f"in turn: {first_name} gives {first.element_spec}, {name} "
                f"gives {pipeline.element_spec}")


def _check_steps_per_execution(model, steps, validation_steps):
    """Refuses a model compiled with a `steps_per_execution` that does not
    divide the passes: Keras reads whole executions from the repeated
    stream, so an epoch of 5 batches at 2 per execution read 6, and every
    later epoch started a batch further into its pass."""
    per_execution = getattr(model, "steps_per_execution", 1) or 1
    if steps % per_execution or validation_steps % per_execution:
        raise ValueError(
            "fit_passes reads one pass of each pipeline per epoch: the "
            f"model's steps_per_execution={per_execution} must divide the "
            f"batches of a pass. Received: x with {steps} and "
            f"validation_data with {validation_steps} batches per pass. "
            "Compile with a steps_per_execution that divides both (1 "
            "always does).")


def _check_no_keras_backup(callbacks):
    """Refuses Keras' own `BackupAndRestore`, whose resume epoch the
    stream cannot follow: the resumed epochs trained on the passes of the
    `initial_epoch`'s pipeline, the wrong stage among `{epoch: pipeline}`
    ones."""
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.BackupAndRestore):
            raise ValueError(
                "fit_passes cannot resume from Keras' BackupAndRestore: it "
                "would start the pipelines at their first pass, not at the "
                "epoch resumed. Use kerastrain's "
                "CheckpointEarlyStopping(backup_dir=...), whose resume "
                "epoch it reads. Received: callbacks with "
                f"{type(callback).__name__}")


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

    Pipelines may take turns, as a dict `{epoch: pipeline}` (the
    convention of `GradientAccumulation`'s `{epoch: steps}`): mixed-up
    images for the first 30 epochs, then the plain ones, in one `fit`,
    so that one `CheckpointEarlyStopping` and its backup see the whole
    run. Each pipeline trains the epochs from its key to the next key,
    starting at its first pass at its key's epoch (the one in force at
    `initial_epoch` starts there), as it would in a `fit` of its own
    epochs.

    Args:
        model: A compiled `keras.Model`.
        x: The training pipeline, a finite `tf.data.Dataset` of known
            length (`cardinality()`) giving batches: `(inputs, targets)`
            where the model has a compiled loss. Or a dict `{epoch:
            pipeline}` of such pipelines, each pass of one number of
            batches, whose first key is at most `initial_epoch`: the
            pipeline of the largest key <= the epoch trains it.
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
    # Mixup for the first 30 epochs, then the plain images:
    mixed = image_pipeline(x, y, batch_size=64, num_classes=10, seed=0,
                           mixup_alpha=0.2, drop_remainder=True)
    plain = image_pipeline(x, y, batch_size=64, num_classes=10, seed=1,
                           drop_remainder=True)
    history = fit_passes(model, {0: mixed, 30: plain}, val, epochs=40)
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a keras.Model. Received: "
            f"model={model!r}")
    # Checked before the evaluation that builds the model's metrics, which
    # an epoch that will not train would pay for nothing (Keras' `fit`
    # took epochs=0 and initial_epoch >= epochs as no training at all).
    _, start = check_epochs(kwargs.get("epochs", 1),
                            kwargs.get("initial_epoch", 0))
    stages, steps = _pipelines(x, start)
    validation_steps = passes("validation_data", validation_data)
    callbacks = check_callbacks(kwargs.get("callbacks"))
    _check_no_keras_backup(callbacks)
    for _, pipeline, name in stages:
        check_targets(name, pipeline, model)
    check_targets("validation_data", validation_data, model)
    _check_steps_per_execution(model, steps, validation_steps)
    _check_one_kind_of_batch(stages)
    given = [name for name in _SET if name in kwargs]
    if given:
        raise ValueError(
            f"fit_passes sets {' and '.join(f'`{n}`' for n in given)} to "
            "one pass of each pipeline; do not pass "
            f"{'them' if len(given) > 1 else 'it'}. Received: "
            f"{', '.join(f'{n}={kwargs[n]!r}' for n in given)}")
    model.evaluate(validation_data.take(1), verbose=0)
    train = _stream(stages)
    skipped = _passes_before_resume(callbacks, start)
    if skipped:
        train = train.skip(skipped * steps)
    return model.fit(train, validation_data=validation_data.repeat(),
                     steps_per_epoch=steps,
                     validation_steps=validation_steps, **kwargs)
