"""Model builders."""

from kerastrain.models.ensemble import ensemble
from kerastrain.models.resnet import resnet, valid_depths
from kerastrain.models.tta import tta

__all__ = ["ensemble", "resnet", "tta", "valid_depths"]
