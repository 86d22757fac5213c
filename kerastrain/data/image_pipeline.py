"""A tf.data pipeline for images: batched augmentation, then mixup/cutmix."""

import math
import numbers
import warnings

import numpy as np

from kerastrain._seeds import spawn_seeds, tf_generator
from kerastrain._validation import check_bool, check_float, check_size
from kerastrain.data._equalization import count_bins_once
from kerastrain.data._image_inputs import (check_normalize,
                                           check_normalize_channels,
                                           check_randaugment_input,
                                           image_array, one_hot_labels,
                                           pixels, read_dataset)
from kerastrain.data.cutmix import MAX_ALPHA, CutMix
from kerastrain.data.random_resized_crop import RandomResizedCrop
from kerastrain.data.split import check_same_length

AUGMENTATIONS = ("flip", "shift", "rotate", "crop", "randaugment")
FLIPS = ("horizontal", "vertical", "horizontal_and_vertical")


def channel_stats(x):
    """Per-channel mean and standard deviation of images `x` (N, H, W, C),
    after scaling integer pixels to [0, 1] (as `image_pipeline` does): pass
    them as `normalize=(mean, std)` for the validation and test
    pipelines.

    Args:
        x: Images as a NumPy array (N, H, W, C), integer pixels (0-255)
            or floats.

    Returns:
        `(mean, std)`, two NumPy arrays of C values; `std` has 1e-7 added,
        so that dividing by it is safe.

    Example:

    >>> import numpy as np
    >>> x = np.zeros((2, 4, 4, 3), "uint8")
    >>> x[1] = 255
    >>> mean, std = channel_stats(x)
    >>> mean.tolist(), np.round(std, 4).tolist()
    ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    """
    return _stats(pixels(x))


