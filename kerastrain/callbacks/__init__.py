"""Callbacks for `model.fit`."""

from kerastrain.callbacks.gradient_accumulation import GradientAccumulation
from kerastrain.callbacks.snapshot_ensemble import SnapshotEnsemble

__all__ = ["GradientAccumulation", "SnapshotEnsemble"]
