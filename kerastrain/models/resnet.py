"""CIFAR-style ResNet builder (He et al., 2016, section 4.2)."""

import numbers
import warnings

import keras

from kerastrain._seeds import MODEL_SEED_LIMIT
from kerastrain._validation import (check_activation, check_bool,
                                    check_float, check_int,
                                    check_keras_identifier, check_seed,
                                    check_size)
from kerastrain.layers.drop_path import stochastic_depth_rates
from kerastrain.layers.normalization import (check_norm, constant_output,
                                             normalization)
from kerastrain.layers.residual_block import (CONVS_PER_BLOCK, ResidualBlock,
                                              fresh_initializer)

NUM_STAGES = 3


def valid_depths(bottleneck=False, up_to=200):
    """Depths the CIFAR ResNet accepts: 6n+2 (basic) or 9n+2 (bottleneck).

    Args:
        bottleneck: True for bottleneck blocks (9n+2), False for basic ones
            (6n+2).
        up_to: The largest depth to list.

    Returns:
        The depths from the smallest (n = 1) up to `up_to`, ascending.

    Example:

    >>> valid_depths()[:4]
    [8, 14, 20, 26]
    """
    step = _depth_step(check_bool("bottleneck", bottleneck))
    return list(range(step + 2, check_int("up_to", up_to, min_value=1) + 1,
                      step))


def _depth_step(bottleneck):
    """Weighted layers per block times the number of stages."""
    return NUM_STAGES * (3 if bottleneck else 2)


def blocks_per_stage(depth, bottleneck=False):
    """The `n` of `depth = 6n + 2` (basic) or `9n + 2` (bottleneck).

    Any such depth is accepted, however large (ResNet-1202, ResNet-1001);
    `valid_depths` only lists examples for the error message.

    Example:

    >>> blocks_per_stage(1202), blocks_per_stage(164, bottleneck=True)
    (200, 18)
    """
    depth = check_int("depth", depth)
    step = _depth_step(bottleneck)
    if depth < step + 2 or (depth - 2) % step:
        kind = "9n+2 (bottleneck)" if bottleneck else "6n+2"
        examples = valid_depths(bottleneck, up_to=8 * step + 2)
        raise ValueError(
            f"Argument `depth` must be {kind} with n >= 1; valid depths "
            f"include {', '.join(map(str, examples))}, ... "
            f"Received: depth={depth}"
        )
    return (depth - 2) // step


def check_norm_reads_images(norm, input_shape, width, groups=32):
    """Raises a `ValueError` if `resnet` with this `norm`, `width` and
    `groups` would have a norm that sees one value per mean (its output,
    and so the logits, would not depend on the image), naming where.

    Args:
        norm: One of `NORMALIZATIONS`.
        input_shape: `(height, width, channels)`; height and width may be
            None (unknown: only layer norm is judged).
        width: Integer, the channels of the first stage.
        groups: Integer, the number of groups for `"group"`.

    Example:

    >>> check_norm_reads_images("group", (8, 8, 1), width=8)  # 2x2 at the end
    """
    for where, channels, positions in _normalized_maps(input_shape, width):
        reason = constant_output(norm, channels, groups, positions)
        if reason is not None:
            raise ValueError(
                f"Argument `norm`={norm!r} does not suit width={width}, "
                f"groups={groups} and images of input_shape={input_shape} "
                f"in {where}. {reason}")


def _normalized_maps(input_shape, width):
    """Where the norms of `resnet` sit: for the stem and each stage, a name,
    the fewest channels a norm there normalizes (a bottleneck's inner
    width; its output has 4 times as many, which a norm that suits the
    fewest suits too), and the height times the width of its feature map
    (None where unknown)."""
    maps = stage_feature_maps(input_shape)
    for stage, (h, w) in enumerate([maps[0]] + maps):
        where = "the stem" if stage == 0 else f"stage {stage} ({h}x{w})"
        yield (where, width * 2 ** max(stage - 1, 0),
               None if None in (h, w) else h * w)


