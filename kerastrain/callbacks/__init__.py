"""Callbacks for `model.fit`."""

from kerastrain.callbacks.checkpoint_early_stopping import (
    CheckpointEarlyStopping)
from kerastrain.callbacks.gradient_accumulation import GradientAccumulation
from kerastrain.callbacks.snapshot_ensemble import SnapshotEnsemble

__all__ = [
    "CheckpointEarlyStopping",
    "GradientAccumulation",
    "SnapshotEnsemble",
]
