"""Tune digits: a KerasTuner search over kerastrain's ResNet knobs on the
8x8 digits, with the toolkit's callbacks in every trial.

`kerastrain.tuning.ResNetHyperModel` on the split of `digits_resnet` (shift
and rotation augmentation for every trial): depth 8 or 14, width 16 or 32,
the normalization, stochastic depth, SGD or AdamW, the schedule
(one-cycle, warmup + cosine, cyclic, constant) and its peak rate, weight
decay, mixup and label smoothing, searched by RandomSearch (default),
BayesianOptimization or Hyperband on validation accuracy; each trial keeps
its best epoch with its own CheckpointEarlyStopping. The best trial's model
is scored on the test split beside the RBF SVC peer.

Writes `model.keras` (the best trial's best epoch),
`best_hyperparameters.json`, `trials.csv` and `trials.png` (every trial),
metrics and the confusion matrix to `saved_models/tune_digits/`, and prints
the top trials. Each trial backs itself up at every epoch: an interrupted
search, run again with the same flags and `--resume`, keeps the trials
that ended and goes on with the interrupted one from its backup.

Run: python -m recipes.tune_digits [--max-trials 6] [--tuner hyperband]
     [--resume]
"""

import sys

from recipes import common
from recipes.digits_resnet import AUGMENT, load_split, svc_accuracy

NAME = "tune_digits"


def add_arguments(parser):
    common.add_search_arguments(parser, max_trials=6)


def run(args):
    import os

    import keras
    import numpy as np

    from kerastrain.tuning import ResNetHyperModel

    out = args.out
    keras.utils.set_random_seed(args.seed)
    train, val, test = load_split(args.seed, quick=args.quick)
    # Every schedule is searched, one-cycle included; a Hyperband round may
    # span a single epoch.
    hyperband = args.tuner == "hyperband"
    common.one_cycle_steps(
        args, len(train[0]), epochs=1 if hyperband else None,
        what="a Hyperband round of 1 epoch" if hyperband else None,
        whole_batches=True)
    # Whole training batches, and the validation and test digits in one
    # batch each: one shape of each step per trial (on jax, a first run
    # took 80 s instead of 113 s).
    hypermodel = ResNetHyperModel(
        (8, 8, 1), 10, depth=[8, 14],
        width=common.QUICK_WIDTH if args.quick else [16, 32],
        augment=AUGMENT, seed=args.seed, drop_remainder=True)
    tuner = common.make_tuner(hypermodel, args, ("val_accuracy", "max"),
                              out, args.epochs)
    print(f"{NAME}: {args.tuner} search, {len(train[0])} train / "
          f"{len(val[0])} validation digits, backend "
          f"{keras.backend.backend()}")
    model, best_hp, rows = common.run_search(
        tuner, out, train, val, epochs=args.epochs,
        batch_size=args.batch_size, patience=args.epochs,
        validation_batch_size=len(val[0]), backup=True)
    best_trial = rows[0]["trial"]
    predictions = common.predicted_labels(model, test[0], len(test[0]))
    accuracy = float(np.mean(predictions == test[1]))
    common.plot_confusion_matrix(
        test[1], predictions, os.path.join(out, "confusion_matrix.png"),
        f"{NAME}: best trial, test accuracy {accuracy:.2%}")
    svc = svc_accuracy(train, val, test)
    return common.finish(NAME, args, {
        "test_accuracy": accuracy,
        "best_trial": best_trial,
        "best_val_accuracy": rows[0]["score"],
        "best_hyperparameters": best_hp,
        "trials": len(rows),
        "tuner": args.tuner,
        "baselines": {"svc_rbf_c10_gamma0.001_accuracy": svc},
    }, [("trials", len(rows)), ("best trial", best_trial),
        ("best validation accuracy", rows[0]["score"]),
        ("its test accuracy", accuracy), ("SVC peer, same split", svc)])


def main(argv=None):
    return common.run_main(NAME, __doc__, run, argv, tf_data=True, epochs=10,
                           batch_size=64, resumable=True,
                           add_arguments=add_arguments)


if __name__ == "__main__":
    sys.exit(main())
