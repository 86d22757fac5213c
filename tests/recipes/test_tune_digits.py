import csv
import json
import os

import keras
import numpy as np
import pytest

import kerastrain  # noqa: F401  (registers the layers for load_model)
import kerastrain.tuning._hypermodel
from recipes import tune_digits as recipe
from recipes.digits_resnet import load_split
from tests.recipes.common.runs import (assert_resumed_as_uninterrupted,
                                       crashed, finished_run)

# Two trials of two epochs, 5 steps each.
QUICK_FLAGS = ["--quick", "--epochs", "2"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    return finished_run(tmp_path_factory, recipe.main, QUICK_FLAGS)


def test_quick_search_writes_the_best_model_and_the_trials(quick_run):
    out = quick_run
    assert {"model.keras", "best_hyperparameters.json", "trials.csv",
            "trials.png", "history.csv", "learning_curves.png",
            "metrics.json", "confusion_matrix.png"} <= set(os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == metrics["trials"] >= 2
    scores = [float(t["score"]) for t in trials]
    assert scores == sorted(scores, reverse=True)  # best first
    assert trials[0]["trial"] == metrics["best_trial"]
    best = json.loads((out / "best_hyperparameters.json").read_text())
    assert best == metrics["best_hyperparameters"]
    # The fixed knobs stayed within what the recipe allows; --quick
    # searches the narrow ResNets of the other image recipes' quick runs.
    assert all(t["depth"] in ("8", "14")
               and t["width"] == str(recipe.common.QUICK_WIDTH)
               for t in trials)

    # model.keras is the best trial's best epoch: its validation accuracy
    # is the trial's score, and it gives the reported test accuracy.
    _, (x_val, y_val), (x_test, y_test) = load_split(0, quick=True)
    model = keras.saving.load_model(out / "model.keras")

    def accuracy(x, y):
        return np.mean(np.argmax(np.asarray(model.predict(x, verbose=0)),
                                 -1) == y)

    assert accuracy(x_val, y_val) == pytest.approx(scores[0], abs=1e-6)
    assert accuracy(x_test, y_test) == pytest.approx(
        metrics["test_accuracy"], abs=1e-9)
    assert metrics["resumed_after_trials"] is None
    # The trials' backups went with their ends.
    assert sorted(os.listdir(out / "search")) == [
        "checkpoints", "histories", "search"]


@pytest.mark.parametrize("trial, epoch, said", [
    (1, None, "1 trial(s) ended; trial 1 runs again from its start"),
    (0, 1, "0 trial(s) ended; trial 0 resumes at epoch 2")])
def test_an_interrupted_search_resumes_to_the_uninterrupted_searchs_end(
        quick_run, tmp_path, monkeypatch, capsys, trial, epoch, said):
    """Crashed in the second trial before its training began (no backup:
    it runs again, the first trial's results stay), or in the first
    trial's second epoch (it resumes from the backup of its first, though
    KerasTuner saves its own state at a trial's end only), and run again
    with --resume: the search ends with the uninterrupted one's trials,
    best model, the trials' checkpoints (KerasTuner's too) and histories,
    to the bit. (A crash in the second trial's second epoch resumes as
    the first trial's does, after the first trial's results: checked by
    hand, as its 10-20 s a backend would strain the suite's budget.)"""
    out = tmp_path / "run"
    flags = QUICK_FLAGS + ["--out", str(out)]
    crashed(recipe.main, flags, monkeypatch, epoch=epoch, batch=1,
            caller=kerastrain.tuning._hypermodel, call=trial + 1)
    capsys.readouterr()
    assert recipe.main(flags + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert said in printed
    assert "Top 2 of 2 trials" in printed
    assert_resumed_as_uninterrupted(
        out, quick_run, {"resumed_after_trials": trial},
        ("test_accuracy", "best_trial", "best_val_accuracy",
         "best_hyperparameters", "trials"),
        ["model.keras", *(f"search/checkpoints/{trial}/best.keras"
                          for trial in "01")])
    for name in ("trials.csv", *(f"search/histories/{trial}/history.csv"
                                 for trial in "01")):
        assert (out / name).read_text() == (quick_run / name).read_text()
    for trial in "01":
        path = f"search/search/trial_{trial}/checkpoint.weights.h5"
        resumed, expected = (h5_arrays(folder / path)
                             for folder in (out, quick_run))
        assert resumed.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(resumed[key], expected[key])


def h5_arrays(path):
    """Every dataset of an HDF5 file (a weights file), by its path."""
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "1", "--batch-size", "1024"], "--epochs 1"),
    # 1,257 digits in whole batches of 500: 2 steps a round of one epoch.
    (["--tuner", "hyperband", "--epochs", "9", "--batch-size", "500"],
     "a Hyperband round of 1 epoch"),
    # Not one whole batch.
    (["--epochs", "1", "--batch-size", "2048"],
     "--batch-size 2048 is more than the 1257 training samples"),
])
def test_too_few_steps_for_one_cycle_is_an_error_before_searching(
        tmp_path, capsys, flags, message):
    # One-cycle is among the schedules searched; its trials would fail and
    # be dropped from the search, which then exited 0.
    out = tmp_path / "run"
    assert recipe.main(flags + ["--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert message in error and ("training steps" in error
                                 or "whole batches" in error)
    assert not out.exists()


def test_unknown_tuner_is_a_flag_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(["--tuner", "grid"])
    assert exit_info.value.code == 2
    assert "--tuner" in capsys.readouterr().err


@pytest.mark.parametrize("epochs", [5, 1])
@pytest.mark.parametrize("name, tuner_class, max_trials", [
    ("random", "RandomSearch", 2), ("bayesian", "BayesianOptimization", 2),
    ("hyperband", "Hyperband", None)])
def test_tuner_flag_picks_the_keras_tuner(tmp_path, name, tuner_class,
                                          max_trials, epochs):
    import argparse

    import keras_tuner

    from kerastrain.tuning import ResNetHyperModel

    args = argparse.Namespace(tuner=name, max_trials=9, epochs=7, seed=3,
                              quick=True)
    tuner = recipe.common.make_tuner(
        ResNetHyperModel((8, 8, 1), 10, depth=8), args,
        ("val_accuracy", "max"), str(tmp_path), epochs=epochs)
    assert isinstance(tuner, getattr(keras_tuner, tuner_class))
    oracle = tuner.oracle
    assert oracle.objective.name == "val_accuracy"
    assert oracle.objective.direction == "max"
    if name == "hyperband":
        # The most a trial trains (diabetes_risk caps it below --epochs),
        # 1 too (it was raised to 2, so trials trained more than asked).
        assert oracle.max_epochs == epochs
    else:
        assert oracle.max_trials == max_trials  # --quick: 2 of 9
