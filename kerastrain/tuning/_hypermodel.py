"""What the toolkit's HyperModels share: knobs read once per trial, and a
`fit` that lays the schedule over exactly the updates it runs, with the
toolkit's callbacks configured per trial."""

import contextlib
import glob
import json
import math
import os

import keras
import keras_tuner
import numpy as np

from kerastrain._validation import (MAX_STEPS, check_bool,
                                    check_callbacks, check_epochs,
                                    check_float, check_int, is_dataset)

from kerastrain.callbacks import (CheckpointEarlyStopping,
                                  GradientAccumulation, LRFinder,
                                  LRFinderResult, WeightHistograms)
from kerastrain.data.passes import fit_passes, passes
from kerastrain.io import atomic_path, write_json
from kerastrain.tuning._knob import knob_values
from kerastrain.tuning.per_trial import (_tuner_callback, execution_of,
                                         per_trial_callbacks, trial_id_of)

# `build` runs before the data is seen, so it lays the trial's schedule
# over this many updates; `fit` recompiles with the exact number.
NOMINAL_STEPS = 1000
# A trial's `LRFinder` results, in its folder of the tuner's project.
LR_FINDER_FILE = "lr_finder.json"


def batches_per_epoch(x, batch_size):
    """Batches in one pass over NumPy `x` or a `tf.data.Dataset`; None for
    a dataset of unknown or infinite length (`fit` then needs
    `steps_per_epoch`)."""
    if not is_dataset(x):
        return math.ceil(len(x) / batch_size)
    batches = int(x.cardinality())
    if batches == 0:
        raise ValueError("The training dataset is empty: it gives no batch.")
    return batches if batches > 0 else None  # -1 infinite, -2 unknown


def scheduled_updates(batches, epochs, initial_epoch=0, accumulation=None):
    """How many times the learning-rate schedule advances in a `fit` of
    `epochs - initial_epoch` epochs of `batches` batches each.

    Once per batch, or once per applied update with a
    `GradientAccumulation` callback, whose number of batches per update may
    change by epoch; the callback replays its own bookkeeping
    (`GradientAccumulation.count_updates`: an unfinished accumulation at a
    change is applied as one update).

    Example:

    >>> scheduled_updates(10, epochs=3)
    30
    >>> scheduled_updates(10, epochs=4, initial_epoch=2,
    ...                   accumulation=GradientAccumulation({0: 1, 3: 4}))
    12
    """
    if accumulation is None:
        return batches * (epochs - initial_epoch)
    return accumulation.count_updates(batches, epochs, initial_epoch)


def accumulation_steps(accumulation, initial_epoch):
    """`gradient_accumulation_steps` to create the optimizer with for a
    `GradientAccumulation` callback (which then sets it per epoch); Keras
    wants >= 2."""
    return max(2, accumulation.steps_at(initial_epoch))


def check_validation_split(validation_split):
    """`validation_split` as a float in [0, 1); None means 0 (none)."""
    if validation_split is None:
        return 0.0
    return check_float("validation_split", validation_split, low=0.0,
                       high=1.0, high_closed=False)


def split_validation(x, y, validation_split):
    """Keras' `validation_split`, done before any resampling: the last
    `validation_split` of the samples, unshuffled, as Keras takes them.
    Both parts must hold samples."""
    if is_dataset(x):
        raise ValueError("`validation_split` needs NumPy arrays; with a "
                         "dataset pass `validation_data`.")
    x, y = np.asarray(x), np.asarray(y)
    at = int(len(x) * (1.0 - validation_split))
    if at == 0 or at == len(x):
        raise ValueError(
            f"Argument `validation_split` leaves {at} of the {len(x)} "
            "samples for training and the rest for validation; both need "
            "at least one. Received: "
            f"validation_split={validation_split!r}")
    return (x[:at], y[:at]), (x[at:], y[at:])


