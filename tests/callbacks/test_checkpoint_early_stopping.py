import copy
import math
import os
import warnings

import keras
import numpy as np
import pytest

from kerastrain.callbacks import (CheckpointEarlyStopping,
                                  GradientAccumulation)
from tests.support import CrashAt, to_numpy


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype("float32")
    y = (x @ rng.standard_normal((6, 1)) + 0.3 * rng.standard_normal(
        (64, 1))).astype("float32")
    return x[:48], y[:48], x[48:], y[48:]


def make_model():
    """Overfits quickly: the validation loss turns up after a few epochs."""
    rng = np.random.default_rng(1)
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(32, "relu"),
                              keras.layers.Dense(1)])
    model.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.3
                       for w in model.weights])
    model.compile(keras.optimizers.Adam(0.05), "mse")
    return model


def weights(model):
    return [to_numpy(w) for w in model.weights]


def fit(model, callbacks, epochs=40):
    x, y, xv, yv = data()
    return model.fit(x, y, validation_data=(xv, yv), batch_size=16,
                     epochs=epochs, shuffle=False, verbose=0,
                     callbacks=callbacks)


def test_saves_the_best_stops_and_restores_it_from_the_file(tmp_path):
    path = str(tmp_path / "best.keras")
    callback = CheckpointEarlyStopping(path, patience=3)
    model = make_model()
    history = fit(model, [callback])
    val = history.history["val_loss"]
    best_epoch = int(np.argmin(val))
    assert callback.best_epoch == best_epoch
    assert len(val) == best_epoch + 1 + 3  # stopped after 3 epochs waited
    assert os.listdir(tmp_path) == ["best.keras"]  # no temporary file left
    on_disk = keras.saving.load_model(path)
    for a, b in zip(weights(model), weights(on_disk)):
        np.testing.assert_array_equal(a, b)
    x, y, xv, yv = data()
    np.testing.assert_allclose(model.evaluate(xv, yv, verbose=0),
                               val[best_epoch], rtol=1e-5)


def test_the_best_weights_come_from_the_file_not_from_memory(tmp_path):
    # A file changed on disk before the end of training is what the model
    # ends with: a copy kept in memory would not show the change.
    path = tmp_path / "best.keras"
    marked = make_model()
    for variable in marked.trainable_variables:
        variable.assign(np.full(variable.shape, 0.125, "float32"))

    class OverwriteTheBest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 5:
                marked.save(path)

    model = make_model()
    fit(model, [CheckpointEarlyStopping(str(path), patience=40),
                OverwriteTheBest()], epochs=6)
    for variable in model.trainable_variables:
        np.testing.assert_array_equal(to_numpy(variable), 0.125)


def test_a_crash_while_saving_a_better_model_keeps_the_previous_file(
        tmp_path):
    path = tmp_path / "best.keras"
    model = make_model()
    real_save, saved = model.save, []

    def save_then_crash(target, *args, **kwargs):
        saved.append(weights(model))
        if len(saved) == 1:
            return real_save(target, *args, **kwargs)
        with open(target, "wb") as half_written:
            half_written.write(b"PK\x03\x04 cut short")
        raise KeyboardInterrupt("simulated Ctrl-C mid-save")

    model.save = save_then_crash
    with pytest.raises(KeyboardInterrupt):
        fit(model, [CheckpointEarlyStopping(str(path), patience=40)])
    assert len(saved) == 2 and os.listdir(tmp_path) == ["best.keras"]
    for a, b in zip(weights(keras.saving.load_model(path)), saved[0]):
        np.testing.assert_array_equal(a, b)


def early_stopping_in_numpy(values, min_delta, patience):
    """Keras' rule, written out: an epoch improves when its value is below
    the best so far by more than `min_delta`; training stops once
    `patience` epochs in a row have not. Returns (best epoch, epochs
    run)."""
    best, best_epoch, wait = np.inf, None, 0
    for epoch, value in enumerate(values):
        if value < best - min_delta:
            best, best_epoch, wait = value, epoch, 0
        else:
            wait += 1
            if wait >= patience:
                return best_epoch, epoch + 1
    return best_epoch, len(values)


def test_min_delta_ignores_small_improvements(tmp_path):
    # The same run without early stopping gives the validation losses.
    losses = fit(make_model(), [], epochs=25).history["val_loss"]
    steps = np.abs(np.diff(losses))
    min_delta = float(np.quantile(steps, 0.6))  # most late steps are below
    best_epoch, epochs_run = early_stopping_in_numpy(losses, min_delta, 3)
    plain_best, plain_run = early_stopping_in_numpy(losses, 0.0, 3)
    assert (best_epoch, epochs_run) != (plain_best, plain_run)  # it matters
    path = str(tmp_path / "best.keras")
    callback = CheckpointEarlyStopping(path, patience=3, min_delta=min_delta)
    model = make_model()
    history = fit(model, [callback], epochs=25)
    assert len(history.history["val_loss"]) == epochs_run
    assert callback.best_epoch == best_epoch
    np.testing.assert_allclose(history.history["val_loss"],
                               losses[:epochs_run], rtol=1e-6)


def test_max_mode_and_restore_off(tmp_path):
    callback = CheckpointEarlyStopping(str(tmp_path / "m.keras"),
                                       monitor="val_loss", mode="max",
                                       patience=2, restore_best=False)
    model = make_model()
    history = fit(model, [callback])
    val = history.history["val_loss"]
    assert callback.best == pytest.approx(max(val))
    assert callback.best_epoch == int(np.argmax(val))
    assert len(val) == callback.best_epoch + 1 + 2
    # Not restored: the model is the last epoch's, the file the best's.
    assert not np.array_equal(weights(model)[0], weights(
        keras.saving.load_model(tmp_path / "m.keras"))[0])


