"""Diabetes risk: the course's risk prediction system on scikit-learn's
diabetes data, with SMOTE against no balancing, and scikit-learn peers.

`kerastrain.data.load("diabetes_risk")` turns the diabetes progression of
442 patients into a "high risk" label (progression > 250: 65 positive).
Split 70/15/15 with stratification, standardize on the training split,
and train an MLP (BatchNorm, dropout, L2, CheckpointEarlyStopping on
validation loss) twice: on the training split as it is and balanced with
SMOTE. A logistic regression and a gradient-boosting classifier train on
the same two versions of the same split. Each is scored on the untouched
test split by ROC AUC, F1 and balanced accuracy (threshold 0.5).

With `--tune`, a KerasTuner search (`kerastrain.tuning.MLPHyperModel`:
layers, units, dropout, L2, BatchNorm, learning rate and the balancing
method: none, class weights, SMOTE, over- or undersampling) on validation
ROC AUC joins the comparison as `mlp_tuned`; its best model, best
hyperparameters and table of trials go to `tuning/`.

Writes `model.keras` (the SMOTE MLP; `model_unbalanced.keras` beside it),
the fitted scaler (`preprocessor.pkl`), metrics, history, learning curves,
ROC curves and the confusion matrix to `saved_models/diabetes_risk/`.
Each fit, and each trial of the search, is backed up at every epoch: an
interrupted run, started again with the same flags and `--resume`, goes
on from the last epoch backed up (a fit that had ended trains again, to
the same end; the search keeps the trials that had ended).

Run: python -m recipes.diabetes_risk [--epochs 200] [--seed 0] [--tune]
     [--resume]
"""

import sys

from recipes import common

NAME = "diabetes_risk"
BALANCING = ("none", "smote")
SEARCH_EPOCHS = 60


def add_arguments(parser):
    parser.add_argument("--tune", action="store_true",
                        help="also search MLPHyperModel's space with "
                        f"KerasTuner ({SEARCH_EPOCHS} epochs per trial at "
                        "most)")
    common.add_search_arguments(parser, max_trials=10)


def tuned_mlp(train, val, args):
    """Searches `MLPHyperModel`'s space on validation ROC AUC and writes
    its report to `out/tuning/`. Returns `(best_model, best_balancing)`."""
    import os

    from kerastrain.tuning import MLPHyperModel

    folder = os.path.join(args.out, "tuning")
    epochs = min(args.epochs, SEARCH_EPOCHS)
    tuner = common.make_tuner(MLPHyperModel(train[0].shape[1], 2,
                                            seed=args.seed),
                              args, ("val_auc", "max"), folder, epochs)
    model, best, _ = common.run_search(
        tuner, folder, train, val, epochs=epochs,
        batch_size=args.batch_size, patience=15, backup=True)
    return model, best["balancing"]


def build_mlp(num_features, seed):
    """Two hidden layers of Dense + BatchNorm + ReLU + Dropout with L2 on
    the kernels, one logit out."""
    import keras

    l2 = keras.regularizers.L2(1e-3)
    layers = [keras.Input((num_features,))]
    # A seed per dropout layer: alike, they would drop the same units.
    for i, units in enumerate((32, 16)):
        layers += [keras.layers.Dense(units, use_bias=False,
                                      kernel_regularizer=l2),
                   keras.layers.BatchNormalization(),
                   keras.layers.Activation("relu"),
                   keras.layers.Dropout(0.3, seed=seed + i)]
    layers.append(keras.layers.Dense(1, kernel_regularizer=l2))
    model = keras.Sequential(layers, name=NAME)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.AUC(from_logits=True, name="auc")])
    return model


def scores(y_true, score, threshold):
    """ROC AUC of the scores; F1 and balanced accuracy at `threshold`."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, \
        roc_auc_score

    predicted = score > threshold
    return {"roc_auc": float(roc_auc_score(y_true, score)),
            "f1": float(f1_score(y_true, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(
                y_true, predicted))}


def peers(x_train, y_train, seed):
    """scikit-learn's logistic regression and gradient boosting, fitted."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    return {"logistic_regression": LogisticRegression(max_iter=1000).fit(
                x_train, y_train),
            "gradient_boosting": GradientBoostingClassifier(
                random_state=seed).fit(x_train, y_train)}


