"""Snapshot ensembles: one model saved at the end of each cosine cycle."""

import glob
import os
import warnings

import keras

from kerastrain._validation import check_int
from kerastrain.io import save_model

CosineDecayRestarts = keras.optimizers.schedules.CosineDecayRestarts


class SnapshotEnsemble(keras.callbacks.Callback):
    """Saves the model at the end of every learning-rate cycle.

    With a cosine schedule that restarts every `cycle_steps` steps, each
    cycle ends in a different minimum; the models saved there, averaged by
    `kerastrain.models.ensemble`, predict better than any one of them, for
    the cost of a single training run (Huang et al., 2017).

    Snapshots are written atomically as `snapshot_<cycle>.keras` in
    `directory`; with `keep`, only the last `keep` stay on disk. Steps are
    counted from the optimizer's update count, so a second `fit` (or a
    resumed one) continues the numbering.

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
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(
                "Argument `directory` must be a path. Received: "
                f"directory={directory!r}")
        self.directory = os.fspath(directory)
        self.keep = keep
        self.verbose = verbose
        self._step = 0

    @property
    def snapshots(self):
        """Paths of the snapshots on disk, oldest first."""
        return sorted(glob.glob(os.path.join(self.directory,
                                             "snapshot_*.keras")))

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        self._step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        schedule = getattr(optimizer, "_learning_rate", None)
        if not isinstance(schedule, CosineDecayRestarts):
            return
        config = schedule.get_config()
        if (config["first_decay_steps"] != self.cycle_steps
                or config["t_mul"] != 1.0):
            warnings.warn(
                "SnapshotEnsemble saves every "
                f"{self.cycle_steps} steps, but the schedule restarts after "
                f"{config['first_decay_steps']} steps with "
                f"t_mul={config['t_mul']}: snapshots will not fall at the "
                "end of the cycles.", stacklevel=2)

    def on_train_batch_end(self, batch, logs=None):
        # Counted here, not read from the optimizer: on JAX, touching
        # `self.model` forces a state sync, too costly on every batch.
        self._step += 1
        if self._step % self.cycle_steps == 0:
            self._save(self._step // self.cycle_steps)

    def _save(self, cycle):
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"snapshot_{cycle:04d}.keras")
        save_model(self.model, path)
        if self.verbose:
            print(f"\nSnapshotEnsemble: cycle {cycle} saved to {path}")
        if self.keep is not None:
            for old in self.snapshots[:-self.keep]:
                os.remove(old)
