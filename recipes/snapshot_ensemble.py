"""Snapshot ensemble: cosine annealing with warm restarts on the 8x8
digits, a snapshot at the end of every cycle, and their average.

Huang et al.'s "train 1, get M for free": a ResNet-8 on scikit-learn's
digits (the split of `digits_resnet`) trains with kerastrain's SGD on
Keras' `CosineDecayRestarts` (`--cycles` equal cycles, no growth, no
decay of the peak); `SnapshotEnsemble` saves the model at each cycle's
end, and `kerastrain.models.ensemble` averages their softmax outputs.
A cycle is the epochs' steps divided by `--cycles`, rounded down; where
that leaves a remainder (none with the defaults), training stops at the
end of the last cycle and the remaining steps, fewer than `--cycles`,
are not run (`steps_run` in the metrics): always `--cycles` snapshots,
the last one the end of training. (The paper's cycle of ceil(steps /
cycles) would cut the last cycle short of its annealed end instead.)
With `--mixed-precision`, Keras' loss scaling skips the updates whose
float16 gradients overflow, and the step count that the cycles follow
counts only those applied: the training then goes on past `--epochs`,
up to twice as many epochs, until the last cycle ends (`updates_skipped`
in the metrics). A training whose updates keep overflowing (a diverged
one), and so cannot end its last cycle in those epochs, stops with an
error and publishes nothing.
Reports each snapshot's test accuracy, the ensemble's, and the single
best epoch on validation (CheckpointEarlyStopping), on the same test
split as the RBF SVC peer.

Writes `model.keras` (the ensemble), `snapshots/`, `best_single.keras`,
metrics, history, the schedule, learning curves and the ensemble's
confusion matrix to `saved_models/snapshot_ensemble/`. The training is
backed up at every epoch: an interrupted run, started again with the same
flags and `--resume`, goes on from its last epoch backed up, with the
snapshots of the cycles before it.

Run: python -m recipes.snapshot_ensemble [--epochs 40] [--cycles 5]
     [--resume]
"""

import sys

from recipes import common
from recipes.digits_resnet import AUGMENT, load_split, svc_accuracy

NAME = "snapshot_ensemble"
DEPTH, WIDTH, PEAK_LR, WEIGHT_DECAY = 8, 16, 0.1, 5e-3
# Under loss scaling (--mixed-precision), the epochs a run may take, in
# --epochs: the updates it skips are run again past them.
EPOCHS_WHEN_SCALED = 2


def add_arguments(parser):
    parser.add_argument("--cycles", type=common.positive_int, default=5,
                        help="learning-rate cycles, one snapshot each "
                        "(default 5)")


