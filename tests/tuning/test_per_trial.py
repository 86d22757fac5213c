import copy
import os

import keras
import keras_tuner as kt
import numpy as np

from kerastrain.callbacks import (CheckpointEarlyStopping,
                                  GradientAccumulation, LRFinder,
                                  SnapshotEnsemble, WeightHistograms)
from kerastrain.tuning import per_trial_callbacks, trial_id_of
from tests.tuning import spies


class FakeTrial:
    trial_id = "07"


class FakeTunerCallback(keras.callbacks.Callback):
    """What KerasTuner's `TunerCallback` holds."""

    def __init__(self):
        super().__init__()
        self.tuner, self.trial = object(), FakeTrial()


def test_trial_id_is_read_from_the_tuners_callback():
    assert trial_id_of([LRFinder(), FakeTunerCallback()]) == "07"
    assert trial_id_of([LRFinder()]) is None
    assert trial_id_of(None) is None


def test_file_writers_move_into_a_trial_folder_once(tmp_path):
    checkpoint = CheckpointEarlyStopping(str(tmp_path / "c" / "best.keras"),
                                         backup_dir=str(tmp_path / "bak"))
    histograms = WeightHistograms(str(tmp_path / "logs"), gradients=False)
    csv_logger = keras.callbacks.CSVLogger(str(tmp_path / "h" / "log.csv"))
    snapshots = SnapshotEnsemble(5, str(tmp_path / "snaps"), keep=2)
    others = [GradientAccumulation(2), LRFinder(),
              keras.callbacks.EarlyStopping()]
    originals = [copy.deepcopy(c.__dict__) for c in others]
    callbacks = [checkpoint, histograms, csv_logger, snapshots] + others
    for _ in range(2):  # configuring twice changes nothing more
        assert per_trial_callbacks(callbacks, 3) is callbacks
    assert checkpoint.filepath == str(tmp_path / "c" / "3" / "best.keras")
    assert checkpoint.backup_dir == str(tmp_path / "bak" / "3")
    assert checkpoint._backup.backup_dir == str(tmp_path / "bak" / "3")
    assert histograms.log_dir == str(tmp_path / "logs" / "3")
    assert csv_logger.filename == str(tmp_path / "h" / "3" / "log.csv")
    assert snapshots.directory == str(tmp_path / "snaps" / "3")
    assert [c.__dict__.keys() for c in others] == [
        d.keys() for d in originals]
    # Another trial's copy of the original goes elsewhere.
    other = per_trial_callbacks([CheckpointEarlyStopping(
        str(tmp_path / "c" / "best.keras"))], "4")[0]
    assert os.path.dirname(other.filepath) == str(tmp_path / "c" / "4")


class TinyHyperModel(kt.HyperModel):
    """A user's own HyperModel, configuring its callbacks per trial."""

    def build(self, hp):
        model = keras.Sequential([
            keras.Input((4,)),
            keras.layers.Dense(hp.Choice("units", [2, 6]), "relu"),
            keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.05), "mse")
        return model

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        per_trial_callbacks(callbacks, trial_id_of(callbacks))
        return model.fit(*args, callbacks=callbacks, **kwargs)


def test_snapshots_of_each_trial_stay_in_its_folder(tmp_path):
    spies.reset()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype("float32")
    y = x[:, :1] - x[:, 1:2]
    snapshots = spies.SnapshotSpy(3, str(tmp_path / "snaps"), keep=1)
    tuner = kt.RandomSearch(TinyHyperModel(), objective="loss",
                            max_trials=2, seed=0,
                            directory=str(tmp_path / "tuner"), overwrite=True)
    # 8 updates a trial: cycles end after 3 and 6, keep=1 leaves cycle 2.
    tuner.search(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
                 callbacks=[snapshots])
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: int(
        t.trial_id))
    ids = [t.trial_id for t in trials]
    assert sorted(os.listdir(tmp_path / "snaps")) == sorted(ids)
    runs = spies.SnapshotSpy.runs
    assert len(runs) == 2 and snapshots.directory == str(tmp_path / "snaps")
    for trial, run in zip(trials, runs):
        folder = tmp_path / "snaps" / trial.trial_id
        assert run["directory"] == str(folder)
        assert run["snapshots"] == [str(folder / "snapshot_0002.keras")]
        # The later trial's `keep` left the earlier trial's file alone.
        assert os.listdir(folder) == ["snapshot_0002.keras"]
        # Each file is its own trial's model (2 and 6 hidden units).
        units = trial.hyperparameters.get("units")
        saved = keras.saving.load_model(folder / "snapshot_0002.keras")
        assert saved.count_params() == 6 * units + 1
    assert {t.hyperparameters.get("units") for t in trials} == {2, 6}
