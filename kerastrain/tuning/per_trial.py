"""Toolkit callbacks inside a KerasTuner search: one set of files per trial.

KerasTuner deep-copies the callbacks given to `tuner.search` for every
trial (every execution of one), so no in-memory state crosses from one
trial to the next; every kerastrain callback also resets its state in
`on_train_begin`. What the copies would still share is the file system:
every trial's `CheckpointEarlyStopping` would write the same `.keras`
file (and resume from the same backup), every `WeightHistograms` the same
event folder, every `SnapshotEnsemble` the same snapshots (its `keep`
deleting another trial's), every Keras `CSVLogger` the same file, and,
on JAX and PyTorch, every Keras `TensorBoard` the same run: KerasTuner
moves a `TensorBoard` callback's `log_dir` into
`<log_dir>/<trial_id>/execution<n>` (`Tuner._configure_tensorboard_dir`)
on the TensorFlow backend only. `per_trial_callbacks` gives each of them
its own folder. The HyperModels of `kerastrain.tuning` call it in their
`fit`; call it in your own `HyperModel.fit` to get the same.

A tuner with `executions_per_trial > 1` trains each trial's model several
times, each execution with fresh copies of the callbacks; each execution
then gets its own folder, `<trial_id>/execution<n>` (n from 0, the names
KerasTuner gives TensorBoard runs). With one execution, the folder is
`<trial_id>` alone.
"""

import os
import re
import weakref

import keras

from kerastrain._validation import check_callbacks
from kerastrain.callbacks import (CheckpointEarlyStopping, SnapshotEnsemble,
                                  WeightHistograms)

_CONFIGURED = "_kerastrain_trial_folder"
_EXECUTION = "_kerastrain_execution"
# Executions started so far, per run of a trial (see `_execution`); weak,
# so that a finished run's entry goes with it.
_STARTED = weakref.WeakKeyDictionary()


def _tuner_callback(callbacks):
    """The callback `Tuner.run_trial` appends (`TunerCallback`, holding the
    tuner and the trial), or None outside a search."""
    for callback in check_callbacks(callbacks):
        if getattr(callback, "trial", None) is not None and hasattr(
                callback, "tuner"):
            return callback
    return None


def trial_id_of(callbacks):
    """The id of the KerasTuner trial that `callbacks` were given to, or
    None outside a search.

    `Tuner.run_trial` appends a callback holding the tuner and the trial
    (`TunerCallback`) to the callbacks it hands to `HyperModel.fit`.

    Args:
        callbacks: The `callbacks` a `HyperModel.fit` received (a list, or
            None).

    Returns:
        The trial id (str), or None.

    Example:

    >>> import keras
    >>> trial_id_of([keras.callbacks.CSVLogger("log.csv")]) is None
    True
    """
    callback = _tuner_callback(callbacks)
    return None if callback is None else str(callback.trial.trial_id)


def execution_of(callbacks):
    """Which execution of its KerasTuner trial `callbacks` were given to:
    0, 1, ... up to the tuner's `executions_per_trial` - 1, or None outside
    a search.

    KerasTuner does not tell `HyperModel.fit` which execution it runs, so
    they are counted: the executions of one `Tuner.run_trial` share its
    best-epoch checkpoint (`SaveBestEpoch`) while each gets a new
    `TunerCallback`. A trial that KerasTuner runs again (a retry after a
    failure) counts from 0 again, as KerasTuner's own
    `range(executions_per_trial)` does. Asking twice with the same
    callbacks gives the same answer.

    Args:
        callbacks: The `callbacks` a `HyperModel.fit` received (a list, or
            None).

    Returns:
        The execution (int), or None.

    Example:

    >>> execution_of([]) is None
    True
    """
    callback = _tuner_callback(callbacks)
    if callback is None:
        return None
    if getattr(callback, _EXECUTION, None) is None:
        run = next((c for c in callbacks
                    if type(c).__name__ == "SaveBestEpoch"), callback.trial)
        execution = _STARTED.get(run, 0)
        _STARTED[run] = execution + 1
        setattr(callback, _EXECUTION, execution)
    return getattr(callback, _EXECUTION)


def trial_folder(callbacks, trial_id):
    """The folder, relative to a callback's own, of the trial `trial_id`
    that `callbacks` were given to: `<trial_id>`, or
    `<trial_id>/execution<n>` when the tuner runs several executions per
    trial."""
    trial_id = str(trial_id)
    callback = _tuner_callback(callbacks)
    if callback is None or getattr(callback.tuner, "executions_per_trial",
                                   1) <= 1:
        return trial_id
    return os.path.join(trial_id, f"execution{execution_of(callbacks)}")


