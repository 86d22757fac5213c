import csv
import json
import os

import keras
import numpy as np
import pytest

import kerastrain  # noqa: F401  (registers the layers for load_model)
from recipes import tune_digits as recipe
from recipes.digits_resnet import load_split


@pytest.mark.parametrize("tuner", ["random", "hyperband"])
def test_quick_search_writes_the_best_model_and_the_trials(tmp_path, tuner,
                                                           capsys):
    out = tmp_path / "run"
    assert recipe.main(["--quick", "--out", str(out), "--tuner", tuner,
                        "--epochs", "1" if tuner == "random" else "2"]) == 0
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
    # The fixed knobs stayed within what the recipe allows.
    assert all(t["depth"] in ("8", "14") and t["width"] in ("16", "32")
               for t in trials)

    # model.keras is the best trial's best epoch: its validation accuracy
    # is the trial's score, and it gives the reported test accuracy.
    _, (x_val, y_val), (x_test, y_test) = load_split(0)
    model = keras.saving.load_model(out / "model.keras")

    def accuracy(x, y):
        return np.mean(np.argmax(np.asarray(model.predict(x, verbose=0)),
                                 -1) == y)

    assert accuracy(x_val, y_val) == pytest.approx(scores[0], abs=1e-6)
    assert accuracy(x_test, y_test) == pytest.approx(
        metrics["test_accuracy"], abs=1e-9)
    assert "Top " in capsys.readouterr().out


def test_unknown_tuner_is_a_flag_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(["--tuner", "grid"])
    assert exit_info.value.code == 2
    assert "--tuner" in capsys.readouterr().err
