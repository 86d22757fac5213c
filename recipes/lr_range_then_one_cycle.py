"""LR range test, then one-cycle: a tabular MLP on the breast-cancer data.

Load scikit-learn's breast-cancer data (offline), split it 70/15/15 with
stratification, standardize it on the training split, run `find_lr` and
take its suggestion as the peak rate of a one-cycle schedule (with cycling
momentum), and train with CheckpointEarlyStopping. For comparison, the same
network from the same initial weights trains for the same number of steps
at a constant rate (the suggestion). Writes the one-cycle model, metrics,
history, the range-test curve, the schedule, learning curves and the
one-cycle model's confusion matrix on the test split to
`saved_models/lr_range_then_one_cycle/`. Both fits are backed up at every
epoch: an interrupted run, started again with the same flags and
`--resume`, runs the range test again (seeded: the same suggestion) and
goes on from the last epoch backed up (a fit that had ended trains again,
to the same end).

Run: python -m recipes.lr_range_then_one_cycle [--epochs 30] [--resume]
"""

import sys

from recipes import common

NAME = "lr_range_then_one_cycle"


def build_model(seed, optimizer):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((30,)), keras.layers.Dense(64, "relu"),
        keras.layers.Dropout(0.2, seed=seed),
        keras.layers.Dense(32, "relu"), keras.layers.Dense(1)])
    model.compile(optimizer,
                  keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.0,
                                                        name="accuracy")])
    return model


def evaluate(model, x, y):
    """Test accuracy (logit > 0) and ROC AUC, and the predicted labels."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    logits = np.asarray(model.predict(x, verbose=0))[:, 0]
    predicted = (logits > 0).astype(int)
    return {"accuracy": float(np.mean(predicted == y)),
            "roc_auc": float(roc_auc_score(y, logits))}, predicted


def run(args):
    import os

    import keras

    import kerastrain.io
    from kerastrain import find_lr
    from kerastrain.data import load, split, tabular_preprocessor
    from kerastrain.optimizers import SGD
    from kerastrain.schedules import OneCycle, plot_schedule

    out = args.out
    (x_train, y_train), val, (x_test, y_test) = split(
        *load("breast_cancer"), seed=args.seed)
    scaler = tabular_preprocessor(x_train)
    x_train, x_val, x_test = (scaler.transform(x).astype("float32")
                              for x in (x_train, val[0], x_test))
    y_train, y_val = y_train.astype("float32"), val[1].astype("float32")
    # Checked before the finder spends its steps.
    steps = common.one_cycle_steps(args, len(x_train))

    finder = find_lr(build_model(args.seed, SGD(0.01, momentum=0.9)),
                     x_train, y_train, batch_size=args.batch_size,
                     num_steps=20 if args.quick else 100, seed=args.seed)
    max_lr = finder.suggestion("valley")
    finder.plot(os.path.join(out, "lr_finder.png"))
    one_cycle = OneCycle(max_lr, steps)
    plot_schedule(one_cycle, steps, os.path.join(out, "schedule.png"))
    print(f"{NAME}: {len(x_train)} train / {len(x_val)} validation / "
          f"{len(x_test)} test, suggested max_lr {max_lr:.3g}, backend "
          f"{keras.backend.backend()}")

    runs = {}
    for label, optimizer in (
            ("one_cycle", SGD(one_cycle, one_cycle.momentum_schedule)),
            ("constant", SGD(max_lr, momentum=0.9))):
        model = build_model(args.seed, optimizer)
        checkpoint = common.backed_up_checkpoint(
            args, f"best_{label}.keras", fit=label,
            patience=args.epochs)  # keep the best; the budget is the same
        history = model.fit(x_train, y_train, validation_data=(x_val, y_val),
                            batch_size=args.batch_size, epochs=args.epochs,
                            verbose=2 if label == "one_cycle" else 0,
                            callbacks=[checkpoint])
        # A resumed fit's History holds the epochs after the resume only.
        checkpoint.add_resumed_epochs(history)
        runs[label] = (model, history, evaluate(model, x_test, y_test))

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    peer = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    logistic = {"accuracy": float(peer.score(x_test, y_test)),
                "roc_auc": float(roc_auc_score(
                    y_test, peer.decision_function(x_test)))}
    model, history, (test, predicted) = runs["one_cycle"]
    kerastrain.io.save_model(model, os.path.join(out, "model.keras"))
    for label in runs:
        os.remove(os.path.join(out, f"best_{label}.keras"))
    common.write_history(history, os.path.join(out, "history.csv"))
    common.plot_history(history, os.path.join(out, "learning_curves.png"))
    common.plot_confusion_matrix(
        y_test, predicted, os.path.join(out, "confusion_matrix.png"),
        f"{NAME}: one-cycle, test accuracy {test['accuracy']:.2%}")
    constant = runs["constant"][2][0]
    return common.finish(NAME, args, {
        "test": test,
        "baselines": {"constant_lr_same_budget": constant,
                      "logistic_regression": logistic},
        "max_lr": max_lr,
        "lr_finder_steps": len(finder.lrs),
    }, [("suggested max_lr", f"{max_lr:.3g}"),
        ("one-cycle test accuracy / AUC",
         f"{test['accuracy']:.2%} / {test['roc_auc']:.4f}"),
        ("constant rate test accuracy / AUC",
         f"{constant['accuracy']:.2%} / {constant['roc_auc']:.4f}"),
        ("logistic regression peer",
         f"{logistic['accuracy']:.2%} / {logistic['roc_auc']:.4f}")])


def main(argv=None):
    return common.run_main(NAME, __doc__, run, argv, epochs=30,
                           batch_size=32, resumable=True)


if __name__ == "__main__":
    sys.exit(main())
