import json
import os

import keras
import numpy as np
import pytest

from kerastrain.data import load, split, tabular_preprocessor
from recipes import lr_range_then_one_cycle as recipe


def test_quick_run_writes_reloadable_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    assert recipe.main(["--quick", "--out", str(out), "--seed", "3"]) == 0
    assert {"model.keras", "metrics.json", "history.csv", "lr_finder.png",
            "schedule.png", "learning_curves.png"} == set(os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seed"] == 3 and metrics["backend"] == \
        keras.backend.backend()
    assert 1e-7 < metrics["max_lr"] < 10
    for result in (metrics["test"],
                   metrics["baselines"]["constant_lr_same_budget"]):
        assert 0 <= result["accuracy"] <= 1 and 0 <= result["roc_auc"] <= 1

    # The saved model is the evaluated one: same test accuracy, recomputed.
    (x_train, _), _, (x_test, y_test) = split(*load("breast_cancer"),
                                              seed=3)
    x_test = tabular_preprocessor(x_train).transform(x_test).astype(
        "float32")
    model = keras.saving.load_model(out / "model.keras")
    logits = np.asarray(model.predict(x_test, verbose=0))[:, 0]
    assert np.mean((logits > 0) == y_test) == pytest.approx(
        metrics["test"]["accuracy"], abs=1e-9)
    assert "suggested max_lr" in capsys.readouterr().out
