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


def labels(*values):
    """20 labels: 16 of the first value, 4 of the second."""
    return np.array([values[0]] * 16 + [values[1]] * 4, dtype=object)


@pytest.mark.parametrize("y, error, match", [
    # imbalanced-learn: "Unknown label type: continuous".
    (np.repeat([0.5, 1.5], [16, 4]), ValueError,
     r"20 of 20 labels that are not whole numbers \(0.5, 1.5; the first "
     r"at position 0\)"),
    # imbalanced-learn: "Input y contains NaN." and a cast warning.
    (np.r_[np.zeros(16), np.ones(3), np.nan], ValueError,
     r"1 of 20 labels .*\(nan; the first at position 19\).*NaN"),
    (np.r_[np.zeros(16), np.ones(3), np.inf], ValueError, r"\(inf;"),
    # A missing value in a nullable pandas column reads as NaN.
    ("Int64 with NA", ValueError, r"\(nan; the first at position 19\)"),
    # imbalanced-learn: "Unknown label type: unknown".
    (np.r_[labels(0, 1)[:19], None], TypeError,
     r"one kind.*NoneType, int values, e.g. None, 0"),
    (labels(0, "1"), TypeError, r"one kind.*int, str values, e.g. '1', 0"),
    (np.repeat([b"a", b"b"], [16, 4]), TypeError,
     r"dtype \|S1 \(e.g. np.bytes_\(b'a'\)\); decode bytes"),
    # `y.shape=()` named no None.
    (None, TypeError, r"\(samples,\)\. Received: y=None$"),
], ids=["halves", "nan", "inf", "pandas-na", "none-in-objects",
        "int-and-str", "bytes", "none"])
def test_labels_that_are_no_classes_name_y_and_what_is_allowed(y, error,
                                                              match):
    if isinstance(y, str):
        pd = pytest.importorskip("pandas")
        y = pd.Series([0] * 16 + [1] * 3 + [None], dtype="Int64")
    x = np.arange(40, dtype="float32").reshape(20, 2)
    with pytest.raises(error, match=r"Argument `y` must hold[^.]* "
                       r"labels.*" + match) as info:
        balance(x, y, "oversample", seed=0, verbose=0)
    if y is not None and error is ValueError:
        assert "integers, whole floats (1.0), bools or strings" in str(
            info.value)


@pytest.mark.parametrize("values, dtype", [((0, 1), "int64"),
                                           ((0.0, 1.0), "float64"),
                                           ((False, True), "bool"),
                                           ((np.int8(0), 1), "int64")])
@pytest.mark.parametrize("method", ["undersample", "oversample", "smote"])
def test_object_labels_are_read_as_their_values(values, dtype, method):
    # imbalanced-learn: "Unknown label type: unknown".
    x = np.arange(40, dtype="float32").reshape(20, 2)
    y = labels(*values)
    got = balance(x, y, method, seed=0, verbose=0)
    want = balance(x, np.asarray(y.tolist()), method, seed=0, verbose=0)
    assert got[1].dtype == want[1].dtype == dtype
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def frame_and_series(pd, smote=False):
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"age": rng.integers(18, 90, 30),
                      "income": rng.standard_normal(30),
                      "city": rng.choice(["u", "v"], 30)},
                     index=range(100, 130))
    if smote:
        x = x.drop(columns="city").astype("float64")
    return x, pd.Series(np.repeat([0, 1], [24, 6]), index=x.index,
                        name="risk")


@pytest.mark.parametrize("method", ["undersample", "oversample", "smote"])
def test_pandas_come_back_as_imbalanced_learn_returns_them(method):
    # They came back as arrays: object dtype for mixed columns, the
    # column names and the Series' name lost.
    pd = pytest.importorskip("pandas")
    from imblearn.over_sampling import SMOTE, RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler
    sampler = {"undersample": RandomUnderSampler, "smote": SMOTE,
               "oversample": RandomOverSampler}[method](random_state=3)
    x, y = frame_and_series(pd, smote=method == "smote")
    x_before, y_before = x.copy(), y.copy()
    x_new, y_new = balance(x, y, method, seed=3, verbose=0)
    x_want, y_want = sampler.fit_resample(x, y)
    pd.testing.assert_frame_equal(x_new, x_want)
    pd.testing.assert_series_equal(y_new, y_want)
    assert y_new.name == "risk" and list(x_new.columns) == list(x.columns)
    # Undersampling keeps the kept rows' index labels; oversampling and
    # SMOTE number the rows anew (0, 1, ...), the originals first.
    if method == "undersample":
        assert x_new.index.isin(x.index).all()
        pd.testing.assert_frame_equal(x.loc[x_new.index], x_new)
    else:
        assert x_new.index.equals(pd.RangeIndex(len(x_new)))
        np.testing.assert_array_equal(x_new.iloc[:30].to_numpy(),
                                      x.to_numpy())
    assert x_new.index.equals(y_new.index)
    assert y_new.value_counts().tolist() == [6 if method == "undersample"
                                             else 24] * 2
    pd.testing.assert_frame_equal(x, x_before)
    pd.testing.assert_series_equal(y, y_before)


def test_pandas_each_on_its_own_and_object_series_as_values():
    pd = pytest.importorskip("pandas")
    x, y = frame_and_series(pd)
    x_new, y_new = balance(x, y.to_numpy(), "oversample", seed=0,
                           verbose=0)
    assert isinstance(x_new, pd.DataFrame) and isinstance(y_new,
                                                          np.ndarray)
    x_new, y_new = balance(x.to_numpy(), y.astype(object), "oversample",
                           seed=0, verbose=0)
    assert isinstance(x_new, np.ndarray)
    assert y_new.dtype == "int64" and y_new.name == "risk"
    pd.testing.assert_series_equal(
        y_new, balance(x.to_numpy(), y, "oversample", seed=0,
                       verbose=0)[1])


def test_smote_of_integer_columns_gives_float_columns():
    # imbalanced-learn casts a DataFrame's new samples back to its
    # columns' dtypes: integers would be truncated.
    pd = pytest.importorskip("pandas")
    x, y = frame_and_series(pd)
    x = x.drop(columns="city")
    x_new, y_new = balance(x, y, seed=0, verbose=0)
    want, _ = balance(x.astype("float64"), y, seed=0, verbose=0)
    pd.testing.assert_frame_equal(x_new, want)
    assert not np.array_equal(x_new["age"], np.round(x_new["age"]))
    with pytest.raises(ValueError, match=r"`x` must hold numbers.*'u'"):
        balance(frame_and_series(pd)[0], y, seed=0, verbose=0)


def test_balanced_frame_fits_a_fitted_tabular_preprocessor():
    # An array lost the column names: "X does not have valid feature
    # names, but SimpleImputer was fitted with feature names".
    pd = pytest.importorskip("pandas")
    import warnings

    from kerastrain.data import tabular_preprocessor
    x, y = frame_and_series(pd)
    pre = tabular_preprocessor(x)
    x_new, _ = balance(x, y, "oversample", seed=0, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = pre.transform(x_new)
    np.testing.assert_array_equal(got[:30], pre.transform(x))