class ToolkitHyperModel(keras_tuner.HyperModel):
    """Base of the toolkit's HyperModels.

    A subclass lists its `Knob`s and says how to build, compile and feed
    the model: `build_model(values)`, `compile_model(model, values,
    total_steps, gradient_accumulation_steps)`, `training_data(...)`, and
    `inputs(x)` and `labels(y)` (a batch as the compiled model sees it).
    Here: `build(hp)` registers every knob (so that the tuner's first look
    at the space sees all of them; with `tunable=False`, KerasTuner hands
    `build` a copy, and only hyperparameters declared beforehand are
    searched) and compiles for `NOMINAL_STEPS`; `fit` reads the same values
    without registering anything, gives the callbacks their per-trial
    files, recompiles with the schedule spanning exactly the updates of
    this call (those of a Hyperband round), and trains.

    Each trial's model is built under the global dtype policy in force
    when the HyperModel was created (`mixed_float16`, say): KerasTuner
    calls `keras.backend.clear_session()` before every trial, which resets
    the policy to float32.

    After a search, `lr_finder_results[trial_id]` holds, for each trial
    that ran an `LRFinder`, a list of its `LRFinderResult`s, one per
    execution (`executions_per_trial`), in order: `[result]` with one.
    Each trial also writes them to `lr_finder.json` in its folder of the
    tuner's project (`trial_<id>/`), and a search resumed in a new
    process reads back those of the trials finished before
    (`load_lr_finder_results`).
    """

    def __init__(self, knobs, name=None, tunable=True):
        if name is not None and not isinstance(name, str):
            raise TypeError(
                "Argument `name` must be None or a string. Received: "
                f"name={name!r}")
        super().__init__(name=name, tunable=check_bool("tunable", tunable))
        self.knobs = list(knobs)
        self.lr_finder_results = {}
        self._searched = set()  # the trial's varied knobs, set by `fit`
        self._dtype_policy = keras.config.dtype_policy().name

    def trial_values(self, hp):
        """`{knob: value}` for the trial `hp` describes (registering the
        knobs with `hp` where they are new)."""
        return knob_values(self.knobs, hp)

    def inputs(self, x):
        """Features `x` as the compiled model sees them (the probe of a
        `WeightHistograms` goes through this and `labels`)."""
        raise NotImplementedError

    def build(self, hp):
        values = self.trial_values(_checked_hp(hp))
        keras.config.set_dtype_policy(self._dtype_policy)
        model = self.build_model(values)
        self.compile_model(model, values, NOMINAL_STEPS)
        # Built slots let the tuner load a trial's checkpoint (best model,
        # Hyperband's next round) without Keras skipping the optimizer.
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, x=None, y=None, batch_size=32, epochs=1,
            callbacks=None, validation_split=0.0, validation_data=None,
            initial_epoch=0, steps_per_epoch=None, **kwargs):
        """Trains `model` for the trial `hp`, like `model.fit`.

        `x`, `y`, `validation_data` and `validation_split` (a float in
        [0, 1), the last part of NumPy `x`, `y`) are taken as the subclass
        documents; other keyword arguments go to `model.fit`. With
        `steps_per_epoch`, a training `tf.data.Dataset` is repeated, so
        that every epoch runs that many batches and the schedule ends at
        the last of them. Without it, where the training and validation
        data the subclass makes are finite `tf.data.Dataset`s,
        `kerastrain.data.fit_passes` reads a pass of each per epoch from
        one iterator per `fit` (Keras would start them anew every epoch,
        slow on jax). Errors in the arguments and the data, the same for
        every trial, are KerasTuner's `FatalValueError` and
        `FatalTypeError` (a `ValueError` and a `TypeError`): the search
        stops with them at once, where a plain one fails each trial in
        turn. So does a validation metric as the objective without
        validation data, or with a `validation_freq` other than 1. Errors
        of a searched knob's value fail the trial alone (`per_trial`).
        Returns the `History`; after a resume from a
        `CheckpointEarlyStopping` backup, with the epochs before it too.
        """
        # Read from a copy, registering nothing: on the trial's own `hp`
        # the oracle would add to its space the knobs of a `tunable=False`
        # HyperModel (KerasTuner hands `build` a copy for that reason);
        # `build` registered them where they belong.
        values = self.trial_values(_checked_hp(hp).copy())
        with _fatal():
            self._searched = _searched_names(_search_space(hp, callbacks))
            callbacks, fit_kwargs, batches, span = self._checked_fit_args(
                values, x, y, batch_size, epochs, callbacks,
                validation_split, validation_data, initial_epoch,
                steps_per_epoch, kwargs)
        trial_id = trial_id_of(callbacks)
        initial_epoch, epochs = span["initial_epoch"], span["epochs"]
        accumulation = _first(callbacks, GradientAccumulation)
        accumulate = None if accumulation is None else accumulation_steps(
            accumulation, initial_epoch)
        total_steps = scheduled_updates(steps_per_epoch or batches, epochs,
                                        initial_epoch, accumulation)
        self.compile_model(model, values, total_steps, accumulate)
        self._probe_as_trained(callbacks)
        saver = _tuner_checkpoint(callbacks)
        saved_before = None if saver is None else saver.best_value
        if steps_per_epoch is None and _in_passes(fit_kwargs):
            history = fit_passes(model, **fit_kwargs, **span)
        else:
            history = model.fit(steps_per_epoch=steps_per_epoch,
                                **fit_kwargs, **span)
        checkpoint = _first(callbacks, CheckpointEarlyStopping)
        if checkpoint is not None and checkpoint.resumed_epochs:
            _add_resumed_epochs(history, checkpoint, initial_epoch, saver,
                                saved_before)
        finder = _first(callbacks, LRFinder)
        if trial_id is not None and finder is not None and (
                finder.result is not None):
            tuner = _tuner_callback(callbacks).tuner
            self.load_lr_finder_results(tuner)  # those of a resumed search
            # Position n is execution n; a trial run again (a retry)
            # starts from execution 0 again.
            results = self.lr_finder_results.setdefault(trial_id, [])
            results[execution_of(callbacks):] = [finder.result]
            write_json({"executions": [r.get_config() for r in results]},
                       os.path.join(tuner.get_trial_dir(trial_id),
                                    LR_FINDER_FILE))
        return history

    def load_lr_finder_results(self, tuner):
        """Reads into `lr_finder_results` the `LRFinder` results that the
        trials of `tuner`'s search wrote to its project folder, for the
        trials not there yet: after a restart, or for a finished search
        reloaded in a new process (a tuner made again with
        `overwrite=False`). `fit` calls it before adding a trial's results.

        Args:
            tuner: A KerasTuner tuner.

        Returns:
            `lr_finder_results`, `{trial_id: [LRFinderResult, ...]}`.
        """
        if not isinstance(tuner, keras_tuner.engine.base_tuner.BaseTuner):
            raise TypeError(
                "Argument `tuner` must be a KerasTuner tuner (the search's, "
                "made with its `directory` and `project_name`). Received: "
                f"tuner={tuner!r}")
        pattern = os.path.join(glob.escape(str(tuner.project_dir)),
                               "trial_*", LR_FINDER_FILE)
        for path in sorted(glob.glob(pattern)):
            trial_id = os.path.basename(os.path.dirname(path))[
                len("trial_"):]
            if trial_id not in self.lr_finder_results:
                with open(path, encoding="utf-8") as f:
                    executions = json.load(f)["executions"]
                self.lr_finder_results[trial_id] = [
                    LRFinderResult.from_config(c) for c in executions]
        return self.lr_finder_results

    def _checked_fit_args(self, values, x, y, batch_size, epochs,
                          callbacks, validation_split, validation_data,
                          initial_epoch, steps_per_epoch, kwargs):
        """The checked arguments of `fit`, the callbacks given their
        per-trial files, `fit`'s data arguments, the number of batches in
        a pass, and its epochs and callbacks."""
        if batch_size is None:  # Keras' default, as `model.fit` reads None
            batch_size = 32
        batch_size = check_int("batch_size", batch_size, min_value=1)
        # The schedule is laid over the epochs the fit trains.
        epochs, initial_epoch = check_epochs(
            epochs, initial_epoch, ": the trial's schedule spans them")
        validation_split = check_validation_split(validation_split)
        if isinstance(validation_data, (tuple, list)) and len(
                validation_data) not in (2, 3):
            raise ValueError(
                "Argument `validation_data` must be a dataset, or a tuple "
                "(x_val, y_val) or (x_val, y_val, sample_weight). Received: "
                f"a {type(validation_data).__name__} of "
                f"{len(validation_data)} entries")
        if kwargs.get("class_weight") is not None:
            kwargs = dict(kwargs, class_weight=_checked_class_weight(
                kwargs["class_weight"], self.num_classes))
        if steps_per_epoch is not None:
            steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch,
                                        min_value=1)
        callbacks = list(check_callbacks(callbacks))
        _check_validation_for_objective(callbacks, validation_split,
                                        validation_data,
                                        kwargs.get("validation_freq", 1))
        per_trial_callbacks(callbacks, trial_id_of(callbacks))
        fit_kwargs, batches = self._fit_data(
            values, x, y, batch_size, validation_split, validation_data,
            steps_per_epoch, kwargs)
        if steps_per_epoch is None and batches is None:
            raise ValueError(
                "The training dataset's length is unknown or infinite, so "
                "the schedule cannot be laid out over the epochs. Pass "
                "`steps_per_epoch` to `search`/`fit`.")
        steps = (steps_per_epoch or batches) * (epochs - initial_epoch)
        if steps > MAX_STEPS:
            # The batches of a pass come from `x` and `batch_size`, or
            # from a dataset's own batches.
            per_epoch = ("`steps_per_epoch`" if steps_per_epoch
                         else "the training data's batches (`x`, "
                         "`batch_size`)")
            raise ValueError(
                f"Arguments `epochs` and {per_epoch} make {steps:,} "
                f"training steps ({epochs - initial_epoch:,} epochs of "
                f"{steps_per_epoch or batches:,} batches), more than the "
                "optimizers' int32 step count holds, 2**31 - 1: the trial's "
                "schedule could not span them. Received: "
                f"epochs={epochs}, initial_epoch={initial_epoch}, "
                + (f"steps_per_epoch={steps_per_epoch}" if steps_per_epoch
                   else f"batch_size={batch_size}"))
        span = dict(epochs=epochs, initial_epoch=initial_epoch,
                    callbacks=callbacks)
        return callbacks, fit_kwargs, batches, span

    def _fit_data(self, values, x, y, batch_size, validation_split,
                  validation_data, steps_per_epoch, kwargs):
        """`training_data` after the validation split, and the number of
        batches in one pass."""
        if validation_split and validation_data is None:
            (x, y), validation_data = split_validation(x, y,
                                                       validation_split)
            weights = kwargs.get("sample_weight")
            if weights is not None:  # cut with x and y, as Keras does
                weights = np.asarray(weights)
                kwargs = dict(kwargs, sample_weight=weights[:len(x)])
                validation_data += (weights[len(x):],)
        fit_kwargs, batches = self.training_data(
            values, x, y, batch_size, validation_data, kwargs)
        if steps_per_epoch is not None and is_dataset(fit_kwargs["x"]):
            # Keras does not restart a finite dataset within a fit given
            # `steps_per_epoch`: it would run out of data, and the updates
            # short of `steps_per_epoch * epochs` would leave the schedule
            # unfinished (a one-cycle not annealed).
            fit_kwargs["x"] = fit_kwargs["x"].repeat()
        return fit_kwargs, batches

    @contextlib.contextmanager
    def per_trial(self, name):
        """Marks the errors raised inside as coming from the trial's value
        of the knob `name`. Where the search varies it (its entry in the
        search's space, the oracle's `HyperParameters`, is not `Fixed`, or
        depends on another; outside a search, the trial's),
        they become `TrialValueError` and `TrialTypeError`: KerasTuner
        fails the trial without retrying it, and the search goes on
        (until `max_consecutive_failed_trials` fail in a row). Where every
        trial has the same value, they are left to `fit`, which stops the
        search."""
        if name not in {knob.name for knob in self.knobs}:
            raise ValueError(
                f"Argument `name` must be one of the knobs "
                f"{[knob.name for knob in self.knobs]}. Received: "
                f"name={name!r}")
        if name not in self._searched:
            yield
            return
        try:
            yield
        except ValueError as error:
            raise TrialValueError(str(error)) from error
        except TypeError as error:
            raise TrialTypeError(str(error)) from error

    def _probe_as_trained(self, callbacks):
        """Gives a `WeightHistograms` probe the inputs (scaled as in
        training) and labels of the compiled loss."""
        for callback in callbacks:
            if isinstance(callback, WeightHistograms) and (
                    callback.probe is not None):
                probe_x, probe_y = callback.probe
                callback.probe = (self.inputs(probe_x),
                                  self.labels(probe_y))

    def __repr__(self):
        knobs = ", ".join(repr(knob) for knob in self.knobs)
        return f"{type(self).__name__}({knobs})"


