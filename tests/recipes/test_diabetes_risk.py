import json
import os
import pickle
import re
import shutil

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from kerastrain.data import load, split
from recipes import common
from recipes import diabetes_risk as recipe
from tests.recipes.common.runs import (assert_resumed_as_uninterrupted,
                                       crashed)

def quick_run(out, *flags):
    assert recipe.main(["--quick", "--out", str(out), "--seed", "2",
                        *flags]) == 0
    return out


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One quick run with the search (`--tune`) too."""
    return quick_run(tmp_path_factory.mktemp("diabetes") / "run",
                     "--tune",
                     "--max-trials", "2")


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """One quick run without the search."""
    return quick_run(tmp_path_factory.mktemp("diabetes") / "plain")


def test_quick_run_scores_every_model_on_the_same_test_split(first_run):
    out = first_run
    assert {"model.keras", "model_unbalanced.keras", "preprocessor.pkl",
            "metrics.json", "history.csv", "learning_curves.png",
            "roc_curves.png", "confusion_matrix.png", "tuning"} == set(
                os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    tuned = [key for key in metrics["test"] if key.startswith("mlp_tuned/")]
    assert set(metrics["test"]) - set(tuned) == {
        f"{model}/{method}" for model in ("mlp", "logistic_regression",
                                          "gradient_boosting")
        for method in ("none", "smote")}
    for result in metrics["test"].values():
        assert set(result) == {"roc_auc", "f1", "balanced_accuracy"}

    # The saved SMOTE model and scaler reproduce its test ROC AUC.
    _, _, (x_test, y_test) = split(*load("diabetes_risk"), seed=2)
    assert metrics["test_positives"] == int(y_test.sum())
    with open(out / "preprocessor.pkl", "rb") as f:
        scaler = pickle.load(f)
    model = keras.saving.load_model(out / "model.keras")
    logits = np.asarray(model.predict(
        scaler.transform(x_test).astype("float32"), verbose=0))[:, 0]
    assert roc_auc_score(y_test, logits) == pytest.approx(
        metrics["test"]["mlp/smote"]["roc_auc"], abs=1e-9)


def test_an_interrupted_rerun_leaves_the_earlier_runs_model(
        first_run, tmp_path, monkeypatch):
    # A rerun into the same folder wrote its checkpoints over model.keras
    # while it trained: interrupted, it left the new run's model beside the
    # earlier run's preprocessor.pkl and metrics.json.
    out = tmp_path / "run"
    shutil.copytree(first_run, out)
    before = {name: (out / name).read_bytes() for name in (
        "model.keras", "model_unbalanced.keras", "preprocessor.pkl",
        "metrics.json")}
    real_peers = recipe.peers
    calls = []

    def interrupted_peers(*args, **kwargs):  # after each method's fit
        calls.append(1)
        if len(calls) == 2:  # after the SMOTE model's fit
            raise KeyboardInterrupt("simulated Ctrl-C")
        return real_peers(*args, **kwargs)

    monkeypatch.setattr(recipe, "peers", interrupted_peers)
    with pytest.raises(KeyboardInterrupt):
        recipe.main(["--quick", "--out", str(out), "--seed", "3"])
    for name, content in before.items():
        assert (out / name).read_bytes() == content, name


def test_scores_match_a_hand_count():
    y = np.array([0, 0, 0, 1, 1])
    score = np.array([0.1, 0.6, 0.2, 0.9, 0.4])
    result = recipe.scores(y, score, threshold=0.5)
    # Predicted [0, 1, 0, 1, 0]: TP 1, FP 1, FN 1 -> F1 1/2; recall 1/2
    # and specificity 2/3 -> balanced accuracy 7/12; 5 of 6 pairs ranked.
    assert result["f1"] == pytest.approx(0.5)
    assert result["balanced_accuracy"] == pytest.approx(7 / 12)
    assert result["roc_auc"] == pytest.approx(5 / 6)


def test_same_seed_and_backend_give_the_same_metrics(first_run, plain_run):
    for name in ("metrics.json", "history.csv"):
        first, second = ((run / name).read_text() for run in (first_run,
                                                              plain_run))
        if name == "metrics.json":  # the second run has no search
            first, second = ({k: v for k, v in json.loads(text)[
                "test"].items() if not k.startswith("mlp_tuned/")}
                for text in (first, second))
        assert first == second


def test_tune_adds_the_searched_mlp_to_the_comparison(first_run):
    metrics = json.loads((first_run / "metrics.json").read_text())
    tuning = first_run / "tuning"
    best = json.loads((tuning / "best_hyperparameters.json").read_text())
    assert list(k for k in metrics["test"] if k.startswith("mlp_tuned/")) \
        == [f"mlp_tuned/{best['balancing']}"]
    assert {"model.keras", "trials.csv", "trials.png", "history.csv"} <= set(
        os.listdir(tuning))


def test_an_interrupted_run_resumes_to_the_uninterrupted_runs_end(
        plain_run, tmp_path, monkeypatch, capsys):
    """Crashed in the second epoch of the SMOTE model's fit (the second
    `fit`), and run again with --resume: the unbalanced model's fit,
    which had ended, trains again, the SMOTE model's goes on from its
    backup, and the run ends with the uninterrupted run's models, history
    and metrics, to the bit. (`--tune`'s search resumes as
    `tune_digits`' does, through the same `common.run_search`, its
    `MLPHyperModel` trials as `tests/tuning` resumes them: checked by
    hand, a run here takes 25 s on jax.)"""
    out = tmp_path / "run"
    flags = ["--quick", "--seed", "2", "--out", str(out)]
    crashed(recipe.main, flags, monkeypatch, epoch=1, batch=1,
            caller=keras.Model, method="fit", call=2)
    assert "backup_smote" in os.listdir(out / common.STAGING)
    capsys.readouterr()
    assert recipe.main(flags + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert "Resuming the smote fit at epoch 2 of 2" in printed
    assert "ROC AUC / F1 / balanced accuracy" in printed
    assert_resumed_as_uninterrupted(
        out, plain_run, {"resumed_from_epoch": {"none": None, "smote": 1}},
        ("test", "epochs_run", "test_positives"),
        ("model.keras", "model_unbalanced.keras"))
    assert (out / "preprocessor.pkl").read_bytes() == (
        plain_run / "preprocessor.pkl").read_bytes()


def test_more_steps_than_the_step_count_holds_is_a_clear_error(tmp_path,
                                                                 capsys):
    """Checked for both fits before the first trains: SMOTE's set is the
    larger, so its steps pass the count first."""
    epochs = 2**31 // 12  # unbalanced: 10 batches of 32; SMOTE: 17
    code = recipe.main(["--epochs", str(epochs), "--out",
                        str(tmp_path / "run")])
    assert code == 1
    said = capsys.readouterr()
    assert re.search(rf"--epochs {epochs} after smote balancing and "
                     r"--batch-size 32 on \d+ training samples make [\d,]+ "
                     r"training steps, more than the optimizers' step "
                     r"count holds", said.err)
    assert "Epoch 1/" not in said.out
    assert not (tmp_path / "run").exists()