def test_start_from_epoch_only_considers_later_epochs(tmp_path):
    # In "max" mode the validation loss peaks in the first epochs (as a
    # one-cycle run's luckiest high-rate epoch might): excluded here.
    path = str(tmp_path / "late.keras")
    callback = CheckpointEarlyStopping(path, mode="max", patience=3,
                                       start_from_epoch=3)
    model = make_model()
    history = fit(model, [callback], epochs=15)
    val = history.history["val_loss"]
    assert int(np.argmax(val)) < 3  # the unrestricted best is excluded
    best = 3 + int(np.argmax(val[3:]))
    assert callback.best_epoch == best
    assert len(val) == min(15, best + 1 + 3)
    x, y, xv, yv = data()
    np.testing.assert_allclose(
        keras.saving.load_model(path).evaluate(xv, yv, verbose=0),
        val[best], rtol=1e-5)


def test_a_fit_that_never_reaches_start_from_epoch_says_nothing_saved(
        tmp_path):
    """No epoch monitored: no file, no best to reload, and the model keeps
    its last weights; Keras' checkpoint and this one said nothing. Keras
    takes the first monitored epoch as an improvement whatever its value,
    so an epoch reached is saved (and no warning comes)."""
    model = make_model()
    with pytest.warns(UserWarning, match=r"saved no model to .*best\.keras"
                      r": no epoch trained reached start_from_epoch=5"):
        fit(model, [CheckpointEarlyStopping(str(tmp_path / "best.keras"),
                                            start_from_epoch=5)], epochs=3)
    assert os.listdir(tmp_path) == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model, [CheckpointEarlyStopping(str(tmp_path / "best.keras"),
                                            start_from_epoch=2,
                                            baseline=-1.0)], epochs=3)
    assert not [w for w in caught if "saved no model" in str(w.message)]
    assert os.listdir(tmp_path) == ["best.keras"]


def test_missing_monitor_lists_the_available_keys(tmp_path):
    model = make_model()
    x, y, _, _ = data()
    with pytest.raises(ValueError, match=r"val_accuracy.*Available: \['loss'"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[
            CheckpointEarlyStopping(str(tmp_path / "b.keras"),
                                    monitor="val_accuracy")])


def test_validation_every_other_epoch_is_refused_naming_validation_freq(
        tmp_path):
    """Epoch 1 of a `fit` validated every 2 epochs has no `val_loss`."""
    model = make_model()
    x, y, xv, yv = data()
    with pytest.raises(ValueError, match=(
            r"`val_loss`, which is not in the logs\. Available: \['loss'\]"
            r".*`validation_freq` must be 1")):
        model.fit(x, y, epochs=2, verbose=0, validation_data=(xv, yv),
                  validation_freq=2, callbacks=[
                      CheckpointEarlyStopping(str(tmp_path / "b.keras"))])
    assert not (tmp_path / "b.keras").exists()


def test_two_callbacks_of_one_fit_cannot_share_a_backup_folder_or_file(
        tmp_path):
    """Each wrote the same backup files and state file, and a resumed run
    took the other's weights and best (it stopped two epochs early)."""
    def callback(name, monitor, backup):
        return CheckpointEarlyStopping(
            str(tmp_path / f"{name}.keras"), monitor=monitor, patience=3,
            backup_dir=str(tmp_path / backup))

    model = make_model()
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"share backup_dir=.*shared.*"
                       r"`val_loss` and `loss`"):
        fit(model, [callback("a", "val_loss", "shared"),
                    callback("b", "loss", "shared")])
    for got, want in zip(model.get_weights(), before):  # nothing trained
        np.testing.assert_array_equal(got, want)
    # Nor one best-model file: each overwrote the other's best and
    # reloaded it at the end.
    with pytest.raises(ValueError, match=r"share filepath='.*a\.keras' "
                       r"\(monitoring `val_loss` and `loss`\): each would "
                       r"overwrite"):
        fit(model, [callback("a", "val_loss", "one"),
                    callback("a", "loss", "two")])
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    # A folder each trains; and the same callbacks fit again (the claims
    # are the fit's own).
    callbacks = [callback("a", "val_loss", "one"),
                 callback("b", "loss", "two")]
    for _ in range(2):
        history = fit(make_model(), callbacks, epochs=3)
        assert len(history.epoch) == 3


