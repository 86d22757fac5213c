import copy
import os

import keras
import keras_tuner as kt
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator)

from kerastrain.callbacks import (CheckpointEarlyStopping,
                                  GradientAccumulation, LRFinder,
                                  SnapshotEnsemble, WeightHistograms)
from kerastrain.tuning import execution_of, per_trial_callbacks, trial_id_of
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


PLAIN = (type(None), bool, int, float, str, bytes)


def _is_plain(value):
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    return isinstance(value, PLAIN)


def attributes(callback):
    """The callback's attributes: plain values (numbers, strings and
    containers of them) copied, other objects as themselves."""
    return {name: copy.deepcopy(value) if _is_plain(value) else value
            for name, value in vars(callback).items()}


def assert_unchanged(callback, before):
    """Same attribute names; equal plain values; the same objects."""
    after = vars(callback)
    assert after.keys() == before.keys()
    for name, value in before.items():
        if _is_plain(value):
            assert after[name] == value, (type(callback).__name__, name)
        else:
            assert after[name] is value, (type(callback).__name__, name)


def test_file_writers_move_into_a_trial_folder_once(tmp_path):
    checkpoint = CheckpointEarlyStopping(str(tmp_path / "c" / "best.keras"),
                                         backup_dir=str(tmp_path / "bak"))
    histograms = WeightHistograms(str(tmp_path / "logs"), gradients=False)
    csv_logger = keras.callbacks.CSVLogger(str(tmp_path / "h" / "log.csv"))
    snapshots = SnapshotEnsemble(5, str(tmp_path / "snaps"), keep=2)
    # Not at their defaults, so that a reset to a default shows.
    others = [GradientAccumulation(2), LRFinder(start_lr=1e-5, num_steps=50),
              keras.callbacks.EarlyStopping(patience=3, min_delta=0.01)]
    originals = [attributes(c) for c in others]
    # The check below compares values, not only names.
    assert originals[2]["patience"] == 3
    callbacks = [checkpoint, histograms, csv_logger, snapshots] + others
    for _ in range(2):  # configuring twice changes nothing more
        assert per_trial_callbacks(callbacks, 3) is callbacks
    assert checkpoint.filepath == str(tmp_path / "c" / "3" / "best.keras")
    assert checkpoint.backup_dir == str(tmp_path / "bak" / "3")
    assert checkpoint._backup.backup_dir == str(tmp_path / "bak" / "3")
    assert histograms.log_dir == str(tmp_path / "logs" / "3")
    assert csv_logger.filename == str(tmp_path / "h" / "3" / "log.csv")
    assert snapshots.directory == str(tmp_path / "snaps" / "3")
    for callback, before in zip(others, originals):
        assert_unchanged(callback, before)
    # Another trial's copy of the original goes elsewhere.
    other = per_trial_callbacks([CheckpointEarlyStopping(
        str(tmp_path / "c" / "best.keras"))], "4")[0]
    assert os.path.dirname(other.filepath) == str(tmp_path / "c" / "4")


def test_no_trial_leaves_the_callbacks_alone(tmp_path):
    """Outside a search `trial_id_of` gives None: a user's own `fit`
    calling `per_trial_callbacks(callbacks, trial_id_of(callbacks))` must
    then write where the callbacks say, not under "None"."""
    path = str(tmp_path / "c" / "best.keras")
    callbacks = [CheckpointEarlyStopping(path),
                 keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))]
    assert per_trial_callbacks(callbacks, trial_id_of(callbacks)) is (
        callbacks)
    assert callbacks[0].filepath == path
    assert callbacks[1].filename == str(tmp_path / "log.csv")
    assert not (tmp_path / "None").exists()
    assert per_trial_callbacks(None, None) == []
    assert per_trial_callbacks(None, "3") == []


