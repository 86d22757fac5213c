import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from kerastrain.data import tabular_preprocessor


def table():
    rng = np.random.default_rng(0)
    x = rng.normal([5.0, -3.0, 100.0], [2.0, 0.5, 30.0], size=(50, 3))
    x[3, 1] = np.nan
    return x


@pytest.mark.parametrize("scaling, check", [
    ("standard", lambda z: (np.allclose(z.mean(0), 0, atol=1e-9)
                            and np.allclose(z.std(0), 1, atol=1e-9))),
    ("minmax", lambda z: np.allclose(z.min(0), 0) and np.allclose(z.max(0),
                                                                  1)),
    # Median 0 and interquartile range 1 (NumPy's linear percentiles, as
    # scikit-learn's RobustScaler), per column.
    ("robust", lambda z: (np.allclose(np.median(z, 0), 0, atol=1e-12)
                          and np.allclose(np.subtract(*np.percentile(
                              z, [75, 25], axis=0)), 1, atol=1e-12))),
])
def test_scales_the_training_split_after_imputing_its_median(scaling, check):
    x = table()
    before = x.copy()
    z = tabular_preprocessor(x, scaling=scaling).transform(x)
    assert not np.isnan(z).any() and check(z)
    np.testing.assert_array_equal(np.isnan(x), np.isnan(before))
    # The missing value became the training median, then was scaled.
    filled = x.copy()
    filled[3, 1] = np.nanmedian(x[:, 1])
    np.testing.assert_allclose(
        z, tabular_preprocessor(filled, scaling=scaling).transform(filled),
        atol=1e-12)


def test_fitted_on_training_data_only():
    x = table()
    preprocessor = tabular_preprocessor(x[:25])
    z = preprocessor.transform(x[25:])
    column = x[:25, 0]
    np.testing.assert_allclose(z[:, 0], (x[25:, 0] - column.mean())
                               / column.std(), rtol=1e-9)


def test_categorical_columns_are_one_hot_encoded():
    x = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 2.0], [4.0, 1.0]])
    z = tabular_preprocessor(x, numeric=[0], categorical=[1]).transform(
        np.array([[1.0, 1.0], [1.0, 7.0]]))
    np.testing.assert_array_equal(z[:, 1:], [[0, 1, 0], [0, 0, 0]])


def test_a_missing_category_becomes_the_most_frequent_one():
    x = np.array([[1.0, 7.0], [2.0, np.nan], [3.0, 7.0], [4.0, 9.0]])
    z = tabular_preprocessor(x, numeric=[0], categorical=[1]).transform(x)
    # Categories 7 and 9 in that order; 7 appears twice, 9 once.
    np.testing.assert_array_equal(z[:, 1:], [[1, 0], [1, 0], [1, 0], [0, 1]])


def test_every_kind_of_gap_in_a_category_is_filled_alike():
    """None in an object array, a gap in a pandas bool column (None) and
    pandas' NA in a `string` column: each became a category of its own,
    or crashed the imputer, where NaN was filled."""
    pandas = pytest.importorskip("pandas")
    x = np.array([[1.0, "a"], [2.0, None], [3.0, "a"], [4.0, "b"]],
                 dtype=object)
    z = tabular_preprocessor(x, numeric=[0], categorical=[1]).transform(x)
    np.testing.assert_array_equal(z[:, 1:], np.eye(2)[[0, 0, 0, 1]])
    frame = pandas.DataFrame({
        "m": [1.0, 2.0, 3.0, 4.0],
        "c": pandas.array(["a", None, "a", "b"], dtype="string"),
        "flag": [True, None, True, False],
        "nullable": pandas.array([True, pandas.NA, True, False],
                                 dtype="boolean")})
    z = tabular_preprocessor(frame, categorical=["c", "flag", "nullable"]
                             ).transform(frame)
    # Each: the most frequent value (a, True, True) at the gap; categories
    # sorted (a, b; False, True).
    np.testing.assert_array_equal(z[:, 1:], np.hstack(
        [np.eye(2)[[0, 0, 0, 1]], np.eye(2)[[1, 1, 1, 0]],
         np.eye(2)[[1, 1, 1, 0]]]))


