"""The image recipes' training: one-cycle SGD on `image_pipeline` batches
with mixup and a checkpoint (`fit_image_classifier`), members trained in
one `fit` (`trained_together`), and the classifier scored on the test
split (`report_classifier`).

Nothing here imports Keras at module level: `--backend` must set
`KERAS_BACKEND` before the first `import keras`.
"""

import os

from recipes.common.cli import RecipeError
from recipes.common.outputs import write_history
from recipes.common.reports import (plot_confusion_matrix, plot_history,
                                    plot_misclassified)


# The first stage's width of a --quick run's ResNets: a check of the
# recipe's code, not of its accuracy. With it, and with whole batches in
# the digits recipes' quick runs, the quick tests of digits_resnet,
# snapshot_ensemble and cifar10_resnet took 54 s on jax instead of 95 s
# (alone, at the test runner's XLA level), 53 s instead of 60 s on
# tensorflow and 27 s instead of 32 s on torch.
QUICK_WIDTH = 8
# The folder, in the run's staging folder, of the training's backup
# (`CheckpointEarlyStopping(backup_dir=...)`), which `--resume` resumes.
BACKUP = "backup"


def training_steps(args, samples, epochs=None, what=None,
                   whole_batches=False):
    """The training steps of `epochs` (default `args.epochs`) epochs of
    `samples` in batches of `args.batch_size` (with `whole_batches`, a
    last, smaller batch left out of each epoch), or a `RecipeError` when
    they are more than the optimizers' step count holds, before any
    training. `what` names the epochs in the message (`--epochs N` by
    default). Returns `(steps, made)`: `made` says what made them, for a
    recipe's own message."""
    # Not from kerastrain.tuning, whose import pulls in KerasTuner, which
    # `environment` would then list among the run's packages.
    from kerastrain._validation import MAX_STEPS

    epochs = args.epochs if epochs is None else epochs
    steps = epochs * steps_per_epoch(args, samples, whole_batches)
    made = (f"{what or f'--epochs {epochs}'} and --batch-size "
            f"{args.batch_size} on {samples} training samples make "
            f"{steps:,} training steps")
    if steps > MAX_STEPS:
        raise RecipeError(
            f"{made}, more than the optimizers' step count holds "
            f"({MAX_STEPS:,}). Lower --epochs or raise --batch-size.")
    return steps, made


def one_cycle_steps(args, samples, epochs=None, what=None,
                    whole_batches=False):
    """`training_steps`, also a `RecipeError` when they are too few for a
    one-cycle schedule whose rise holds a step (a large `--batch-size` on
    a small set; `OneCycle` itself, as PyTorch's, would start such a run
    inside its annealing). Returns the steps."""
    from kerastrain.schedules.one_cycle import MIN_STEPS

    steps, made = training_steps(args, samples, epochs, what, whole_batches)
    if steps < MIN_STEPS:
        raise RecipeError(
            f"{made}, too few for the one-cycle schedule, whose rise (30% "
            f"of the steps) needs at least {MIN_STEPS}. Raise --epochs or "
            "lower --batch-size.")
    return steps