def in_trial_folder(path, folder):
    """`parent/name` -> `parent/<folder>/name`.

    Example:

    >>> in_trial_folder(os.path.join("ckpt", "best.keras"), "03") == (
    ...     os.path.join("ckpt", "03", "best.keras"))
    True
    """
    parent, name = os.path.split(os.fspath(path))
    return os.path.join(parent, str(folder), name)


def _placed_by_keras_tuner(log_dir, trial_id):
    """Whether KerasTuner already moved a TensorBoard `log_dir` into
    `<log_dir>/<trial_id>/execution<n>` (it does on TensorFlow)."""
    parent, leaf = os.path.split(os.path.normpath(os.fspath(log_dir)))
    return (os.path.basename(parent) == trial_id
            and re.fullmatch(r"execution\d+", leaf) is not None)


def per_trial_callbacks(callbacks, trial_id):
    """Gives each file-writing callback its own files for a trial.

    With `<trial>` the trial's folder, `<trial_id>` (or
    `<trial_id>/execution<n>` for execution n when the tuner has
    `executions_per_trial > 1`):

    - `CheckpointEarlyStopping`: `dir/best.keras` becomes
      `dir/<trial>/best.keras`, and a `backup_dir` becomes
      `backup_dir/<trial>`, so that a trial restores its own best model
      and resumes only its own interrupted run.
    - `WeightHistograms`: `log_dir` becomes `log_dir/<trial>`, one
      TensorBoard run per trial.
    - `SnapshotEnsemble`: `directory` becomes `directory/<trial>`, each
      trial's snapshots (and its `keep`) in their own folder.
    - Keras' `CSVLogger`: `dir/history.csv` becomes
      `dir/<trial>/history.csv`, each trial's epochs in its own file.
    - Keras' `TensorBoard`: `log_dir` becomes `log_dir/<trial>`, unless
      KerasTuner already moved it to `log_dir/<trial_id>/execution<n>`
      (it does on the TensorFlow backend only).

    Other callbacks are left alone: `GradientAccumulation` and `LRFinder`
    hold no files; Keras' `ModelCheckpoint` and `BackupAndRestore` do, and
    are not moved. The callbacks are changed in place, so
    call this on the per-trial copies KerasTuner hands to
    `HyperModel.fit`, not on the list given to `search`; a callback
    already configured for this trial is left as it is.

    Args:
        callbacks: A list or tuple of callbacks, a `CallbackList`, or
            None (no callbacks).
        trial_id: The trial's id, e.g. `trial_id_of(callbacks)`; None means
            no trial (outside a search): the callbacks are left as they
            are.

    Returns:
        `callbacks` as a list (the list itself where it is one; `[]` for
        None).

    Example:

    >>> callback = CheckpointEarlyStopping(os.path.join("ckpt", "b.keras"))
    >>> _ = per_trial_callbacks([callback], "07")
    >>> callback.filepath == os.path.join("ckpt", "07", "b.keras")
    True
    """
    callbacks = check_callbacks(callbacks)
    if trial_id is None:
        return callbacks
    trial_id = str(trial_id)
    folder = trial_folder(callbacks, trial_id)
    for callback in callbacks:
        if getattr(callback, _CONFIGURED, None) == folder:
            continue
        if isinstance(callback, CheckpointEarlyStopping):
            callback.filepath = in_trial_folder(callback.filepath, folder)
            if callback.backup_dir is not None:
                callback.backup_dir = os.path.join(callback.backup_dir,
                                                   folder)
                # As CheckpointEarlyStopping.__init__ makes it.
                callback._backup = callback._new_backup()
        elif isinstance(callback, WeightHistograms):
            callback.log_dir = os.path.join(callback.log_dir, folder)
        elif isinstance(callback, SnapshotEnsemble):
            callback.directory = os.path.join(callback.directory, folder)
        elif isinstance(callback, keras.callbacks.CSVLogger):
            callback.filename = in_trial_folder(callback.filename, folder)
            os.makedirs(os.path.dirname(callback.filename) or ".",
                        exist_ok=True)
        elif isinstance(callback, keras.callbacks.TensorBoard):
            if not _placed_by_keras_tuner(callback.log_dir, trial_id):
                callback.log_dir = os.path.join(callback.log_dir, folder)
        else:
            continue
        setattr(callback, _CONFIGURED, folder)
    return callbacks
