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


def constant_output(norm, channels, groups=32, positions=None):
    """Why `normalization(norm, channels, groups)` would output its offset
    whatever its input (each of its means taken over a single value per
    sample), and what to change, or None if it would not.

    Args:
        norm: One of `NORMALIZATIONS`.
        channels: Integer, the number of channels it normalizes.
        groups: Integer, the number of groups for `"group"`.
        positions: The height times the width of its feature map, or None
            where that is unknown (then only layer norm can be judged).

    Returns:
        A sentence for an error message, or None.

    Example:

    >>> constant_output("group", 32, 32, positions=1)[:34]
    'It would apply group norm with one'
    >>> constant_output("group", 64, 32, positions=1) is None
    True
    """
    if norm == "layer" and channels == 1:
        case, fix = "layer norm over one channel", "more channels"
    elif positions != 1:
        return None
    elif norm == "instance":
        case, fix = "instance norm at one position", "a larger feature map"
    elif norm == "group" and math.gcd(channels, groups) == channels:
        case = (f"group norm with one channel in each of its {channels} "
                "groups at one position")
        fix = "fewer groups, more channels or a larger feature map"
    else:
        return None
    return (f"It would apply {case}, which outputs its offset whatever the "
            f"input. Use another norm, or {fix}.")
