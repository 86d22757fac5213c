import copy
import os

import keras
import numpy as np
import pytest

from kerastrain.callbacks import GradientAccumulation, SnapshotEnsemble
from tests.support import CrashAt, to_numpy

CYCLE = 5  # steps per cycle: one epoch of 80 samples in batches of 16


def make_model(cycle=CYCLE):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu"),
                              keras.layers.Dense(3)])
    schedule = keras.optimizers.schedules.CosineDecayRestarts(
        0.05, first_decay_steps=cycle, t_mul=1.0, m_mul=1.0)
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32") + (x[:, 1] > 1)


def test_saves_one_snapshot_per_cycle_and_keeps_the_last(tmp_path):
    model, (x, y) = make_model(), data()
    callback = SnapshotEnsemble(CYCLE, tmp_path, keep=3)
    model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0,
              callbacks=[callback])
    names = sorted(os.listdir(tmp_path))
    assert names == ["snapshot_0002.keras", "snapshot_0003.keras",
                     "snapshot_0004.keras",  # and no temporary file left
                     "snapshots.json"]
    names = names[:-1]
    assert callback.snapshots == [str(tmp_path / n) for n in names]
    last = keras.saving.load_model(callback.snapshots[-1])
    for saved, current in zip(last.weights, model.weights):
        np.testing.assert_array_equal(to_numpy(saved), to_numpy(current))
    before_last = keras.saving.load_model(callback.snapshots[-2])
    assert not np.array_equal(to_numpy(before_last.weights[0]),
                              to_numpy(last.weights[0]))

    # A second fit continues the numbering from the optimizer's count.
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
              callbacks=[callback])
    assert [os.path.basename(p) for p in callback.snapshots] == [
        "snapshot_0004.keras", "snapshot_0005.keras", "snapshot_0006.keras"]


def test_snapshots_fall_mid_epoch_and_survive_deepcopy(tmp_path):
    model, (x, y) = make_model(cycle=3), data()
    callback = copy.deepcopy(SnapshotEnsemble(3, tmp_path))
    per_batch = WeightsPerBatch()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0,
              callbacks=[callback, per_batch])
    # 10 steps: cycles end at steps 3, 6 and 9, each snapshot the weights
    # then (not those of an epoch's end, steps 5 and 10).
    assert len(callback.snapshots) == 3
    for path, step in zip(callback.snapshots, (3, 6, 9)):
        saved = keras.saving.load_model(path)
        for a, b in zip(saved.weights, per_batch.weights[step - 1]):
            np.testing.assert_array_equal(to_numpy(a), b)


@pytest.mark.parametrize("loss_scaling", [False, True])
def test_warns_when_the_schedule_restarts_elsewhere(tmp_path, loss_scaling):
    model, (x, y) = make_model(cycle=7), data()
    if loss_scaling:  # what mixed_float16 puts around the optimizer
        model.compile(keras.optimizers.LossScaleOptimizer(model.optimizer),
                      model.loss)
    with pytest.warns(UserWarning, match="restarts after 7 steps"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0,
                  callbacks=[SnapshotEnsemble(CYCLE, tmp_path)])


class WeightsPerBatch(keras.callbacks.Callback):
    """The model's weights at the end of every call of the train step."""

    def on_train_begin(self, logs=None):
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([to_numpy(w).copy() for w in self.model.weights])


def dense_model(steps_per_execution=1, **sgd):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(**{"learning_rate": 0.05, **sgd}),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=steps_per_execution)
    return model


def fit_in_executions(model, callback, x, y, batch_size, per_execution):
    """One epoch with `per_execution` batches per call of the train step.

    Keras' torch trainer only runs one (`steps_per_execution` must be 1);
    there the callback is driven as `fit` drives it on the other backends:
    `on_train_batch_begin(first)`, the batches, `on_train_batch_end(last)`.
    """
    if keras.backend.backend() != "torch":
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False,
                  verbose=0, callbacks=[callback])
        return
    callback.set_model(model)
    callback.on_train_begin()
    batches = len(x) // batch_size
    for first in range(0, batches, per_execution):
        callback.on_train_batch_begin(first)
        for batch in range(first, first + per_execution):
            part = slice(batch * batch_size, (batch + 1) * batch_size)
            model.train_on_batch(x[part], y[part])
        callback.on_train_batch_end(first + per_execution - 1)
    callback.on_train_end()


