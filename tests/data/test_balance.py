import numpy as np
import pytest

from kerastrain.data import balance, class_counts


def skewed():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 3)).astype("float32")
    y = np.array([0] * 100 + [1] * 20)
    return x, y


@pytest.mark.parametrize("method, count", [("undersample", 20),
                                           ("oversample", 100),
                                           ("smote", 100)])
def test_every_class_ends_equally_frequent(method, count, capsys):
    x, y = skewed()
    x_before = x.copy()
    x_new, y_new = balance(x, y, method, seed=0)
    assert class_counts(y_new) == {0: count, 1: count}
    assert "{0: 100, 1: 20} -> " in capsys.readouterr().out
    np.testing.assert_array_equal(x, x_before)
    originals = {tuple(row) for row in x.tolist()}
    minority = x_new[y_new == 1]
    if method == "smote":
        # Synthetic samples lie between minority neighbours: inside the
        # minority class's bounding box, and mostly new.
        low, high = x[y == 1].min(0), x[y == 1].max(0)
        assert np.all((minority >= low - 1e-6) & (minority <= high + 1e-6))
        assert sum(tuple(r) not in originals for r in minority.tolist()) == 80
    else:
        assert all(tuple(r) in originals for r in x_new.tolist())


@pytest.mark.parametrize("method", ["undersample", "oversample", "smote"])
def test_seeded_results_repeat(method):
    """The same seed gives the same samples and labels; another seed
    draws other samples (the seed reaches the sampler)."""
    x, y = skewed()

    def run(seed):
        return balance(x, y, method, seed=seed, verbose=0)

    a, b = run(4), run(4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], run(5)[0])


@pytest.mark.parametrize("args, match", [
    ((np.zeros((4, 2, 2)), np.array([0, 0, 1, 1])), "2-D"),
    ((np.zeros((4, 2)), np.array([0, 0, 1])), "same number"),
    ((np.zeros((4, 2)), np.array([0, 0, 0, 1])), "at least 2"),
    ((np.zeros((0, 2)), np.zeros(0)), r"`y` must hold at least 2 classes"),
    ((np.zeros((3, 2)), np.ones(3, int)), r"2 classes.*\{1: 3\}"),
])
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        balance(*args, verbose=0)


@pytest.mark.parametrize("verbose, error", [("no", TypeError),
                                            (None, TypeError),
                                            (-1, ValueError)])
def test_verbose_is_an_int_or_a_bool(verbose, error):
    # "no" printed the counts.
    with pytest.raises(error, match=r"`verbose` must be an integer"):
        balance(*skewed(), "oversample", seed=0, verbose=verbose)


@pytest.mark.parametrize("verbose, prints", [(0, False), (False, False),
                                             (1, True), (2, True),
                                             (True, True)])
def test_verbose_as_keras_takes_it(verbose, prints, capsys):
    balance(*skewed(), "oversample", seed=0, verbose=verbose)
    assert bool(capsys.readouterr().out) is prints


def test_unknown_method():
    with pytest.raises(ValueError, match="method"):
        balance(*skewed(), method="adasyn")


def test_one_hot_labels_are_refused_with_the_fix():
    x, y = skewed()
    with pytest.raises(ValueError,
                       match=r"`y`.*y.shape=\(120, 2\).*argmax"):
        balance(x, np.eye(2)[y], "oversample", seed=0, verbose=0)


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**32, ValueError),
                                         (1.5, TypeError), ("0", TypeError)])
def test_bad_seeds_name_the_argument(seed, error):
    with pytest.raises(error, match=r"Argument `seed`.*Received: seed="):
        balance(*skewed(), "oversample", seed=seed, verbose=0)


def test_smote_on_integer_features_is_smote_on_their_float_values():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 16, (60, 4))
    y = np.repeat([0, 1], [50, 10])
    got, labels = balance(x, y, seed=0, verbose=0)
    want, _ = balance(x.astype("float64"), y, seed=0, verbose=0)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, np.round(got))  # between the integers
    np.testing.assert_array_equal(got[:60], x)  # the originals kept


def test_smote_of_text_features_names_x_and_the_way_out():
    x = np.array([["a", 1.0]] * 10 + [["b", 2.0]] * 3, dtype=object)
    y = np.repeat([0, 1], [10, 3])
    with pytest.raises(ValueError, match=r"`x` must hold numbers for "
                       r"method='smote'.*tabular_preprocessor.*'a'"):
        balance(x, y, seed=0, verbose=0)
    # Repeating or dropping rows needs no numbers.
    x_new, y_new = balance(x, y, "oversample", seed=0, verbose=0)
    assert class_counts(y_new) == {0: 10, 1: 10}
    assert set(map(tuple, x_new)) == {("a", 1.0), ("b", 2.0)}


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_smote_of_missing_values_names_the_row_and_the_way_out(bad):
    # imbalanced-learn's message named neither the argument nor a row.
    x = np.arange(26, dtype="float64").reshape(13, 2)
    x[4, 1] = bad
    y = np.repeat([0, 1], [10, 3])
    with pytest.raises(ValueError, match=r"`x` must hold finite numbers.*"
                       r"1 of 13 rows \(the first, row 4: \[8.0, "
                       rf"{bad}\].*tabular_preprocessor"):
        balance(x, y, seed=0, verbose=0)
    # Repeating rows keeps them as they are, NaN included.
    x_new, y_new = balance(x, y, "oversample", seed=0, verbose=0)
    assert class_counts(y_new) == {0: 10, 1: 10}
    assert np.isin(x_new[:, 1], x[:, 1]).sum() + np.isnan(
        x_new[:, 1]).sum() == len(x_new)