def test_an_interrupted_fit_resumes_and_stops_like_an_uninterrupted_one(
        tmp_path):
    reference = CheckpointEarlyStopping(str(tmp_path / "ref.keras"),
                                        patience=3)
    uninterrupted = make_model()
    expected = fit(uninterrupted, [reference])
    # Nothing to add to a fit that did not resume.
    assert reference.add_resumed_epochs(expected) == []
    assert expected.epoch == list(range(len(reference.epoch_logs)))

    def callback():
        return CheckpointEarlyStopping(
            str(tmp_path / "best.keras"), patience=3,
            backup_dir=str(tmp_path / "backup"))

    model = make_model()
    crash_epoch = reference.best_epoch + 2  # while waiting for improvement
    with pytest.raises(KeyboardInterrupt):
        fit(model, [callback(), CrashAt(crash_epoch, batch=1)])
    assert os.path.exists(tmp_path / "backup" / "early_stopping.json")
    resumed_callback = copy.deepcopy(callback())
    history = fit(make_model(), [resumed_callback])
    # It resumed at the crashed epoch, not at 0, and stopped in step.
    assert history.epoch[0] == crash_epoch
    # The epochs before the crash came back with the backup; Keras'
    # History has the others.
    assert resumed_callback.resumed_epochs == crash_epoch
    assert resumed_callback.epoch_logs[crash_epoch:] == [
        {key: values[i] for key, values in history.history.items()}
        for i in range(len(history.epoch))]
    np.testing.assert_allclose(
        [logs["val_loss"] for logs in resumed_callback.epoch_logs],
        [logs["val_loss"] for logs in reference.epoch_logs], rtol=1e-5)
    assert resumed_callback.stopped_epoch == reference.stopped_epoch
    assert resumed_callback.best_epoch == reference.best_epoch
    # The History of the whole run, as the uninterrupted fit returned it.
    assert resumed_callback.add_resumed_epochs(history) == list(
        range(crash_epoch))
    assert history.epoch == expected.epoch
    assert history.history.keys() == expected.history.keys()
    for key, values in expected.history.items():
        np.testing.assert_allclose(history.history[key], values, rtol=1e-5)
    for a, b in zip(weights(keras.saving.load_model(tmp_path / "best.keras")),
                    weights(keras.saving.load_model(tmp_path / "ref.keras"))):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert not os.path.exists(tmp_path / "backup")  # cleaned up at the end


def test_two_crashes_while_one_epochs_backup_is_written_resume_exactly(
        tmp_path, monkeypatch):
    """The state for the next epoch is written just before the backup: a
    crash between them resumes from the epoch before, whose state is kept
    beside it. Crashing there twice kept only the two states after it
    (the first run's and the second's), so the third run resumed with no
    early-stopping state: the epochs it had waited were forgotten."""
    from kerastrain.callbacks import checkpoint_early_stopping as module

    reference = CheckpointEarlyStopping(str(tmp_path / "ref.keras"),
                                        patience=3)
    fit(make_model(), [reference])
    crash_epoch = reference.best_epoch + 2  # while waiting for improvement

    def callback():
        return CheckpointEarlyStopping(
            str(tmp_path / "best.keras"), patience=3,
            backup_dir=str(tmp_path / "backup"))

    backup_epoch_end = module._Backup.on_epoch_end

    def crash_before_the_backup(self, epoch, logs=None):
        if epoch == crash_epoch:
            raise KeyboardInterrupt("simulated crash")
        backup_epoch_end(self, epoch, logs)

    model = make_model()
    with monkeypatch.context() as patch:
        patch.setattr(module._Backup, "on_epoch_end",
                      crash_before_the_backup)
        for _ in range(2):
            with pytest.raises(KeyboardInterrupt):
                fit(model, [callback()])
    resumed = callback()
    history = fit(model, [resumed])
    assert history.epoch[0] == crash_epoch
    assert resumed.stopped_epoch == reference.stopped_epoch
    assert resumed.best_epoch == reference.best_epoch
    np.testing.assert_allclose(
        [logs["val_loss"] for logs in resumed.epoch_logs],
        [logs["val_loss"] for logs in reference.epoch_logs], rtol=1e-5)


def test_a_per_class_metric_is_left_out_of_the_epoch_logs(tmp_path):
    """`F1Score(average=None)` logs a vector per epoch: `float` of it
    crashed the callback at the first epoch's end."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype("float32")
    y = keras.utils.to_categorical(np.argmax(x[:, :3], axis=1), 3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("adam", keras.losses.CategoricalCrossentropy(
        from_logits=True), metrics=[keras.metrics.F1Score(average=None)])
    callback = CheckpointEarlyStopping(str(tmp_path / "best.keras"),
                                       monitor="loss",
                                       backup_dir=str(tmp_path / "backup"))
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    assert np.shape(history.history["f1_score"][0]) == (3,)
    assert all("f1_score" not in logs for logs in callback.epoch_logs)
    assert [logs["loss"] for logs in callback.epoch_logs] == pytest.approx(
        history.history["loss"])


def test_a_nan_best_resumes_as_it_was(tmp_path):
    """A diverged first epoch (NaN) is Keras' best, which nothing improves
    on; written as JSON's null it would come back as "no best yet", and
    the resumed run would take its first epoch as an improvement."""
    def nan_model():
        model = make_model()  # a NaN output bias: NaN past any activation
        model.layers[-1].bias.assign(np.full((1,), np.nan, "float32"))
        return model

    reference = CheckpointEarlyStopping(str(tmp_path / "ref.keras"),
                                        patience=3)
    fit(nan_model(), [reference])
    assert reference.best_epoch == 0 and reference.stopped_epoch == 3

    def callback():
        return CheckpointEarlyStopping(
            str(tmp_path / "best.keras"), patience=3,
            backup_dir=str(tmp_path / "backup"))

    with pytest.raises(KeyboardInterrupt):
        fit(nan_model(), [callback(), CrashAt(2, batch=1)])
    resumed = callback()
    history = fit(nan_model(), [resumed])
    assert history.epoch[0] == 2
    assert np.isnan(resumed.best)
    assert (resumed.best_epoch, resumed.stopped_epoch) == (0, 3)
    assert np.isnan(resumed.epoch_logs[0]["val_loss"])  # through JSON


@pytest.mark.parametrize("crash", ["first epoch", "after the stop"])
def test_the_same_model_resumes_like_an_uninterrupted_fit(tmp_path, crash):
    """Resumed on the model object the crash left: from a backup of the
    start when the first epoch crashed, and without another epoch when the
    crash came after the decision to stop. `restore_best=False`, so that
    an extra epoch would show in the final weights."""
    reference = CheckpointEarlyStopping(str(tmp_path / "ref.keras"),
                                        patience=2, restore_best=False)
    uninterrupted = make_model()
    fit(uninterrupted, [reference])
    assert reference.stopped_epoch > 0

    def callback():
        return CheckpointEarlyStopping(
            str(tmp_path / "best.keras"), patience=2, restore_best=False,
            backup_dir=str(tmp_path / "backup"))

    model = make_model()
    with pytest.raises(KeyboardInterrupt):
        # At its end the checkpoint, listed before, has decided and backed
        # up.
        fit(model, [callback(), CrashAt(0, batch=1) if crash == "first epoch"
                    else CrashAt(reference.stopped_epoch)])
    resumed = callback()
    history = fit(model, [resumed])
    assert resumed.stopped_epoch == reference.stopped_epoch
    assert resumed.best_epoch == reference.best_epoch
    if crash == "after the stop":
        assert history.epoch == []
    for a, b in zip(weights(model), weights(uninterrupted)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # A later fit starts at its own initial epoch, not where the backup
    # resumed this one.
    assert fit(model, [], epochs=2).epoch == [0, 1]


def random_model(randomness):
    """`make_model` with Keras' seeded Dropout, or kerastrain's DropPath
    beside it (a residual branch), or as it is."""
    from kerastrain.layers import DropPath

    model = make_model()
    if randomness in ("dropout", "drop_path"):
        inputs = keras.Input((6,))
        hidden = keras.layers.Dropout(0.3, seed=5)(model.layers[0](inputs))
        if randomness == "drop_path":
            branch = keras.layers.Dense(32, name="branch")(hidden)
            hidden = hidden + DropPath(0.5, seed=6)(branch)
        model = keras.Model(inputs, model.layers[1](hidden))
        model.compile(keras.optimizers.Adam(0.05), "mse")
    return model


class Batches(keras.utils.PyDataset):
    """Batches of 8 of `x`, `y`: Keras shuffles their order with Python's
    `random`."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // 8

    def __getitem__(self, i):
        return self.x[8 * i:8 * i + 8], self.y[8 * i:8 * i + 8]


