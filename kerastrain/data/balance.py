"""Class balancing of a training split: under-, over-sampling and SMOTE."""

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
        x: 2-D features (samples, features).
        y: Class labels, 1-D (samples,): for one-hot rows pass
            `y.argmax(axis=1)`, for a column `y.ravel()`.
        method: `"undersample"`, `"oversample"` or `"smote"`.
        seed: None or an integer in [0, 2**32).
        verbose: 0 (or False) for silence; 1, 2 (Keras' one line per
            epoch) or True to print the class counts before and after.

    Returns:
        `(x_resampled, y_resampled)`, new arrays (the inputs are not
        modified). With `smote`, integer features come back as float64:
        a new sample lies between two real ones, rarely on integers.

    Example:

    >>> import numpy as np
    >>> x = np.arange(40, dtype="float32").reshape(20, 2)
    >>> y = np.array([0] * 16 + [1] * 4)
    >>> x_new, y_new = balance(x, y, "oversample", seed=0, verbose=0)
    >>> class_counts(y_new)
    {0: 16, 1: 16}
    """
    from imblearn.over_sampling import SMOTE, RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    check_choice("method", method, METHODS)
    seed = check_seed("seed", seed, high=SEED_LIMIT)
    verbose = check_verbose(verbose)
    if np.ndim(y) != 1:
        # One-hot rows pass silently otherwise: imbalanced-learn returns
        # two-class ones as a single column, and `class_counts` would count
        # zeros and ones instead of classes.
        raise ValueError(
            "Argument `y` must hold 1-D class labels (samples,). Received: "
            f"y.shape={np.shape(y)}. For one-hot rows pass "
            "`y.argmax(axis=1)`, for a column of labels `y.ravel()`.")
    check_same_length(x, y)
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(
            "`balance` needs 2-D features (samples, features). Received: "
            f"x.shape={x.shape}; flatten images first.")
    before = class_counts(y)
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
        if not np.issubdtype(x.dtype, np.floating):
            # imbalanced-learn casts the new samples to the input's dtype:
            # integers would be truncated, each pulled toward zero.
            x = _as_float(x)
        rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if rows.size:
            raise ValueError(
                f"Argument `x` must hold finite numbers for method='smote', "
                f"which interpolates between samples. Received: NaN or "
                f"infinity in {rows.size} of {len(x)} rows (the first, row "
                f"{rows[0]}: {x[rows[0]].tolist()}). Fill missing values "
                "first (`tabular_preprocessor` imputes the training "
                "median), or use method='oversample'.")
    elif method == "oversample":
        sampler = RandomOverSampler(random_state=seed)
    else:
        sampler = RandomUnderSampler(random_state=seed)
    x_new, y_new = sampler.fit_resample(x, np.asarray(y))
    if verbose:
        print(f"balance({method}): class counts {before} -> "
              f"{class_counts(y_new)}")
    return x_new, y_new


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
