import contextlib
import importlib.metadata
import io
import json
import math
import os

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from kerastrain.data import load, split, tabular_preprocessor
from recipes import common
from recipes import lr_range_then_one_cycle as recipe
from tests.recipes.common.runs import (assert_resumed_as_uninterrupted,
                                       crashed)


# --mixed-precision (for GPUs) end to end: the finder under Keras'
# loss-scale optimizer, one-cycle, the checkpoint and its reload.
QUICK_FLAGS = ["--quick", "--seed", "3", "--mixed-precision"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A quick run: its folder, the confusion matrix's labels (drawn)
    and what it printed."""
    drawn = []

    def spy(y_true, y_pred, path, title):
        drawn.append((np.asarray(y_true), np.asarray(y_pred)))
        return real(y_true, y_pred, path, title)

    real = common.plot_confusion_matrix
    out = tmp_path_factory.mktemp("lr_range") / "run"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, \
            contextlib.redirect_stdout(printed):
        patch.setattr(common, "plot_confusion_matrix", spy)
        assert recipe.main(QUICK_FLAGS + ["--out", str(out)]) == 0
    return out, drawn, printed.getvalue()


def test_quick_run_writes_reloadable_outputs(quick_run):
    out, drawn, printed = quick_run
    assert {"model.keras", "metrics.json", "history.csv", "lr_finder.png",
            "schedule.png", "learning_curves.png",
            "confusion_matrix.png"} == set(os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seed"] == 3 and metrics["backend"] == \
        keras.backend.backend()
    assert metrics["mixed_precision"] is True
    # The suggestion is one of the range test's rates: the k-th of its
    # geometric grid from 1e-7 to 10 over 20 steps (the quick run's).
    k = 19 * math.log(metrics["max_lr"] / 1e-7) / math.log(1e8)
    assert 0 <= round(k) < metrics["lr_finder_steps"] <= 20
    assert metrics["max_lr"] == pytest.approx(
        1e-7 * 1e8 ** (round(k) / 19), rel=1e-6)
    for result in (metrics["test"],
                   metrics["baselines"]["constant_lr_same_budget"]):
        assert 0 <= result["accuracy"] <= 1 and 0 <= result["roc_auc"] <= 1

    # The logistic regression peer, recomputed on the same standardized
    # split (float32, as the networks see it; lbfgs is deterministic).
    (x_train, y_train), _, (x_test, y_test) = split(*load("breast_cancer"),
                                                    seed=3)
    scaler = StandardScaler().fit(x_train)
    peer = LogisticRegression(max_iter=1000).fit(
        scaler.transform(x_train).astype("float32"), y_train)
    x_peer = scaler.transform(x_test).astype("float32")
    logistic = metrics["baselines"]["logistic_regression"]
    assert logistic["accuracy"] == pytest.approx(
        np.mean(peer.predict(x_peer) == y_test), abs=1e-12)
    assert logistic["roc_auc"] == pytest.approx(
        roc_auc_score(y_test, peer.decision_function(x_peer)), abs=1e-12)

    # The saved model is the evaluated one: same test accuracy, recomputed.
    x_test = tabular_preprocessor(x_train).transform(x_test).astype(
        "float32")
    model = keras.saving.load_model(out / "model.keras")
    logits = np.asarray(model.predict(x_test, verbose=0))[:, 0]
    assert np.mean((logits > 0) == y_test) == pytest.approx(
        metrics["test"]["accuracy"], abs=1e-9)
    # The confusion matrix is of that model on the test split.
    [(y_true, y_pred)] = drawn
    np.testing.assert_array_equal(y_true, y_test)
    np.testing.assert_array_equal(y_pred, (logits > 0).astype(int))
    assert metrics["kerastrain"] == importlib.metadata.version("kerastrain")
    # NumPy input, no tf.data: the backend's framework is the only one.
    assert {"tensorflow", "jax", "torch"} & set(metrics) == {
        keras.backend.backend()}
    assert "suggested max_lr" in printed
    assert metrics["resumed_from_epoch"] == {"one_cycle": None,
                                             "constant": None}


def test_an_interrupted_run_resumes_to_the_uninterrupted_runs_end(
        quick_run, tmp_path, monkeypatch, capsys):
    """Crashed in the second epoch of the one-cycle fit (the second
    `fit`, after the range test's), and run again with --resume: the
    range test runs again to the same suggestion, the one-cycle fit goes
    on from its backup, the constant-rate one trains, and the run ends
    with the uninterrupted run's model, history and metrics, to the
    bit. (A fit that had ended trains again: `diabetes_risk`'s test.)"""
    expected_out, _, _ = quick_run
    out = tmp_path / "run"
    flags = QUICK_FLAGS + ["--out", str(out)]
    crashed(recipe.main, flags, monkeypatch, epoch=1, batch=1,
            caller=keras.Model, method="fit", call=2)
    staged = os.listdir(out / common.STAGING)
    assert f"{common.BACKUP}_one_cycle" in staged
    assert "best_constant.keras" not in staged
    capsys.readouterr()
    assert recipe.main(flags + ["--resume"]) == 0
    assert "Resuming the one_cycle fit at epoch 2 of 2" in \
        capsys.readouterr().out
    assert_resumed_as_uninterrupted(
        out, expected_out, {"resumed_from_epoch": {"one_cycle": 1,
                                                   "constant": None}},
        ("test", "baselines", "max_lr", "lr_finder_steps"),
        ("model.keras",))


def test_too_few_steps_is_an_error_before_the_finder_runs(tmp_path, capsys):
    out = tmp_path / "run"
    assert recipe.main(["--epochs", "2", "--batch-size", "100000",
                        "--out", str(out)]) == 1
    assert "make 2 training steps" in capsys.readouterr().err
    assert not out.exists()  # no lr_finder.png either
