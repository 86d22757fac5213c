"""One entry point for data sets: offline ones shipped with scikit-learn,
and TensorFlow Datasets data sets of fixed-shape (input, label) pairs by
name."""

import os

import numpy as np

from kerastrain._validation import check_bool, check_path

HIGH_RISK_PROGRESSION = 250


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images[..., None].astype("float32") / 16.0, digits.target


def _sklearn(loader_name):
    def load():
        import sklearn.datasets

        x, y = getattr(sklearn.datasets, loader_name)(return_X_y=True)
        return x.astype("float32"), y
    return load


def _diabetes_risk():
    """scikit-learn's diabetes data (442 patients, 10 standardized
    baseline measurements) with its one-year disease progression score
    turned into a binary label: high risk when the score exceeds 250
    (65 positives, 14.7%: an imbalanced problem)."""
    from sklearn.datasets import load_diabetes

    x, progression = load_diabetes(return_X_y=True)
    return x.astype("float32"), (progression > HIGH_RISK_PROGRESSION).astype(
        "int64")


OFFLINE = {
    "digits": _digits,
    "breast_cancer": _sklearn("load_breast_cancer"),
    "wine": _sklearn("load_wine"),
    "diabetes_risk": _diabetes_risk,
}


def load(name, split=None, data_dir=None, download=True):
    """Loads a data set as NumPy arrays `(x, y)`.

    Offline, from scikit-learn: `"digits"` (8x8x1 images in [0, 1], 10
    classes), `"breast_cancer"` and `"wine"` (features as float32),
    `"diabetes_risk"` (diabetes progression turned into a binary "high
    risk" label, progression > 250: 65 of 442 positive). A TensorFlow
    Datasets data set as `"tfds:<name>"` (e.g. `"tfds:cifar10"`), its
    `split`, downloaded to or read from `data_dir`: one with supervised
    (input, label) pairs whose inputs all have one shape, since they come
    back as one array. Images of varying sizes (`tf_flowers`) and sets
    without (input, label) pairs (`celeb_a`) are an error, raised before
    any download: load those with `tfds.load` and resize them
    (`tf.image.resize`) or pick their features in a `map`.

    Args:
        name: A name above.
        split: The TFDS split, one string (`"train"`, the default,
            `"test"`, `"train[:10%]"`...) that selects at least one
            example (`"train[:0]"` is a `ValueError`). The offline data
            sets come whole and take none (a split is a `ValueError`):
            cut them with `kerastrain.data.split`.
        data_dir: TFDS data folder, or a path where one can be made
            (default: TFDS's own); a file or `""` is a `ValueError`. The
            offline data sets are read from scikit-learn, and refuse one.
        download: Whether TFDS may download and prepare a data set that
            is not in `data_dir` yet; with False, a missing one is a
            `FileNotFoundError` (no network is touched).

    Returns:
        `(x, y)`.

    Example:

    >>> x, y = load("wine")
    >>> x.shape, sorted(set(y.tolist()))
    ((178, 13), [0, 1, 2])
    """
    if not isinstance(name, str):
        raise TypeError(f"Argument `name` must be a string. Received: "
                        f"name={name!r}")
    # TFDS reads any truthy value as True: "no" would download.
    download = check_bool("download", download)
    if name.startswith("tfds:"):
        if split is None:
            split = "train"
        if not isinstance(split, str):  # a list gives one dataset each
            raise TypeError(
                "Argument `split` must be one TFDS split as a string, e.g. "
                "'train' or 'train[:80%]+test' (call `load` once per split "
                f"for several). Received: split={split!r}")
        if data_dir is not None:
            data_dir = _check_data_dir(data_dir)
        return _tfds(name[len("tfds:"):], split, data_dir, download)
    if name not in OFFLINE:
        raise ValueError(
            f"Unknown data set {name!r}. Known: {sorted(OFFLINE)}, or "
            "'tfds:<name>' for a TensorFlow Datasets data set of "
            "fixed-shape inputs (e.g. 'tfds:cifar10').")
    if split is not None:
        raise ValueError(
            f"The offline data set {name!r} comes whole: it has no splits. "
            "Cut it with `kerastrain.data.split`. Received: "
            f"split={split!r}")
    if data_dir is not None:
        # It would be ignored: the data ship inside scikit-learn.
        raise ValueError(
            f"The offline data set {name!r} ships inside scikit-learn: it "
            "is not read from a folder, so `data_dir` is only for 'tfds:' "
            f"data sets. Received: data_dir={data_dir!r}")
    return OFFLINE[name]()


