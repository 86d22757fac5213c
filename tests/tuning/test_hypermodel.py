import keras
import keras_tuner as kt
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from kerastrain.callbacks import CheckpointEarlyStopping
from kerastrain.tuning import MLPHyperModel
from tests.support import CrashAt


class EpochLogs(keras.callbacks.Callback):
    """The logs of every epoch any trial's copy saw, in order (a class
    attribute: KerasTuner deep-copies the callbacks)."""

    seen = []

    def on_epoch_end(self, epoch, logs=None):
        EpochLogs.seen.append((epoch, dict(logs)))


def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x).astype("float32")
    x, xv, y, yv = train_test_split(x, y, test_size=0.3, random_state=0)
    return x, y, xv, yv


class CrashAfter(keras.callbacks.Callback):
    """Interrupts the search (KeyboardInterrupt, as a Ctrl-C) at the end
    of its `count`th epoch, counted over its executions."""

    seen = 0

    def __init__(self, count):
        super().__init__()
        self.count = count

    def on_epoch_end(self, epoch, logs=None):
        CrashAfter.seen += 1
        if CrashAfter.seen == self.count:
            raise KeyboardInterrupt("simulated crash")


def search(folder, crash_after=None, executions=1, objective="val_loss",
           monitor="val_loss", learning_rate=0.3, more_callbacks=(),
           first_callbacks=(), **fit_kwargs):
    """One trial of 6 epochs (with the defaults, its val_loss best at
    epoch 4 and worse at 5); with `crash_after`, interrupted at the end
    of that many epochs, counted over executions (after the backup).
    `first_callbacks` come before the checkpoint, `more_callbacks`
    after it."""
    keras.utils.set_random_seed(0)
    x, y, xv, yv = cancer()
    model_maker = MLPHyperModel(30, 2, units=64, num_layers=2, dropout=0.0,
                                l2=1e-6, batch_norm=False,
                                learning_rate=learning_rate,
                                balancing="none", seed=0)
    tuner = kt.RandomSearch(model_maker, objective=objective, max_trials=1,
                            executions_per_trial=executions,
                            directory=str(folder / "tuner"), seed=1,
                            overwrite=False)
    callbacks = [*first_callbacks, CheckpointEarlyStopping(
        str(folder / "ckpt" / "best.keras"), backup_dir=str(folder / "bk"),
        monitor=monitor, patience=20), EpochLogs(), *more_callbacks]
    if crash_after is not None:
        CrashAfter.seen = 0
        callbacks.append(CrashAfter(crash_after))
    tuner.search(x, y, validation_data=(xv, yv), epochs=6, batch_size=32,
                 verbose=0, callbacks=callbacks, **fit_kwargs)
    return tuner, xv, yv


def test_a_trial_resumed_from_its_backup_is_scored_on_all_its_epochs(
        tmp_path):
    """Keras' History of the resumed `fit` holds only the epochs after the
    crash; KerasTuner scored the trial on those alone (about 5x worse
    here) and kept their best weights as the trial's best model."""
    EpochLogs.seen = []
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, crash_after=5)
    tuner, xv, yv = search(tmp_path)
    epochs = [epoch for epoch, _ in EpochLogs.seen]
    assert epochs == [0, 1, 2, 3, 4, 5]  # resumed at 5, nothing twice
    val_losses = [logs["val_loss"] for _, logs in EpochLogs.seen]
    best = int(np.argmin(val_losses))
    assert best <= 4  # the premise: the best epoch came before the crash
    trial = tuner.oracle.get_best_trials()[0]
    assert trial.score == pytest.approx(val_losses[best], rel=1e-6)
    assert trial.best_step == best
    model = tuner.get_best_models()[0]
    assert model.evaluate(xv, yv, verbose=0)[0] == pytest.approx(
        val_losses[best], rel=1e-4)


