"""Train / validation / test split that keeps the class proportions."""

import math

import numpy as np

from kerastrain._validation import check_bool, check_float, check_seed

# scikit-learn's `random_state` is a NumPy seed: below 2**32.
SEED_LIMIT = 2**32


def check_same_length(x, y):
    """Raises if `x` and `y` do not hold the same number of samples, or
    if either is not a sequence of samples (None, a number)."""
    for name, value in (("x", x), ("y", y)):
        if hasattr(value, "element_spec"):  # a tf.data.Dataset
            raise TypeError(
                f"Argument `{name}` must be an array-like of samples, not a "
                "`tf.data.Dataset`: split the arrays, then build a "
                "pipeline of each part. Received: "
                f"{name}={type(value).__name__}")
        try:
            len(value)
        except TypeError:
            raise TypeError(
                f"Argument `{name}` must be an array-like of samples "
                f"(samples first). Received: {name}={value!r}") from None
    if len(x) != len(y):
        raise ValueError(
            f"`x` and `y` must hold the same number of samples. Received: "
            f"len(x)={len(x)}, len(y)={len(y)}")


def class_counts(y):
    """`{class: count}` of a label array, classes in ascending order.

    Args:
        y: Class labels, any array-like of shape (samples,) or (samples,
            1). One-hot rows are refused (their zeros and ones would be
            counted): pass `y.argmax(axis=1)`.

    Returns:
        A dict of Python values (ints for integer labels).

    Example:

    >>> class_counts([2, 0, 2, 1, 2])
    {0: 1, 1: 1, 2: 3}
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(
            "Argument `y` must hold class labels, shape (samples,) or "
            f"(samples, 1). Received: y.shape={y.shape}. For one-hot rows "
            "pass `y.argmax(axis=1)`.")
    classes, counts = np.unique(y, return_counts=True)
    return dict(zip(classes.tolist(), counts.tolist()))


def _counts(labels):
    """The class counts of `labels` for a message; one-hot rows by their
    argmax."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        return ("Class counts (of the rows' argmax): "
                f"{class_counts(labels.argmax(axis=1))}")
    return f"Class counts: {class_counts(labels)}"


def _none_of(part):
    """An empty part of `part`'s type: no row of a DataFrame, Series,
    array or list."""
    rows = getattr(part, "iloc", part)  # pandas slices labels otherwise
    return rows[0:0]


def split(x, y, val_size=0.15, test_size=0.15, stratify=True, seed=None):
    """Splits into disjoint training, validation and test sets (70/15/15 by
    default), keeping each class's share in every part.

    The test split is exactly what
    `sklearn.model_selection.train_test_split(x, y, test_size=test_size,
    stratify=y, random_state=seed)` returns, so any scikit-learn peer can be
    compared on it; validation is carved from the rest the same way.

    Args:
        x: Features, any array-like with samples first.
        y: Labels (class labels when `stratify=True`).
        val_size: Fraction of all samples for validation, in [0, 1).
        test_size: Fraction of all samples for testing, in (0, 1). Both
            counts are rounded up, as scikit-learn rounds its test split.
        stratify: Whether to keep the class proportions (of `y`): True or
            False.
        seed: None or an integer in [0, 2**32), for reproducible
            splits.

    Returns:
        `(x_train, y_train), (x_val, y_val), (x_test, y_test)`, each part
        of its input's type, as scikit-learn returns them (a pandas
        DataFrame or Series keeps its index).

    Example:

    >>> import numpy as np
    >>> x, y = np.arange(200).reshape(100, 2), np.repeat([0, 1], 50)
    >>> train, val, test = split(x, y, seed=0)
    >>> [len(part[0]) for part in (train, val, test)]
    [70, 15, 15]
    """
    from sklearn.model_selection import train_test_split

    seed = check_seed("seed", seed, high=SEED_LIMIT)
    # `stratify=y`, scikit-learn's way, would fail deep in NumPy; here the
    # labels to keep are always `y`'s.
    stratify = check_bool("stratify", stratify)
    check_same_length(x, y)
    test_size = check_float("test_size", test_size, 0, 1, low_closed=False,
                            high_closed=False)
    val_size = check_float("val_size", val_size, 0, 1, high_closed=False)
    if val_size + test_size >= 1:
        raise ValueError(
            "Arguments `val_size` and `test_size` must leave a training "
            f"set: val_size + test_size < 1. Received: val_size={val_size}, "
            f"test_size={test_size}")

    def cut(features, labels, size, argument):
        try:
            return train_test_split(
                features, labels, test_size=size, random_state=seed,
                stratify=np.asarray(labels) if stratify else None)
        except ValueError as error:
            # scikit-learn names its own `test_size` in both cuts.
            raise ValueError(
                f"Cannot split off {argument} of {len(labels)} samples "
                f"with {'stratification' if stratify else 'these sizes'}"
                f" (scikit-learn: {error}). {_counts(labels)}. Received: "
                f"val_size={val_size}, test_size={test_size}. Use larger "
                "sizes, merge rare classes, or stratify=False."
            ) from None

    # `y` as given: scikit-learn returns each part as its input's type
    # (a pandas Series with its index; they were NumPy arrays).
    x_rest, x_test, y_rest, y_test = cut(x, y, test_size, "`test_size`")
    if val_size == 0:
        return (x_rest, y_rest), (_none_of(x_rest), _none_of(y_rest)), (
            x_test, y_test)
    # A count of all samples, rounded up as scikit-learn rounds the test
    # split's, so that equal fractions give equal counts (Python's round
    # gave 10 against 11 of 70); not the fraction val_size / (1 -
    # test_size) of the rest, which float rounding can push one sample
    # over.
    x_train, x_val, y_train, y_val = cut(
        x_rest, y_rest, math.ceil(val_size * len(y)),
        "`val_size` (what is left after the test split)")
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)
