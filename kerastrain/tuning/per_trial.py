"""Toolkit callbacks inside a KerasTuner search: one set of files per trial.

KerasTuner deep-copies the callbacks given to `tuner.search` for every
trial (every execution of one), so no in-memory state crosses from one
trial to the next; every kerastrain callback also resets its state in
`on_train_begin`. What the copies would still share is the file system:
every trial's `CheckpointEarlyStopping` would write the same `.keras`
file (and resume from the same backup), every `WeightHistograms` the same
event folder, every `SnapshotEnsemble` the same snapshots (its `keep`
deleting another trial's), every Keras `CSVLogger` the same file.
KerasTuner moves a `TensorBoard` callback's `log_dir` into
`<log_dir>/<trial_id>/...` (`Tuner._configure_tensorboard_dir`);
`per_trial_callbacks` does the same for these. The HyperModels of
`kerastrain.tuning` call it in their `fit`; call it in your own
`HyperModel.fit` to get the same.
"""

import os

import keras

from kerastrain.callbacks import (CheckpointEarlyStopping, SnapshotEnsemble,
                                  WeightHistograms)

_CONFIGURED = "_kerastrain_trial_id"


def trial_id_of(callbacks):
    """The id of the KerasTuner trial that `callbacks` were given to, or
    None outside a search.

    `Tuner.run_trial` appends a callback holding the tuner and the trial
    (`TunerCallback`) to the callbacks it hands to `HyperModel.fit`.
    """
    for callback in callbacks or ():
        trial = getattr(callback, "trial", None)
        if trial is not None and hasattr(callback, "tuner"):
            return str(trial.trial_id)
    return None


def in_trial_folder(path, trial_id):
    """`folder/name` -> `folder/<trial_id>/name`.

    Example:

    >>> in_trial_folder(os.path.join("ckpt", "best.keras"), "03") == (
    ...     os.path.join("ckpt", "03", "best.keras"))
    True
    """
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, str(trial_id), name)


def per_trial_callbacks(callbacks, trial_id):
    """Gives each file-writing toolkit callback its own files for a trial.

    - `CheckpointEarlyStopping`: `dir/best.keras` becomes
      `dir/<trial_id>/best.keras`, and a `backup_dir` becomes
      `backup_dir/<trial_id>`, so that a trial restores its own best model
      and resumes only its own interrupted run.
    - `WeightHistograms`: `log_dir` becomes `log_dir/<trial_id>`, one
      TensorBoard run per trial.
    - `SnapshotEnsemble`: `directory` becomes `directory/<trial_id>`, each
      trial's snapshots (and its `keep`) in their own folder.
    - Keras' `CSVLogger`: `dir/history.csv` becomes
      `dir/<trial_id>/history.csv`, each trial's epochs in its own file.

    Other callbacks (`GradientAccumulation`, `LRFinder`, Keras' own) hold
    no files and are left alone. The callbacks are changed in place, so
    call this on the per-trial copies KerasTuner hands to
    `HyperModel.fit`, not on the list given to `search`; a callback
    already configured for this trial is left as it is.

    Args:
        callbacks: A list of callbacks.
        trial_id: The trial's id, e.g. `trial_id_of(callbacks)`.

    Returns:
        `callbacks`.

    Example:

    >>> callback = CheckpointEarlyStopping(os.path.join("ckpt", "b.keras"))
    >>> _ = per_trial_callbacks([callback], "07")
    >>> callback.filepath == os.path.join("ckpt", "07", "b.keras")
    True
    """
    trial_id = str(trial_id)
    for callback in callbacks:
        if getattr(callback, _CONFIGURED, None) == trial_id:
            continue
        if isinstance(callback, CheckpointEarlyStopping):
            callback.filepath = in_trial_folder(callback.filepath, trial_id)
            if callback.backup_dir is not None:
                callback.backup_dir = os.path.join(callback.backup_dir,
                                                   trial_id)
                # As CheckpointEarlyStopping.__init__ makes it.
                callback._backup = keras.callbacks.BackupAndRestore(
                    callback.backup_dir, double_checkpoint=True)
        elif isinstance(callback, WeightHistograms):
            callback.log_dir = os.path.join(callback.log_dir, trial_id)
        elif isinstance(callback, SnapshotEnsemble):
            callback.directory = os.path.join(callback.directory, trial_id)
        elif isinstance(callback, keras.callbacks.CSVLogger):
            callback.filename = in_trial_folder(callback.filename, trial_id)
            os.makedirs(os.path.dirname(callback.filename) or ".",
                        exist_ok=True)
        else:
            continue
        setattr(callback, _CONFIGURED, trial_id)
    return callbacks
