"""Class balancing of a training split: under-, over-sampling and SMOTE."""

import numbers

import numpy as np

from kerastrain._validation import check_choice, check_seed, check_verbose
from kerastrain.data.split import SEED_LIMIT, check_same_length, class_counts

METHODS = ("undersample", "oversample", "smote")


def balance(x, y, method="smote", seed=None, verbose=1):
    """Resamples a training split so that every class is equally frequent.

    Apply it to the training split only: validation and test sets must keep
    the real class distribution. `undersample` drops samples of the larger
    classes, `oversample` repeats samples of the smaller ones, `smote`
    synthesizes new minority samples between neighbours (Chawla et al.,
    2002), all from imbalanced-learn.

    Args:
        x: 2-D features (samples, features): an array, or a pandas
            DataFrame, which comes back as a DataFrame.
        y: Class labels, 1-D (samples,): integers, whole floats (1.0),
            bools or strings; an array, list or pandas Series (which
            comes back as a Series of the same name). For one-hot rows
            pass `y.argmax(axis=1)`, for a column `y.ravel()`. Object
            arrays of numbers are read as their values; NaN, other
            floats (0.5) and None are refused.
        method: `"undersample"`, `"oversample"` or `"smote"`.
        seed: None or an integer in [0, 2**32).
        verbose: 0 (or False) for silence; 1, 2 (Keras' one line per
            epoch) or True to print the class counts before and after.

    Returns:
        `(x_resampled, y_resampled)`, new arrays (the inputs are not
        modified). With `smote`, integer features come back as float64:
        a new sample lies between two real ones, rarely on integers.
        A DataFrame `x` or Series `y` comes back as one, as
        imbalanced-learn's `fit_resample` returns it: columns, dtypes
        and the Series' name kept; `undersample` keeps the kept rows'
        index labels, `oversample` and `smote` number the rows anew
        (0, 1, ...: the originals first, then the new samples).

    Example:

    >>> import numpy as np
    >>> x = np.arange(40, dtype="float32").reshape(20, 2)
    >>> y = np.array([0] * 16 + [1] * 4)
    >>> x_new, y_new = balance(x, y, "oversample", seed=0, verbose=0)
    >>> class_counts(y_new)
    {0: 16, 1: 16}
    >>> import pandas as pd
    >>> frame = pd.DataFrame(x, columns=["a", "b"])
    >>> x_new, y_new = balance(frame, pd.Series(y, name="label"),
    ...                        "undersample", seed=0, verbose=0)
    >>> list(x_new.columns), y_new.name, len(y_new)
    (['a', 'b'], 'label', 8)
    """
    from imblearn.over_sampling import SMOTE, RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    check_choice("method", method, METHODS)
    seed = check_seed("seed", seed, high=SEED_LIMIT)
    verbose = check_verbose(verbose)
    if y is None:
        raise TypeError(
            "Argument `y` must hold 1-D class labels (samples,). "
            "Received: y=None")
    if np.ndim(y) != 1:
        # One-hot rows pass silently otherwise: imbalanced-learn returns
        # two-class ones as a single column, and `class_counts` would count
        # zeros and ones instead of classes.
        raise ValueError(
            "Argument `y` must hold 1-D class labels (samples,). Received: "
            f"y.shape={np.shape(y)}. For one-hot rows pass "
            "`y.argmax(axis=1)`, for a column of labels `y.ravel()`.")
    check_same_length(x, y)
    labels = _check_labels(np.asarray(y))
    if _is_series(y):
        # Passed on as a Series, so that imbalanced-learn returns one (of
        # the same name); numbers held as objects with their values' dtype.
        if y.dtype == object and labels.dtype != object:
            y = y.astype(labels.dtype)
    else:
        y = labels
    # A DataFrame is passed on as it is: imbalanced-learn returns a
    # DataFrame of the same columns and dtypes (a fitted
    # `tabular_preprocessor` needs the column names).
    frame = _is_frame(x)
    if not frame:
        x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(
            "`balance` needs 2-D features (samples, features). Received: "
            f"x.shape={x.shape}; flatten images first.")
    before = class_counts(labels)
    if len(before) < 2:
        raise ValueError(
            "Argument `y` must hold at least 2 classes to balance. Class "
            f"counts: {before}")
    if method == "smote":
        smallest = min(before.values())
        if smallest < 2:
            raise ValueError(
                f"SMOTE needs at least 2 samples per class. Class counts: "
                f"{before}")
        sampler = SMOTE(random_state=seed,
                        k_neighbors=min(5, smallest - 1))
        # imbalanced-learn casts the new samples to the input's dtype
        # (a DataFrame's to its columns' dtypes): integers would be
        # truncated, each pulled toward zero.
        if frame:
            if any(getattr(dtype, "kind", "O") != "f"
                   for dtype in x.dtypes):
                x = _as_float(x)
            values = x.to_numpy(dtype="float64", na_value=np.nan)
        else:
            if not np.issubdtype(x.dtype, np.floating):
                x = _as_float(x)
            values = x
        rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if rows.size:
            raise ValueError(
                f"Argument `x` must hold finite numbers for method='smote', "
                f"which interpolates between samples. Received: NaN or "
                f"infinity in {rows.size} of {len(x)} rows (the first, row "
                f"{rows[0]}: {values[rows[0]].tolist()}). Fill missing "
                "values first (`tabular_preprocessor` imputes the training "
                "median), or use method='oversample'.")
    elif method == "oversample":
        sampler = RandomOverSampler(random_state=seed)
    else:
        sampler = RandomUnderSampler(random_state=seed)
    x_new, y_new = sampler.fit_resample(x, y)
    if verbose:
        print(f"balance({method}): class counts {before} -> "
              f"{class_counts(y_new)}")
    return x_new, y_new


