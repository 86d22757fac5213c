"""Snapshot ensembles: one model saved at the end of each cosine cycle."""

import glob
import json
import math
import os
import warnings

import keras

from kerastrain._validation import check_int, check_path, check_verbose
from kerastrain.callbacks._training_state import base_optimizer
from kerastrain.io import save_model, write_json

MANIFEST = "snapshots.json"

CosineDecayRestarts = keras.optimizers.schedules.CosineDecayRestarts


class SnapshotEnsemble(keras.callbacks.Callback):
    """Saves the model at the end of every learning-rate cycle.

    With a cosine schedule that restarts every `cycle_steps` steps, each
    cycle ends in a different minimum; the models saved there, averaged by
    `kerastrain.models.ensemble`, predict better than any one of them, for
    the cost of a single training run (Huang et al., 2017).

    Snapshots are written atomically as `snapshot_<cycle>.keras` in
    `directory`. Steps are the optimizer's applied updates
    (`optimizer.iterations`), so snapshots fall at the cycle ends with any
    `steps_per_execution`, and with gradient accumulation a step is one
    update of several batches (`GradientAccumulation` makes the schedule
    count updates too; Keras' own `gradient_accumulation_steps` alone
    makes it count batches: give it `first_decay_steps=cycle_steps *
    gradient_accumulation_steps`). A second `fit` (or a resumed one)
    continues the numbering. A cycle that ends inside an execution of
    several steps is saved with the weights at the end of that execution,
    the closest Keras hands to a callback (when one execution ends several
    cycles, only the last is saved, with a warning).

    `snapshots` lists the files this training wrote, oldest first: the
    members of its ensemble. With `keep`, only the last `keep` of them
    stay on disk. The list is also kept in `directory/snapshots.json`
    (written atomically with each snapshot): a training resumed in a new
    process (`BackupAndRestore`), or continued with a new callback, finds
    the snapshots of the cycles its optimizer has already passed there.
    Other files in `directory` (another run's) are never listed nor
    deleted: a warning names them at the start of `fit`, and those with
    the number of a cycle this training ends are overwritten. Give each
    run an empty folder.

    Args:
        cycle_steps: Steps per cycle, >= 1; the `first_decay_steps` of the
            `CosineDecayRestarts` schedule (with `t_mul=1`).
        directory: Folder for the snapshots.
        keep: How many of the latest snapshots to keep, or None for all.
        verbose: 1 to print a line per snapshot.

    Example:

    >>> import keras
    >>> schedule = keras.optimizers.schedules.CosineDecayRestarts(
    ...     0.1, first_decay_steps=500, t_mul=1.0, m_mul=1.0)
    >>> callback = SnapshotEnsemble(500, "saved_models/snapshots", keep=5)

    Reference:
        Huang et al., "Snapshot Ensembles: Train 1, get M for free", 2017;
        Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
        Restarts", 2017.
    """

    def __init__(self, cycle_steps, directory="saved_models/snapshots",
                 keep=None, verbose=0):
        super().__init__()
        self.cycle_steps = check_int("cycle_steps", cycle_steps, min_value=1)
        if keep is not None:
            keep = check_int("keep", keep, min_value=1)
        self.directory = check_path("directory", directory)
        if os.path.exists(self.directory) and not os.path.isdir(
                self.directory):
            # Found only at the first snapshot, a cycle into `fit`.
            raise ValueError(
                "Argument `directory` must be a folder (or not exist yet); "
                f"a file is there. Received: directory={directory!r}")
        self.keep = keep
        self.verbose = check_verbose(verbose)
        self._saved = []  # (cycle, path) of this training, oldest first
        self._step = None  # updates at the last read; None: not read yet
        self._batches = 0  # batches run since that read
        self._first_batch = 0  # of the execution running
        self._recount = False  # read the count at the next batch

    @property
    def snapshots(self):
        """Paths of the snapshots this training saved and `keep` left,
        oldest first."""
        return [path for _, path in self._saved]

    def on_train_begin(self, logs=None):
        # The update count is read at the first batch, once every
        # `on_train_begin` has run (BackupAndRestore restores it there).
        self._step = None
        # The schedule and the accumulation are the inner optimizer's
        # under loss scaling (mixed_float16).
        optimizer = base_optimizer(self.model.optimizer)
        accumulation = getattr(optimizer, "gradient_accumulation_steps",
                               None) or 1
        if math.ceil(self.model.steps_per_execution
                     / accumulation) > self.cycle_steps:
            warnings.warn(
                "SnapshotEnsemble: one execution of steps_per_execution="
                f"{self.model.steps_per_execution} batches can end more "
                f"than one cycle of {self.cycle_steps} steps; only the "
                "last of them is saved.", stacklevel=2)
        schedule = getattr(optimizer, "_learning_rate", None)
        if not isinstance(schedule, CosineDecayRestarts):
            return
        config = schedule.get_config()
        # Keras' own gradient accumulation evaluates schedules at the batch
        # count; GradientAccumulation makes them see the update count.
        matching = {self.cycle_steps, self.cycle_steps * accumulation}
        if (config["first_decay_steps"] not in matching
                or config["t_mul"] != 1.0):
            warnings.warn(
                "SnapshotEnsemble saves every "
                f"{self.cycle_steps} steps, but the schedule restarts after "
                f"{config['first_decay_steps']} steps with "
                f"t_mul={config['t_mul']}: snapshots will not fall at the "
                "end of the cycles.", stacklevel=2)

    def on_epoch_begin(self, epoch, logs=None):
        self._recount = True

    def on_train_batch_begin(self, batch, logs=None):
        if self._step is None:
            self._start()
        elif self._recount:
            # Updates applied between epochs (GradientAccumulation closing
            # an unfinished accumulation) end cycles too. The count is
            # free to read here: Keras syncs the JAX state after an epoch.
            self._count(self._read_step())
        self._recount = False
        self._first_batch = batch

    def on_train_batch_end(self, batch, logs=None):
        # Keras calls this once per execution, for the batches
        # `_first_batch..batch`. Each batch applies at most one update, so
        # the count is read only when that many could end a cycle: on JAX
        # reading anything from the model forces a state sync, too costly
        # on every batch. Without accumulation that is one read per cycle,
        # at its end.
        self._batches += batch - self._first_batch + 1
        if ((self._step + self._batches) // self.cycle_steps
                > self._step // self.cycle_steps):
            self._count(self._read_step())

    def _count(self, step):
        """Takes the update count `step`; saves if a cycle ended since the
        last count."""
        cycle = self._step // self.cycle_steps
        self._step, self._batches = step, 0
        if step // self.cycle_steps > cycle:
            self._save(step // self.cycle_steps)

    def _read_step(self):
        return int(keras.ops.convert_to_numpy(
            self.model.optimizer.iterations))

    def _start(self):
        """Resets what belongs to this training at its first batch."""
        self._step, self._batches = self._read_step(), 0
        # A snapshot of a later cycle than the optimizer has reached (all
        # of them, for an optimizer at 0) is from another training.
        first = self._step // self.cycle_steps
        if not self._saved and first:
            self._saved = self._read_manifest()
        self._saved = [(c, p) for c, p in self._saved if c <= first]
        ours = {os.path.abspath(p) for p in self.snapshots}
        others = [p for p in sorted(glob.glob(os.path.join(
            glob.escape(self.directory), "snapshot_*.keras")))
            if os.path.abspath(p) not in ours]
        if others:
            warnings.warn(
                f"SnapshotEnsemble: {self.directory} holds "
                f"{len(others)} snapshot file(s) that this training did "
                f"not write ({', '.join(map(os.path.basename, others[:3]))}"
                f"{', ...' if len(others) > 3 else ''}). They are not in "
                "`snapshots` and `keep` leaves them; those with the number "
                "of a cycle this training ends will be overwritten. Use an "
                "empty folder per run.", stacklevel=3)

    def _save(self, cycle):
        path = os.path.join(self.directory, f"snapshot_{cycle:04d}.keras")
        save_model(self.model, path)
        self._saved.append((cycle, path))
        if self.verbose:
            print(f"\nSnapshotEnsemble: cycle {cycle} saved to {path}")
        if self.keep is not None:
            for _, old in self._saved[:-self.keep]:
                if os.path.exists(old):
                    os.remove(old)
            del self._saved[:-self.keep]
        write_json({"cycle_steps": self.cycle_steps, "snapshots": [
            [c, os.path.basename(p)] for c, p in self._saved]},
            os.path.join(self.directory, MANIFEST))

    def _read_manifest(self):
        """The `(cycle, path)` list the training this one continues wrote
        in `directory/snapshots.json`, its files still there; [] without
        one, or one written with other `cycle_steps`."""
        try:
            with open(os.path.join(self.directory, MANIFEST)) as f:
                manifest = json.load(f)
        except (OSError, ValueError):
            return []
        if manifest.get("cycle_steps") != self.cycle_steps:
            return []
        saved = [(int(c), os.path.join(self.directory, name))
                 for c, name in manifest.get("snapshots", [])]
        return [(c, p) for c, p in saved if os.path.exists(p)]
