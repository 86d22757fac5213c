"""Model builders."""

from kerastrain.models.resnet import resnet, valid_depths

__all__ = ["resnet", "valid_depths"]
