"""CutMix for the tf.data input pipeline, on whole batches."""

from kerastrain._seeds import tf_generator
from kerastrain._validation import FLOAT32_MAX, check_float, check_seed

# The largest Beta parameter of mixup or cutmix: the weight is
# g1 / (g1 + g2) of two float32 Gamma(alpha) draws of about alpha each,
# whose sum must not overflow (inf gave NaN images, a sum near the limit a
# weight of 0).
MAX_ALPHA = FLOAT32_MAX / 4


class CutMix:
    """Pastes a random box of another image of the batch into each image,
    and mixes the labels by the share of pixels actually pasted.

    The CutMix of Yun et al. as their reference code (and timm's
    `rand_bbox` with `correct_lam`) does it, per image: a weight
    `lam ~ Beta(alpha, alpha)`, a box of `int(H * sqrt(1 - lam))` by
    `int(W * sqrt(1 - lam))` pixels centred on a uniformly drawn pixel and
    clipped to the image, the box's pixels taken from a partner image (a
    random permutation of the batch), and the label
    `(1 - a) * y + a * y_partner` where `a` is the area of the clipped box
    over the image's. So images and labels are the same combination, to the
    pixel.

    Keras' `CutMix` layer differs on both counts: it weighs the labels by
    the box's real-valued area, not the whole pixels it pastes (on 8x8
    digits the two differ by 0.07 on average, by up to 0.23), and its
    `factor` is not the Beta parameter but the upper end of a uniform draw
    of it, in [0, 1].

    Args:
        alpha: Beta parameter, > 0 (1: the paper's, a uniform weight), at
            most `MAX_ALPHA`.
        seed: None, or an integer >= 0: the same sequence of boxes on
            every run.

    Call it on `{"images": (N, H, W, C), "labels": (N, K)}` (one-hot or
    soft labels, integer ones cast to float32); it returns the same dict,
    mixed.

    Example:

    >>> import numpy as np
    >>> mix = CutMix(alpha=1.0, seed=0)
    >>> out = mix({"images": np.zeros((4, 8, 8, 1), "float32"),
    ...            "labels": np.eye(4, dtype="float32")})
    >>> out["images"].shape, out["labels"].shape
    (TensorShape([4, 8, 8, 1]), TensorShape([4, 4]))

    Reference:
        Yun et al., 2019, "CutMix: Regularization Strategy to Train Strong
        Classifiers with Localizable Features" (arXiv:1905.04899).
    """

    def __init__(self, alpha=1.0, seed=None):
        self.alpha = check_float("alpha", alpha, low=0, low_closed=False,
                                 high=MAX_ALPHA)
        self.seed = check_seed("seed", seed)
        self._random = tf_generator(self.seed, spread=True)

    def __call__(self, data):
        import tensorflow as tf

        images = tf.convert_to_tensor(data["images"])
        labels = tf.convert_to_tensor(data["labels"])
        if images.shape.rank != 4:
            raise ValueError(
                "CutMix takes a batch of channels-last images (N, H, W, C). "
                f"Received shape {images.shape}")
        if labels.shape.rank != 2:
            raise ValueError(
                "CutMix takes one-hot or soft labels (N, K). Received "
                f"shape {labels.shape}")
        # Only static sizes are checked: inside tf.data the batch size is
        # unknown until run time.
        if None not in (images.shape[0], labels.shape[0]) and (
                images.shape[0] != labels.shape[0]):
            raise ValueError(
                "CutMix needs one label row per image. Received: "
                f"{images.shape[0]} images, {labels.shape[0]} label rows")
        if not labels.dtype.is_floating:
            # Integer one-hot rows: the mixed labels are fractions.
            labels = tf.cast(labels, "float32")
        shape = tf.shape(images)
        n, height, width = shape[0], shape[1], shape[2]
        # Beta(a, a) as the ratio of two Gamma(a) draws.
        gammas = tf.random.stateless_gamma(
            [2, n], seed=self._random.make_seeds(1)[:, 0], alpha=self.alpha)
        lam = gammas[0] / tf.maximum(gammas[0] + gammas[1], 1e-12)
        cut = tf.sqrt(1.0 - lam)

        def bounds(side):
            length = tf.cast(tf.cast(side, "float32") * cut, "int32")
            centre = self._random.uniform([n], 0, side, dtype="int32")
            return (tf.clip_by_value(centre - length // 2, 0, side),
                    tf.clip_by_value(centre + length // 2, 0, side))

        top, bottom = bounds(height)
        left, right = bounds(width)
        rows = tf.range(height)[None, :, None]
        cols = tf.range(width)[None, None, :]
        inside = ((rows >= top[:, None, None]) & (rows < bottom[:, None, None])
                  & (cols >= left[:, None, None])
                  & (cols < right[:, None, None]))
        partner = tf.argsort(self._random.uniform([n]))
        mixed = tf.where(inside[..., None], tf.gather(images, partner),
                         images)
        pasted = tf.cast((bottom - top) * (right - left), labels.dtype) / (
            tf.cast(height * width, labels.dtype))
        pasted = pasted[:, None]
        return {"images": mixed,
                "labels": (1 - pasted) * labels
                + pasted * tf.gather(labels, partner)}