def stage_feature_maps(input_shape):
    """Height and width of each stage's feature map: each stage after the
    first halves them (stride 2, "same" padding: rounded up); None stays
    None.

    Example:

    >>> stage_feature_maps((32, 32, 3))
    [(32, 32), (16, 16), (8, 8)]
    """
    maps = [tuple(input_shape[:2])]
    for _ in range(NUM_STAGES - 1):
        maps.append(tuple(None if d is None else -(-d // 2)
                          for d in maps[-1]))
    return maps


def check_input_shape(value, dynamic=True):
    """`(height, width, channels)` as a tuple of integers >= 1; with
    `dynamic`, height and width may also be None (any size)."""
    shape = None
    if not isinstance(value, (str, bytes)):
        try:
            shape = tuple(value)
        except TypeError:
            pass
    if shape is None or len(shape) != 3:
        raise (TypeError if shape is None else ValueError)(
            "Argument `input_shape` must be (height, width, channels). "
            f"Received: input_shape={value!r}")
    for i, d in enumerate(shape):
        if d is None and dynamic and i < 2:
            continue
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or (
                d < 1):
            raise ValueError(
                "Argument `input_shape` must be (height, width, channels), "
                "integers >= 1" + (" (height and width may be None)"
                                   if dynamic else "")
                + f". Received: input_shape={value!r}")
    return tuple(None if d is None else int(d) for d in shape)


def resnet(
    input_shape,
    num_classes,
    depth=20,
    width=16,
    norm="batch",
    drop_path_rate=0.0,
    bottleneck=False,
    shortcut=True,
    activation="relu",
    kernel_initializer="he_normal",
    kernel_regularizer=None,
    groups=32,
    seed=None,
    name=None,
):
    """Builds the CIFAR-style ResNet of He et al., returning logits.

    A 3x3 convolution with `width` filters, then three stages of `n`
    residual blocks at widths `width`, `2 * width`, `4 * width` (the last
    two start with stride 2), global average pooling and a dense layer
    with `num_classes` outputs and no activation. Basic blocks give
    `depth = 6n + 2` (ResNet-20, -32, -44, -56, -110); bottleneck blocks
    (expansion 4) give `depth = 9n + 2` (ResNet-164). ResNet-20 with
    width 16 has about 0.27 M parameters, as in the paper. Stochastic
    depth uses the linear decay rule over all blocks.

    Args:
        input_shape: Tuple `(height, width, channels)`, e.g. `(32, 32, 3)`:
            the model is channels-last whatever
            `keras.config.image_data_format()` says (under a global
            `"channels_first"` it warns, since `(channels, height, width)`
            would silently build another net).
        num_classes: Integer >= 1, the number of logits.
        depth: Integer, the number of weighted layers (see above).
        width: Integer >= 1, the channels of the first stage.
        norm: One of `"batch"`, `"instance"`, `"layer"`, `"group"` or None.
        drop_path_rate: Float in `[0, 1)`, the drop rate of the last block;
            earlier blocks get linearly smaller rates.
        bottleneck: If True, use bottleneck blocks.
        shortcut: If False, build the same net without skip connections
            (the "plain" net of the paper, which trains worse as it gets
            deeper: the degradation problem).
        activation: The activation after each block and the stem.
        kernel_initializer: Initializer of every convolution, each getting
            a copy of its own (`fresh_initializer`: a seeded one gets a
            distinct seed per convolution).
        kernel_regularizer: Optional regularizer of every convolution and
            the classifier, e.g. `keras.regularizers.L2(1e-4)`.
        groups: Integer, the number of groups for `norm="group"`.
        seed: Optional integer in [0, 2**30); seeds the DropPath masks.
        name: Optional model name, by default `"resnet{depth}"`.

    Returns:
        An uncompiled functional `keras.Model` from images to logits; pair
        it with a loss built with `from_logits=True`.

    Example:

    >>> model = resnet((32, 32, 3), num_classes=10, depth=20)
    >>> round(model.count_params() / 1e6, 2)
    0.27

    Reference:
        He, Zhang, Ren and Sun, "Deep Residual Learning for Image
        Recognition", CVPR 2016, section 4.2 (arXiv:1512.03385).
    """
    input_shape = check_input_shape(input_shape)
    num_classes = check_size("num_classes", num_classes, min_value=1)
    depth = check_int("depth", depth)
    width = check_size("width", width, min_value=1)
    check_norm(norm)
    groups = check_int("groups", groups, min_value=1)
    check_norm_reads_images(norm, input_shape, width, groups)
    drop_path_rate = check_float("drop_path_rate", drop_path_rate, low=0.0,
                                 high=1.0, high_closed=False)
    # Block i gets `seed + i`.
    seed = check_seed("seed", seed, high=MODEL_SEED_LIMIT)
    check_bool("bottleneck", bottleneck)
    check_bool("shortcut", shortcut)
    if not shortcut and drop_path_rate > 0:
        raise ValueError(
            "Argument `drop_path_rate` needs `shortcut=True`: stochastic "
            "depth drops residual branches, and a plain net has none. "
            f"Received: drop_path_rate={drop_path_rate}, shortcut=False"
        )
    num_blocks = blocks_per_stage(depth, bottleneck)
    rates = stochastic_depth_rates(NUM_STAGES * num_blocks,
                                   drop_path_rate)
    # Resolve once so that a misspelt activation fails here, not deep in a
    # block, and name the argument.
    check_activation(activation)
    check_keras_identifier("kernel_initializer", kernel_initializer,
                           keras.initializers.get)
    check_keras_identifier("kernel_regularizer", kernel_regularizer,
                           keras.regularizers.get)

    if keras.config.image_data_format() == "channels_first":
        # Both readings of `input_shape` build a net; only one is meant.
        warnings.warn(
            "`resnet` builds a channels-last model whatever "
            "`keras.config.image_data_format()` says (here "
            "'channels_first'): `input_shape` is read as (height, width, "
            f"channels). Received: input_shape={input_shape}. Transpose "
            "channels-first images first, e.g. with "
            "`keras.ops.transpose(images, (0, 2, 3, 1))`.", stacklevel=2)
    inputs = keras.Input(shape=input_shape)
    # Channels-last whatever `keras.config.image_data_format()` says: the
    # norms and the blocks normalize and add over the last axis.
    x = keras.layers.Conv2D(width, 3, padding="same",
                            data_format="channels_last",
                            use_bias=norm is None,
                            kernel_initializer=fresh_initializer(
                                kernel_initializer),
                            kernel_regularizer=kernel_regularizer,
                            name="stem_conv")(inputs)
    stem_norm = normalization(norm, width, groups, name="stem_norm")
    if stem_norm is not None:
        x = stem_norm(x)
    x = keras.layers.Activation(activation, name="stem_act")(x)
    for stage in range(NUM_STAGES):
        for i in range(num_blocks):
            index = stage * num_blocks + i
            x = ResidualBlock(
                width * 2**stage,
                strides=2 if stage > 0 and i == 0 else 1,
                bottleneck=bottleneck,
                norm=norm,
                drop_path_rate=rates[index],
                activation=activation,
                # A seeded initializer: distinct seeds for every block.
                kernel_initializer=fresh_initializer(
                    kernel_initializer, CONVS_PER_BLOCK * (index + 1)),
                kernel_regularizer=kernel_regularizer,
                shortcut=shortcut,
                groups=groups,
                seed=None if seed is None else seed + index,
                name=f"stage{stage + 1}_block{i + 1}",
            )(x)
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_last",
                                            name="pool")(x)
    # float32 logits keep the softmax stable under mixed precision.
    outputs = keras.layers.Dense(num_classes,
                                 kernel_regularizer=kernel_regularizer,
                                 dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs,
                       name=name or f"resnet{depth}" + ("" if shortcut
                                                         else "_plain"))