def _checked_hp(hp):
    """`hp` if it is KerasTuner's `HyperParameters` (`None` failed as "not
    iterable", a dict as having no `Fixed`)."""
    if not isinstance(hp, keras_tuner.HyperParameters):
        raise TypeError(
            "Argument `hp` must be a keras_tuner.HyperParameters (the "
            "trial's, or `keras_tuner.HyperParameters()` outside a "
            f"search). Received: hp={hp!r}")
    return hp


def _checked_class_weight(class_weight, num_classes):
    """`class_weight` with a weight for every class: Keras weighs a class
    it lacks 1.0 on NumPy data, but on a tf.data pipeline (the hypermodels'
    training data) looks it up in a table that ends at the greatest key:
    a class above it failed deep inside TensorFlow's gather, and a key
    beyond the classes was silently kept."""
    if not isinstance(class_weight, dict):
        raise TypeError(
            "Argument `class_weight` must be a dict {class: weight}. "
            f"Received: class_weight={class_weight!r}")
    weights = dict.fromkeys(range(num_classes), 1.0)
    for key, weight in class_weight.items():
        is_class = isinstance(key, (int, np.integer)) and not isinstance(
            key, bool) and 0 <= key < num_classes
        if not is_class:
            raise ValueError(
                f"Argument `class_weight` must be keyed by classes, integers "
                f"from 0 to {num_classes - 1} (a class left out weighs 1.0). "
                f"Received: key {key!r} in class_weight={class_weight!r}")
        weights[int(key)] = check_float(f"class_weight[{key!r}]", weight,
                                        low=0)
    return weights