def steps_per_epoch(args, samples, whole_batches=False):
    """The batches of `args.batch_size` in an epoch of `samples`: with
    `whole_batches`, without a last, smaller one, and a `RecipeError`
    where not one batch is whole."""
    if whole_batches:
        if samples < args.batch_size:
            raise RecipeError(
                f"--batch-size {args.batch_size} is more than the {samples}"
                " training samples, and the training reads whole batches "
                "only. Lower --batch-size.")
        return samples // args.batch_size
    return -(-samples // args.batch_size)


def fit_image_classifier(model, train, val, args, *, max_lr, weight_decay,
                         augment, mixup_alpha, mixup_off=0.25,
                         label_smoothing=0.0, eval_batch_size=None):
    """The image recipes' training: compiles `model` (logits out, or the
    members of `trained_together`: their logits, each with its own loss
    and its own training pipeline) with
    kerastrain's SGD (Nesterov) on a one-cycle rate whose momentum cycles
    against it and feeds it `image_pipeline` batches (`augment`, one-hot
    labels), mixed up for all but the last `mixup_off` of the epochs (timm's
    `mixup_off_epoch`: the annealed end of the cycle fits the real images;
    on the 8x8 digits, mixup to the end cost about one test error in 270).
    `label_smoothing` goes to the loss, so it smooths the training and the
    validation loss alike. The training reads whole batches only
    (`image_pipeline(drop_remainder=True)`; each pass reshuffles, so other
    images sit out each epoch), and the validation batches of
    `eval_batch_size` (default `args.batch_size`; the whole split makes
    one shape): a last, smaller batch is a shape of its own, which jax
    compiles and TensorFlow traces once more (on jax, 2 s of the digits
    recipe's first run for the training step).

    The best epoch on validation loss is kept by CheckpointEarlyStopping in
    `args.out/model.keras` (published by `finish`), among the last 10% of
    the epochs (where the rate is below 5% of its peak: on the digits' 270
    validation images, a lucky high-rate epoch otherwise wins and scores
    worse on the test split than the annealed ones) and with patience for
    the whole budget (one-cycle plans all its epochs). Writes
    `schedule.png`.

    The mixed-up and the plain epochs are one `fit` (`fit_passes` with
    `{0: mixed, mixed_epochs: plain}` pipelines), which the checkpoint
    backs up at every epoch in `args.out/backup`: a run that `--resume`
    starts again after a crash goes on from the last epoch backed up, as
    the uninterrupted run would have (`args.resumed["resumed_from_epoch"]`,
    None for a run from the start, says where).

    Returns the Keras `History` of all epochs, those before a resume
    included.
    """
    import keras

    from kerastrain.data import fit_passes, image_pipeline
    from kerastrain.optimizers import SGD
    from kerastrain.schedules import OneCycle, plot_schedule

    steps = one_cycle_steps(args, len(train[0]), whole_batches=True)
    one_cycle = OneCycle(max_lr, steps)
    outputs = len(model.outputs)
    model.compile(
        optimizer=SGD(one_cycle, momentum=one_cycle.momentum_schedule,
                      nesterov=True, weight_decay=weight_decay),
        # Mixup makes soft labels, hence the categorical loss; with several
        # outputs, each gets it and the loss is their sum.
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing),
        metrics=["accuracy"] * outputs)
    pipeline = dict(batch_size=args.batch_size,
                    num_classes=model.outputs[0].shape[-1], normalize=False,
                    seed=args.seed)
    validation = image_pipeline(
        *val, training=False,
        **{**pipeline, "batch_size": eval_batch_size or args.batch_size})
    if outputs > 1:  # every member reads the same validation batches
        validation = validation.map(
            lambda x, y: ((x,) * outputs, (y,) * outputs))
    checkpoint = backed_up_checkpoint(
        args, "model.keras", monitor="val_loss", patience=args.epochs,
        start_from_epoch=int(0.9 * args.epochs))
    mixed_epochs = int(round(args.epochs * (1 - mixup_off))) if (
        mixup_alpha > 0) else 0
    # One fit, its pipelines in turn: mixed up, then plain. Each (and each
    # member's, for a `trained_together` model) has a seed of its own
    # (`member_seeds`).
    seeds = member_seeds(args.seed, outputs)
    stages = {start: _zipped([image_pipeline(
        *train, augment=augment, mixup_alpha=alpha, drop_remainder=True,
        **{**pipeline, "seed": seed}) for seed in fit_seeds])
        for start, stop, alpha, fit_seeds in (
            (0, mixed_epochs, mixup_alpha, seeds.first_fit),
            (mixed_epochs, args.epochs, 0.0, seeds.second_fit))
        if start < stop}
    history = fit_passes(model, stages, validation, epochs=args.epochs,
                         verbose=2, callbacks=[checkpoint],
                         shuffle=False)  # the pipeline reshuffles itself
    # A resumed run's History holds the epochs after the resume only.
    checkpoint.add_resumed_epochs(history)
    plot_schedule(one_cycle, steps, os.path.join(args.out, "schedule.png"))
    return history


def backed_up_checkpoint(args, filename, fit=None, **kwargs):
    """A `CheckpointEarlyStopping` (`kwargs`) saving the best model to
    `args.out/filename`, with its backup in `args.out/backup`, which a run
    started again with `--resume` goes on from. Sets
    `args.resumed["resumed_from_epoch"]` to the epoch the `fit` will
    resume at (None for a run from the start), and says so. After the
    `fit`, its `add_resumed_epochs(history)` gives the `History` of the
    whole run.

    A recipe of several fits names each (`fit`): its backup is then
    `args.out/backup_<fit>` and `args.resumed["resumed_from_epoch"]` a
    dict of the epoch each fit resumes at. A fit that had ended has no
    backup (the checkpoint removes it at the end of training): a resumed
    run trains it again from its start, to the same end, as each fit is
    seeded (the recipes of several fits take seconds per fit)."""
    from kerastrain.callbacks import CheckpointEarlyStopping

    checkpoint = CheckpointEarlyStopping(
        os.path.join(args.out, filename), backup_dir=os.path.join(
            args.out, BACKUP if fit is None else f"{BACKUP}_{fit}"),
        **kwargs)
    epoch = checkpoint.resume_epoch()
    if fit is None:
        args.resumed["resumed_from_epoch"] = epoch
    else:
        args.resumed.setdefault("resumed_from_epoch", {})[fit] = epoch
    if epoch is not None:
        which = "" if fit is None else f"the {fit} fit "
        print(f"Resuming {which}at epoch {epoch + 1} of {args.epochs}, "
              f"from the backup in {checkpoint.backup_dir}")
    return checkpoint