@pytest.mark.parametrize("cycle_steps, saved_after", [
    # 32 updates in executions of 4: a cycle ending inside one is saved at
    # the execution's end, named by the cycle.
    (6, {1: 8, 2: 12, 3: 20, 4: 24, 5: 32}),
    # Cycles 3 and 4 end in the execution of updates 9-12, 7 and 8 in
    # 21-24: one snapshot each time, the later cycle's.
    (3, {1: 4, 2: 8, 4: 12, 5: 16, 6: 20, 8: 24, 9: 28, 10: 32}),
])
def test_cycles_count_updates_with_several_steps_per_execution(
        tmp_path, cycle_steps, saved_after):
    x, y = data()
    x, y = np.concatenate([x, x[:48]]), np.concatenate([y, y[:48]])
    per_execution = 4
    torch = keras.backend.backend() == "torch"
    model = dense_model(1 if torch else per_execution)
    # The reference: the same training one step at a time, weights
    # recorded after every update.
    reference, recorder = dense_model(), WeightsPerBatch()
    reference.set_weights(model.get_weights())
    reference.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
                  callbacks=[recorder])
    callback = SnapshotEnsemble(cycle_steps, tmp_path)
    if cycle_steps < per_execution and not torch:
        with pytest.warns(UserWarning, match="only the last of them"):
            fit_in_executions(model, callback, x, y, 4, per_execution)
    else:
        fit_in_executions(model, callback, x, y, 4, per_execution)
    assert int(to_numpy(model.optimizer.iterations)) == 32
    assert callback.snapshots == [
        str(tmp_path / f"snapshot_{cycle:04d}.keras") for cycle in saved_after]
    for path, updates in zip(callback.snapshots, saved_after.values()):
        saved = keras.saving.load_model(path)
        for got, expected in zip(saved.weights, recorder.weights[updates - 1]):
            np.testing.assert_allclose(to_numpy(got), expected, atol=1e-5)


@pytest.mark.parametrize("accumulate_with", ["keras", "callback"])
def test_cycles_count_updates_with_gradient_accumulation(
        tmp_path, accumulate_with, recwarn):
    x, y = data()  # 80 samples: 40 batches of 2, 20 updates of 2 batches
    # Keras' own accumulation evaluates the schedule at the batch count,
    # GradientAccumulation at the update count: both restart every 4
    # updates, with no warning.
    first_decay = 8 if accumulate_with == "keras" else 4
    schedule = keras.optimizers.schedules.CosineDecayRestarts(
        0.05, first_decay_steps=first_decay, t_mul=1.0, m_mul=1.0)
    model = dense_model(learning_rate=schedule, gradient_accumulation_steps=2)
    recorder = WeightsPerBatch()
    callbacks = [SnapshotEnsemble(4, tmp_path, keep=3), recorder]
    if accumulate_with == "callback":
        callbacks.append(GradientAccumulation(2))
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0,
              callbacks=callbacks)
    assert not [w for w in recwarn if "SnapshotEnsemble" in str(w.message)]
    assert int(to_numpy(model.optimizer.iterations)) == 20
    # Cycles end after updates 4, 8, ..., 20: batches 8, 16, ..., 40.
    assert [os.path.basename(p) for p in callbacks[0].snapshots] == [
        "snapshot_0003.keras", "snapshot_0004.keras", "snapshot_0005.keras"]
    for path, batches in zip(callbacks[0].snapshots, (24, 32, 40)):
        saved = keras.saving.load_model(path)
        for got, expected in zip(saved.weights,
                                 recorder.weights[batches - 1]):
            np.testing.assert_array_equal(to_numpy(got), expected)
    # The cycle-2 state differs from cycle 3's: the test can tell them apart.
    assert not np.array_equal(recorder.weights[15][0],
                              recorder.weights[23][0])


