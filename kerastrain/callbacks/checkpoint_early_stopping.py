"""Best-model checkpoint, early stopping and resumable training in one."""

import json
import math
import os
import shutil
import string
import warnings

import h5py
import keras
import numpy as np

from kerastrain._validation import (check_bool, check_choice, check_float,
                                    check_int, check_path, check_verbose)
from kerastrain.callbacks._training_state import (
    ACCUMULATION_MARK, base_optimizer, global_random_state, iterations,
    random_state_arrays, random_state_from_arrays,
    restore_global_random_state, seed_states, set_accumulation)
from kerastrain.io import (atomic_path, remove_temporaries, save_model,
                           write_json)

STATE_FILE = "early_stopping.json"
# The key, in the `params` of a `fit`, of the files and backup folders
# its callbacks write.
_CLAIMS = "_kerastrain_checkpoint_paths"
# The epoch to resume from, stored in the backup's weights file itself,
# and the number of batches per update its step count was made under.
EPOCH_ATTRIBUTE = "kerastrain_epoch"
ACCUMULATION_ATTRIBUTE = "kerastrain_accumulation_steps"
# The `fit` that wrote the backup, as its `epochs` and batches per epoch
# (JSON): a backup resumes only a `fit` of the same.
FIT_ATTRIBUTE = "kerastrain_fit"
# Groups of the backup's weights file beside Keras' own: the states of the
# model's seed generators, which `save_weights` leaves out, and the global
# random states (NumPy's, Python's, torch's) that `fit`'s shuffles draw
# from.
SEEDS_GROUP = "kerastrain_seed_generators"
RANDOM_GROUP = "kerastrain_random_state"
# The group of the model's weights and the optimizer's variables, packed
# (`_write_variables`); a backup without it was written by Keras'
# `save_weights` (kerastrain before 2026-12-07).
VARIABLES_GROUP = "kerastrain_variables"