def member_seeds(seed, count):
    """The seeds of `count` members trained together from a recipe's
    `seed` (`trained_together`; one member for a model of its own), every
    stream its own: a pipeline that shared a seed with another would
    replay its shuffles and augmentations, and members that shared one
    would read the same batches (and make the same errors).

    Member 0 gets the seeds of a run without members: `seed` for the
    pipeline of its first fit (the mixed-up epochs of
    `fit_image_classifier`) and for its model (DropPath), and the first
    seed spawned from `seed` for the pipeline of its second fit. The
    other members get the seeds spawned after that one, a model's kept
    below `MODEL_SEED_LIMIT`.

    Returns a namespace of three lists, a seed per member each:
    `first_fit`, `second_fit` and `model`.
    """
    import types

    from kerastrain._seeds import MODEL_SEED_LIMIT, spawn_seeds

    spawned = spawn_seeds(seed, 3 * count - 2)
    return types.SimpleNamespace(
        first_fit=[seed, *spawned[1:count]],
        second_fit=[spawned[0], *spawned[count:2 * count - 1]],
        model=[seed, *(s % MODEL_SEED_LIMIT
                       for s in spawned[2 * count - 1:])])


def _zipped(pipelines):
    """One pipeline, or for several (one per member of a
    `trained_together` model) their batches side by side: (the images of
    each, the labels of each)."""
    import tensorflow as tf

    if len(pipelines) == 1:
        return pipelines[0]
    return tf.data.Dataset.zip(tuple(pipelines)).map(
        lambda *batches: (tuple(b[0] for b in batches),
                          tuple(b[1] for b in batches)))


def trained_together(build, count):
    """`count` models from `build(i)` and one Keras model with an input
    and an output for each, to train them in one `fit` (one compiled
    step): each member reads its own batches (`fit_image_classifier`
    gives each its own pipeline) and has its own loss, so the members
    learn independently, as in runs of their own.

    Each member is built in a name scope of its own (`member_<i>/`):
    members built alike would otherwise have variables of the same paths,
    and Keras' torch backend keys a model's parameters by path, so `fit`
    would never clear the gradients of all but one of them.

    Returns `(members, model)`.
    """
    import keras

    members = []
    for i in range(count):
        with keras.name_scope(f"member_{i}"):
            members.append(build(i))
    inputs = [keras.Input(shape=m.inputs[0].shape[1:]) for m in members]
    return members, keras.Model(
        inputs, [m(x) for m, x in zip(members, inputs)])


def predicted_labels(model, x, batch_size=None):
    """The class `model` predicts for each of `x` (the argmax of its
    outputs), in batches of `batch_size`: Keras' 32 by default; `len(x)`,
    one batch, gives one shape to compile or trace."""
    import numpy as np

    return np.argmax(np.asarray(model.predict(
        x, batch_size=batch_size, verbose=0)), axis=-1)


def accuracy(model, x, y, batch_size=None):
    """The share of `x` whose `predicted_labels` (in batches of
    `batch_size`) are `y`."""
    import numpy as np

    return float(np.mean(predicted_labels(model, x, batch_size) == y))


def report_classifier(name, model, history, x_test, y_test, args,
                      batch_size=None):
    """Predicts the test split (in batches of `batch_size`, Keras' 32 by
    default) and writes `history.csv`, `learning_curves.png`,
    `confusion_matrix.png` and `misclassified.png`. Returns
    `(test_accuracy, predicted_labels)`."""
    import numpy as np

    predictions = predicted_labels(model, x_test, batch_size)
    accuracy = float(np.mean(predictions == y_test))
    write_history(history, os.path.join(args.out, "history.csv"))
    plot_history(history, os.path.join(args.out, "learning_curves.png"))
    plot_confusion_matrix(
        y_test, predictions, os.path.join(args.out, "confusion_matrix.png"),
        f"{name}: test accuracy {accuracy:.2%}")
    plot_misclassified(x_test, y_test, predictions,
                       os.path.join(args.out, "misclassified.png"))
    return accuracy, predictions