def test_a_numpy_array_of_numbers_and_text_is_encoded_as_objects_are():
    """`np.array` makes a row of numbers and text all text (`<U32`):
    scikit-learn's imputer refused the categorical column, naming
    nothing; the numbers still scale as numbers."""
    rows = [[25.0, "red"], [32.0, "blue"], [47.0, "red"]]
    text = np.array(rows)
    assert text.dtype.kind == "U"
    z = tabular_preprocessor(text, categorical=[1]).transform(text)
    np.testing.assert_allclose(
        z, tabular_preprocessor(np.array(rows, dtype=object),
                                categorical=[1]).transform(
            np.array(rows, dtype=object)), atol=1e-12)
    np.testing.assert_allclose(z[:, 0], StandardScaler().fit_transform(
        np.array([[25.0], [32.0], [47.0]]))[:, 0], atol=1e-12)
    # Categories sorted: blue, red.
    np.testing.assert_array_equal(z[:, 1:], np.eye(2)[[1, 0, 1]])
    data = np.array([[1, 0], [2, 1]]).astype("S1")  # bytes: b"1", b"0"
    z = tabular_preprocessor(data, numeric=[0], categorical=[1]).transform(
        data)
    np.testing.assert_array_equal(z[:, 1:], np.eye(2))


def test_nan_without_imputation_names_the_column():
    with pytest.raises(ValueError, match=r"columns \[1\] with impute=False"):
        tabular_preprocessor(table(), impute=False)


def test_a_numeric_column_without_any_value_is_refused():
    # scikit-learn's imputer would drop it, shifting the later columns.
    x = np.array([[1.0, np.nan, 5.0], [2.0, np.nan, 6.0], [3.0, np.nan, 7.0]])
    with pytest.raises(ValueError, match=r"columns \[1\] have no value"):
        tabular_preprocessor(x)


@pytest.mark.parametrize("frame", [False, True])
def test_a_categorical_column_without_any_value_is_refused(frame):
    """scikit-learn's imputer dropped it with a warning (a later "yes"
    was ignored), or, the only one, made no feature at all and failed
    deep inside scikit-learn, naming nothing."""
    pandas = pytest.importorskip("pandas")
    x = np.array([[30.0, "a", None], [40.0, "b", None], [50.0, "a", None]],
                 dtype=object)
    if frame:
        x = pandas.DataFrame(x, columns=["age", "city", "promo"]).astype(
            {"age": float})
    promo = "promo" if frame else 2
    for categorical in ([1, 2], [2]):
        if frame:
            categorical = [["city", "promo"][c - 1] for c in categorical]
        with pytest.raises(ValueError, match=rf"Categorical columns "
                           rf"\[{promo!r}\] have no value at all"):
            tabular_preprocessor(x, numeric=["age" if frame else 0],
                                 categorical=categorical)


@pytest.mark.parametrize("kwargs, named", [
    ({"numeric": [0, 0, 1]}, r"numeric=\[0, 0, 1\], where \[0, 0\]"),
    ({"numeric": [0, -3]}, r"numeric=\[0, -3\], where \[0, -3\]"),
    ({"categorical": [2, 2]}, r"categorical=\[2, 2\], where \[2, 2\]"),
])
def test_a_column_named_twice_is_refused(kwargs, named):
    """Named twice it became two features (an array), or narwhals'
    DuplicateError from inside scikit-learn (a DataFrame)."""
    with pytest.raises(ValueError, match=r"must name each column once.*"
                       + named):
        tabular_preprocessor(table(), **kwargs)
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(table(), columns=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"`numeric` must name each column "
                       r"once.*\['a', 'a'\] name the same column"):
        tabular_preprocessor(frame, numeric=["a", "a"])