class _Backup(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore` with a double checkpoint, every file of it
    written atomically (Keras writes them in place: an interrupt mid-write
    leaves a truncated `training_metadata.json` that the next `fit` cannot
    read), and nothing removed at the end of training (Keras would remove
    the whole folder, with whatever else was in it): its owner removes
    `files()`.

    The weights file, renamed into place at once, is the single record of
    where training stands: it holds the epoch to resume from (Keras writes
    the weights, then `training_metadata.json`, and a crash between the two
    resumed one epoch early, with weights that already held its updates),
    so no metadata file is written. The variables go into it packed
    (`_write_variables`), not by Keras' `save_weights`, which took 40-60
    ms a backup of a ResNet-8 on two CPU cores, 5-13% of the digits
    recipe's epoch; a backup that `save_weights` wrote (an earlier
    kerastrain) is still read by Keras' `load_weights`."""

    def __init__(self, backup_dir):
        super().__init__(backup_dir, double_checkpoint=True,
                         delete_checkpoint=False)
        self.fit = None  # what FIT_ATTRIBUTE records, set by the owner

    def files(self):
        return [self._weights_path, self._prev_weights_path,
                self._training_metadata_path,
                self._prev_training_metadata_path]

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        if os.path.exists(self._weights_path):
            with atomic_path(self._prev_weights_path) as tmp:
                shutil.copyfile(self._weights_path, tmp)
        with atomic_path(self._weights_path) as tmp:
            with h5py.File(tmp, "w") as f:
                _write_variables(f, self.model)
                f.attrs[EPOCH_ATTRIBUTE] = self._current_epoch
                if self.fit is not None:
                    f.attrs[FIT_ATTRIBUTE] = json.dumps(self.fit)
                steps = _accumulation_steps(self.model)
                if steps:
                    f.attrs[ACCUMULATION_ATTRIBUTE] = steps
                _write_random_states(f, self.model)

    def read_attribute(self, name):
        """Attribute `name` of the backup's weights file, None without a
        backup or without the attribute. Keras falls back to the backup
        before when the latest will not open (a crash while it was
        written), and so does this."""
        for path in (self._weights_path, self._prev_weights_path):
            if not os.path.exists(path):
                continue
            try:
                with h5py.File(path, "r") as f:
                    return f.attrs.get(name)
            except OSError:
                continue
        return None

    def save_start(self, epoch):
        """Backs up the state a `fit` starts from, when there is no backup
        yet: a crash in its first epoch then resumes from there, also in
        the same model object, which the crash left half-trained (Keras'
        first backup comes at the end of the first epoch)."""
        if os.path.exists(self._weights_path) or not self.model.built:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            # Its slots are restored too, so they must be in the file.
            optimizer.build(self.model.trainable_variables)
        self._current_epoch = epoch
        self._save_model()

    def _load_model(self):
        # The global random states at the backup, for its owner to put
        # back (None: no backup, or one written before they were kept).
        self.random_state = None
        if not self.model.built:
            super()._load_model()  # Keras' error: build the model first
        if not os.path.exists(self._weights_path):
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        with h5py.File(self._weights_path, "r") as f:
            packed = VARIABLES_GROUP in f
            if packed:
                _read_variables(f, self.model)
            epoch = f.attrs.get(EPOCH_ATTRIBUTE)
            steps = f.attrs.get(ACCUMULATION_ATTRIBUTE)
            seeds, self.random_state = _read_random_states(f)
        if not packed:  # written by Keras' `save_weights`
            super()._load_model()
        if seeds is None:
            warnings.warn(
                f"The backup in {self.backup_dir} holds no random states (a "
                "kerastrain before 2026-12-07 wrote it): the resumed epochs "
                "draw their data order and their Dropout or DropPath masks "
                "anew, so the run will not end as an uninterrupted one "
                "would.", stacklevel=2)
        _restore_seeds(self.model, seeds)
        if epoch is not None:
            self.model._initial_epoch = int(epoch)
        if steps is not None:
            # The step count read back was accumulated under `steps` batches
            # per update: noted for `GradientAccumulation`, which would
            # otherwise take the number of the epoch before (the start of a
            # fit is backed up after its `on_epoch_begin` may have changed
            # the number).
            _note_counted_under(
                base_optimizer(self.model.optimizer), int(steps))


def _backed_up_variables(model):
    """The variables a backup holds: the model's weights and its
    optimizer's variables (its slots, step count, accumulators and loss
    scale), in a fixed order. The seed generators' states go apart
    (`_write_random_states`)."""
    optimizer = model.optimizer
    return list(model.weights) + (
        list(optimizer.variables) if optimizer is not None else [])


def _write_variables(f, model):
    """Writes `_backed_up_variables(model)` into the open file `f`, packed:
    their values' bytes end to end in one dataset, their dtypes and
    shapes in an attribute. One dataset, where `save_weights` writes one
    per variable in a group per layer, walking the model's objects."""
    arrays = [np.asarray(keras.ops.convert_to_numpy(v))
              for v in _backed_up_variables(model)]
    group = f.create_group(VARIABLES_GROUP)
    group.attrs["layout"] = json.dumps(
        [[array.dtype.name, list(array.shape)] for array in arrays])
    group["bytes"] = np.concatenate(
        [np.ascontiguousarray(array).reshape(-1).view(np.uint8)
         for array in arrays] or [np.zeros(0, np.uint8)])


def _read_variables(f, model):
    """Assigns the values `_write_variables` wrote into `f` to
    `_backed_up_variables(model)`; a `ValueError` where the backup's
    variables are not the model's in number and shapes (it was written
    for another model)."""
    layout = json.loads(f[VARIABLES_GROUP].attrs["layout"])
    variables = _backed_up_variables(model)
    shapes = [tuple(shape) for _, shape in layout]
    if shapes != [tuple(v.shape) for v in variables]:
        raise ValueError(
            f"The backup holds {len(layout)} variables of shapes {shapes}, "
            f"and model {model.name} with its optimizer has {len(variables)}"
            f" of shapes {[tuple(v.shape) for v in variables]}: it was "
            "written for another model. Remove the backup folder, or "
            "resume with the model that wrote it.")
    data, offset = f[VARIABLES_GROUP]["bytes"][()], 0
    for variable, (dtype, shape) in zip(variables, layout):
        size = np.dtype(dtype).itemsize * math.prod(shape)
        variable.assign(data[offset:offset + size].view(dtype).reshape(shape))
        offset += size


def _write_random_states(f, model):
    """Writes into the open weights file `f` the states of `model`'s seed
    generators and the global random states."""
    seeds = f.create_group(SEEDS_GROUP)
    for i, variable in enumerate(seed_states(model)):
        seeds[str(i)] = keras.ops.convert_to_numpy(variable)
    states = f.create_group(RANDOM_GROUP)
    for name, array in random_state_arrays(global_random_state()).items():
        states[name] = array


def _read_random_states(f):
    """The seed generators' states and the global random states that
    `_write_random_states` wrote into `f` (Nones if it holds none)."""
    if SEEDS_GROUP not in f or RANDOM_GROUP not in f:
        return None, None
    seeds = [f[SEEDS_GROUP][str(i)][()] for i in range(len(f[SEEDS_GROUP]))]
    states = {name: f[RANDOM_GROUP][name][()] for name in f[RANDOM_GROUP]}
    return seeds, random_state_from_arrays(states)


def _restore_seeds(model, seeds):
    """Puts the backed-up states of the seed generators back: a resumed
    Dropout or DropPath draws the masks the uninterrupted run would have,
    not those of the first epochs again."""
    if seeds is None:
        return
    variables = seed_states(model)
    if [tuple(v.shape) for v in variables] != [s.shape for s in seeds]:
        warnings.warn(
            f"The backup holds {len(seeds)} seed generator states and the "
            f"model {model.name} has {len(variables)} (or shaped "
            "otherwise): its random layers resume from their own seeds, "
            "so the resumed run draws other masks than an uninterrupted "
            "one would.", stacklevel=2)
        return
    for variable, value in zip(variables, seeds):
        variable.assign(value)


def _accumulation_steps(model):
    """The optimizer's number of batches per update (None or 0 when it
    accumulates nothing, or has no optimizer)."""
    optimizer = getattr(model, "optimizer", None)
    return None if optimizer is None else base_optimizer(
        optimizer).gradient_accumulation_steps


def _note_counted_under(optimizer, steps):
    """Notes, for `GradientAccumulation`, that the optimizer's step count
    as it stands was accumulated under `steps` batches per update."""
    setattr(optimizer, ACCUMULATION_MARK, ((iterations(optimizer), steps),))


def _to_json(value):
    """A number as JSON holds it: NaN and infinities, which JSON has not,
    as strings (a NaN first epoch is Keras' best, which nothing improves
    on, and a null would read as "no best yet")."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _scalars(logs):
    """The scalar entries of `logs` as floats; a per-class metric (such as
    `F1Score(average=None)`) gives a vector, which no objective reads."""
    return {key: float(value) for key, value in logs.items()
            if np.ndim(value) == 0}


def _from_json(value):
    return float(value) if isinstance(value, str) else value


def _has_placeholders(path):
    """Whether `path` has `str.format` fields such as `{epoch:02d}`."""
    try:
        return any(field is not None
                   for _, field, _, _ in string.Formatter().parse(path))
    except ValueError:  # an unpaired brace: a literal one
        return False


def _check_backup_dir(backup_dir, filepath):
    """Refuses, at construction, a `backup_dir` the backup cannot be
    written to: an existing file, or the path of `filepath` itself (the
    backup made it a folder, and the first save failed after an epoch of
    training)."""
    if os.path.exists(backup_dir) and not os.path.isdir(backup_dir):
        raise ValueError(
            "Argument `backup_dir` must be a folder (made where missing), "
            f"not an existing file. Received: backup_dir={backup_dir!r}")
    if os.path.realpath(backup_dir) == os.path.realpath(filepath):
        raise ValueError(
            "Arguments `backup_dir` and `filepath` must differ: the backup "
            "is a folder, the best model a file. Received: "
            f"backup_dir={backup_dir!r}, filepath={filepath!r}")


def remove_files(paths, folder):
    """Removes the files `paths` that exist, then `folder` if it is left
    empty."""
    for path in paths:
        if os.path.exists(path):
            os.remove(path)
    try:
        os.rmdir(folder)
    except OSError:  # missing, or holds files that are not ours
        pass


class CheckpointEarlyStopping(keras.callbacks.EarlyStopping):
    """Saves the best model, stops when it stops improving, and restores it
    from the file at the end.

    Whenever `monitor` improves (by more than `min_delta`), the whole model
    is saved to `filepath` (`.keras`), atomically: a crash mid-write leaves
    the previous best intact. After `patience` epochs without improvement,
    training stops. At the end of training, with `restore_best=True`, the
    weights are loaded back **from the saved file**, so the model in memory
    is the one on disk (the optimizer's variables too; its step count is
    read under the number of batches per update that the best epoch ran
    with, which a `GradientAccumulation` may have changed since).

    With `backup_dir`, the training state is backed up at the end of every
    epoch (Keras' `BackupAndRestore`, with a double checkpoint; the
    variables packed in one file, 16-21 ms for a ResNet-8 on two CPU
    cores, where Keras' `save_weights` took 40-52 ms) together
    with the early-stopping state (best value, epochs waited), and at the
    start of a `fit` that has no backup yet; an interrupted `fit`, called
    again with the same arguments (on a new model, or the one the crash
    left), resumes at the epoch where it stopped and stops where the
    uninterrupted run would have, without another epoch when it had
    already decided to stop, bit for bit as the uninterrupted run. The
    backup also holds what Keras' `BackupAndRestore` leaves out, put
    back when the resumed `fit` begins: the global random states that
    Keras' default `shuffle=True` draws each epoch's order from (NumPy's
    for arrays on JAX, torch's for arrays on torch, Python's for a
    `PyDataset` on every backend; torch's also for a torch `DataLoader`
    on any backend, and for an unseeded Dropout on torch, its GPUs' too),
    and the states of the model's seed generators (Dropout's, DropPath's,
    the random image layers'), so the resumed epochs take the batches and
    the masks the uninterrupted ones did. On TensorFlow, Keras shuffles
    arrays with a seed taken from the global seed when the data pipeline
    is built: after `keras.utils.set_random_seed` each epoch takes the
    same order, which a resume repeats too. A `tf.data`
    pipeline's own shuffle and augmentation are not in it (they keep no
    state a backup could hold): `data.fit_passes` reads and drops the
    passes before the resumed epoch (see `resume_epoch`), so that a
    pipeline built anew from its seed gives the uninterrupted run's
    batches; `model.fit` starts a pipeline at its first pass.

    The early-stopping logic is Keras' `EarlyStopping` (improvement, mode,
    patience); a `monitor` missing from the logs is an error that lists the
    available keys, instead of Keras' warning and a callback that never
    fires.

    Each `fit` watches anew, as Keras' `EarlyStopping` does: a callback
    used for a second `fit` (a fine-tuning stage) saves that fit's best,
    overwriting the file even if an earlier fit's model scored better.
    Give each stage its own `filepath` to keep both.

    After a `fit`, `epoch_logs` holds the logs (their scalars) of each of
    its epochs, the ones before a resume included (kept with the backup),
    with the keys that callbacks listed after this one add to them (a
    `LearningRateScheduler`'s `learning_rate`, taken when the next epoch
    begins: an epoch whose end a crash interrupted lacks them), and
    `resumed_epochs` how many came from before the resume: the `History`
    Keras returns for a resumed `fit` has only the epochs after it. The
    toolkit's HyperModels give KerasTuner the whole run this way.

    Args:
        filepath: Where to save the best model; must end in `.keras`.
        monitor: Quantity to watch, e.g. `"val_loss"`, `"val_accuracy"`.
        mode: `"auto"`, `"min"` or `"max"`; auto infers it from the name.
        patience: Epochs without improvement before stopping, >= 0.
        min_delta: Smallest change that counts as an improvement, >= 0.
        restore_best: Whether to load the best model's weights at the end.
        backup_dir: Folder for the resumable training state, or None. At
            the end of training the backup's files are removed, and the
            folder if that leaves it empty; other files in it stay.
        start_from_epoch: Epochs to train before watching `monitor` (as
            in Keras' `EarlyStopping`): nothing is saved, and patience does
            not run, before it. With one-cycle, set it to where the rate
            has come down: the high-rate epochs are not candidates, and a
            lucky one would otherwise win on a small validation set.
        verbose: 1 (or True) to print a line per saved checkpoint.
        baseline: None, or a value of `monitor` to reach (Keras'
            `EarlyStopping`): training stops after `patience` epochs that
            do not beat it, while the best epoch is still saved.

    Example:

    >>> callback = CheckpointEarlyStopping(
    ...     "saved_models/digits/best.keras", monitor="val_accuracy",
    ...     patience=5, backup_dir="saved_models/digits/backup")
    """

    def __init__(self, filepath="saved_models/checkpoints/best.keras",
                 monitor="val_loss", mode="auto", patience=10,
                 min_delta=0.0, restore_best=True, backup_dir=None,
                 start_from_epoch=0, verbose=0, baseline=None):
        if not isinstance(filepath, (str, os.PathLike)) or not os.fspath(
                filepath).endswith(".keras"):
            raise ValueError(
                "Argument `filepath` must be a path ending in `.keras`. "
                f"Received: filepath={filepath!r}")
        if _has_placeholders(os.fspath(filepath)):
            raise ValueError(
                "Argument `filepath` is one file, the best model, replaced "
                "at each improvement and reloaded at the end: it takes no "
                "`{...}` placeholders, which Keras' ModelCheckpoint fills "
                f"in. Received: filepath={filepath!r}")
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(
                "Argument `monitor` must be the name of a logged metric. "
                f"Received: monitor={monitor!r}")
        super().__init__(
            monitor=monitor,
            min_delta=check_float("min_delta", min_delta, low=0),
            patience=check_int("patience", patience, min_value=0),
            verbose=check_verbose(verbose),
            mode=check_choice("mode", mode, ("auto", "min", "max")),
            start_from_epoch=check_int("start_from_epoch", start_from_epoch,
                                       min_value=0),
            baseline=None if baseline is None else check_float(
                "baseline", baseline))
        self.filepath = os.fspath(filepath)
        if os.path.isdir(self.filepath):
            raise ValueError(
                "Argument `filepath` must name a file (the best model), not "
                f"a folder. Received: filepath={filepath!r}")
        self.restore_best = check_bool("restore_best", restore_best)
        self.backup_dir = None if backup_dir is None else check_path(
            "backup_dir", backup_dir)
        if self.backup_dir is not None:
            _check_backup_dir(self.backup_dir, self.filepath)
        self._backup, self._epoch_end_logs = None, None
        self.epoch_logs, self.resumed_epochs = [], 0  # no fit yet
        if self.backup_dir is not None:
            self._backup = self._new_backup()

    def _new_backup(self):
        """The `BackupAndRestore` of `backup_dir` (atomic writes; at the
        end it removes its own files only)."""
        return _Backup(self.backup_dir)

    def set_model(self, model):
        super().set_model(model)
        if self._backup is not None:
            self._backup.set_model(model)

    # -- what is saved -------------------------------------------------

    def _state(self, epoch):
        return {"epoch": epoch, "best": _to_json(self.best),
                "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "saved": self._saved,
                "best_accumulation": self._best_accumulation,
                "logs": [{key: _to_json(value) for key, value in logs.items()}
                         for logs in self.epoch_logs]}

    def _state_path(self):
        return os.path.join(self.backup_dir, STATE_FILE)

    def _load_state(self):
        """Early-stopping state at the epoch the backup resumes from. Two
        are kept, in case a crash fell between the two writes."""
        resume_epoch = getattr(self.model, "_initial_epoch", None) or 0
        if not resume_epoch or not os.path.exists(self._state_path()):
            return
        with open(self._state_path()) as f:
            states = json.load(f)
        for state in states:
            if state["epoch"] == resume_epoch:
                self.best = _from_json(state["best"])
                self.epoch_logs = [
                    {key: _from_json(value) for key, value in logs.items()}
                    for logs in state.get("logs", [])]
                self.resumed_epochs = len(self.epoch_logs)
                self.best_epoch = state["best_epoch"]
                self.wait, self._saved = state["wait"], state["saved"]
                self.stopped_epoch = state["stopped_epoch"]
                self._best_accumulation = state.get("best_accumulation")
        if self.stopped_epoch and self.stopped_epoch == resume_epoch - 1:
            # The crash came after the decision to stop (in a later
            # callback, or at the end of training): no epoch is left.
            self.model._initial_epoch = self.params["epochs"]

    def _check_backup_is_this_fits(self):
        """Refuses a backup written by a `fit` of other `epochs` or other
        batches per epoch: a script of two `fit`s sharing a `backup_dir`,
        rerun after a crash in the second, resumed the first from the
        second's backup, with no word. (Two `fit`s of the same epochs and
        batches cannot be told apart: give each its own folder.)"""
        if not isinstance(self.params, dict):
            return  # hooks driven by hand, outside a fit
        self._backup.fit = {"epochs": self.params.get("epochs"),
                            "steps": self.params.get("steps")}
        written = self._backup.read_attribute(FIT_ATTRIBUTE)
        if written is None or json.loads(written) == self._backup.fit:
            return
        written = json.loads(written)
        raise ValueError(
            f"The backup in backup_dir={self.backup_dir!r} was written by a "
            f"fit of epochs={written['epochs']} and {written['steps']} "
            f"batches per epoch; this fit has epochs={self.params['epochs']}"
            f" and {self.params.get('steps')}. A backup resumes only the "
            "fit that wrote it: give each fit a backup_dir of its own, or "
            "remove the folder to start afresh.")

    def _claim_paths(self):
        """Refuses a `filepath` or a `backup_dir` that another
        `CheckpointEarlyStopping` of the same `fit` uses. Two on one
        `filepath` each overwrote the other's best and reloaded it at the
        end. Keras' backup writes fixed file names, and so does the state
        file, so two on one `backup_dir` each resumed with the other's
        weights and best (one stopped two epochs early). The claims live
        in the `params` of the `fit`, one dict that every callback of it
        shares, until its end."""
        if not isinstance(self.params, dict):
            return  # hooks driven by hand, outside a fit
        claims = self.params.setdefault(_CLAIMS, {})
        for argument, path, why in (
                ("filepath", self.filepath, "each would overwrite the "
                 "other's best and reload it at the end"),
                ("backup_dir", self.backup_dir, "each needs a folder of its "
                 "own, since the backups' file names are fixed and one "
                 "would resume from the other's")):
            if path is None:
                continue
            other = claims.setdefault((argument, os.path.realpath(path)),
                                      self)
            if other is not self:
                raise ValueError(
                    "Two CheckpointEarlyStopping callbacks of one fit share "
                    f"{argument}={path!r} (monitoring `{other.monitor}` and "
                    f"`{self.monitor}`): {why}.")

    def resume_epoch(self):
        """The epoch at which a `fit` with this callback resumes from its
        backup, read before the `fit` (None without a backup): an input
        pipeline that draws each pass anew skips the passes before it
        (`data.fit_passes` does)."""
        if self._backup is None or not os.path.exists(
                self._backup._weights_path):
            return None
        epoch = self._backup.read_attribute(EPOCH_ATTRIBUTE)
        return None if epoch is None else int(epoch)

    def add_resumed_epochs(self, history, initial_epoch=0):
        """Puts the epochs that a resumed `fit` ran before its crash, kept
        with the backup, in front of `history`, the `History` that `fit`
        returned (Keras' holds only the epochs after the resume), so that
        it covers the whole run, as an uninterrupted `fit`'s would. A
        metric's list holds the epochs that logged it, as Keras' does
        (validation ones, with `validation_freq`, only some).

        Args:
            history: The `History` of the `fit` with this callback.
            initial_epoch: That fit's `initial_epoch`.

        Returns:
            The epochs added, a list (empty if the fit did not resume).
        """
        earlier = self.epoch_logs[:self.resumed_epochs]
        epochs = list(range(initial_epoch, initial_epoch + len(earlier)))
        history.epoch = epochs + list(history.epoch)
        for key in set(history.history).union(*earlier):
            history.history[key] = [logs[key] for logs in earlier
                                    if key in logs
                                    ] + list(history.history.get(key, []))
        return epochs

    # -- fit hooks -------------------------------------------------------

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._saved = self._started = False
        self._epoch_end_logs = None
        self._best_accumulation = None
        self.epoch_logs, self.resumed_epochs = [], 0
        self._claim_paths()
        # A write a kill interrupted (SIGKILL, a machine taken back) left
        # its temporary file, as large as the model.
        remove_temporaries(self.filepath)
        if self._backup is not None:
            self._check_backup_is_this_fits()
            for path in [self._state_path(), *self._backup.files()]:
                remove_temporaries(path)
            self._backup.on_train_begin(logs)
            self._load_state()
            if self._backup.random_state is not None:
                # Where the backed-up epoch left them: the resumed epochs
                # shuffle as the uninterrupted run's did.
                restore_global_random_state(self._backup.random_state)

    def on_epoch_begin(self, epoch, logs=None):
        if self._take_later_keys() and self._backup is not None:
            self._write_state(epoch)
        if self._backup is not None and not self._started:
            self._backup.save_start(epoch)
            # Keras has read where to resume; left set, a crash in this
            # fit made every later `fit` of the model start there.
            self.model._initial_epoch = None
        self._started = True

    def get_monitor_value(self, logs):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(
                f"CheckpointEarlyStopping monitors `{self.monitor}`, which "
                f"is not in the logs. Available: {sorted(logs)}. (Validation "
                "metrics need `validation_data` or `validation_split`, on "
                "every epoch: `fit`'s `validation_freq` must be 1.)")
        return logs[self.monitor]

    def on_epoch_end(self, epoch, logs=None):
        self.get_monitor_value(logs)  # a missing monitor fails first
        self.epoch_logs.append(_scalars(logs))
        # The dict every callback of the `fit` gets: those listed after
        # this one may add to it (see `_take_later_keys`).
        self._epoch_end_logs = logs
        previous_best = self.best
        super().on_epoch_end(epoch, logs)
        if self.best is not previous_best:
            save_model(self.model, self.filepath)
            self._saved = True
            # The number of batches per update its step count was
            # accumulated under: a Python attribute, which the file's
            # variables do not hold (`GradientAccumulation` may change it
            # after this epoch).
            self._best_accumulation = _accumulation_steps(self.model)
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved to "
                      f"{float(self.best):.5g}, saved to {self.filepath}")
        if self._backup is not None:
            self._write_state(epoch + 1)
            self._backup.on_epoch_end(epoch, logs)

    def _warn_nothing_saved(self):
        """Says that training ended with no model saved: Keras takes the
        first monitored epoch as an improvement, whatever its value (NaN
        and a `baseline` not beaten too), so only a `start_from_epoch` past
        the last epoch leaves no best model to reload, nor a file, which
        Keras' own checkpoint does not say."""
        warnings.warn(
            f"CheckpointEarlyStopping saved no model to {self.filepath}: "
            f"no epoch trained reached start_from_epoch="
            f"{self.start_from_epoch}, so `{self.monitor}` was never "
            "monitored. The model keeps the weights of its last epoch.",
            stacklevel=2)

    def _count_as_saved(self):
        """After the best epoch's step count is loaded back, reads it under
        the number of batches per update it was accumulated under, and
        notes that for `GradientAccumulation`, which goes on from the
        count and number it noted last."""
        steps = self._best_accumulation
        if not steps:
            return
        optimizer = base_optimizer(self.model.optimizer)
        if hasattr(optimizer, ACCUMULATION_MARK):
            _note_counted_under(optimizer, steps)
        set_accumulation(self.model, steps)

    def _write_state(self, next_epoch):
        """Writes the state for a resume at `next_epoch` beside the one
        before it: the backup written next may not come (a crash), and a
        resume then starts from the earlier epoch."""
        states = []
        if os.path.exists(self._state_path()):
            with open(self._state_path()) as f:
                # Not a state for this epoch or later, left by a run that
                # crashed before its backup: a second crash there would
                # keep only the states after the backup's epoch.
                states = [state for state in json.load(f)
                          if state["epoch"] < next_epoch][-1:]
        os.makedirs(self.backup_dir, exist_ok=True)
        write_json(states + [self._state(next_epoch)], self._state_path())

    def _take_later_keys(self):
        """Takes into the last epoch's logs what the callbacks listed after
        this one added to them at that epoch's end (a
        `LearningRateScheduler`'s `learning_rate`), which came after they
        were copied; True if there was any. Without it, the epochs kept
        with the backup lacked those keys after a resume."""
        logs, self._epoch_end_logs = self._epoch_end_logs, None
        if logs is None:
            return False
        latest = _scalars(logs)
        if latest.keys() == self.epoch_logs[-1].keys():
            return False
        self.epoch_logs[-1] = latest
        return True

    def on_train_end(self, logs=None):
        self._take_later_keys()
        super().on_train_end(logs)  # restore_best_weights is off: no-op
        if self._backup is not None:
            # Where the backup resumed this fit, for a fit that ran no
            # epoch; Keras never clears it, and a later `fit` would start
            # there.
            self.model._initial_epoch = None
        if isinstance(self.params, dict):
            # The History returned shares these params: it held this
            # callback, which JSON cannot write.
            self.params.pop(_CLAIMS, None)
        if not self._saved and self.epoch_logs:
            self._warn_nothing_saved()
        if self.restore_best and self._saved:
            self.model.load_weights(self.filepath)
            self._count_as_saved()
            if self.verbose:
                print(f"Restored the best weights (epoch "
                      f"{self.best_epoch + 1}) from {self.filepath}")
        if self._backup is not None:
            # Only the backup's own files go: the folder may hold others
            # (it may be the folder of `filepath`).
            remove_files([self._state_path(), *self._backup.files()],
                         self.backup_dir)