def _in_passes(fit_kwargs):
    """Whether `fit_passes` can feed this `fit`: training and validation
    data are finite datasets of known length, `validation_steps` unset."""
    if "validation_steps" in fit_kwargs:
        return False
    try:
        for name in ("x", "validation_data"):
            passes(name, fit_kwargs.get(name))
    except (TypeError, ValueError):
        return False
    return True


@contextlib.contextmanager
def _fatal():
    """Makes the `ValueError`s and `TypeError`s raised inside KerasTuner's
    fatal ones (subclasses of both): they come from the arguments and the
    data, the same for every trial, so the search stops with the message
    at once, where KerasTuner would fail each trial in turn and end with
    "Number of consecutive failures exceeded the limit"."""
    try:
        yield
    except (keras_tuner.errors.FatalError,
            keras_tuner.errors.FailedTrialError):
        raise
    except ValueError as error:
        raise keras_tuner.errors.FatalValueError(str(error)) from error
    except TypeError as error:
        raise keras_tuner.errors.FatalTypeError(str(error)) from error


class TrialValueError(keras_tuner.errors.FailedTrialError, ValueError):
    """A `ValueError` that comes from a trial's values: KerasTuner fails
    that trial alone (and does not retry it), and the search goes on,
    until `max_consecutive_failed_trials` fail in a row."""