def test_categories_among_object_columns_without_imputation():
    x = np.array([[1.0, "a"], [3.0, "b"]], dtype=object)
    z = tabular_preprocessor(x, numeric=[0], categorical=[1],
                             impute=False).transform(x)
    np.testing.assert_array_equal(z, [[-1, 1, 0], [1, 0, 1]])
    # A category among the numeric columns is named (only it: column 0
    # holds numbers), not NumPy's error.
    with pytest.raises(ValueError, match=r"columns \[1\] hold values "
                       r"that are not numbers.*`categorical`"):
        tabular_preprocessor(x, impute=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"scaling": "zscore"}, "scaling"),
    ({"x_train": np.zeros(5)}, "2-D"),
    ({"x_train": np.zeros((0, 3))},
     r"`x_train` must hold at least one sample.*\(0, 3\)"),
])
def test_bad_arguments(kwargs, match):
    arguments = {"x_train": table(), **kwargs}
    with pytest.raises(ValueError, match=match):
        tabular_preprocessor(**arguments)


def test_an_empty_data_frame_is_refused_naming_x_train():
    pandas = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match="`x_train` must hold at least one"):
        tabular_preprocessor(pandas.DataFrame({"age": [], "city": []}))


@pytest.mark.parametrize("kwargs", [{}, {"numeric": ["b"]},
                                    {"categorical": ["a"]}])
def test_repeated_column_labels_are_refused_naming_them(kwargs):
    # narwhals' DuplicateError came from inside scikit-learn (and with
    # categorical=["a"], "in both `numeric` and `categorical`").
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(np.ones((4, 3)), columns=["a", "b", "a"])
    with pytest.raises(ValueError, match=r"unique column labels.*\['a'\]"):
        tabular_preprocessor(frame, **kwargs)


def test_without_imputation_new_data_with_nan_is_refused_after_pickling():
    import pickle

    from sklearn.base import BaseEstimator

    clean = table()
    clean[3, 1] = 0.0
    preprocessor = pickle.loads(pickle.dumps(
        tabular_preprocessor(clean, impute=False)))
    assert isinstance(preprocessor, BaseEstimator)
    np.testing.assert_allclose(preprocessor.transform(clean),
                               StandardScaler().fit_transform(clean),
                               atol=1e-12)
    new = clean[:5].copy()
    new[2, 2] = np.nan
    with pytest.raises(ValueError, match=r"columns \[2\] with impute=False"):
        preprocessor.transform(new)
    assert np.isnan(new).sum() == 1  # not modified


def test_categorical_columns_alone_are_left_out_of_the_numeric_default():
    x = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 2.0], [4.0, 1.0]])
    z = tabular_preprocessor(x, categorical=[1]).transform(x)
    # Column 0 standardized, column 1 one-hot only (never also scaled).
    np.testing.assert_allclose(z[:, 0], (x[:, 0] - 2.5) / np.sqrt(1.25))
    np.testing.assert_array_equal(z[:, 1:], np.eye(3)[[0, 1, 2, 1]])


def test_a_column_both_numeric_and_categorical_is_refused():
    with pytest.raises(ValueError, match=r"Columns \[1\] are in both"):
        tabular_preprocessor(table(), numeric=[0, 1], categorical=[1])


def test_dataframe_columns_by_position_are_checked_for_missing_values():
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(table(), columns=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"columns \[1\] with impute=False"):
        tabular_preprocessor(frame, numeric=[0, 1], impute=False)
    z = tabular_preprocessor(frame, numeric=[0, 2], impute=False).transform(
        frame)
    kept = frame[["a", "c"]]
    np.testing.assert_allclose(z, (kept - kept.mean()) / kept.std(ddof=0),
                               atol=1e-12)


def test_dataframe_integer_labels_are_labels_not_positions():
    """`DataFrame(array)` after a `drop`: the labels were read as positions
    (out of bounds, or the wrong column blamed and the columns swapped)."""
    pandas = pytest.importorskip("pandas")
    x = table()
    x[3, 1] = 0.0
    frame = pandas.DataFrame(x).drop(columns=[0])
    expected = StandardScaler().fit_transform(x[:, 1:])
    np.testing.assert_allclose(
        tabular_preprocessor(frame).transform(frame), expected, atol=1e-12)
    np.testing.assert_allclose(
        tabular_preprocessor(frame, numeric=[2]).transform(frame),
        expected[:, 1:], atol=1e-12)
    swapped = pandas.DataFrame({1: x[:30, 0], 0: ["a", "b"] * 15})
    z = tabular_preprocessor(swapped).transform(swapped)
    np.testing.assert_allclose(z[:, 0], StandardScaler().fit_transform(
        x[:30, :1])[:, 0], atol=1e-12)
    np.testing.assert_array_equal(z[:, 1:], np.eye(2)[[0, 1] * 15])


