"""The residual block of ResNet: basic or bottleneck, any normalization."""

import copy

import keras

from kerastrain._seeds import LAYER_SEED_LIMIT
from kerastrain._validation import (check_activation, check_bool,
                                    check_float, check_int,
                                    check_keras_identifier, check_seed,
                                    check_size)
from kerastrain.layers.drop_path import DropPath
from kerastrain.layers.normalization import (check_norm, constant_output,
                                             normalization)

BOTTLENECK_EXPANSION = 4
# At most three branch convolutions and a projection: the seed offsets
# a block gives its convolutions' initializers.
CONVS_PER_BLOCK = 4


def fresh_initializer(initializer, offset=0):
    """A new initializer like `initializer`, for one layer, with an integer
    seed moved by `offset`.

    Keras' random initializers draw the same values at every call (the
    seed is fixed when the object is made), so one object shared by two
    convolutions of the same shape would start them identical. From its
    config, an unseeded initializer gets a seed of its own; a seeded one
    gets `seed + offset`: reproducible, and distinct per layer. So does
    one seeded with a `keras.random.SeedGenerator`, whose config holds the
    seed it started from (each copy would draw the same values).

    Args:
        initializer: A Keras initializer (object, name or config).
        offset: Integer added to an integer seed.

    Returns:
        A new `keras.initializers.Initializer`.

    Example:

    >>> import numpy as np
    >>> init = keras.initializers.HeNormal(seed=1)
    >>> a = fresh_initializer(init, 0)((3, 3))
    >>> b = fresh_initializer(init, 1)((3, 3))
    >>> bool(np.allclose(a, b))
    False
    """
    config = keras.initializers.serialize(
        keras.initializers.get(initializer))
    config = copy.deepcopy(config)
    seeded = config.get("config") if isinstance(config, dict) else None
    if isinstance(seeded, dict) and isinstance(seeded.get("seed"), dict):
        # A `SeedGenerator`: its config holds the seed it started from,
        # the same for every initializer made from it.
        seeded = seeded["seed"].get("config")
    seed = seeded.get("seed") if isinstance(seeded, dict) else None
    if isinstance(seed, int) and not isinstance(seed, bool):
        # Within the uint32 range JAX's seeds take.
        seeded["seed"] = (seed + offset) % 2**32
    return keras.initializers.get(config)


