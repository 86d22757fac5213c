"""Optimizers: Keras' SGD and AdamW with scheduled momentum, and LARS."""

from kerastrain.optimizers.adamw import AdamW
from kerastrain.optimizers.lars import LARS
from kerastrain.optimizers.sgd import SGD

__all__ = ["AdamW", "LARS", "SGD"]
