"""Data: splits, scaling, class balancing and loaders."""

from kerastrain.data.balance import balance
from kerastrain.data.cutmix import CutMix
from kerastrain.data.datasets import load
from kerastrain.data.image_pipeline import channel_stats, image_pipeline
from kerastrain.data.passes import fit_passes
from kerastrain.data.random_resized_crop import RandomResizedCrop
from kerastrain.data.split import class_counts, split
from kerastrain.data.tabular import tabular_preprocessor

__all__ = ["CutMix", "RandomResizedCrop", "balance", "channel_stats",
           "class_counts", "fit_passes", "image_pipeline", "load", "split",
           "tabular_preprocessor"]