class TrialTypeError(keras_tuner.errors.FailedTrialError, TypeError):
    """A `TypeError` that comes from a trial's values (see
    `TrialValueError`)."""


def _searched_names(hp):
    """Names of the hyperparameters a search can vary in `hp`: all but
    the unconditional `Fixed` ones."""
    fixed = keras_tuner.engine.hyperparameters.Fixed
    return {entry.name for entry in hp.space
            if entry.conditions or not isinstance(entry, fixed)}


def _search_space(hp, callbacks):
    """The hyperparameters a search can vary: in a search, its oracle's
    (with `tune_new_entries=False` the oracle leaves out the knobs not
    declared beforehand, and every trial takes their defaults, though the
    trial's `hp` lists them as choices); outside one, `hp`."""
    callback = _tuner_callback(callbacks)
    return hp if callback is None else callback.tuner.oracle.hyperparameters


def _tuner_checkpoint(callbacks):
    """KerasTuner's own callback of a trial in a search (it saves the best
    epoch's weights and knows the objective), or None outside one."""
    return next((c for c in callbacks if hasattr(c, "objective")
                 and hasattr(c, "filepath")), None)


def _check_validation_for_objective(callbacks, validation_split,
                                    validation_data, validation_freq):
    """Raises if the search's objective is a validation metric and there
    is no validation data, or validation on some epochs only: every trial
    would train, then fail to find it in its logs (KerasTuner reads the
    History's lists by epoch)."""
    saver = _tuner_checkpoint(callbacks)
    if saver is None:
        return
    objective = saver.objective
    names = [o.name for o in getattr(objective, "objectives", [objective])]
    wanted = [name for name in names if name.startswith("val_")]
    if not wanted:
        return
    if not validation_split and validation_data is None:
        raise ValueError(
            f"The search's objective {wanted} is a validation metric, and "
            "`search` got no validation data: pass `validation_data` or "
            "`validation_split`. Received: validation_data=None, "
            f"validation_split={validation_split!r}")
    if validation_freq != 1:
        raise ValueError(
            f"The search's objective {wanted} is a validation metric, "
            "which KerasTuner reads at every epoch: argument "
            "`validation_freq` must be 1 (or the objective a training "
            f"metric). Received: validation_freq={validation_freq!r}")