def run(args):
    import copy
    import os

    import keras

    import kerastrain.io
    from kerastrain.callbacks import SnapshotEnsemble
    from kerastrain.data import fit_passes, image_pipeline
    from kerastrain.models import ensemble, resnet
    from kerastrain.optimizers import SGD
    from kerastrain.schedules import plot_schedule

    out = args.out
    keras.utils.set_random_seed(args.seed)
    train, val, test = load_split(args.seed, quick=args.quick)
    # Whole training batches, and the validation digits in one batch:
    # one shape of each step (see `common.fit_image_classifier`).
    # More than the step count holds ran for ever: the schedule's cycles
    # are planned from the steps.
    steps, _ = common.training_steps(args, len(train[0]),
                                     whole_batches=True)
    if steps < args.cycles:
        raise common.RecipeError(
            f"--cycles {args.cycles} needs at least as many steps; "
            f"--epochs {args.epochs} gives {steps}")
    cycle_steps = steps // args.cycles
    skipped = steps - args.cycles * cycle_steps
    schedule = keras.optimizers.schedules.CosineDecayRestarts(
        PEAK_LR, first_decay_steps=cycle_steps, t_mul=1.0, m_mul=1.0)
    model = resnet((8, 8, 1), num_classes=10, depth=DEPTH,
                   width=common.QUICK_WIDTH if args.quick else WIDTH,
                   seed=args.seed, name=NAME)
    model.compile(SGD(schedule, momentum=0.9, nesterov=True,
                      weight_decay=WEIGHT_DECAY),
                  keras.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    # Under mixed_float16 Keras wraps the optimizer in a
    # LossScaleOptimizer, whose skipped updates (float16 gradients that
    # overflowed) the step count does not count: the cycles, planned from
    # the steps, need that many batches more. The fit may run up to
    # twice the epochs; `stop_after_last_cycle` ends it at the last
    # cycle's end, as without it.
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    epochs = EPOCHS_WHEN_SCALED * args.epochs if scaled else args.epochs
    per_epoch = steps // args.epochs
    skip = f" (the last {skipped} of {steps} steps skipped)" if (
        skipped) else ""
    more = f", up to {epochs} epochs for updates loss scaling skips" if (
        scaled) else ""
    print(f"{NAME}: {len(train[0])} train digits, {args.cycles} cycles of "
          f"{cycle_steps} steps{skip}{more}, backend "
          f"{keras.backend.backend()}")
    snapshots = SnapshotEnsemble(cycle_steps,
                                 os.path.join(args.out, "snapshots"))

    def stop_after_last_cycle(batch, logs=None):
        # Past the last cycle's snapshot the schedule restarts at its peak.
        if len(snapshots.snapshots) >= args.cycles:
            model.stop_training = True

    # Under loss scaling only: the epoch running, and the batches run to
    # its last one (the updates skipped are those less the step count).
    ran = {}

    def note_epoch(epoch, logs=None):
        ran["epoch"] = epoch

    def count_batches(batch, logs=None):
        ran["batches"] = ran["epoch"] * per_epoch + batch + 1

    def stop_when_out_of_reach(epoch, logs=None):
        # Each batch applies one update at most: once the epochs left
        # hold fewer batches than the updates still to come, the last
        # cycle cannot end (every update skipped, a diverged training).
        updates = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        if (args.cycles * cycle_steps - updates
                > (epochs - epoch - 1) * per_epoch):
            model.stop_training = True

    callbacks = [snapshots, keras.callbacks.LambdaCallback(
        on_train_batch_end=stop_after_last_cycle)]
    if scaled:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_begin=note_epoch, on_train_batch_end=count_batches,
            on_epoch_end=stop_when_out_of_reach))

    pipeline = dict(batch_size=args.batch_size, num_classes=10,
                    normalize=False, seed=args.seed)
    # The best single epoch on validation, and the backup that --resume
    # goes on from (the snapshots of the cycles before it stay listed),
    # whose message counts the fit's epochs.
    fit_args = copy.copy(args)
    fit_args.epochs = epochs
    checkpoint = common.backed_up_checkpoint(
        fit_args, "best_single.keras", patience=epochs, restore_best=False)
    history = fit_passes(
        model, image_pipeline(*train, augment=AUGMENT, drop_remainder=True,
                              **pipeline),
        image_pipeline(*val, training=False,
                       **{**pipeline, "batch_size": len(val[0])}),
        epochs=epochs, verbose=2, shuffle=False,
        callbacks=callbacks + [checkpoint])
    checkpoint.add_resumed_epochs(history)
    steps_run = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    # Batches run less updates applied (none skipped without loss
    # scaling); None where a resumed fit ran no batch (its training had
    # ended before the crash).
    updates_skipped = 0
    if scaled:
        updates_skipped = ran["batches"] - steps_run if "batches" in ran \
            else None
    if scaled and len(snapshots.snapshots) < args.cycles:
        raise common.RecipeError(
            f"loss scaling (--mixed-precision) skipped {updates_skipped} "
            f"of the {ran.get('batches')} updates run, their float16 "
            "gradients overflowing (a diverged training): the "
            f"{epochs} epochs it may take (twice --epochs {args.epochs}) "
            f"hold too few steps for the {args.cycles * cycle_steps} "
            f"updates of {args.cycles} cycles of {cycle_steps} steps, and "
            f"{len(snapshots.snapshots)} of the {args.cycles} snapshots "
            "were taken. Nothing was published. Lower the peak rate, or "
            "train without --mixed-precision.")
    plot_schedule(schedule, steps_run, os.path.join(out, "schedule.png"))

    members = [keras.saving.load_model(path) for path in
               snapshots.snapshots]
    # Each scored in one batch: one shape to compile per model.
    per_snapshot = [common.accuracy(member, *test, len(test[0]))
                    for member in members]
    averaged = ensemble(members)
    kerastrain.io.save_model(averaged, os.path.join(args.out, "model.keras"))
    ensemble_accuracy, _ = common.report_classifier(
        NAME, averaged, history, *test, args, batch_size=len(test[0]))
    best_single = common.accuracy(keras.saving.load_model(
        os.path.join(args.out, "best_single.keras")), *test, len(test[0]))
    svc = svc_accuracy(train, val, test)
    return common.finish(NAME, args, {
        "test_accuracy": ensemble_accuracy,
        "snapshot_test_accuracies": per_snapshot,
        "baselines": {"best_single_epoch_accuracy": best_single,
                      "svc_rbf_c10_gamma0.001_accuracy": svc},
        "cycles": args.cycles, "cycle_steps": cycle_steps,
        "steps_run": steps_run, "updates_skipped": updates_skipped,
    }, [(f"snapshot {i + 1}", acc) for i, acc in enumerate(per_snapshot)]
       + [(f"ensemble of {len(members)}", ensemble_accuracy),
          ("best single epoch (validation)", best_single),
          ("SVC peer, same split", svc)])


def main(argv=None):
    return common.run_main(NAME, __doc__, run, argv, tf_data=True,
                           leave_a_core=True, resumable=True, epochs=40,
                           batch_size=64, add_arguments=add_arguments)


if __name__ == "__main__":
    sys.exit(main())
