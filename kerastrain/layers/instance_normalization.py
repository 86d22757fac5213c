"""Instance normalization: per sample, per channel, over the spatial axes."""

import math

import keras
from keras import ops

from kerastrain._validation import (check_bool, check_float,
                                    check_in_float32, check_int,
                                    check_keras_identifier)


@keras.saving.register_keras_serializable(package="kerastrain")
class InstanceNormalization(keras.layers.GroupNormalization):
    """Instance normalization layer (Ulyanov et al., 2016).

    Normalizes each sample and each channel over its spatial axes (length
    for 1D, height and width for 2D, depth, height and width for 3D), then
    applies a per-channel scale `gamma` and offset `beta`. Unlike batch
    normalization it keeps no running statistics, so training and inference
    compute the same thing; it is the normalization of style transfer and a
    batch-size-independent choice for small batches.

    It equals `torch.nn.InstanceNorm{1,2,3}d(C, affine=True, eps=epsilon)`
    and Keras' `GroupNormalization(groups=-1)` mathematically. It subclasses
    the latter for its arguments, weights and config, but computes the
    statistics of shifted data in two passes, `mean((x - mean(x))**2)`
    after subtracting one sample per channel: Keras' group norm uses forms
    (`E[x^2] - E[x]^2` on the torch backend, `x*inv - mean*inv` elsewhere)
    that lose float32 precision on inputs with a large mean.

    Args:
        axis: Integer, the channel axis: -1 for channels-last inputs
            (the default), 1 for channels-first.
        epsilon: Small float added to the variance. Defaults to 1e-5, as
            in PyTorch.
        center: If True, add the learned offset `beta`.
        scale: If True, multiply by the learned scale `gamma`.
        beta_initializer: Initializer for `beta`. Defaults to "zeros".
        gamma_initializer: Initializer for `gamma`. Defaults to "ones".
        beta_regularizer, gamma_regularizer: Optional regularizers.
        beta_constraint, gamma_constraint: Optional constraints.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Input shape:
        A tensor of rank 3, 4 or 5: `(batch, *spatial, channels)` for
        `axis=-1`, `(batch, channels, *spatial)` for `axis=1`. The channel
        dimension must be known.

    Output shape:
        Same as the input.

    Example:

    >>> import numpy as np
    >>> x = np.random.rand(2, 8, 8, 3).astype("float32")
    >>> y = InstanceNormalization()(x)
    >>> tuple(y.shape)
    (2, 8, 8, 3)

    Reference:
        Ulyanov, Vedaldi and Lempitsky, "Instance Normalization: The
        Missing Ingredient for Fast Stylization", arXiv:1607.08022 (2016).
    """

    def __init__(
        self,
        axis=-1,
        epsilon=1e-5,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        axis = check_int("axis", axis)
        if axis == 0:
            # Axis 0 is the batch axis whatever the rank; other axes can
            # only be checked against the input, in `build`.
            raise ValueError(
                "Argument `axis` must name a channel axis, not the batch "
                "axis 0: -1 for channels-last inputs, 1 for channels-first. "
                f"Received: axis={axis}"
            )
        epsilon = check_in_float32("epsilon", check_float(
            "epsilon", epsilon, low=0.0, low_closed=False))
        if "groups" in kwargs:
            raise TypeError(
                "InstanceNormalization has no `groups` argument: it is one "
                "group per channel. For other groups use "
                "keras.layers.GroupNormalization. Received: "
                f"groups={kwargs['groups']!r}")
        # Resolved here so that a misspelt name fails naming its argument.
        weights = {
            f"{weight}_{kind}": check_keras_identifier(
                f"{weight}_{kind}", value, getter)
            for weight, kind, value, getter in (
                ("beta", "initializer", beta_initializer,
                 keras.initializers.get),
                ("gamma", "initializer", gamma_initializer,
                 keras.initializers.get),
                ("beta", "regularizer", beta_regularizer,
                 keras.regularizers.get),
                ("gamma", "regularizer", gamma_regularizer,
                 keras.regularizers.get),
                ("beta", "constraint", beta_constraint,
                 keras.constraints.get),
                ("gamma", "constraint", gamma_constraint,
                 keras.constraints.get))}
        super().__init__(
            groups=-1,
            axis=axis,
            epsilon=epsilon,
            center=check_bool("center", center),
            scale=check_bool("scale", scale),
            **weights,
            **kwargs,
        )

    def build(self, input_shape):
        rank = len(input_shape)
        if rank < 3:
            raise ValueError(
                "InstanceNormalization needs inputs of rank >= 3 "
                "(batch, spatial axes..., channels); there is no spatial axis "
                f"to normalize over. Received: input_shape={input_shape}"
            )
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(
                "Argument `axis` must name a channel axis of the input "
                f"(not the batch axis 0), between 1 and {rank - 1} or "
                f"-{rank - 1} and -1. Received: axis={self.axis} for "
                f"input_shape={input_shape}"
            )
        if input_shape[self.axis] is None:
            raise ValueError(
                "InstanceNormalization needs a defined channel dimension to "
                f"create its weights, but axis {self.axis} of the input is "
                f"None. Received: input_shape={input_shape}"
            )
        self._check_spatial_size(input_shape)
        super().build(input_shape)

    def _check_spatial_size(self, shape):
        """Refuses a `shape` whose spatial axes, where known, hold one
        element: each channel's one value minus its mean is 0, and the
        output would be the offset whatever the input (PyTorch refuses it
        in training too). Checked at build, and at call for axes the
        model left open (`Input((None, None, 3))`): jax and torch call
        with every size known, TensorFlow's graphs may leave them None."""
        rank = len(shape)
        spatial = [d for a, d in enumerate(shape)
                   if a not in (0, self.axis % rank)]
        if None not in spatial and math.prod(spatial) == 1:
            raise ValueError(
                "InstanceNormalization needs more than one spatial element "
                "per channel; with one it outputs its offset whatever the "
                f"input. Received: input_shape={tuple(shape)}"
            )

    def call(self, inputs, mask=None):
        self._check_spatial_size(inputs.shape)
        rank = len(inputs.shape)
        channel_axis = self.axis % rank
        spatial_axes = [a for a in range(1, rank) if a != channel_axis]
        # Compute in float32 at least, as GroupNormalization does, so that
        # mixed-precision training does not overflow in the variance.
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype,
                                                       "float32"))
        if mask is None:
            def mean(values):
                return ops.mean(values, axis=spatial_axes, keepdims=True)
        else:
            weights = self._mask_weights(mask, inputs, channel_axis, x.dtype)
            # A sample wholly masked counts 1: its outputs stay finite.
            count = ops.maximum(
                ops.sum(weights, axis=spatial_axes, keepdims=True), 1.0)

            def mean(values):
                return ops.sum(values * weights, axis=spatial_axes,
                               keepdims=True) / count
        # Shifted-data algorithm: subtracting one sample of each channel
        # first is exact for nearby values and leaves small numbers whose
        # mean float32 keeps to full precision. With a mask, the first
        # position may be padding far from the data (`pad_sequences` pads
        # in front): the masked mean serves instead.
        first = tuple(slice(0, 1) if a in spatial_axes else slice(None)
                      for a in range(rank))
        anchor = x[first] if mask is None else mean(x)
        shifted = x - ops.stop_gradient(anchor)
        centered = shifted - mean(shifted)
        outputs = centered * ops.rsqrt(mean(ops.square(centered))
                                       + self.epsilon)
        broadcast_shape = [1] * rank
        broadcast_shape[channel_axis] = inputs.shape[channel_axis]
        if self.scale:
            outputs = outputs * ops.reshape(
                ops.cast(self.gamma, x.dtype), broadcast_shape)
        if self.center:
            outputs = outputs + ops.reshape(
                ops.cast(self.beta, x.dtype), broadcast_shape)
        return ops.cast(outputs, self.compute_dtype)

    def _mask_weights(self, mask, inputs, channel_axis, dtype):
        """A Keras mask, one value per position (`inputs.shape[:-1]`, the
        channels last), as 0/1 weights that leave the masked positions (a
        sequence's padding) out of the statistics."""
        rank = len(inputs.shape)
        if channel_axis != rank - 1 or len(mask.shape) != rank - 1:
            raise ValueError(
                "InstanceNormalization takes a mask of one value per "
                "position, shape `inputs.shape[:-1]`, with the channels on "
                f"the last axis. Received: mask of shape {mask.shape} for "
                f"inputs of shape {inputs.shape}, axis={self.axis}")
        return ops.expand_dims(ops.cast(mask, dtype), -1)

    def get_config(self):
        config = super().get_config()
        # `groups` is fixed to "one per channel"; it is not an argument here.
        config.pop("groups", None)
        return config