@pytest.mark.parametrize("randomness", ["shuffle", "py_dataset",
                                        "torch_loader", "dropout",
                                        "drop_path"])
@pytest.mark.parametrize("resume", ["new model", "same model"])
def test_a_shuffled_fit_with_random_layers_resumes_exactly(
        tmp_path, randomness, resume):
    """Keras' default `shuffle=True` draws each epoch's order from NumPy's
    global state (arrays, on JAX), torch's (arrays, on torch) or Python's
    (a `PyDataset`, on every backend), and a torch `DataLoader` shuffles
    with torch's on any backend; a Dropout draws its masks from its seed
    generator, whose state `save_weights` leaves out. None was in the
    backup: the resumed epochs trained on other batches, or under the
    first epochs' masks again (weights 0.05-0.16 off, on every backend
    for the masks). A restarted script seeds again ("new model"); a
    resume in the same process does not ("same model")."""
    import torch

    x, y, xv, yv = data()

    def seed():
        keras.utils.set_random_seed(0)
        torch.manual_seed(0)  # Keras seeds it on the torch backend only

    def run(model, callbacks):
        train = {"x": x, "y": y}
        if randomness == "py_dataset":
            train = {"x": Batches(x, y)}
        elif randomness == "torch_loader":
            train = {"x": torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(torch.from_numpy(x),
                                               torch.from_numpy(y)),
                batch_size=8, shuffle=True)}
        return model.fit(**train, validation_data=(xv, yv), batch_size=(
            8 if "y" in train else None), epochs=5, verbose=0,
            shuffle=randomness in ("shuffle", "py_dataset"),
            callbacks=callbacks)

    def callback(name):
        return CheckpointEarlyStopping(
            str(tmp_path / f"{name}.keras"), monitor="loss", patience=50,
            restore_best=False, backup_dir=str(tmp_path / name))

    seed()
    reference = random_model(randomness)
    expected = run(reference, [callback("reference")]).history["loss"]
    seed()
    model = random_model(randomness)
    with pytest.raises(KeyboardInterrupt):
        run(model, [callback("resumed"), CrashAt(2, batch=3)])
    if resume == "new model":
        seed()
        model = random_model(randomness)
    resumed = callback("resumed")
    history = run(model, [resumed])
    assert history.epoch == [2, 3, 4]
    assert [logs["loss"] for logs in resumed.epoch_logs] == expected
    for a, b in zip(weights(model), weights(reference)):
        np.testing.assert_array_equal(a, b)


def backup_callback(tmp_path):
    return CheckpointEarlyStopping(str(tmp_path / "best.keras"),
                                   monitor="loss",
                                   backup_dir=str(tmp_path / "backup"))


def crash_in_epoch_1(tmp_path, model):
    """Fits `model` with `backup_callback` until a crash in epoch 1."""
    x, y, _, _ = data()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[
            backup_callback(tmp_path), CrashAt(1, batch=1)])


def test_a_backup_without_random_states_resumes_with_a_warning(tmp_path):
    """A backup written before the random states were kept resumes as it
    did, and says that the run will not end as an uninterrupted one."""
    import h5py

    from kerastrain.callbacks import checkpoint_early_stopping as module

    x, y, _, _ = data()
    crash_in_epoch_1(tmp_path, make_model())
    backups = list((tmp_path / "backup").glob("*.weights.h5*"))
    assert backups  # the latest and the one before
    for path in backups:
        with h5py.File(path, "a") as f:
            del f[module.SEEDS_GROUP], f[module.RANDOM_GROUP]
    with pytest.warns(UserWarning, match=r"holds no random states"):
        history = make_model().fit(x, y, epochs=3, verbose=0,
                                   callbacks=[backup_callback(tmp_path)])
    assert history.epoch == [1, 2]


