import copy
import os

import keras

from kerastrain.callbacks import (CheckpointEarlyStopping,
                                  GradientAccumulation, LRFinder,
                                  WeightHistograms)
from kerastrain.tuning import per_trial_callbacks, trial_id_of


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
    others = [GradientAccumulation(2), LRFinder(),
              keras.callbacks.EarlyStopping()]
    originals = [copy.deepcopy(c.__dict__) for c in others]
    callbacks = [checkpoint, histograms, csv_logger] + others
    for _ in range(2):  # configuring twice changes nothing more
        assert per_trial_callbacks(callbacks, 3) is callbacks
    assert checkpoint.filepath == str(tmp_path / "c" / "3" / "best.keras")
    assert checkpoint.backup_dir == str(tmp_path / "bak" / "3")
    assert checkpoint._backup.backup_dir == str(tmp_path / "bak" / "3")
    assert histograms.log_dir == str(tmp_path / "logs" / "3")
    assert csv_logger.filename == str(tmp_path / "h" / "3" / "log.csv")
    assert [c.__dict__.keys() for c in others] == [
        d.keys() for d in originals]
    # Another trial's copy of the original goes elsewhere.
    other = per_trial_callbacks([CheckpointEarlyStopping(
        str(tmp_path / "c" / "best.keras"))], "4")[0]
    assert os.path.dirname(other.filepath) == str(tmp_path / "c" / "4")