def _add_resumed_epochs(history, checkpoint, initial_epoch, saver,
                        saved_before):
    """Puts the epochs a resumed `fit` ran before its crash, which the
    checkpoint kept with its backup, in front of `history`
    (`CheckpointEarlyStopping.add_resumed_epochs`), so that KerasTuner
    scores the trial on all of them.

    `saver` is KerasTuner's own checkpoint of the trial (its best epoch's
    weights, for `get_best_models`; one is shared by a trial's
    executions), whose best value was `saved_before` when the `fit`
    began. Where the best epoch by the tuner's objective, the first of
    those that tie, came before the resume and beats `saved_before`, the
    uninterrupted `fit` would have left its weights there; where the
    model holds them (the checkpoint restored them), the saver's file is
    written again with them. (The resumed `fit` saved its own best epoch
    after the resume: a worse one, or one that ties, which KerasTuner
    keeps only when it comes first.)"""
    epochs = checkpoint.add_resumed_epochs(history, initial_epoch)
    if saver is None or not checkpoint.restore_best or not (
            checkpoint._saved):
        return
    objective, best = saver.objective, None
    for epoch, logs in zip(history.epoch, checkpoint.epoch_logs):
        if objective.has_value(logs) and (best is None or (
                objective.better_than(objective.get_value(logs), best[1]))):
            best = epoch, objective.get_value(logs)
    if best is not None and best[0] in epochs and (
            best[0] == checkpoint.best_epoch) and (
            objective.better_than(best[1], saved_before)):
        # Atomically: a truncated file is no trial checkpoint that
        # KerasTuner's next round or `get_best_models` can load.
        with atomic_path(saver.filepath) as tmp:
            checkpoint.model.save_weights(tmp)
        saver.best_value = best[1]


def _first(callbacks, cls):
    return next((c for c in callbacks if isinstance(c, cls)), None)
