"""Callbacks for `model.fit`."""

from kerastrain.callbacks.snapshot_ensemble import SnapshotEnsemble

__all__ = ["SnapshotEnsemble"]
