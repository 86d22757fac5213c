"""The `norm=` choice shared by residual blocks and model builders."""

import math

import keras

from kerastrain._validation import check_choice, check_int
from kerastrain.layers.instance_normalization import InstanceNormalization

NORMALIZATIONS = ("batch", "instance", "layer", "group", None)


def check_norm(norm):
    """Raises a `ValueError` unless `norm` is one of `NORMALIZATIONS`."""
    return check_choice("norm", norm, NORMALIZATIONS)


def normalization(norm, channels, groups=32, **kwargs):
    """Returns a fresh channels-last normalization layer, or None.

    Args:
        norm: One of `"batch"` (BatchNormalization with momentum 0.9, as
            in PyTorch), `"instance"`
            (InstanceNormalization), `"layer"` (LayerNormalization over the
            channel axis, as in ConvNeXt), `"group"` (GroupNormalization) or
            None (no normalization).
        channels: Integer, the number of channels to normalize.
        groups: Integer, the number of groups for `"group"`. Wu and He's
            default is 32; it is reduced to `gcd(channels, groups)` so that
            it divides the channel count (a 16-channel layer gets 16 groups).
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Returns:
        A Keras layer, or None for `norm=None`.
    """
    check_norm(norm)
    channels = check_int("channels", channels, min_value=1)
    groups = check_int("groups", groups, min_value=1)
    if norm == "batch":
        # PyTorch's moving-average momentum (0.1 there, i.e. 0.9 here):
        # Keras' 0.99 leaves the inference statistics ~55% at their initial
        # values after 60 steps, which spoils evaluation after short runs.
        return keras.layers.BatchNormalization(momentum=0.9, **kwargs)
    if norm == "instance":
        return InstanceNormalization(**kwargs)
    if norm == "layer":
        return keras.layers.LayerNormalization(**kwargs)
    if norm == "group":
        return keras.layers.GroupNormalization(
            groups=math.gcd(channels, groups), **kwargs)
    return None