@keras.saving.register_keras_serializable(package="kerastrain")
class ResidualBlock(keras.layers.Layer):
    """ResNet block: `activation(branch(x) + shortcut(x))`.

    The branch is two 3x3 convolutions (basic block) or a 1x1-3x3-1x1
    bottleneck whose last convolution expands the channels by 4, each
    convolution followed by the chosen normalization, as in the original
    ResNet (post-activation). The shortcut is the identity, or a strided
    1x1 convolution plus normalization (a "projection", option B of He et
    al.) when the block changes the spatial size or the channel count.
    `DropPath` on the branch gives stochastic depth; `shortcut=False` gives
    the "plain" block without a skip connection, for comparing how deep
    nets train with and without one.

    Channels-last 2D inputs only.

    Args:
        filters: Integer >= 1, the branch width; the block outputs
            `filters` channels, or `4 * filters` with `bottleneck=True`.
        strides: Integer >= 1, the stride of the 3x3 convolution (2 halves
            height and width).
        bottleneck: If True, use the 1x1-3x3-1x1 bottleneck branch.
        norm: One of `"batch"`, `"instance"`, `"layer"`, `"group"` or None.
        drop_path_rate: Float in `[0, 1)`, the probability of dropping the
            branch per sample in training (stochastic depth).
        activation: Name or function of the activation (any that
            `keras.activations.get` accepts).
        kernel_initializer: Initializer of the convolutions; each gets a
            copy of its own (`fresh_initializer`), so that two of the same
            shape do not start identical.
        kernel_regularizer: Optional regularizer of the convolutions (for
            example `keras.regularizers.L2(1e-4)`).
        shortcut: If False, no skip connection (the plain block).
        groups: Integer >= 1, the number of groups for `norm="group"`,
            reduced to a divisor of the channel count.
        seed: Optional integer seed of the DropPath masks, in
            [0, 2**31).
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, height, width, channels)`.

    Output shape:
        `(batch, ceil(height / strides), ceil(width / strides), out)` with
        `out = filters`, or `4 * filters` for a bottleneck.

    Example:

    >>> import numpy as np
    >>> block = ResidualBlock(32, strides=2, norm="group",
    ...                       drop_path_rate=0.1)
    >>> tuple(block(np.zeros((2, 16, 16, 16), dtype="float32")).shape)
    (2, 8, 8, 32)

    Reference:
        He, Zhang, Ren and Sun, "Deep Residual Learning for Image
        Recognition", CVPR 2016 (arXiv:1512.03385).
    """

    def __init__(
        self,
        filters,
        strides=1,
        bottleneck=False,
        norm="batch",
        drop_path_rate=0.0,
        activation="relu",
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        shortcut=True,
        groups=32,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_size("filters", filters, min_value=1)
        self.strides = check_int("strides", strides, min_value=1)
        self.bottleneck = check_bool("bottleneck", bottleneck)
        self.norm = check_norm(norm)
        self.drop_path_rate = check_float("drop_path_rate", drop_path_rate,
                                          low=0.0, high=1.0,
                                          high_closed=False)
        self.activation = check_activation(activation)
        self.kernel_initializer = check_keras_identifier(
            "kernel_initializer", kernel_initializer, keras.initializers.get)
        self.kernel_regularizer = check_keras_identifier(
            "kernel_regularizer", kernel_regularizer, keras.regularizers.get)
        self.shortcut = check_bool("shortcut", shortcut)
        self.groups = check_int("groups", groups, min_value=1)
        self.seed = check_seed("seed", seed, high=LAYER_SEED_LIMIT)
        if not self.shortcut and self.drop_path_rate > 0:
            raise ValueError(
                "Argument `drop_path_rate` needs `shortcut=True`: without a "
                "skip connection, dropping the branch drops the whole "
                f"signal. Received: drop_path_rate={drop_path_rate}, "
                "shortcut=False"
            )

        self.out_channels = self.filters * (
            BOTTLENECK_EXPANSION if self.bottleneck else 1)
        if self.bottleneck:
            branch = [(self.filters, 1, 1), (self.filters, 3, self.strides),
                      (self.out_channels, 1, 1)]
        else:
            branch = [(self.filters, 3, self.strides), (self.filters, 3, 1)]
        # Layer norm is judged here; the others need the feature map.
        self._check_norm_input(min(c for c, _, _ in branch), None)
        self.convs = [self._conv(c, k, s, f"conv{i}", i)
                      for i, (c, k, s) in enumerate(branch)]
        self.norms = [self._norm(c, f"norm{i}")
                      for i, (c, _, _) in enumerate(branch)]
        self.drop_path = (DropPath(self.drop_path_rate, seed=self.seed,
                                   name="drop_path", dtype=self.dtype_policy)
                          if self.drop_path_rate > 0 else None)
        self.projection = None
        self.projection_norm = None
        self._open_sizes = False  # spatial sizes left open at build

    def _conv(self, filters, kernel_size, strides, name, index):
        return keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding="same",
            # Channels-last whatever the global image format: the norms
            # and the sum work on the last axis.
            data_format="channels_last",
            # A bias before a normalization with an offset is redundant.
            use_bias=self.norm is None,
            kernel_initializer=fresh_initializer(self.kernel_initializer,
                                                 index),
            kernel_regularizer=self.kernel_regularizer,
            name=name,
            dtype=self.dtype_policy,
        )

    def _norm(self, channels, name):
        # Sublayers follow the block's dtype policy (mixed precision).
        kwargs = dict(name=name, dtype=self.dtype_policy)
        layer = normalization(self.norm, channels, self.groups, **kwargs)
        return layer if layer is not None else keras.layers.Identity(
            **kwargs)

    def _check_norm_input(self, channels, shape):
        """Refuses a normalization that would see one value per mean (its
        output would be its offset, whatever the input); `shape` is its
        input shape, or None before the block is built."""
        positions = None
        if shape is not None and None not in shape[1:3]:
            positions = shape[1] * shape[2]
        reason = constant_output(self.norm, channels, self.groups, positions)
        if reason is not None:
            at = "" if shape is None else (
                f", where a norm sees a {shape[1]}x{shape[2]} feature map")
            raise ValueError(
                f"Argument `norm`={self.norm!r} does not suit a "
                f"ResidualBlock with filters={self.filters}, strides="
                f"{self.strides}, bottleneck={self.bottleneck} and groups="
                f"{self.groups}{at}. {reason}")

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "ResidualBlock expects channels-last 2D inputs "
                "(batch, height, width, channels) with a known channel "
                f"count. Received: input_shape={input_shape}"
            )
        self._open_sizes = None in input_shape[1:3]
        if self.shortcut and (self.strides != 1
                              or input_shape[-1] != self.out_channels):
            # A 1x1 convolution of stride s reads every s-th pixel: it is
            # one of stride 1 on those pixels (`_subsampled`). So it is
            # written: torch 2.13's CPU build (oneDNN 3.12) computes the
            # kernel's gradient of a strided 1x1 convolution wrongly for
            # 2 to 4 input channels on two threads or more (off by up to
            # twice its size, differently at every call).
            self.projection = self._conv(self.out_channels, 1, 1,
                                         "projection", CONVS_PER_BLOCK - 1)
            self.projection_norm = self._norm(self.out_channels,
                                              "projection_norm")
            _build_chain([self.projection, self.projection_norm],
                         self._subsampled_shape(input_shape),
                         self._check_norm_input)
        _build_chain([layer for pair in zip(self.convs, self.norms)
                      for layer in pair], input_shape,
                     self._check_norm_input)
        if self.drop_path is not None:
            self.drop_path.build(self.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        x = inputs
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = self._normalized(norm, conv(x), training)
            if i < len(self.convs) - 1:
                x = self.activation(x)
        if not self.shortcut:
            return self.activation(x)
        if self.drop_path is not None:
            x = self.drop_path(x, training=training)
        skip = inputs
        if self.projection is not None:
            skip = self._normalized(
                self.projection_norm,
                self.projection(self._subsampled(inputs)), training)
        return self.activation(x + skip)

    def _normalized(self, norm, x, training):
        """`norm(x)`, where the block was built on spatial sizes a model
        left open (`Input((None, None, c))`) first checked on `x`'s, if
        known (jax and torch call with every size known): group norm of
        one channel a group passed a 1x1 map there, and output its offset
        whatever the input (instance norm checks itself)."""
        if self._open_sizes:
            self._check_norm_input(x.shape[-1], x.shape)
        return norm(x, training=training)

    def _subsampled(self, inputs):
        """Every `strides`-th pixel of `inputs`, from the first: those a
        "same" 1x1 convolution of that stride reads."""
        if self.strides == 1:
            return inputs
        return inputs[:, ::self.strides, ::self.strides, :]

    def _subsampled_shape(self, input_shape):
        return (input_shape[0], *(
            None if n is None else -(-n // self.strides)
            for n in input_shape[1:3]), input_shape[3])

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for conv in self.convs:
            shape = conv.compute_output_shape(shape)
        return shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "strides": self.strides,
            "bottleneck": self.bottleneck,
            "norm": self.norm,
            "drop_path_rate": self.drop_path_rate,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(
                self.kernel_regularizer),
            "shortcut": self.shortcut,
            "groups": self.groups,
            "seed": self.seed,
        })
        return config


def _build_chain(layers, input_shape, check_norm_input):
    """Builds layers applied one after another, so that the block's weights
    exist right after `build()` (a `.keras` file loads into them); each
    normalization (every second layer) is first checked by
    `check_norm_input(channels, its input shape)`."""
    shape = input_shape
    for i, layer in enumerate(layers):
        if i % 2:
            check_norm_input(shape[-1], shape)
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return shape
