"""Checks and conversions of `image_pipeline`'s inputs: pixels, labels,
`normalize`, and a `tf.data.Dataset` read into memory.

Each raises before any tf.data work, naming the argument, what it got and
what is allowed, so that a bad input never fails deep inside a traced map.
"""

import numbers

import numpy as np

from kerastrain._validation import (FLOAT32_MAX, FLOAT32_TINY,
                                    check_float_list)

# Keras' RandAugment mixes colour operations that need one or three
# channels (grayscale or RGB); others fail inside the traced map.
RANDAUGMENT_CHANNELS = (1, 3)


def image_array(x):
    """Images `x` as one NumPy array, or a clear error for images of
    several shapes (NumPy's "inhomogeneous shape" named none)."""
    try:
        return np.asarray(x)
    except ValueError:
        raise ValueError(
            "Argument `x` must hold images of one shape (N, H, W, C). "
            "Received: a sequence of images of several shapes, "
            f"{sorted({np.shape(image) for image in x})}. Resize them "
            "first.") from None


def pixels(x):
    """Images `x` (N, H, W, C) as float32 pixels, or a clear error.

    Integers of any dtype are 8-bit pixel values: they must lie in
    [0, 255] and are scaled to [0, 1] (int64 images read like uint8 ones).
    Floats are kept as they are and must be finite: one NaN would make
    the channel statistics, and then every normalized image, NaN.
    """
    x = image_array(x)
    if x.ndim != 4:
        raise ValueError(
            "Argument `x` must be a batch of channels-last images "
            f"(N, H, W, C). Received: x.shape={x.shape}")
    if len(x) == 0:
        raise ValueError(
            "Argument `x` must hold at least one image. Received: "
            f"x.shape={x.shape}")
    if 0 in x.shape[1:]:
        raise ValueError(
            "Argument `x` must hold images with at least one pixel and one "
            f"channel (N, H, W, C). Received: x.shape={x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        low, high = x.min(), x.max()
        if low < 0 or high > 255:
            raise ValueError(
                "Argument `x` holds integers, which are read as 8-bit pixel "
                "values in [0, 255] and scaled to [0, 1]. Received: x of "
                f"dtype {x.dtype} with values in [{low}, {high}]. Pass "
                "floats already scaled as you want them.")
        return x.astype("float32") / 255.0
    if not (np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
        raise TypeError(
            "Argument `x` must hold numeric pixel values (integers or "
            f"floats). Received: x of dtype {x.dtype}")
    images = x.astype("float32")
    bad = np.count_nonzero(~np.isfinite(images))
    if bad:
        raise ValueError(
            f"Argument `x` must hold finite pixel values. Received: {bad} "
            f"of the {images.size} values in x (shape {x.shape}) are NaN "
            "or infinite.")
    return images


# Peak magnitudes of the pixels the model sees (integers scaled, floats
# as given) that tell the two scales apart: images within [0, 1] peak at
# 1 (a little more after noise or interpolation), 8-bit ones in 0..255
# far above 10; standardized ones (peaks of 2 to 5) are neither, and
# never refused.
UNIT_PEAK, BYTE_PEAK = 1.5, 10.0


def pixel_range(x):
    """`(min, max)` of checked images `x` as `pixels` gives them (integers
    scaled to [0, 1], floats as they are), and whether they are integers,
    read without converting them."""
    x = np.asarray(x)
    low, high = float(x.min()), float(x.max())
    if np.issubdtype(x.dtype, np.integer):
        return low / 255.0, high / 255.0, True
    return low, high, False


def check_pixel_scales(x, validation_x):
    """Raises where training images `x` and validation images
    `validation_x` (both checked by `pixels`) reach the model on two
    clearly different scales: one side peaks within about [0, 1]
    (`UNIT_PEAK`), the other beyond `BYTE_PEAK`, as 0..255 pixels do.

    `pixels` scales integers to [0, 1] and keeps floats as they are, so
    uint8 training images beside float validation images in 0..255 train
    on [0, 1] and are scored on [0, 255], without a word. Floats beyond
    [0, 1] on both sides (standardized, or 0..255 on purpose) are kept
    as given, and so are a few pixels over 1 (noise, interpolation).
    """
    sides = [pixel_range(x), pixel_range(validation_x)]
    peaks = sorted(max(abs(low), abs(high)) for low, high, _ in sides)
    if not (peaks[0] <= UNIT_PEAK and peaks[1] > BYTE_PEAK):
        return

    def seen(low, high, integers):
        kind = ("integers, 8-bit pixels scaled from [0, 255]" if integers
                else "floats, used as they are")
        return f"[{low:.4g}, {high:.4g}] ({kind})"

    raise ValueError(
        "Argument `validation_data` must hold images on the pixel scale of "
        "the training images `x`: the model would train on pixels in "
        f"{seen(*sides[0])} and be scored on pixels in {seen(*sides[1])}. "
        "Integer images are 8-bit pixels, scaled to [0, 1]; float images "
        "are used as they are. Pass both as integers (uint8), or both as "
        "floats on one scale (divide 0..255 floats by 255).")


def one_hot_labels(y, num_classes):
    """Checked float32 one-hot rows from integer labels `(N,)` or `(N, 1)`
    in [0, num_classes) (whole floats and bools too), or from one-hot (or
    soft) rows `(N, num_classes)`."""
    if y is None:
        raise ValueError(
            "Argument `y` must hold the labels of `x` (integers or one-hot "
            "rows); it is None only when `x` is a `tf.data.Dataset` of "
            "(image, label) pairs. Received: y=None")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == num_classes:
        rows = y.astype("float32")
        if not (rows >= 0).all() or not np.allclose(rows.sum(axis=1), 1.0):
            raise ValueError(
                "Argument `y` given as one-hot (or soft) rows must hold "
                "non-negative numbers summing to 1 in each row. Received: "
                f"row sums in [{rows.sum(axis=1).min()}, "
                f"{rows.sum(axis=1).max()}], minimum {rows.min()}")
        return rows
    if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        raise ValueError(
            "Argument `y` must hold integer labels, shape (N,) or (N, 1), "
            f"or one-hot rows of width num_classes={num_classes}, shape "
            f"(N, {num_classes}). Received: y.shape={y.shape}, "
            f"num_classes={num_classes}")
    y = y.reshape(-1)
    if y.size == 0:
        raise ValueError(
            "Argument `y` must hold one label per image. Received: no "
            "labels")
    # Class indices stored as whole floats (read from a CSV, say) or
    # bools, as Keras' sparse losses and MLPHyperModel take them.
    indices = y
    if y.dtype == bool or (np.issubdtype(y.dtype, np.floating) and np.all(
            np.isfinite(y)) and np.all(y == np.round(y))):
        indices = y.astype("int64")
    if not np.issubdtype(indices.dtype, np.integer) or indices.min() < 0 or (
            indices.max() >= num_classes):
        numbers = np.issubdtype(y.dtype, np.number) or y.dtype == bool
        # Strings and objects have no min and max worth showing (a mix of
        # ints and strings has none at all).
        held = (f"with values in [{y.min()}, {y.max()}]" if numbers else
                "(not numbers: map the classes to 0, 1, ...)")
        raise ValueError(
            f"Argument `y` must hold integers in [0, {num_classes}) (or "
            f"one-hot rows of width {num_classes}). Received: y of dtype "
            f"{y.dtype} {held}")
    return np.eye(num_classes, dtype="float32")[indices]


def check_normalize(normalize):
    """`normalize` as True, False, or a `(mean, std)` pair of float32
    arrays (a number or one per channel each, the stds > 0)."""
    if normalize is None or isinstance(normalize, (bool, np.bool_)):
        return bool(normalize)
    pair = None
    if not isinstance(normalize, (str, bytes, dict)):
        try:
            pair = list(normalize)
        except TypeError:
            pass
    if pair is None or len(pair) != 2:
        raise TypeError(
            "Argument `normalize` must be True, False or a (mean, std) "
            "pair such as `channel_stats(x_train)`. Received: "
            f"normalize={normalize!r}")
    mean, std = (
        np.asarray(check_float_list(f"normalize[{i}]", _numbers(v)),
                   "float32") for i, v in enumerate(pair))
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise ValueError(
            "Argument `normalize` must hold numbers that float32 can hold "
            f"(magnitude <= {FLOAT32_MAX:.4g}), where the pipeline "
            f"computes. Received: normalize={normalize!r}")
    if not (std >= FLOAT32_TINY).all():
        # A smaller std is 0 where XLA and oneDNN flush it: every pixel
        # divided by it is inf or NaN.
        raise ValueError(
            "Argument `normalize` must have a std of at least "
            f"{FLOAT32_TINY:.4g} (float32's smallest normal number) for "
            f"every channel (its second item). Received: "
            f"normalize[1]={pair[1]!r}")
    return mean, std


def _numbers(value):
    """A mean or std as a flat sequence: a number alone is one item."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return [value]
    return np.ravel(value) if isinstance(value, np.ndarray) else value


def check_normalize_channels(mean, std, shape):
    """Raises unless `mean` and `std` hold one number, or one per channel
    of images of `shape`."""
    channels = shape[-1]
    if {len(mean), len(std)} - {1, channels}:
        raise ValueError(
            "Argument `normalize` must give a mean and a std per channel "
            f"of `x` ({channels}), or one number for all. Received: "
            f"normalize=({mean.tolist()}, {std.tolist()}) for x of shape "
            f"{shape}")


def check_randaugment_input(layers, images, scaled=False):
    """Raises unless `images` suit every RandAugment among `layers`: one
    or three channels, and values inside its `value_range`, which it
    would otherwise clip without a word; images `scaled` to [0, 1] from
    8-bit integers (`pixels`) take a range inside [0, 1] only (a
    `value_range` of (0, 255) held them, and put some images on that
    scale and left the rest on [0, 1])."""
    import keras

    for layer in layers:
        if not isinstance(layer, keras.layers.RandAugment):
            continue
        if images.shape[-1] not in RANDAUGMENT_CHANNELS:
            raise ValueError(
                "Augmentation 'randaugment' (Keras' RandAugment) takes "
                "grayscale or RGB images (1 or 3 channels). Received: "
                f"x.shape={images.shape}")
        try:
            low, high = (float(v) for v in layer.value_range)
        except (TypeError, ValueError):
            continue  # a bad option: the layer itself says so
        if scaled and high > 1:
            raise ValueError(
                "Augmentation 'randaugment' gets integer images as 8-bit "
                "pixels scaled to [0, 1], but its value_range is "
                f"[{low:g}, {high:g}]: some of its images would come out on "
                "that scale and the rest on [0, 1]. Leave 'value_range' "
                "out (it is (0, 1) here), or pass float images on the "
                "scale of the range.")
        seen = (float(images.min()), float(images.max()))
        if seen[0] < low or seen[1] > high:
            raise ValueError(
                "Augmentation 'randaugment' works on pixel values in its "
                f"value_range [{low:g}, {high:g}] and clips the rest, but "
                f"argument `x` holds values in [{seen[0]:g}, {seen[1]:g}]. "
                "Divide float images in 0..255 by 255 (or pass them as "
                "uint8, scaled to [0, 1]), or give RandAugment the range: "
                "('randaugment', {'value_range': (low, high)}).")


def read_dataset(dataset, num_classes):
    """Reads a finite dataset of (image, label) pairs, batched or not,
    into arrays: the pipeline caches its input anyway, and the checks and
    statistics need the whole set."""
    import tensorflow as tf

    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(
            "A `tf.data.Dataset` given as `x` must yield (image, label) "
            f"pairs. Received elements: {spec}")
    size = int(dataset.cardinality())
    if size == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            "A `tf.data.Dataset` given as `x` must be finite: it is read "
            "into memory once, and Keras' `fit` goes through the pipeline "
            "once per epoch by itself. Pass it without `.repeat()`. "
            "Received: an infinite dataset")
    if _is_batched(spec, num_classes):
        dataset = dataset.unbatch()
    try:
        batches = [] if size == 0 else list(
            dataset.batch(4096).as_numpy_iterator())
    except tf.errors.InvalidArgumentError as error:
        if "different shapes" not in str(error):
            raise
        raise ValueError(
            "A `tf.data.Dataset` given as `x` must hold images of one size "
            "(and labels of one shape): they are read into one array. "
            "Resize them first, e.g. `dataset.map(lambda image, label: "
            "(tf.image.resize(image, (32, 32)), label))`. TensorFlow said: "
            f"{error.message.split('}} ')[-1].split(' [Op:')[0]}"
        ) from None
    if not batches:
        raise ValueError(
            "A `tf.data.Dataset` given as `x` must hold at least one "
            "(image, label) pair. Received: an empty dataset")
    return (np.concatenate([b[0] for b in batches]),
            np.concatenate([b[1] for b in batches]))


def _is_batched(spec, num_classes):
    """Whether (image, label) elements of `spec` are batches, from their
    ranks: images (H, W, C) come with labels () or (num_classes,),
    batches (B, H, W, C) with labels (B,) or (B, num_classes)."""
    image, label = (s.shape for s in spec)
    if image.rank == 4 and label.rank in (1, 2):
        return True
    batched_gray = image.rank == 3 and (label.rank == 2 or (
        label.rank == 1 and label[0] != num_classes and (
            label[0] == image[0])))  # both the batch size, or None
    if batched_gray:
        # Or single images whose one-hot labels are not num_classes wide,
        # where that width happens to be the height.
        other = "" if label.rank == 2 else (
            " If it yields single images (H, W, C) with one-hot labels "
            f"instead, those have {label[0]} entries where "
            f"num_classes={num_classes}.")
        raise ValueError(
            "A `tf.data.Dataset` given as `x` seems to yield batches of "
            "images without a channel axis (B, H, W). Add one, e.g. "
            "`x.map(lambda image, label: (image[..., None], label))`."
            f"{other} Received elements: {spec}")
    if image.rank == 3 and label.rank in (0, 1):
        return False
    raise ValueError(
        "A `tf.data.Dataset` given as `x` must yield images (H, W, C) with "
        "integer or one-hot labels, or batches of them (B, H, W, C). "
        f"Received elements: {spec}")