def test_the_global_random_states_round_trip_through_arrays(monkeypatch):
    """NumPy's, Python's, torch's and (faked: no GPU here) CUDA's states
    come back from the arrays the backup file holds, each as it was."""
    import random

    import torch

    from kerastrain.callbacks import _training_state as state

    cuda = [torch.arange(8, dtype=torch.uint8),
            torch.arange(8, 16, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    random.gauss(0, 1)  # a normal variate waits in Python's state
    saved = state.random_state_from_arrays(
        state.random_state_arrays(state.global_random_state()))
    expected = (np.random.random(3), random.random(), random.gauss(0, 1),
                torch.rand(3))
    state.restore_global_random_state(saved)
    np.testing.assert_array_equal(np.random.random(3), expected[0])
    assert (random.random(), random.gauss(0, 1)) == expected[1:3]
    assert torch.equal(torch.rand(3), expected[3])
    assert [t.tolist() for t in restored] == [t.tolist() for t in cuda]


def test_keys_later_callbacks_log_are_kept_with_the_backup(tmp_path):
    """A `LearningRateScheduler` listed after the checkpoint adds
    `learning_rate` to each epoch's logs after the checkpoint copied them:
    the epochs kept with the backup lacked it after a resume, and the
    last epoch's lacked it in any `fit`."""
    def callbacks(name):
        return [CheckpointEarlyStopping(
                    str(tmp_path / f"{name}.keras"), monitor="loss",
                    patience=50, backup_dir=str(tmp_path / name)),
                keras.callbacks.LearningRateScheduler(
                    lambda epoch: 0.05 * 0.5 ** epoch)]

    reference = callbacks("reference")
    history = fit(make_model(), reference, epochs=5).history
    assert history["learning_rate"] == pytest.approx(
        [0.05 * 0.5 ** epoch for epoch in range(5)])
    expected = [{key: values[epoch] for key, values in history.items()}
                for epoch in range(5)]
    assert reference[0].epoch_logs == expected
    with pytest.raises(KeyboardInterrupt):
        fit(make_model(), [*callbacks("resumed"), CrashAt(3, batch=1)],
            epochs=5)
    resumed = callbacks("resumed")
    fit(make_model(), resumed, epochs=5)
    assert resumed[0].resumed_epochs == 3
    assert [logs["learning_rate"] for logs in resumed[0].epoch_logs] == (
        history["learning_rate"])


def test_a_model_with_other_random_layers_resumes_with_a_warning(tmp_path):
    """A backup's seed states that fit no random layer of the model (one
    Dropout more) are left unused, with a warning, not assigned to the
    wrong layers."""
    keras.utils.set_random_seed(0)
    x, y, _, _ = data()
    crash_in_epoch_1(tmp_path, random_model("dropout"))
    dense, dropout, out = random_model("dropout").layers[1:]
    inputs = keras.Input((6,))
    hidden = keras.layers.Dropout(0.1, seed=6)(dropout(dense(inputs)))
    model = keras.Model(inputs, out(hidden))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    with pytest.warns(UserWarning, match=r"backup holds 1 seed generator "
                      r"states and the model .* has 2"):
        history = model.fit(x, y, epochs=3, verbose=0,
                            callbacks=[backup_callback(tmp_path)])
    assert history.epoch == [1, 2]


def test_the_end_of_training_removes_only_the_backups_own_files(tmp_path):
    # The backup folder is the folder of the best model, with a file of the
    # user's in it: Keras' BackupAndRestore removed the whole folder.
    (tmp_path / "notes.txt").write_text("mine")
    fit(make_model(), [CheckpointEarlyStopping(
        str(tmp_path / "best.keras"), patience=3, backup_dir=str(tmp_path))],
        epochs=3)
    assert sorted(os.listdir(tmp_path)) == ["best.keras", "notes.txt"]


def interrupt_writes_of(monkeypatch, name, count, before_open=False):
    """Makes the `count`-th open for writing of a file whose name contains
    `name` (not a `.bkp` copy) raise KeyboardInterrupt: at the open, or at
    the first write (the file is then open, truncated)."""
    import builtins

    real_open, opened = builtins.open, [0]

    class Interrupted:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            raise KeyboardInterrupt("simulated Ctrl-C mid-write")

    def patched(path, mode="r", *args, **kwargs):
        base = os.path.basename(os.fspath(path))
        hit = "w" in mode and name in base and ".bkp" not in base
        if hit:
            opened[0] += 1
            hit = opened[0] == count
        if hit and before_open:
            raise KeyboardInterrupt("simulated Ctrl-C before the write")
        f = real_open(path, mode, *args, **kwargs)
        return Interrupted(f) if hit else f

    monkeypatch.setattr(builtins, "open", patched)


def resumed_after(tmp_path, monkeypatch, crash, crash_callbacks=(),
                  before_resume=None):
    """Fits 4 epochs with a backup until `crash(patch)`, set up in a
    monkeypatch context (and `crash_callbacks`), interrupts it, calls
    `before_resume()`, resumes in a new model and checks that it ends with
    the uninterrupted run's weights. Returns the resumed fit's History."""
    reference = make_model()
    fit(reference, [CheckpointEarlyStopping(
        str(tmp_path / "ref.keras"), patience=50, restore_best=False)],
        epochs=4)

    def callback():
        return CheckpointEarlyStopping(
            str(tmp_path / "best.keras"), patience=50, restore_best=False,
            backup_dir=str(tmp_path / "backup"))

    with monkeypatch.context() as patch:
        crash(patch)
        with pytest.raises(KeyboardInterrupt):
            fit(make_model(), [callback(), *crash_callbacks], epochs=4)
    if before_resume is not None:
        before_resume()
    model = make_model()
    history = fit(model, [callback()], epochs=4)
    for a, b in zip(weights(model), weights(reference)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert not os.path.exists(tmp_path / "backup")
    return history


@pytest.mark.parametrize("interrupt", [
    "state file, at the open", "state file, mid-write",
    "weights file, mid-write"])
def test_an_interrupt_while_the_backup_is_written_resumes_exactly(
        tmp_path, monkeypatch, interrupt):
    # Keras writes its backup in place: mid-write it left an empty
    # training_metadata.json (the resume failed with JSONDecodeError), and
    # between the weights and it, the resume started an epoch early and
    # trained that epoch twice. Each file is now renamed into place whole,
    # at an epoch's end the weights file last, which holds the epoch.
    from kerastrain.callbacks import checkpoint_early_stopping as module

    def crash(patch):
        if interrupt.startswith("state"):
            # The 3rd write, at the end of epoch 2, before its weights.
            interrupt_writes_of(patch, module.STATE_FILE, 3,
                                before_open="open" in interrupt)
            return
        # The 4th: the backup of the start, then epochs 0, 1, 2.
        real, calls = module._write_variables, []

        def write(f, model):
            calls.append(real(f, model))
            if len(calls) == 4:
                raise KeyboardInterrupt("simulated Ctrl-C mid-write")

        patch.setattr(module, "_write_variables", write)

    history = resumed_after(tmp_path, monkeypatch, crash)
    assert history.epoch[0] == 2  # the weights hold epochs 0 and 1


def test_a_backup_that_keras_save_weights_wrote_resumes_exactly(
        tmp_path, monkeypatch):
    """Until 2026-12-07 the backup's variables were written by Keras'
    `save_weights` (40-60 ms a backup of a ResNet-8 here; packed now): a
    backup left so by an interrupted run still resumes, through Keras'
    `load_weights`, as the uninterrupted run."""
    import h5py

    # The writer of then, kept as the benchmark's reference.
    from bench.backup import save_weights_backup
    from kerastrain.callbacks import checkpoint_early_stopping as module

    def written_by_save_weights():
        [backup] = (tmp_path / "backup").glob("*.weights.h5")
        with h5py.File(backup, "r") as f:
            assert module.VARIABLES_GROUP not in f and "layers" in f

    history = resumed_after(
        tmp_path, monkeypatch, lambda patch: patch.setattr(
            module._Backup, "_save_model", save_weights_backup),
        [CrashAt(2, batch=1)], written_by_save_weights)
    assert history.epoch[0] == 2


def test_a_backup_of_another_model_is_refused_naming_the_shapes(tmp_path):
    crash_in_epoch_1(tmp_path, make_model())
    wider = keras.Sequential([keras.Input((6,)), keras.layers.Dense(33),
                              keras.layers.Dense(1)])
    wider.compile(keras.optimizers.Adam(0.05), "mse")
    x, y, _, _ = data()
    with pytest.raises(ValueError, match=r"backup holds 14 variables of "
                       r"shapes \[\(6, 32\).*has 14 of shapes "
                       r"\[\(6, 33\).*written for another model"):
        wider.fit(x, y, epochs=3, verbose=0,
                  callbacks=[backup_callback(tmp_path)])


def test_a_backup_resumes_only_the_fit_that_wrote_it(tmp_path):
    """A script of two fits sharing a backup_dir (the second continues the
    first), rerun after a crash in the second: the first fit resumed from
    the second's backup, trained nothing, and the second started over
    from those weights, one epoch off, with no word. Now the first fit is
    refused, naming the folder, and the backup stays for the second."""
    x, y, xv, yv = data()

    def stage(model, epochs, initial_epoch, crash=()):
        return model.fit(x, y, validation_data=(xv, yv), batch_size=16,
                         epochs=epochs, initial_epoch=initial_epoch,
                         shuffle=False, verbose=0, callbacks=[
                             CheckpointEarlyStopping(
                                 str(tmp_path / "best.keras"), patience=40,
                                 backup_dir=str(tmp_path / "backup")),
                             *crash])

    model = make_model()
    stage(model, 3, 0)
    with pytest.raises(KeyboardInterrupt):
        stage(model, 6, 3, [CrashAt(4, batch=1)])
    backup = sorted(os.listdir(tmp_path / "backup"))
    rerun = make_model()
    before = rerun.get_weights()
    with pytest.raises(ValueError, match=r"backup_dir='.*backup' was written"
                       r" by a fit of epochs=6 and 3 batches per epoch; "
                       r"this fit has epochs=3 and 3\..*its own"):
        stage(rerun, 3, 0)
    for got, want in zip(rerun.get_weights(), before):  # nothing trained
        np.testing.assert_array_equal(got, want)
    assert sorted(os.listdir(tmp_path / "backup")) == backup
    # A fit of other batches per epoch is refused too; the one that wrote
    # the backup resumes at the crashed epoch.
    with pytest.raises(ValueError, match=r"6 and 3 batches.*6 and 2\."):
        rerun.fit(x, y, batch_size=32, epochs=6, verbose=0, callbacks=[
            CheckpointEarlyStopping(str(tmp_path / "best.keras"),
                                    monitor="loss",
                                    backup_dir=str(tmp_path / "backup"))])
    assert stage(rerun, 6, 3).epoch == [4, 5]


def test_a_crash_in_a_resumed_fit_leaves_later_fits_their_epochs(tmp_path):
    """Keras' resume point, set on the model, was cleared only at the end
    of training: after a crash in a resumed fit every later fit of the
    model, with or without the callback, started there."""
    x, y, _, _ = data()
    model = make_model()
    crash_in_epoch_1(tmp_path, model)
    with pytest.raises(KeyboardInterrupt):  # resumes at 1, crashes again
        model.fit(x, y, epochs=3, verbose=0, callbacks=[
            backup_callback(tmp_path), CrashAt(2, batch=1)])
    assert model.fit(x, y, epochs=3, verbose=0).epoch == [0, 1, 2]
    assert model.fit(x, y, epochs=3, verbose=0, callbacks=[
        CheckpointEarlyStopping(str(tmp_path / "other.keras"),
                                monitor="loss",
                                backup_dir=str(tmp_path / "other"))
    ]).epoch == [0, 1, 2]


def test_a_killed_writes_temporaries_are_removed_at_the_next_fit(tmp_path):
    """SIGKILL mid-write runs no `finally`: the temporary file, as large
    as the model, stayed beside the best model and in the backup folder,
    which the end of training then could not remove."""
    from kerastrain import io

    x, y, _, _ = data()
    model = make_model()
    crash_in_epoch_1(tmp_path, model)
    backup = tmp_path / "backup"
    # Entered, never exited (kept, or closing them would remove them).
    writes = [io.atomic_path(path) for path in (
        tmp_path / "best.keras", backup / "latest.weights.h5",
        backup / "early_stopping.json")]
    assert all(os.path.exists(write.__enter__()) for write in writes)
    history = model.fit(x, y, epochs=3, verbose=0,
                        callbacks=[backup_callback(tmp_path)])
    assert history.epoch == [1, 2]
    assert sorted(os.listdir(tmp_path)) == ["best.keras"]


def test_the_history_of_a_backed_up_fit_writes_as_json(tmp_path):
    """The callbacks' claims on backup folders lived in the `params` the
    History shares: it held the callback, which JSON cannot write."""
    import json

    x, y, _, _ = data()
    history = make_model().fit(x, y, epochs=2, verbose=0,
                               callbacks=[backup_callback(tmp_path)])
    assert json.loads(json.dumps(history.params)) == {
        "verbose": 0, "epochs": 2, "steps": 2}


@pytest.mark.parametrize("kwargs, error, match", [
    ({"filepath": "best.h5"}, ValueError, "filepath"),
    ({"filepath": None}, ValueError, "filepath"),
    ({"monitor": ""}, TypeError, "monitor"),
    ({"mode": "maximum"}, ValueError, "mode"),
    ({"patience": -1}, ValueError, "patience"),
    ({"patience": 1.5}, TypeError, "patience"),
    ({"min_delta": -0.1}, ValueError, "min_delta"),
    ({"start_from_epoch": -1}, ValueError, "start_from_epoch"),
    ({"restore_best": "no"}, TypeError, "restore_best"),  # not True
    ({"backup_dir": 123}, TypeError, "backup_dir"),
    ({"backup_dir": ""}, TypeError, "backup_dir"),
    ({"verbose": "loud"}, TypeError, "verbose"),
    ({"verbose": -1}, ValueError, "verbose"),
    ({"baseline": float("nan")}, ValueError, "baseline"),
    ({"baseline": "0.5"}, TypeError, "baseline"),
    # One file, reloaded at the end: not ModelCheckpoint's per-epoch names.
    ({"filepath": "ckpt/best_{epoch:02d}.keras"}, ValueError,
     r"no `\{\.\.\.\}` placeholders.*best_\{epoch:02d\}"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        CheckpointEarlyStopping(**kwargs)


def test_paths_the_first_save_would_fail_on_are_refused_at_construction(
        tmp_path):
    """Each was accepted, and failed after an epoch of training: a folder
    as `filepath`, a file as `backup_dir`, and `backup_dir` the same path
    as `filepath` (the backup made it a folder)."""
    (tmp_path / "dir.keras").mkdir()
    (tmp_path / "afile").write_text("mine")
    best = str(tmp_path / "best.keras")
    for kwargs, match in [
            ({"filepath": str(tmp_path / "dir.keras")},
             r"`filepath` must name a file .*not a folder.*dir\.keras"),
            ({"filepath": best, "backup_dir": str(tmp_path / "afile")},
             r"`backup_dir` must be a folder.*not an existing file.*afile"),
            ({"filepath": best, "backup_dir": best},
             r"`backup_dir` and `filepath` must differ")]:
        with pytest.raises(ValueError, match=match):
            CheckpointEarlyStopping(**kwargs)
    assert sorted(os.listdir(tmp_path)) == ["afile", "dir.keras"]


def test_keras_flags_and_a_literal_brace():
    # Keras' callbacks take verbose=True; an unpaired brace is no field.
    assert CheckpointEarlyStopping(verbose=True).verbose == 1
    assert CheckpointEarlyStopping(verbose=np.False_).verbose == 0
    CheckpointEarlyStopping("ckpt/best{.keras")


def stop_epoch(losses, patience, baseline):
    """Keras' EarlyStopping rule (mode min) replayed: an improvement resets
    the wait only if it also beats the baseline, and the stop comes at an
    epoch that does not improve, once `patience` epochs have waited."""
    best, wait = math.inf, 0
    for epoch, loss in enumerate(losses):
        wait += 1
        if loss < best:
            best = loss
            if loss < baseline:
                wait = 0
        elif wait >= patience and epoch > 0:
            return epoch
    return None


def test_a_baseline_not_beaten_stops_after_patience_with_the_best_saved(
        tmp_path):
    path = str(tmp_path / "best.keras")
    model = make_model()
    history = fit(model, [CheckpointEarlyStopping(path, patience=3,
                                                  baseline=-1.0)])
    val = history.history["val_loss"]
    # The mse never beats -1: patience runs from the first epoch.
    assert stop_epoch(val, 3, -1.0) == len(val) - 1 <= 5
    on_disk = keras.saving.load_model(path)
    x, y, xv, yv = data()
    np.testing.assert_allclose(on_disk.evaluate(xv, yv, verbose=0),
                               min(val), rtol=1e-5)
    # A baseline beaten at once changes nothing.
    reached = fit(make_model(), [CheckpointEarlyStopping(
        str(tmp_path / "b.keras"), patience=3, baseline=1e9)])
    plain = fit(make_model(), [CheckpointEarlyStopping(
        str(tmp_path / "c.keras"), patience=3)])
    assert reached.history["val_loss"] == plain.history["val_loss"]


def test_default_path_is_under_saved_models():
    assert CheckpointEarlyStopping().filepath.startswith("saved_models/")


class ScriptedValidationLoss(keras.callbacks.Callback):
    """Logs the given `val_loss` at each epoch end (before the callbacks
    that follow it read the logs)."""

    def __init__(self, losses):
        super().__init__()
        self.losses = losses

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.losses[epoch]


@pytest.mark.parametrize("crash", [False, True])
def test_the_best_reloaded_counts_under_the_number_it_was_saved_with(
        tmp_path, crash):
    """The best epoch (the first) ran 5 updates of 1 batch; a
    `GradientAccumulation` then set 4. The reloaded step count is read
    under 1 again: a later `fit` goes on as if the epochs after the best
    had never run, as plain SGD from that point does. Also where a crash
    in the epochs of 4 came between, and a new model resumed from the
    backup."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 4)).astype("float32")
    y = rng.standard_normal((40, 1)).astype("float32")

    def new_model():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(
            0.01, momentum=0.9, gradient_accumulation_steps=2), "mse")
        return model

    def fit_all(model, crash_at=()):
        model.fit(x, y, epochs=4, batch_size=8, shuffle=False, verbose=0,
                  callbacks=[GradientAccumulation({0: 1, 2: 4}),
                             ScriptedValidationLoss([1.0, 2.0, 3.0, 4.0]),
                             CheckpointEarlyStopping(
                                 str(tmp_path / "best.keras"),
                                 backup_dir=str(tmp_path / "backup")),
                             *crash_at])

    model = new_model()
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    reference.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
    if crash:
        with pytest.raises(KeyboardInterrupt):
            fit_all(model, [CrashAt(2, batch=1)])
        model = new_model()
    fit_all(model)
    assert int(to_numpy(model.optimizer.iterations)) == 5
    reference.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    for trained in (model, reference):
        with warnings.catch_warnings():
            # No batches left pending, nor a fit without an update.
            warnings.filterwarnings("error", message="GradientAccumulation")
            trained.fit(x, y, epochs=1, batch_size=8, shuffle=False,
                        steps_per_epoch=1, verbose=0,
                        callbacks=[GradientAccumulation(1)] if (
                            trained is model) else [])
    assert int(to_numpy(model.optimizer.iterations)) == 6
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("accumulation_first", [True, False])
def test_a_crash_in_a_continued_fits_first_epoch_resumes_its_count(
        tmp_path, accumulation_first):
    """A fit continued from a saved model at epoch 1, where the number
    of batches per update goes from 2 to 4, crashes in its first epoch,
    and a new model object (as after a restart) resumes from the backup.
    The start of the fit was backed up after `GradientAccumulation`
    changed the number (when listed first): read under the epoch before's
    number, the step count was converted twice (5 updates instead of 3)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 4)).astype("float32")
    y = rng.standard_normal((12, 1)).astype("float32")
    steps = {0: 2, 1: 4}
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(
        keras.optimizers.schedules.ExponentialDecay(0.05, 1, 0.5),
        gradient_accumulation_steps=2), "mse")
    # 3 batches of 2 per update: one update, one batch pending.
    model.fit(x, y, batch_size=4, shuffle=False, verbose=0,
              callbacks=[GradientAccumulation(steps)])
    saved = str(tmp_path / "epoch1.keras")
    model.save(saved)

    def continued(name, crash=()):
        model = keras.saving.load_model(saved)
        callbacks = [GradientAccumulation(steps), CheckpointEarlyStopping(
            str(tmp_path / f"{name}.keras"), monitor="loss",
            restore_best=False, backup_dir=str(tmp_path / name))]
        if not accumulation_first:
            callbacks.reverse()
        model.fit(x, y, batch_size=4, epochs=3, initial_epoch=1,
                  shuffle=False, verbose=0, callbacks=[*callbacks, *crash])
        return model

    uninterrupted = continued("uninterrupted")
    with pytest.raises(KeyboardInterrupt):
        continued("crashed", [CrashAt(1, batch=1)])
    resumed = continued("crashed")
    assert int(to_numpy(resumed.optimizer.iterations)) == int(
        to_numpy(uninterrupted.optimizer.iterations)) == 3
    for got, want in zip(weights(resumed), weights(uninterrupted)):
        np.testing.assert_allclose(got, want, atol=1e-6)