def _tfds(name, split, data_dir, download):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if not name:
        raise ValueError("Argument `name` must name a TFDS data set after "
                         "'tfds:', e.g. 'tfds:cifar10'.")
    folder = data_dir or "TFDS default folder (~/tensorflow_datasets)"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        raise  # an unknown name: TFDS lists the close ones
    except Exception as error:  # a damaged dataset_info.json, ...
        if not _builds_without_a_copy(tfds, name):
            # The name is at fault (a version or config TFDS lacks), not
            # a copy: it was called damaged, the copy never looked at.
            raise ValueError(
                f"Argument `name` must name a TFDS data set, version and "
                f"config that TFDS has: {('tfds:' + name)!r} builds in no "
                f"folder. TFDS said: {type(error).__name__}: {error}"
            ) from None
        raise FileNotFoundError(
            f"TFDS data set {name!r} in {folder} is damaged: its "
            "description does not load. Remove that copy and prepare it "
            "again (`download=True` needs internet), or point `data_dir` "
            f"at a complete one. TFDS said: {type(error).__name__}: {error}"
        ) from error
    _check_pairs(name, builder.info)
    # Batched iteration, not `batch_size=-1`: that one aborts the process
    # (TensorFlow's get_single_element) on TFDS's mock data.
    try:
        dataset = tfds.load(name, split=split, data_dir=data_dir,
                            download=download, as_supervised=True)
    except ValueError as error:
        # "train[:0]": TFDS's "Instruction [] corresponds to no data!"
        # named neither the argument nor its value.
        if "corresponds to no data" not in str(error):
            raise
        raise _empty_split(name, split) from None
    # AssertionError: no data found; KeyError: a description without the
    # prepared splits (a copy whose preparation stopped half-way).
    except (AssertionError, KeyError) as error:
        raise FileNotFoundError(
            f"TFDS data set {name!r} is not prepared, or not completely, "
            f"in {folder}. Point `data_dir` at a folder holding it whole, "
            "or remove a partial copy and allow `download=True` (needs "
            f"internet). TFDS said: {error}"
        ) from None
    dataset = dataset.batch(1024)
    try:
        batches = list(tfds.as_numpy(dataset))
    # A description whose split files are missing or cut short (a copy
    # taken half-way) fails only here, as the records are read.
    except tf.errors.OpError as error:
        raise FileNotFoundError(
            f"TFDS data set {name!r} in {folder} is not complete: its files "
            "do not read. Point `data_dir` at a folder holding it whole, or "
            "remove this copy and allow `download=True` (needs internet). "
            f"TensorFlow said: {type(error).__name__}: "
            f"{error.message.split(' [Op:')[0]}"
        ) from None
    if not batches:  # NumPy's concatenate named nothing
        raise _empty_split(name, split)
    return (np.concatenate([x for x, _ in batches]),
            np.concatenate([y for _, y in batches]))


def _empty_split(name, split):
    return ValueError(
        f"Argument `split` must select examples of TFDS data set {name!r}; "
        "this one holds none (e.g. 'train[:0]'): select at least one, "
        f"e.g. 'train' or 'train[:10%]'. Received: split={split!r}")


def _check_data_dir(data_dir):
    """Returns `data_dir` as a string if it names a folder, or a path
    where TFDS can make one: checked before TFDS works in it, since TFDS
    prepared `""` into the current folder, failed on a file only half-way
    through a download, and called a folder of `5` a damaged copy."""
    if isinstance(data_dir, str) and not data_dir:
        raise ValueError(
            "Argument `data_dir` must be a folder for TFDS data, or None "
            "for TFDS's default (~/tensorflow_datasets); '' would prepare "
            "into the current folder. Received: data_dir=''")
    data_dir = check_path("data_dir", data_dir)
    # The nearest part of the path that exists must be a folder: TFDS
    # makes the rest.
    existing = os.path.abspath(data_dir)
    while not os.path.exists(existing) and os.path.dirname(
            existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(
            "Argument `data_dir` must be a folder for TFDS data (one that "
            f"exists, or a path where one can be made), but {existing!r} "
            f"is not a folder. Received: data_dir={data_dir!r}")
    return data_dir


def _builds_without_a_copy(tfds, name):
    """Whether TFDS builds data set `name` (with its version and config)
    in an empty folder: where it does, a failure in the user's folder
    lies in the copy there."""
    import tempfile

    with tempfile.TemporaryDirectory() as empty:
        try:
            tfds.builder(name, data_dir=empty)
        except Exception:
            return False
    return True


def _check_pairs(name, info):
    """Raises if the data set declares no (input, label) pairs, or inputs
    or labels of varying shape (a None in a feature's shape): one array
    cannot hold them. The builder's description says so before anything
    is downloaded."""
    keys = info.supervised_keys
    if not keys:
        # `tfds.load(as_supervised=True)` said so only after a download.
        raise ValueError(
            "Argument `name` must name a TFDS data set of supervised "
            f"(input, label) pairs: {name!r} declares none (its examples "
            "are dicts of features), and `load` returns `(x, y)`. Load it "
            "with `tfds.load` and pick the features in a `map`. Received: "
            f"name={('tfds:' + name)!r}")
    if not all(isinstance(key, str) for key in keys):
        return  # nested: `tfds.load(as_supervised=True)` decides
    for key in keys:
        shape = getattr(info.features[key], "shape", ())
        if None in tuple(shape):
            raise ValueError(
                f"TFDS data set {name!r} holds {key!r} of varying shape "
                f"{tuple(shape)} (e.g. images of different sizes), and "
                "`load` returns one array of equal-shaped examples. Load it "
                "with `tfds.load` and resize in a `map` (`tf.image.resize`"
                "), then pass that dataset to `image_pipeline`.")