def test_tensorboard_gets_a_trial_folder_unless_keras_tuner_gave_one(
        tmp_path):
    board = keras.callbacks.TensorBoard(str(tmp_path / "tb"))
    per_trial_callbacks([board], "07")
    assert os.path.normpath(board.log_dir) == str(tmp_path / "tb" / "07")
    # Where KerasTuner put it (on TensorFlow), it stays.
    placed = str(tmp_path / "tb" / "07" / "execution1")
    board = keras.callbacks.TensorBoard(placed)
    per_trial_callbacks([board], "07")
    assert board.log_dir == placed


class SaveBestEpoch(keras.callbacks.Callback):
    """Stands for KerasTuner's: one object shared by the executions of one
    run of a trial."""


def test_executions_are_counted_per_run_of_a_trial():
    trial = FakeTrial()

    def execution(run):
        tuner_callback = FakeTunerCallback()
        tuner_callback.trial = trial
        callbacks = [LRFinder(), tuner_callback, run]
        first = execution_of(callbacks)
        assert execution_of(callbacks) == first  # asked twice
        return first

    run = SaveBestEpoch()
    assert [execution(run) for _ in range(3)] == [0, 1, 2]
    # The trial run again (a retry): its executions count from 0 again.
    again = SaveBestEpoch()
    assert [execution(again) for _ in range(2)] == [0, 1]
    assert execution_of([LRFinder()]) is None


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
        assert sorted(os.listdir(folder)) == ["snapshot_0002.keras",
                                              "snapshots.json"]
        # Each file is its own trial's model (2 and 6 hidden units).
        units = trial.hyperparameters.get("units")
        saved = keras.saving.load_model(folder / "snapshot_0002.keras")
        assert saved.count_params() == 6 * units + 1
    assert {t.hyperparameters.get("units") for t in trials} == {2, 6}


def test_each_execution_of_a_trial_gets_its_own_files(tmp_path):
    """Two trials of two executions each: every execution writes its own
    history, histograms and TensorBoard run (KerasTuner's own layout for
    TensorBoard, `<log_dir>/<trial_id>/execution<n>`), on every backend."""
    x = np.random.default_rng(0).standard_normal((16, 4)).astype("float32")
    y = x[:, :1]
    tuner = kt.RandomSearch(TinyHyperModel(), objective="loss",
                            max_trials=2, executions_per_trial=2, seed=0,
                            directory=str(tmp_path / "tuner"),
                            overwrite=True)
    tuner.search(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[
        keras.callbacks.CSVLogger(str(tmp_path / "csv" / "history.csv")),
        WeightHistograms(str(tmp_path / "logs"), gradients=False,
                         plot=False),
        keras.callbacks.TensorBoard(str(tmp_path / "tb"))])
    ids = sorted(tuner.oracle.trials)
    executions = ["execution0", "execution1"]
    for top in ("csv", "logs", "tb"):
        assert sorted(os.listdir(tmp_path / top)) == ids
        for trial_id in ids:
            assert sorted(os.listdir(tmp_path / top / trial_id)) == (
                executions)
    for trial_id in ids:
        for execution in executions:
            # One epoch each: a shared file would hold the last one only,
            # a shared event folder two runs.
            with open(tmp_path / "csv" / trial_id / execution /
                      "history.csv") as f:
                assert [line.split(",")[0] for line in f][1:] == ["0"]
            folder = tmp_path / "logs" / trial_id / execution
            assert len(os.listdir(folder)) == 1
            events = EventAccumulator(str(folder),
                                      size_guidance={"histograms": 0})
            events.Reload()
            tag = events.Tags()["histograms"][0]
            assert [e.step for e in events.Histograms(tag)] == [0, 1]
            board = tmp_path / "tb" / trial_id / execution
            assert "train" in os.listdir(board)


@pytest.mark.parametrize("call", [
    lambda callbacks: trial_id_of(callbacks),
    lambda callbacks: execution_of(callbacks),
    lambda callbacks: per_trial_callbacks(callbacks, "07"),
])
def test_a_callback_alone_is_refused_naming_callbacks(call):
    # "'History' object is not iterable", from inside.
    with pytest.raises(TypeError, match=r"`callbacks` must be a list of "
                       r"callbacks, or None. Received: callbacks=<"):
        call(keras.callbacks.History())
    call(None)
    call(())