def _stats(images):
    """Per-channel mean and std (plus 1e-7) of float32 images (N, H, W, C),
    summed in float64, a few million values at a time: NumPy sums strided
    float32 axes in float32, which stops growing near 2**24 (CIFAR-10's
    50,000 training images gave a mean of 0.33 for 0.50)."""
    step = max(1, 2**22 // max(1, images[0].size))
    chunks = [images[i:i + step] for i in range(0, len(images), step)]
    count = images.size // images.shape[-1]
    mean = sum(c.sum(axis=(0, 1, 2), dtype="float64") for c in chunks) / count
    squares = sum(np.square(c - mean).sum(axis=(0, 1, 2)) for c in chunks)
    std = np.sqrt(squares / count) + 1e-7
    return mean.astype("float32"), std.astype("float32")


def _shift_factor(side):
    """`RandomTranslation`'s factor for pad-and-crop on a side of `side`
    pixels: whole-pixel shifts, each of -p..p equally likely, p = side //
    8 (at least 1). The layer draws a shift uniform in [-factor * side,
    factor * side] and, with nearest interpolation, rounds it, so
    (p + 0.5) / side gives each integer in [-p, p] a width of one."""
    return (max(1, side // 8) + 0.5) / side


def _augmenters(augment, seeds, image_size=(32, 32)):
    """The augmentation layers, the i-th seeded with `seeds[i]`, for
    images of `image_size` (height, width): a name gets its layer with
    kerastrain's defaults, a `(name, options)` pair the same layer with
    `options` overriding them, a callable stays."""
    import keras

    layers = {
        "flip": (keras.layers.RandomFlip, {"mode": "horizontal"}),
        # Pad-and-crop: whole pixels, up to 1/8 of the side (4 pixels of
        # 32, 1 of 8), zeros filling in. Keras' default bilinear
        # interpolation would move by fractions of a pixel, blurring.
        "shift": (keras.layers.RandomTranslation, {
            "height_factor": _shift_factor(image_size[0]),
            "width_factor": _shift_factor(image_size[1]),
            "fill_mode": "constant", "interpolation": "nearest"}),
        "rotate": (keras.layers.RandomRotation, {"factor": 0.04}),
        # Keras' RandomZoom only zooms about the centre.
        "crop": (RandomResizedCrop, {}),
        "randaugment": (keras.layers.RandAugment, {"value_range": (0, 1)}),
    }
    result = []
    for entry, seed in zip(augment, seeds):
        if callable(entry):
            result.append(entry)
            continue
        name, options = _name_and_options(entry)
        cls, defaults = layers[name]
        for side, key in zip(image_size, ("height_factor", "width_factor")):
            if name == "shift" and side < 2 and key not in options:
                # The default shift of 1 pixel is Keras' factor 1.5 on
                # such a side, which it refuses, naming options the user
                # never passed.
                raise ValueError(
                    "Augmentation 'shift' in `augment` shifts by whole "
                    f"pixels: images {image_size[0]}x{image_size[1]} "
                    f"pixels need a `{key}` of their own (a side of 1 "
                    "pixel has no pixel to shift by).")
        kwargs = {**defaults, **options, "seed": seed}
        if cls is not RandomResizedCrop:
            # float32 whatever the global dtype policy: under
            # mixed_float16 the Keras layers would compute in float16,
            # and MixUp's float32 weights clash. Channels-last whatever
            # the global image format: the pipeline's images are, and
            # under channels_first a flip would swap red and blue.
            kwargs.update(dtype="float32", data_format="channels_last")
        if cls is keras.layers.RandomFlip and kwargs["mode"] not in FLIPS:
            # Keras takes any mode, and flips nothing for one it does not
            # know.
            raise ValueError(
                f"Augmentation 'flip' in `augment` takes a `mode` among "
                f"{', '.join(FLIPS)}. Received: mode={kwargs['mode']!r}")
        try:
            layer = cls(**kwargs)
        except (TypeError, ValueError, NotImplementedError) as error:
            # Keras raises NotImplementedError for an unknown fill_mode.
            raise (TypeError if isinstance(error, TypeError) else
                   ValueError)(
                f"Augmentation {name!r} ({cls.__name__}) rejected the "
                f"options {options!r} in `augment`: {error}") from error
        if name == "randaugment":
            count_bins_once(layer.equalization)
        result.append(layer)
    return result


def _name_and_options(entry):
    """A named entry of `augment` as `(name, options)`, or a clear
    error."""
    pair = isinstance(entry, tuple) and len(entry) == 2
    name, options = entry if pair else (entry, {})
    if (isinstance(entry, tuple) and not pair) or not isinstance(
            options, dict) or not isinstance(
                name, str) or name not in AUGMENTATIONS:
        raise ValueError(
            f"Unknown augmentation {entry!r} in `augment`. Allowed: "
            f"{', '.join(AUGMENTATIONS)}, a (name, options) pair "
            "such as ('rotate', {'factor': 0.02}), or a callable on "
            "a batch of images")
    if "seed" in options:
        raise ValueError(
            f"Augmentation {name!r} in `augment` got a `seed` option: "
            "the pipeline seeds each layer from its own `seed`")
    for key, value in options.items():
        if _non_finite(value):
            # Keras' layers compare their factors with their bounds,
            # which NaN passes: the images, then the weights, became NaN.
            raise ValueError(
                f"Augmentation {name!r} in `augment` got option "
                f"{key}={value!r}: its numbers must be finite.")
    return name, options


def _non_finite(value):
    """Whether `value`, a number or a tuple or list of them, holds NaN or
    an infinity."""
    if isinstance(value, (tuple, list)):
        return any(_non_finite(v) for v in value)
    # An integer is finite (10**400 overflowed `math.isfinite`).
    return (isinstance(value, numbers.Real)
            and not isinstance(value, numbers.Integral)
            and not math.isfinite(value))


def check_augment(augment, build=False):
    """`augment` as a tuple of names, `(name, options)` pairs and
    callables (one name alone: a 1-tuple), or a clear error; with `build`,
    also for options a layer refuses (each is made once, and dropped)."""
    if isinstance(augment, str):
        augment = (augment,)
    if isinstance(augment, (dict, set, frozenset)):
        # A dict would keep only its keys (its options silently dropped), a
        # set its names in no set order.
        raise TypeError(
            "Argument `augment` must be an ordered sequence: names, "
            "(name, options) pairs or callables, applied in order, such as "
            "(\"flip\", (\"rotate\", {\"factor\": 0.1})). Received: "
            f"augment={augment!r}")
    try:
        augment = tuple(augment or ())
    except TypeError:
        raise TypeError(
            "Argument `augment` must be a sequence of augmentation names, "
            "(name, options) pairs or callables on a batch of images. "
            f"Received: augment={augment!r}") from None
    for entry in augment:
        if isinstance(entry, type):  # a layer class is callable too
            raise TypeError(
                f"Argument `augment` holds the class {entry.__name__}: pass "
                f"an instance, e.g. {entry.__name__}(...), or a name from "
                f"{', '.join(AUGMENTATIONS)}")
        if not callable(entry):
            _name_and_options(entry)
    if build:
        _augmenters(augment, [0] * len(augment))
    return augment


def image_pipeline(x, y, batch_size, num_classes,
                   augment=("flip", "rotate", "crop"), mixup_alpha=0.0,
                   cutmix_alpha=0.0, normalize=True, shuffle=True,
                   cache=True, seed=None, training=True, deterministic=None,
                   drop_remainder=False):
    """Batches of augmented, optionally mixed images with one-hot labels.

    The order of work is what makes it fast: cache the decoded images,
    shuffle, batch, then augment **whole batches** with Keras'
    preprocessing layers (vectorized, run by tf.data on its own threads
    whatever the Keras backend), then mix the batch (mixup: each image
    blended with another of the batch, weight ~ Beta(alpha, alpha), labels
    likewise; cutmix: a box of another image pasted in, labels weighted by
    the pixels pasted, see `CutMix`; with both,
    one of the two per batch), then prefetch. With `training=False` only
    the scaling and normalization apply, in order, without shuffling.

    Args:
        x: At least one image, (N, H, W, C): integers of any dtype are
            8-bit pixel values, which must lie in [0, 255] and are scaled
            to [0, 1]; floats are used as they are and must be finite.
            Or a finite `tf.data.Dataset` of (image, label) pairs, images
            (H, W, C) or batches (B, H, W, C), read into memory once (like
            the cache would): not an infinite one (`.repeat()`; Keras'
            `fit` goes through the pipeline once per epoch anyway), and
            one of unknown size (after `filter`, from a generator) is read
            until it ends, so it must end.
        y: Integer labels in [0, num_classes), shape (N,) or (N, 1), or
            one-hot (or soft) rows, (N, num_classes); None with a dataset.
        batch_size: Images per batch, >= 1.
        num_classes: Number of classes, >= 2.
        augment: Names from `flip`, `shift` (pad-and-crop: whole pixels,
            each shift from -p to p equally likely, p = side // 8 (at
            least 1), zero fill), `rotate`, `crop` (`RandomResizedCrop()`:
            half the area or more, at a random place) and `randaugment`
            (Keras' `RandAugment`: 1 or 3 channels, and pixels must lie
            in its `value_range`, [0, 1] unless given as an option, since
            it clips the rest: divide 0..255 floats by 255, or pass uint8);
            `(name, options)` pairs, the named layer with `options`
            passed to it (`("rotate", {"factor": 0.02})`: Keras'
            `RandomRotation(factor=0.02)`, seeded by the pipeline); or
            callables on a batch of images (a Keras preprocessing layer,
            `RandomResizedCrop(scale=...)`), applied in the order given.
        mixup_alpha: Beta parameter of mixup, >= 0 (0: off). 0.1 to 0.4
            is the usual range. At most `MAX_ALPHA` (a quarter of float32's
            largest number), as `cutmix_alpha`.
        cutmix_alpha: Beta parameter of cutmix, >= 0 (0: off; 1: the
            paper's).
        normalize: True to standardize each channel with `x`'s statistics
            (with `training=False` a warning says to pass the training
            images' instead), a `(mean, std)` pair (from `channel_stats` of
            the training images, for validation and test), each a number or
            one number per channel, the stds > 0, or False (None too):
            the images as they are.
        shuffle: Whether to shuffle (training only).
        cache: Whether to cache the prepared images in memory.
        seed: Integer >= 0, the seed of the shuffle and the augmentations
            (each layer gets its own stream, derived from it).
        training: False for evaluation: no augmentation, no mixing.
        deterministic: Whether the same `seed` gives the same batches.
            Keras' random layers draw from a stateful seed generator, so
            this runs the per-batch work on one thread instead of
            tf.data's parallel calls. None (default): True when `seed` is
            given.
        drop_remainder: Whether a training pass leaves out its last batch
            when it is smaller than `batch_size` (tf.data's
            `batch(drop_remainder=True)`, PyTorch's `drop_last`): every
            batch then has one shape, which jax compiles and TensorFlow
            traces once instead of twice, and since each pass reshuffles
            first, other images sit out each epoch. Training only: an
            evaluation must see every image.

    Returns:
        A `tf.data.Dataset` of `(images, one_hot_labels)` batches.

    Example:

    >>> import numpy as np
    >>> x = np.zeros((10, 8, 8, 3), "uint8")
    >>> y = np.arange(10) % 2
    >>> dataset = image_pipeline(x, y, batch_size=4, num_classes=2,
    ...                          mixup_alpha=0.2, seed=0)
    >>> [tuple(t.shape) for t in next(iter(dataset))]
    [(4, 8, 8, 3), (4, 2)]
    """
    import keras
    import tensorflow as tf

    batch_size = check_size("batch_size", batch_size, min_value=1)
    num_classes = check_size("num_classes", num_classes, min_value=2)
    mixup_alpha = check_float("mixup_alpha", mixup_alpha, low=0,
                              high=MAX_ALPHA)
    cutmix_alpha = check_float("cutmix_alpha", cutmix_alpha, low=0,
                               high=MAX_ALPHA)
    augment = check_augment(augment)
    normalize = check_normalize(normalize)
    shuffle = check_bool("shuffle", shuffle)
    cache = check_bool("cache", cache)
    training = check_bool("training", training)
    drop_remainder = check_bool("drop_remainder", drop_remainder)
    if drop_remainder and not training:
        raise ValueError(
            "Argument `drop_remainder` must be False with training=False: "
            "an evaluation that left out the last batch's images would "
            "score a part of the data. Received: drop_remainder=True, "
            "training=False")
    if normalize is True and not training:
        warnings.warn(
            "image_pipeline(training=False) with normalize=True standardizes "
            "these images with their own statistics, not the training "
            "images': for validation and test data pass "
            "normalize=channel_stats(x_train), or normalize=False.",
            stacklevel=2)
    if deterministic is not None and not isinstance(deterministic,
                                                    (bool, np.bool_)):
        raise TypeError(
            "Argument `deterministic` must be None, True or False. "
            f"Received: deterministic={deterministic!r}")
    # One stream each: layers seeded alike draw alike (a flip would decide
    # the rotation's direction).
    shuffle_seed, mixup_seed, cutmix_seed, pick_seed, *augment_seeds = (
        spawn_seeds(seed, 4 + len(augment)))
    images, labels, scaled = _images_and_labels(x, y, num_classes)
    if drop_remainder and len(images) < batch_size:
        raise ValueError(
            "Argument `batch_size` must be at most the number of images "
            f"with drop_remainder=True, or no batch is whole. Received: "
            f"batch_size={batch_size} for {len(images)} images")
    # Made in evaluation mode too: bad options fail here, not later.
    augmenters = _augmenters(augment, augment_seeds, images.shape[1:3])
    if training:
        check_randaugment_input(augmenters, images, scaled)
    mean, std = _normalization(normalize, images)

    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if cache:
        dataset = dataset.cache()
    if training and shuffle:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed,
                                  reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    steps = [(layer, False) for layer in augmenters] if training else []
    if mean is not None:
        steps.append((lambda b: (b - mean) / std, False))
    if training and mixup_alpha > 0:
        steps.append((keras.layers.MixUp(alpha=mixup_alpha, seed=mixup_seed,
                                         dtype="float32"), True))
    if training and cutmix_alpha > 0:
        steps.append((CutMix(cutmix_alpha, seed=cutmix_seed), True))
    # Stateful, made here: an op-seeded draw would restart with each
    # iterator, picking the same mixer for a batch in every epoch.
    picker = tf_generator(pick_seed)

    def transform(batch_images, batch_labels):
        mixers = [layer for layer, mixes in steps if mixes]
        for layer, mixes in steps:
            if not mixes:
                batch_images = layer(batch_images)
        batch = {"images": batch_images, "labels": batch_labels}

        def mixed_by(mixer):
            def mix():
                mixed = mixer(batch)
                return mixed["images"], mixed["labels"]
            return mix

        if len(mixers) == 2:  # one of the two per batch, as timm does
            # Only the one picked runs (each draws from its own stream).
            return tf.cond(picker.uniform([]) < 0.5, mixed_by(mixers[0]),
                           mixed_by(mixers[1]))
        if mixers:
            return mixed_by(mixers[0])()
        return batch_images, batch_labels

    if deterministic is None:
        deterministic = seed is not None
    if steps:
        # Parallel calls would race for the layers' seed generators.
        dataset = dataset.map(transform, num_parallel_calls=None if (
            deterministic) else tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _images_and_labels(x, y, num_classes):
    """Checked float32 pixels and one-hot labels from arrays, or from a
    dataset of (image, label) pairs read into memory."""
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise ValueError(
                "Argument `y` must be None when `x` is a `tf.data.Dataset` "
                "of (image, label) pairs: the labels come from it. "
                f"Received: y of shape {np.shape(y)}")
        x, y = read_dataset(x, num_classes)
    x = image_array(x)  # converted once (a list of images: a copy)
    images = pixels(x)
    labels = one_hot_labels(y, num_classes)
    check_same_length(images, labels)
    # Integer images are 8-bit pixels, scaled to [0, 1] by `pixels`.
    return images, labels, np.issubdtype(x.dtype, np.integer)


def _normalization(normalize, images):
    """The `(mean, std)` to standardize with, or `(None, None)`."""
    if normalize is True:
        return _stats(images)
    if normalize is False:
        return None, None
    check_normalize_channels(*normalize, images.shape)
    return normalize
