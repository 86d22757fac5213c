"""Random resized crop for the tf.data input pipeline, on whole batches."""

import math

from kerastrain._seeds import tf_generator
from kerastrain._validation import check_float, check_seed


def _check_pair(name, value, low, high=None):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(
            f"Argument `{name}` must be a pair (min, max). Received: "
            f"{name}={value!r}")
    lo = check_float(f"{name}[0]", value[0], low=low, high=high,
                     low_closed=False)
    hi = check_float(f"{name}[1]", value[1], low=low, high=high,
                     low_closed=False)
    if lo > hi:
        raise ValueError(
            f"Argument `{name}` must be (min, max) with min <= max. "
            f"Received: {name}={value!r}")
    return lo, hi


class RandomResizedCrop:
    """Crops a random part of each image of a batch and resizes it back.

    The random resized crop of Inception and torchvision's
    `RandomResizedCrop`: per image, an area fraction is drawn uniformly
    from `scale` and an aspect ratio (width / height, in pixels)
    log-uniformly from `ratio`, a box of that area and ratio is placed
    uniformly at random **inside** the image, and the box is resized
    (bilinear) to the image's size. Where an area and a ratio cannot fit
    (a box wider or taller than the image), the ratio is drawn from the
    part of `ratio` that fits, or is the nearest ratio that fits where
    none of it does, where torchvision redraws both ten times and then
    falls back to a centre crop; so the area always comes from `scale`, on
    a whole batch without a loop.

    Keras has no such layer: `RandomZoom` zooms about the centre only. This
    runs in the tf.data input pipeline (which feeds every Keras backend),
    on a whole batch at once with `tf.image.crop_and_resize`, one
    resampling per pixel; `image_pipeline(augment=("crop",))` uses it.

    Args:
        scale: (min, max) area fraction of the crop, in (0, 1].
        ratio: (min, max) aspect ratio (width / height in pixels) of the
            crop, > 0.
        seed: None, or an integer >= 0: the same sequence of crops on
            every run.

    Example:

    >>> import numpy as np
    >>> crop = RandomResizedCrop(scale=(0.5, 1.0), seed=0)
    >>> crop(np.zeros((4, 32, 32, 3), "float32")).shape
    TensorShape([4, 32, 32, 3])

    Reference:
        Szegedy et al., 2015, "Going deeper with convolutions".
    """

    def __init__(self, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), seed=None):
        self.scale = _check_pair("scale", scale, low=0, high=1)
        self.ratio = _check_pair("ratio", ratio, low=0)
        self.seed = check_seed("seed", seed)
        self._random = tf_generator(self.seed, spread=True)

    def __call__(self, images):
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        if images.shape.rank == 3:  # one image, as Keras' layers allow
            return self(images[None])[0]
        if images.shape.rank != 4:
            raise ValueError(
                "RandomResizedCrop takes channels-last images (N, H, W, C) "
                f"or one image (H, W, C). Received shape {images.shape}")
        shape = tf.shape(images)
        n = shape[0]
        area = self._random.uniform([n], self.scale[0], self.scale[1])
        # The ratio is in pixels (torchvision's): as fractions of each side,
        # w / h = ratio * H / W, and w * h = area with w, h <= 1 leaves
        # w / h in [area, 1 / area].
        log_area = tf.math.log(area)
        side = tf.math.log(tf.cast(shape[1], "float32") / tf.cast(
            shape[2], "float32"))
        # `ratio` clipped to what fits: where none of it does, the nearest
        # ratio that does (it gave a box the image clipped, of less area).
        low, high = (tf.minimum(tf.maximum(math.log(r) + side, log_area),
                                -log_area) for r in self.ratio)
        log_ratio = low + (high - low) * self._random.uniform([n])
        width = tf.minimum(tf.sqrt(area * tf.exp(log_ratio)), 1.0)
        height = tf.minimum(tf.sqrt(area * tf.exp(-log_ratio)), 1.0)
        top = (1.0 - height) * self._random.uniform([n])
        left = (1.0 - width) * self._random.uniform([n])
        boxes = tf.stack([top, left, top + height, left + width], axis=1)
        size = images.shape[1:3]  # static where known, for Keras' fit
        return tf.image.crop_and_resize(
            images, boxes, tf.range(n),
            size if size.is_fully_defined() else shape[1:3])