def _is_frame(x):
    """Whether `x` is a pandas DataFrame (pandas is not imported)."""
    return hasattr(x, "iloc") and hasattr(x, "columns")


def _is_series(y):
    """Whether `y` is a pandas Series (a DataFrame is not 1-D)."""
    return hasattr(y, "iloc") and not hasattr(y, "columns")


_ALLOWED = "integers, whole floats (1.0), bools or strings"


def _check_labels(labels):
    """`labels`, 1-D, as imbalanced-learn takes them, or an error naming
    `y`, the offending values and what is allowed.

    Object arrays of numbers (imbalanced-learn's "Unknown label type")
    become arrays of their values; NaN and non-integer floats
    ("continuous") are refused."""
    if labels.dtype.kind in "Sc":
        raise TypeError(
            f"Argument `y` must hold class labels: {_ALLOWED}. Received: "
            f"labels of dtype {labels.dtype} (e.g. {labels[0]!r}); "
            "decode bytes to strings.")
    if labels.dtype == object:
        items = labels.tolist()
        text = [v for v in items if isinstance(v, str)]
        if len(text) == len(items):
            return labels
        numeric = [v for v in items
                   if isinstance(v, (numbers.Real, np.bool_))]
        others = [v for v in items
                  if not isinstance(v, (str, numbers.Real, np.bool_))]
        if others or (text and numeric):
            found = others[:1] + text[:1] + numeric[:1]
            raise TypeError(
                f"Argument `y` must hold class labels of one kind: "
                f"{_ALLOWED}. Received: an object array holding "
                f"{', '.join(sorted({type(v).__name__ for v in items}))} "
                f"values, e.g. {', '.join(map(repr, found))}.")
        labels = np.asarray(items)
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            values = np.unique(labels[bad]).tolist()
            shown = ", ".join(map(repr, values[:5]))
            if len(values) > 5:
                shown += f" and {len(values) - 5} more"
            raise ValueError(
                f"Argument `y` must hold class labels: {_ALLOWED}. "
                f"Received: {bad.sum()} of {len(labels)} labels that are "
                f"not whole numbers ({shown}; the first at position "
                f"{np.flatnonzero(bad)[0]}). Drop unlabelled samples "
                "(NaN); bin a continuous target into classes first.")
    return labels


def _as_float(x):
    """`x` as float64, or a ValueError naming the first value that is not a
    number: SMOTE interpolates between samples."""
    try:
        return x.astype("float64")
    except (TypeError, ValueError) as error:
        raise ValueError(
            "Argument `x` must hold numbers for method='smote', which "
            "interpolates between samples. Encode categorical columns "
            "first (`tabular_preprocessor`), or use method='oversample'. "
            f"Received: {error}") from None
