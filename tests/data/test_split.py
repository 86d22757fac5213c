import math

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from kerastrain.data import class_counts, split


def data(n=200):
    rng = np.random.default_rng(0)
    y = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    return np.arange(n * 2).reshape(n, 2), y


def test_sizes_disjointness_and_class_proportions():
    x, y = data(1000)
    x_before, y_before = x.copy(), y.copy()
    (xt, yt), (xv, yv), (xs, ys) = split(x, y, seed=3)
    assert (len(xt), len(xv), len(xs)) == (700, 150, 150)
    ids = [set(part[:, 0].tolist()) for part in (xt, xv, xs)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert len(ids[0] | ids[1] | ids[2]) == 1000
    overall = np.bincount(y) / len(y)
    for labels in (yt, yv, ys):
        np.testing.assert_allclose(np.bincount(labels) / len(labels),
                                   overall, atol=0.02)
    np.testing.assert_array_equal(x, x_before)  # nothing modified
    np.testing.assert_array_equal(y, y_before)


@pytest.mark.parametrize("n", [30, 70, 110, 442, 569, 1797])
def test_validation_is_counted_as_scikit_learn_counts_a_test_split(n):
    # Equal fractions, equal counts: Python's round made 10 against 11 of
    # 70 samples (half to even) and 66 against 67 of 442.
    x, y = np.arange(n), np.arange(n) % 2
    for val_size, test_size in ((0.15, 0.15), (0.1, 0.2), (0.25, 0.05)):
        _, (x_val, _), (x_test, _) = split(x, y, val_size, test_size, seed=0)
        assert len(x_test) == len(train_test_split(x, test_size=test_size)[1])
        assert len(x_val) == len(train_test_split(x, test_size=val_size)[1])


def test_the_test_split_is_scikit_learns():
    x, y = data()
    _, _, (xs, ys) = split(x, y, seed=7)
    _, x_ref, _, y_ref = train_test_split(x, y, test_size=0.15, stratify=y,
                                          random_state=7)
    np.testing.assert_array_equal(xs, x_ref)
    np.testing.assert_array_equal(ys, y_ref)


def test_unstratified_splits_are_scikit_learns_without_stratify():
    # Real-valued targets (a regression) cannot be stratified at all.
    x, _ = data()
    y = np.random.default_rng(1).standard_normal(len(x))
    (_, y_train), (_, y_val), (xs, ys) = split(x, y, stratify=False, seed=7)
    rest_x, x_ref, rest_y, y_ref = train_test_split(
        x, y, test_size=0.15, random_state=7)
    np.testing.assert_array_equal(xs, x_ref)
    np.testing.assert_array_equal(ys, y_ref)
    # Validation: 30 of the remaining 170, cut the same way.
    _, _, y_train_ref, y_val_ref = train_test_split(
        rest_x, rest_y, test_size=30, random_state=7)
    np.testing.assert_array_equal(y_val, y_val_ref)
    np.testing.assert_array_equal(y_train, y_train_ref)
    # On class labels, stratify=False draws another test split.
    x, labels = data()
    _, _, (_, stratified) = split(x, labels, seed=7)
    _, _, (_, plain) = split(x, labels, stratify=False, seed=7)
    assert not np.array_equal(stratified, plain)


def test_seeded_splits_repeat_and_no_validation_set():
    x, y = data()
    first, second = split(x, y, seed=1), split(x, y, seed=1)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a[0], b[0])
    (xt, _), (xv, yv), (xs, _) = split(x, y, val_size=0.0, seed=1)
    assert len(xv) == len(yv) == 0 and len(xt) + len(xs) == len(x)


