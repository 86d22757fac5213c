"""Layers: normalization, stochastic depth and residual blocks."""

from kerastrain.layers.drop_path import DropPath, stochastic_depth_rates
from kerastrain.layers.instance_normalization import InstanceNormalization
from kerastrain.layers.normalization import NORMALIZATIONS
from kerastrain.layers.residual_block import ResidualBlock

__all__ = [
    "DropPath",
    "InstanceNormalization",
    "NORMALIZATIONS",
    "ResidualBlock",
    "stochastic_depth_rates",
]