def plot_roc(curves, y_test, path):
    """ROC curves of every model on the test split, one figure."""
    from sklearn.metrics import RocCurveDisplay

    from kerastrain.io import new_figure, save_figure

    figure, ax = new_figure(figsize=(6, 5.5))
    for label, score in curves.items():
        RocCurveDisplay.from_predictions(y_test, score, name=label, ax=ax)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_title(f"{NAME}: ROC on the test split")
    save_figure(figure, path)


def run(args):
    import os
    import pickle

    import keras
    import numpy as np

    from kerastrain.data import balance, load, split, tabular_preprocessor
    from kerastrain.io import atomic_path

    out = args.out
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = split(
        *load("diabetes_risk"), seed=args.seed)
    scaler = tabular_preprocessor(x_train)
    x_train, x_val, x_test = (scaler.transform(x).astype("float32")
                              for x in (x_train, x_val, x_test))
    print(f"{NAME}: {len(x_train)} train / {len(x_val)} validation / "
          f"{len(x_test)} test patients, {int(y_train.sum())} positive in "
          f"training, backend {keras.backend.backend()}")
    results, curves, histories = {}, {}, {}
    balanced = {method: (x_train, y_train) if method == "none" else balance(
        x_train, y_train, method, seed=args.seed) for method in BALANCING}
    for method, (x, _) in balanced.items():  # before any training
        common.training_steps(args, len(x), what=f"--epochs {args.epochs}"
                              + ("" if method == "none" else
                                 f" after {method} balancing"))
    for method, (x, y) in balanced.items():
        keras.utils.set_random_seed(args.seed)
        model = build_mlp(x.shape[1], args.seed)
        filename = "model.keras" if method == "smote" else \
            "model_unbalanced.keras"
        checkpoint = common.backed_up_checkpoint(args, filename, fit=method,
                                                 patience=30)
        histories[method] = model.fit(
            x, y.astype("float32"), batch_size=args.batch_size,
            epochs=args.epochs, validation_data=(x_val,
                                                 y_val.astype("float32")),
            verbose=2 if method == "smote" else 0, callbacks=[checkpoint])
        # A resumed fit's History holds the epochs after the resume only.
        checkpoint.add_resumed_epochs(histories[method])
        logits = np.asarray(model.predict(x_test, verbose=0))[:, 0]
        candidates = {"mlp": (logits, 0.0)}
        for peer_name, peer in peers(x, y, args.seed).items():
            candidates[peer_name] = (peer.predict_proba(x_test)[:, 1], 0.5)
        for label, (score, threshold) in candidates.items():
            results[f"{label}/{method}"] = scores(y_test, score, threshold)
            curves[f"{label}, {method}"] = score
        if method == "smote":
            smote_predictions = logits > 0.0
    if args.tune:
        model, method = tuned_mlp((x_train, y_train), (x_val, y_val), args)
        logits = np.asarray(model.predict(x_test, verbose=0))[:, 0]
        results[f"mlp_tuned/{method}"] = scores(y_test, logits, 0.0)
        curves[f"mlp tuned, {method}"] = logits

    with atomic_path(os.path.join(args.out, "preprocessor.pkl")) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(scaler, f)
    history = histories["smote"]
    common.write_history(history, os.path.join(out, "history.csv"))
    common.plot_history(history, os.path.join(out, "learning_curves.png"))
    plot_roc(curves, y_test, os.path.join(out, "roc_curves.png"))
    mlp = results["mlp/smote"]
    common.plot_confusion_matrix(
        y_test, smote_predictions.astype(int),
        os.path.join(out, "confusion_matrix.png"),
        f"{NAME}: MLP + SMOTE, balanced accuracy "
        f"{mlp['balanced_accuracy']:.2%}")
    return common.finish(NAME, args, {
        "test": results,
        "epochs_run": {m: len(h.epoch) for m, h in histories.items()},
        "test_positives": int(y_test.sum()),
    }, [("model / balancing", "ROC AUC / F1 / balanced accuracy")] + [
        (label, f"{r['roc_auc']:.3f} / {r['f1']:.3f} / "
                f"{r['balanced_accuracy']:.3f}")
        for label, r in results.items()])


def main(argv=None):
    return common.run_main(NAME, __doc__, run, argv, epochs=200,
                           batch_size=32, resumable=True,
                           add_arguments=add_arguments)


if __name__ == "__main__":
    sys.exit(main())