@pytest.mark.parametrize("val_size", [0.15, 0.0])
def test_parts_keep_their_inputs_types_as_scikit_learns(val_size):
    """A pandas Series `y` comes back as Series with its index (they were
    NumPy arrays), a DataFrame `x` as DataFrames, lists as lists: the
    types and rows scikit-learn's split gives, with or without a
    validation set."""
    import pandas as pd

    x, y = data()
    index = np.arange(1000, 1000 + len(y))
    frame = pd.DataFrame(x, index=index)
    labels = pd.Series(y, index=index, name="label")
    train, val, test = split(frame, labels, val_size=val_size, seed=3)
    x_rest, x_test, y_rest, y_test = train_test_split(
        frame, labels, test_size=0.15, stratify=labels, random_state=3)
    pd.testing.assert_frame_equal(test[0], x_test)
    pd.testing.assert_series_equal(test[1], y_test)
    for part in (train, val):
        assert type(part[0]) is pd.DataFrame and type(part[1]) is pd.Series
        assert list(part[0].index) == list(part[1].index)
        assert part[1].name == "label"
    assert sorted([*train[1].index, *val[1].index]) == sorted(y_rest.index)
    assert len(val[1]) == (0 if val_size == 0 else math.ceil(
        val_size * len(y)))
    parts = split(x.tolist(), y.tolist(), val_size=val_size, seed=3)
    assert all(type(a) is list for part in parts for a in part)
    assert parts[2][1] == train_test_split(
        x.tolist(), y.tolist(), test_size=0.15, stratify=y,
        random_state=3)[3]


@pytest.mark.parametrize("kwargs, match", [
    ({"val_size": 0.5, "test_size": 0.5}, "leave a training set"),
    # The range itself, not any later error naming the size (without the
    # range check, val_size=-0.1 gave a validation set of one sample).
    ({"test_size": 0.0}, r"`test_size` must be in \(0, 1\)\. Received: "
     r"test_size=0\.0"),
    ({"val_size": -0.1}, r"`val_size` must be in \[0, 1\)\. Received: "
     r"val_size=-0\.1"),
    ({"test_size": 1.2}, r"`test_size` must be in \(0, 1\)"),
])
def test_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        split(*data(), **kwargs)


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**32, ValueError),
                                         (1.5, TypeError), ("0", TypeError)])
def test_bad_seeds_name_the_argument(seed, error):
    with pytest.raises(error, match=r"Argument `seed`.*Received: seed="):
        split(*data(), seed=seed)


def test_a_class_too_small_to_stratify_names_the_counts():
    x, y = data(50)
    y[:] = 0
    y[0] = 1
    with pytest.raises(ValueError, match=r"Class counts: \{0: 49, 1: 1\}"):
        split(x, y, seed=0)


def test_a_val_size_too_small_to_stratify_is_named_as_such():
    # scikit-learn calls the size of its second cut `test_size`.
    with pytest.raises(ValueError, match=r"split off `val_size`.*"
                       r"val_size=0.01, test_size=0.15"):
        split(*data(100), val_size=0.01, seed=0)


@pytest.mark.parametrize("stratify", ["no", None, np.arange(10) % 2])
def test_stratify_is_true_or_false(stratify):
    # A string read as True, and scikit-learn's `stratify=y` failing deep
    # in NumPy, both were possible.
    with pytest.raises(TypeError, match=r"Argument `stratify` must be True "
                       r"or False"):
        split(*data(10), stratify=stratify)


def test_mismatched_lengths():
    with pytest.raises(ValueError, match=r"len\(x\)=10, len\(y\)=9"):
        split(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(TypeError, match="Argument `y`.*Received: y=None"):
        split(np.zeros((10, 2)), None)
    with pytest.raises(TypeError, match="Argument `x`.*Received: x=3"):
        split(3, np.zeros(9))


def test_a_dataset_is_refused_by_name():
    # scikit-learn read a finite dataset as a scalar array.
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((10, 2)))
    with pytest.raises(TypeError, match=r"`x` must be .*not a "
                       r"`tf.data.Dataset`"):
        split(dataset, np.arange(10) % 2)


def test_class_counts():
    assert class_counts([2, 0, 2, 2]) == {0: 1, 2: 3}
    assert class_counts(np.array([[2], [0], [2]])) == {0: 1, 2: 2}
    # One-hot rows: their zeros and ones were counted as classes.
    with pytest.raises(ValueError, match=r"y.shape=\(3, 3\).*"
                       r"y.argmax\(axis=1\)"):
        class_counts(np.eye(3))


def test_one_hot_rows_too_few_to_stratify_name_the_classes():
    y = np.eye(3)[[0] * 10 + [1] * 9 + [2]]
    with pytest.raises(ValueError, match=r"argmax\): \{0: 10, 1: 9, 2: 1\}"):
        split(np.zeros((20, 2)), y, seed=0)
