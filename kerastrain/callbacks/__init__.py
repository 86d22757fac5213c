"""Callbacks for `model.fit`."""

from kerastrain.callbacks.checkpoint_early_stopping import (
    CheckpointEarlyStopping)
from kerastrain.callbacks.gradient_accumulation import GradientAccumulation
from kerastrain.callbacks.lr_finder import LRFinder, find_lr
from kerastrain.callbacks.lr_finder_result import LRFinderResult
from kerastrain.callbacks.snapshot_ensemble import SnapshotEnsemble
from kerastrain.callbacks.weight_histograms import WeightHistograms

__all__ = [
    "CheckpointEarlyStopping",
    "GradientAccumulation",
    "LRFinder",
    "LRFinderResult",
    "SnapshotEnsemble",
    "WeightHistograms",
    "find_lr",
]