@pytest.mark.parametrize("column", [True, 1.0])
def test_integer_labels_are_not_named_by_a_bool_or_a_float(column):
    # Both equal 1, and picked the column labelled 1 without a word; as
    # positions of an array, both are refused.
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(table())
    with pytest.raises(ValueError, match=rf"`numeric` must name columns.*"
                       rf"\[0, 1, 2\].*where {column!r} is not one"):
        tabular_preprocessor(frame, numeric=[column])
    assert tabular_preprocessor(frame, numeric=[np.int64(1)]).transform(
        frame).shape == (50, 1)


def test_bool_columns_are_numbers_or_categories():
    pandas = pytest.importorskip("pandas")
    flags = np.array([True, False, True, True])
    frame = pandas.DataFrame({"flag": flags, "m": [1.0, 2.0, 3.0, 4.0]})
    z = tabular_preprocessor(frame).transform(frame)
    np.testing.assert_allclose(z[:, 0], (flags - 0.75) / np.sqrt(0.1875))
    z = tabular_preprocessor(frame, categorical=["flag"]).transform(frame)
    np.testing.assert_array_equal(z[:, 1:], np.eye(2)[flags.astype(int)])


def test_one_column_alone_is_one_column():
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"age": [1.0, 2.0, 3.0],
                              "city": ["a", "b", "a"]})
    z = tabular_preprocessor(frame, numeric="age",
                             categorical="city").transform(frame)
    assert z.shape == (3, 3)  # not one column per letter


@pytest.mark.parametrize("x_train, kwargs, error, match", [
    (table(), {"numeric": ["x"]}, ValueError,
     r"`numeric` must name columns.*no column names.*'x' is not one"),
    (table(), {"numeric": [5]}, ValueError,
     r"positions .* from 0 to 2.*numeric=\[5\]"),
    (table(), {"categorical": [True]}, ValueError, "`categorical`"),
    (table(), {"numeric": 1.5}, TypeError, r"`numeric` must be a list"),
    (table(), {"impute": "no"}, TypeError, r"`impute` must be True or"),
    # Every column left out: a preprocessor of no feature.
    (table(), {"numeric": [], "categorical": []}, ValueError,
     r"select no column.*numeric=\[\], categorical=\[\]"),
    (np.ones((3, 2)), {"numeric": []}, ValueError, "select no column"),
])
def test_bad_columns_and_flags_name_the_argument(x_train, kwargs, error,
                                                 match):
    with pytest.raises(error, match=match):
        tabular_preprocessor(x_train, **kwargs)


def test_unknown_dataframe_columns_are_listed():
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(table(), columns=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"columns \['a', 'b', 'c'\].*'d'"):
        tabular_preprocessor(frame, categorical=["d"])


@pytest.mark.parametrize("kwargs", [{"categorical": []},
                                    {"categorical": ["c"]},
                                    {"numeric": ["b"]}])
def test_a_text_column_is_never_dropped_or_blamed_on_categorical(kwargs):
    """A text column named in neither argument fell out of the output
    without a word when `categorical` was given; `numeric=["b"]` was
    refused as 'in both', naming a `categorical` the user never passed."""
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"a": [1.0, 2.0, 3.0, 4.0],
                              "b": ["x", "y", "x", "y"],
                              "c": [5.0, 6.0, 7.0, 9.0]})
    with pytest.raises(ValueError, match=r"Numeric columns \['b'\] hold "
                       r"values that are not numbers.*`categorical`"):
        tabular_preprocessor(frame, **kwargs)
    # Named, `numeric` selects: a number column named nowhere is left out.
    z = tabular_preprocessor(frame, numeric=["a"]).transform(frame)
    np.testing.assert_allclose(z[:, 0], StandardScaler().fit_transform(
        frame[["a"]])[:, 0], atol=1e-12)
    np.testing.assert_array_equal(z[:, 1:], np.eye(2)[[0, 1, 0, 1]])
