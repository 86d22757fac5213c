"""The searching recipes' report (recipes/common/search.py)."""

import csv
import json

from recipes import common


def test_hyperbands_bookkeeping_is_not_reported_as_a_hyperparameter(
        tmp_path):
    """KerasTuner's Hyperband adds `tuner/epochs`, `tuner/round`... to each
    trial's values: scheduling, not knobs. `trials.csv` left them out, and
    so must the best hyperparameters."""
    import types

    import keras_tuner as kt

    oracle = kt.oracles.HyperbandOracle(
        objective=kt.Objective("val_accuracy", "max"), max_epochs=3,
        seed=0)
    oracle._set_project_dir(str(tmp_path / "search"), "p")
    space = kt.HyperParameters()
    space.Choice("units", [4, 8])
    oracle.update_space(space)
    trial = oracle.create_trial("tuner0")
    values = trial.hyperparameters.values
    assert any(name.startswith("tuner/") for name in values)  # it matters
    trial.score = 0.5
    history = tmp_path / "histories" / trial.trial_id / "history.csv"
    history.parent.mkdir(parents=True)
    history.write_text("epoch,loss,val_accuracy\n0,1.0,0.5\n")
    best, _ = common.search_report(types.SimpleNamespace(oracle=oracle),
                                   str(tmp_path),
                                   str(tmp_path / "histories"))
    assert best == {"units": values["units"]}
    assert json.loads((tmp_path / "best_hyperparameters.json").read_text()
                      ) == best
    with open(tmp_path / "trials.csv") as f:
        assert next(csv.reader(f)) == ["trial", "score", "units"]