def test_a_resumed_trial_trains_as_an_uninterrupted_one(tmp_path,
                                                         monkeypatch):
    """KerasTuner's `search` passes `fit`'s default `shuffle=True`: the
    resumed epochs drew their data order anew (a trial scored 10.00675
    against 10.00566 uninterrupted, in a review), until the backup kept
    the global random states. A key that a callback listed after the
    checkpoint logs (a `LearningRateScheduler`'s `learning_rate`) is in
    the trial's history for every epoch: the epochs before the crash
    lacked it (all but the one a crash in the hooks at its end cut
    short)."""
    def scheduler():
        return keras.callbacks.LearningRateScheduler(
            lambda epoch: 0.3 * 0.9 ** epoch)

    histories, fit = [], MLPHyperModel.fit

    def recorded_fit(*args, **kwargs):
        history = fit(*args, **kwargs)  # what KerasTuner gets
        histories.append(history.history)
        return history

    monkeypatch.setattr(MLPHyperModel, "fit", recorded_fit)
    EpochLogs.seen = []
    search(tmp_path / "uninterrupted", more_callbacks=[scheduler()])
    expected = [logs["val_loss"] for _, logs in EpochLogs.seen]
    EpochLogs.seen = []
    with pytest.raises(KeyboardInterrupt):  # in the middle of epoch 3
        search(tmp_path / "resumed",
               more_callbacks=[scheduler(), CrashAt(3, batch=2)])
    search(tmp_path / "resumed", more_callbacks=[scheduler()])
    assert [epoch for epoch, _ in EpochLogs.seen] == [0, 1, 2, 3, 4, 5]
    assert [logs["val_loss"] for _, logs in EpochLogs.seen] == expected
    uninterrupted, resumed = histories
    for key in uninterrupted:
        assert resumed[key] == uninterrupted[key], key
    assert resumed["learning_rate"] == pytest.approx(
        [0.3 * 0.9 ** epoch for epoch in range(6)])


class SpoilSecondFit(keras.callbacks.Callback):
    """Scales the starting weights of the second `fit` by 30, so that it
    scores far worse than the first."""

    fits = 0

    def on_train_begin(self, logs=None):
        SpoilSecondFit.fits += 1
        if SpoilSecondFit.fits == 2:
            for weight in self.model.weights:
                weight.assign(weight * 30.0)


def test_a_resumed_execution_keeps_a_better_earlier_executions_model(
        tmp_path):
    """KerasTuner's checkpoint of a trial holds the best epoch of all its
    executions; the resumed one's best before its crash, rewritten into
    it, replaced a better model of the execution before."""
    EpochLogs.seen, SpoilSecondFit.fits = [], 0
    kwargs = dict(executions=2, learning_rate=1e-3,
                  more_callbacks=[SpoilSecondFit()])
    with pytest.raises(KeyboardInterrupt):
        # Execution 1 crashes after its last epoch: all its epochs, its
        # best included, come back from the backup.
        search(tmp_path, crash_after=6 + 6, **kwargs)
    before, EpochLogs.seen = EpochLogs.seen, []
    tuner, xv, yv = search(tmp_path, **kwargs)
    # Execution 0 ran again from its start; execution 1 had none left.
    assert [epoch for epoch, _ in EpochLogs.seen] == [0, 1, 2, 3, 4, 5]
    first = [logs["val_loss"] for _, logs in EpochLogs.seen]
    second = [logs["val_loss"] for _, logs in before[6:]]
    assert min(first) < min(second)  # the premise
    model = tuner.get_best_models()[0]
    assert model.evaluate(xv, yv, verbose=0)[0] == pytest.approx(
        min(first), rel=1e-4)


class FlatScore(keras.callbacks.Callback):
    """Logs the same `val_accuracy` at every epoch: the epochs tie."""

    def on_epoch_end(self, epoch, logs=None):
        logs["val_accuracy"] = 0.5


def test_a_resumed_trial_keeps_the_first_of_tied_best_epochs(tmp_path):
    """KerasTuner keeps the weights of the first of tied best epochs; a
    trial resumed past it kept the first epoch after the resume (a quick
    `tune_digits`, whose validation accuracy is a count of 64 digits,
    tied so), as nothing after the resume beat the epoch before it."""
    kwargs = dict(objective="val_accuracy", monitor="val_accuracy",
                  first_callbacks=[FlatScore()])
    expected, _, _ = search(tmp_path / "uninterrupted", **kwargs)
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path / "resumed", crash_after=3, **kwargs)
    tuner, _, _ = search(tmp_path / "resumed", **kwargs)
    trial = tuner.oracle.get_best_trials()[0]
    assert (trial.score, trial.best_step) == (0.5, 0)
    for a, b in zip(tuner.get_best_models()[0].weights,
                    expected.get_best_models()[0].weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))