class UpdateAtEpochBegin(keras.callbacks.Callback):
    """Applies one (zero-gradient) update before an epoch's batches, as
    GradientAccumulation does when it closes an unfinished accumulation."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            variables = self.model.trainable_variables
            self.model.optimizer.apply(
                [keras.ops.zeros(v.shape, v.dtype) for v in variables],
                variables)


def test_a_cycle_ending_between_epochs_is_saved_before_the_next_batch(
        tmp_path):
    x, y = data()  # 5 batches an epoch
    model = dense_model()
    recorder = WeightsPerBatch()
    callback = SnapshotEnsemble(6, tmp_path)
    # Epoch 0: updates 1-5; the 6th, ending cycle 1, before epoch 1's
    # batches; epoch 1: updates 7-11.
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
              callbacks=[UpdateAtEpochBegin(1), callback, recorder])
    assert int(to_numpy(model.optimizer.iterations)) == 11
    assert [os.path.basename(p) for p in callback.snapshots] == [
        "snapshot_0001.keras"]
    saved = keras.saving.load_model(callback.snapshots[0])
    # A zero-gradient SGD step changes nothing: the weights at the end of
    # epoch 0, not those after epoch 1's first batch.
    for got, expected in zip(saved.weights, recorder.weights[4]):
        np.testing.assert_array_equal(to_numpy(got), expected)
    assert not np.array_equal(recorder.weights[4][0], recorder.weights[5][0])


def test_files_of_an_earlier_run_are_never_members_nor_pruned(tmp_path):
    # An earlier, longer run left 16 snapshots in the folder.
    stale = {f"snapshot_{cycle:04d}.keras": f"earlier run {cycle}".encode()
             for cycle in range(1, 17)}
    for name, content in stale.items():
        (tmp_path / name).write_bytes(content)
    model, (x, y) = make_model(), data()
    callback = SnapshotEnsemble(CYCLE, tmp_path, keep=2)
    with pytest.warns(UserWarning, match="holds 16 snapshot file"):
        model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0,
                  callbacks=[callback])
    # This run's last two cycles, both written by it and loadable.
    assert [os.path.basename(p) for p in callback.snapshots] == [
        "snapshot_0002.keras", "snapshot_0003.keras"]
    last = keras.saving.load_model(callback.snapshots[-1])
    for saved, current in zip(last.weights, model.weights):
        np.testing.assert_array_equal(to_numpy(saved), to_numpy(current))
    # keep pruned only this run's cycle 1 (written over the stale file);
    # the earlier run's later cycles are left as they were.
    assert sorted(os.listdir(tmp_path)) == sorted(
        set(stale) - {"snapshot_0001.keras"} | {"snapshots.json"})
    for cycle in range(4, 17):
        name = f"snapshot_{cycle:04d}.keras"
        assert (tmp_path / name).read_bytes() == stale[name]

    # The same callback on a new model (its optimizer at 0): a new
    # training, whose ensemble holds none of the first one's snapshots.
    with pytest.warns(UserWarning, match="holds 15 snapshot file"):
        make_model().fit(x, y, batch_size=16, epochs=1, shuffle=False,
                         verbose=0, callbacks=[callback])
    assert [os.path.basename(p) for p in callback.snapshots] == [
        "snapshot_0001.keras"]
    assert (tmp_path / "snapshot_0003.keras").exists()


def test_a_resume_in_a_new_process_keeps_the_earlier_snapshots(tmp_path):
    # A new model and new callbacks stand for the new process: the
    # training resumes from the backup, the snapshots from snapshots.json.
    (x, y), snaps = data(), tmp_path / "snaps"

    def fit(*extra):
        model = make_model()
        callback = SnapshotEnsemble(CYCLE, snaps, keep=3)
        model.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0,
                  callbacks=[callback, keras.callbacks.BackupAndRestore(
                      str(tmp_path / "backup")), *extra])
        return model, callback

    with pytest.raises(KeyboardInterrupt):
        fit(CrashAt(3))  # after cycles 1-4, keeping 2-4
    model, callback = fit()
    assert [os.path.basename(p) for p in callback.snapshots] == [
        "snapshot_0003.keras", "snapshot_0004.keras", "snapshot_0005.keras"]
    # keep pruned the first training's cycle 2 as well.
    assert sorted(os.listdir(snaps)) == [
        "snapshot_0003.keras", "snapshot_0004.keras", "snapshot_0005.keras",
        "snapshots.json"]
    last = keras.saving.load_model(callback.snapshots[-1])
    for saved, current in zip(last.weights, model.weights):
        np.testing.assert_array_equal(to_numpy(saved), to_numpy(current))


def test_a_manifest_of_other_cycles_is_ignored(tmp_path):
    x, y = data()
    model = make_model(cycle=CYCLE * 2)
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
              callbacks=[SnapshotEnsemble(CYCLE * 2, tmp_path)])
    # Continued with another cycle length: the first callback's snapshot
    # (cycle 1 of 10 steps) is not one of this training's.
    callback = SnapshotEnsemble(CYCLE, tmp_path)
    with pytest.warns(UserWarning, match="holds 1 snapshot file"):
        model.fit(x, y, batch_size=16, initial_epoch=2, epochs=3,
                  shuffle=False, verbose=0, callbacks=[callback])
    assert [os.path.basename(p) for p in callback.snapshots] == [
        "snapshot_0003.keras"]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"cycle_steps": 0}, ValueError, "cycle_steps"),
    ({"cycle_steps": 2.5}, TypeError, "cycle_steps"),
    ({"keep": 0}, ValueError, "keep"),
    ({"directory": None}, TypeError, "directory"),
    ({"directory": ""}, TypeError, "directory"),
    ({"verbose": -1}, ValueError, "verbose"),
    ({"verbose": "loud"}, TypeError, "verbose"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SnapshotEnsemble(**{"cycle_steps": 5, **kwargs})


def test_a_file_where_the_folder_goes_is_refused_at_construction(tmp_path):
    # It failed with FileExistsError at the first snapshot, a cycle into
    # `fit`.
    taken = tmp_path / "taken"
    taken.write_text("a file of the user's")
    with pytest.raises(ValueError, match=r"`directory` must be a folder.*"
                       r"a file is there"):
        SnapshotEnsemble(5, directory=str(taken))
    assert taken.read_text() == "a file of the user's"
    SnapshotEnsemble(5, directory=str(tmp_path))  # a folder: taken
