"""DropPath (stochastic depth) and the linear rule for its per-block rates."""

import keras

from kerastrain._seeds import LAYER_SEED_LIMIT
from kerastrain._validation import check_float, check_int, check_seed


@keras.saving.register_keras_serializable(package="kerastrain")
class DropPath(keras.layers.Dropout):
    """Drops a whole residual branch per sample (stochastic depth).

    In training, each sample's input is kept with probability `1 - rate`
    and scaled by `1 / (1 - rate)`, or zeroed entirely; at inference the
    layer is the identity. Put it on the residual branch, before the
    addition with the shortcut, so that a dropped sample passes through the
    block as the identity. The name follows timm: some implementations
    (EfficientNet's among them) call this "drop connect", but DropConnect
    (Wan et al., 2013) drops single weights, a different technique; and
    `keras.layers.Dropout` drops single activations.

    It is Keras' `Dropout` with a noise shape of `(batch, 1, ..., 1)`, so
    seeding, mixed precision and the scaling are Keras' own.

    Args:
        rate: Float in `[0, 1)`, the probability of dropping a sample's
            branch.
        seed: Optional integer. Two layers built with the same seed draw
            the same sequence of masks.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Input shape:
        Any tensor with a batch axis first.

    Output shape:
        Same as the input.

    Example:

    >>> import numpy as np
    >>> x = np.ones((4, 3, 3, 2), dtype="float32")
    >>> y = keras.ops.convert_to_numpy(DropPath(0.5, seed=1)(x, training=True))
    >>> set(np.unique(y)) <= {0.0, 2.0}  # each sample dropped or doubled
    True

    Reference:
        Huang, Sun, Liu, Sedra and Weinberger, "Deep Networks with
        Stochastic Depth", ECCV 2016 (arXiv:1603.09382).
    """

    def __init__(self, rate, seed=None, **kwargs):
        rate = check_float("rate", rate, low=0.0, high=1.0, high_closed=False)
        # As a Python int: Keras' seed generator refuses NumPy's.
        seed = check_seed("seed", seed, high=LAYER_SEED_LIMIT)
        if "noise_shape" in kwargs:
            raise TypeError(
                "DropPath has no `noise_shape` argument: it drops whole "
                "samples, one draw per sample whatever the input's rank. "
                "For other shapes use keras.layers.Dropout. Received: "
                f"noise_shape={kwargs['noise_shape']!r}")
        super().__init__(rate=rate, seed=seed, **kwargs)

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            # One Bernoulli draw per sample, broadcast over every other axis.
            return keras.random.dropout(
                inputs, self.rate,
                noise_shape=(None,) + (1,) * (len(inputs.shape) - 1),
                seed=self.seed_generator)
        return inputs

    def get_config(self):
        config = super().get_config()
        # The noise shape follows from the input's rank; not an argument.
        config.pop("noise_shape", None)
        return config


def stochastic_depth_rates(num_blocks, final_rate):
    """Per-block drop rates by the linear decay rule of stochastic depth.

    Block `l` of `L` (counting from 1 at the input) gets
    `final_rate * l / L`: the first blocks, which compute low-level
    features that every later block uses, are almost always kept, and the
    last block is dropped with probability `final_rate`.

    Args:
        num_blocks: Integer >= 1, the number of residual blocks `L`.
        final_rate: Float in `[0, 1)`, the drop rate of the last block
            (Huang et al. use 0.5, i.e. a survival probability of 0.5).

    Returns:
        A list of `num_blocks` floats.

    Example:

    >>> stochastic_depth_rates(4, 0.2)
    [0.05, 0.1, 0.15000000000000002, 0.2]

    Reference:
        Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016,
        section 3, "linear decay rule".
    """
    num_blocks = check_int("num_blocks", num_blocks, min_value=1)
    final_rate = check_float("final_rate", final_rate, low=0.0, high=1.0,
                             high_closed=False)
    return [final_rate * l / num_blocks for l in range(1, num_blocks + 1)]