def test_a_resumed_trial_validated_every_other_epoch_is_scored(tmp_path):
    """`validation_freq=2`: the val_* lists are shorter than the epochs,
    and merging the resumed epochs raised IndexError."""
    EpochLogs.seen = []
    kwargs = dict(objective="loss", monitor="loss", validation_freq=2)
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, crash_after=4, **kwargs)
    tuner, _, _ = search(tmp_path, **kwargs)
    losses = [logs["loss"] for _, logs in EpochLogs.seen]
    assert len(losses) == 6
    trial = tuner.oracle.get_best_trials()[0]
    assert trial.status == "COMPLETED", trial.message
    assert trial.score == pytest.approx(min(losses), rel=1e-6)
    assert trial.best_step == int(np.argmin(losses))


def small_search(folder, objective="val_loss", max_trials=5):
    model_maker = MLPHyperModel(30, 2, units=8, num_layers=1, seed=0)
    return kt.RandomSearch(model_maker, objective=objective,
                           max_trials=max_trials, seed=1, overwrite=True,
                           directory=str(folder))


@pytest.mark.parametrize("labels, error, match", [
    (lambda y: np.stack([y, y, y], 1), ValueError, "shape"),
    (lambda y: y + 5, ValueError, r"in \[0, 2\)"),
    (lambda y: y.astype(str), TypeError, "class indices"),
])
def test_a_data_error_stops_the_search_at_its_first_trial(tmp_path, labels,
                                                          error, match):
    """KerasTuner failed each trial in turn with it and, after 3, raised
    "Number of consecutive failures exceeded the limit of 3"; fewer trials
    than that, and `search` returned as if it had worked."""
    x, y, xv, yv = cancer()
    tuner = small_search(tmp_path)
    with pytest.raises(kt.errors.FatalError) as caught:
        tuner.search(x, labels(y), validation_data=(xv, yv), epochs=1,
                     verbose=0)
    assert isinstance(caught.value, error)
    assert caught.match(match)
    assert len(tuner.oracle.trials) == 1


def test_a_validation_objective_without_validation_data_is_refused_early(
        tmp_path):
    x, y, _, _ = cancer()
    EpochLogs.seen = []
    with pytest.raises(kt.errors.FatalValueError, match=(
            r"objective \['val_loss'\] is a validation metric.*"
            "`validation_data` or `validation_split`")):
        small_search(tmp_path / "a").search(
            x, y, epochs=1, verbose=0, callbacks=[EpochLogs()])
    assert EpochLogs.seen == []  # before any training
    tuner = small_search(tmp_path / "b", objective="loss", max_trials=1)
    tuner.search(x, y, epochs=1, verbose=0)  # a training metric needs none
    assert tuner.oracle.get_best_trials()[0].score > 0


def test_a_validation_objective_validated_every_few_epochs_is_refused(
        tmp_path):
    """KerasTuner reads the History's lists by epoch: every trial trained,
    then failed with KeyError: 'val_loss', and `search` returned."""
    x, y, xv, yv = cancer()
    EpochLogs.seen = []
    with pytest.raises(kt.errors.FatalValueError, match=(
            r"objective \['val_loss'\] .* `validation_freq` must be 1.*"
            "Received: validation_freq=2")):
        small_search(tmp_path).search(
            x, y, validation_data=(xv, yv), validation_freq=2, epochs=2,
            verbose=0, callbacks=[EpochLogs()])
    assert EpochLogs.seen == []  # before any training


def test_features_of_another_width_are_refused_naming_the_argument(
        tmp_path):
    """Keras' error ("expected shape=(None, 10), found (64, 30)") named
    neither `input_dim` nor the argument."""
    x, y, xv, yv = cancer()
    model_maker = MLPHyperModel(10, 2, units=8, num_layers=1, seed=0)
    for data, name in (((x, xv[:, :10]), "x"),
                       ((x[:, :10], xv), "validation_data")):
        tuner = kt.RandomSearch(model_maker, objective="val_loss",
                                max_trials=1, overwrite=True,
                                directory=str(tmp_path / name))
        with pytest.raises(kt.errors.FatalValueError, match=(
                rf"`{name}` must hold rows of input_dim=10 features.*"
                r"Received: features of shape \(\d+, 30\)")):
            tuner.search(data[0], y, validation_data=(data[1], yv),
                         epochs=1, verbose=0)
