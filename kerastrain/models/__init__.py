"""Model builders."""

from kerastrain.models.ensemble import ensemble
from kerastrain.models.resnet import resnet, valid_depths

__all__ = ["ensemble", "resnet", "valid_depths"]
