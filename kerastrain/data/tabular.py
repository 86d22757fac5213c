"""Preprocessing of tabular features, fitted on the training split only."""

import collections
import numbers

import numpy as np

from kerastrain._validation import check_bool, check_choice

SCALERS = ("standard", "minmax", "robust")


def _columns(x):
    """Every column's label (DataFrame) or position (array), in order, and
    those that hold neither numbers nor bools (a DataFrame's; bool columns
    count as numbers, 0 and 1)."""
    if hasattr(x, "select_dtypes"):
        numeric = list(x.select_dtypes(include=["number", "bool"]).columns)
        return list(x.columns), [c for c in x.columns if c not in numeric]
    return list(range(np.asarray(x).shape[1])), []


def _column_list(name, value):
    """`numeric` or `categorical` as a list: one label or position alone
    is one column (a string is not a list of one-letter names)."""
    if value is None or isinstance(value, (str, bytes, int, np.integer)):
        return None if value is None else [value]
    try:
        return list(value)
    except TypeError:
        raise TypeError(
            f"Argument `{name}` must be a list of column names or "
            f"positions. Received: {name}={value!r}") from None


def _positions(x, name, columns):
    """The positions of `columns` in `x`: a DataFrame's labels (a label
    wins over a position, as in `frame[...]`), or integer positions in
    range. `ColumnTransformer` reads integers as positions, so a
    DataFrame whose labels are integers (`DataFrame(array)` after a
    `drop`) is passed positions throughout."""
    labels = list(x.columns) if hasattr(x, "columns") else None
    width = len(labels) if labels is not None else np.shape(x)[1]
    positions = []
    for column in columns:
        # A label of the same kind: True and 1.0 equal 1, and picked the
        # column labelled 1 (as a position, both are refused).
        at = [i for i, label in enumerate(labels or []) if label == column
              and _kind(label) == _kind(column)]
        if at:
            positions.append(at[0])
        elif isinstance(column, (int, np.integer)) and not isinstance(
                column, bool) and -width <= column < width:
            positions.append(int(column) % width)
        else:
            known = (f"the DataFrame's columns {labels} or positions"
                     if labels is not None else
                     "positions (an array has no column names)")
            raise ValueError(
                f"Argument `{name}` must name columns of `x_train`: "
                f"{known} from 0 to {width - 1}. Received: "
                f"{name}={columns}, where {column!r} is not one")
    return positions


def _kind(label):
    """A column label's kind for matching: a bool, an integer, another
    number, or anything else."""
    if isinstance(label, (bool, np.bool_)):
        return "bool"
    if isinstance(label, numbers.Integral):
        return "integer"
    return "number" if isinstance(label, numbers.Number) else "other"


def _select(x, positions):
    """The columns at `positions` of `x`."""
    if hasattr(x, "iloc"):
        return x.iloc[:, positions]
    return np.asarray(x)[:, positions]


def as_categories(values):
    """Categorical columns as scikit-learn's most-frequent imputer takes
    them: as objects (it refuses bool and pandas' `string` columns, and
    NumPy's strings, which `np.array` makes of rows of numbers and text),
    every gap as NaN (it fills NaN alone: a None became a category of its
    own, and pandas' NA crashed it)."""
    if hasattr(values, "dtypes"):
        values = values.astype(object)
        return values.where(values.notna(), np.nan)
    values = np.asarray(values)
    if values.dtype.kind in "bSU":  # bools, bytes, text
        return values.astype(object)
    if values.dtype != object:
        return values
    try:
        import pandas
    except ImportError:  # then None is the only gap NaN is not
        missing = np.equal(values, None)
    else:
        missing = pandas.isna(values)
    return np.where(missing, np.nan, values)


def _as_float(values):
    """`values` as a float64 array, pandas' NA as NaN."""
    if hasattr(values, "to_numpy"):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return np.asarray(values, dtype="float64")


def _numbers(values, columns):
    """The numeric columns' `values` as float64, or a clear error naming
    those where some entry is not a number (a category left among
    them)."""
    try:
        return _as_float(values)
    except (TypeError, ValueError) as error:
        bad = []
        for i, column in enumerate(columns):
            try:
                _as_float(_select(values, [i]))
            except (TypeError, ValueError):
                bad.append(column)
        raise ValueError(
            f"Numeric columns {bad} hold values that are not numbers "
            f"({error}). Name the categorical ones in `categorical`."
        ) from None


def _refuse_empty(kind, columns):
    """Raises, naming `columns` (of `kind`, "Numeric" or "Categorical"),
    if any: columns with no value at all in the training data, which
    imputation cannot fill."""
    if columns:
        raise ValueError(
            f"{kind} columns {columns} have no value at all in `x_train`: "
            "imputation has nothing to fill them with. Drop them, or fill "
            "them before.")


def reject_missing(values, columns):
    """Returns `values` (the numeric columns) unchanged, or raises if any is
    missing (NaN): the check of a preprocessor fitted with `impute=False`,
    run by its `transform` as well as on the training data."""
    missing = np.isnan(_numbers(values, columns)).any(axis=0)
    if missing.any():
        raise ValueError(
            "Missing values (NaN) in numeric columns "
            f"{[c for c, m in zip(columns, missing) if m]} with "
            "impute=False: scaling cannot use them. Fit with impute=True "
            "or clean the data.")
    return values


def tabular_preprocessor(x_train, numeric=None, categorical=None,
                         scaling="standard", impute=True):
    """Imputation, scaling and one-hot encoding, fitted on `x_train`.

    A scikit-learn `ColumnTransformer`: numeric columns get their missing
    values replaced by the training median (with `impute=True`) and are
    scaled; categorical columns get the most frequent value and a one-hot
    encoding (categories unseen in training encode as all zeros). Fit it on
    the training split only, apply it to every split with `.transform`, and
    save it beside the model (`joblib.dump`) so inference sees the same
    transformation.

    Args:
        x_train: Training features: a 2-D array or a pandas DataFrame.
        numeric: Numeric columns: a DataFrame's column labels, or
            positions (the only way for an array); one label alone is one
            column. Defaults to every column not in `categorical` (a
            column there that holds no numbers is an error: name it in
            `categorical`). Named, it selects: a column named in neither
            argument is left out.
        categorical: Categorical columns, named as `numeric`. Defaults to
            a DataFrame's columns of other dtypes than numbers and bools,
            less those named in `numeric` (none of an array's).
        scaling: `"standard"` (zero mean, unit variance), `"minmax"`
            ([0, 1]) or `"robust"` (median and interquartile range).
        impute: Whether to fill missing values: True or False. Without it,
            missing values in numeric columns are an error, in the training
            data and in whatever the returned preprocessor transforms later
            (categorical columns still get their most frequent value).

    Returns:
        The fitted `ColumnTransformer`.

    Example:

    >>> import numpy as np
    >>> x = np.array([[1.0, 10.0], [2.0, np.nan], [3.0, 30.0]])
    >>> preprocessor = tabular_preprocessor(x, scaling="minmax")
    >>> preprocessor.transform(x).round(2).tolist()
    [[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]]
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (FunctionTransformer, MinMaxScaler,
                                       OneHotEncoder, RobustScaler,
                                       StandardScaler)

    check_choice("scaling", scaling, SCALERS)
    impute = check_bool("impute", impute)
    if not hasattr(x_train, "select_dtypes") and np.asarray(
            x_train).ndim != 2:
        raise ValueError(
            "`x_train` must be 2-D (samples, features). Received shape "
            f"{np.shape(x_train)}")
    if not len(x_train):
        raise ValueError(
            "Argument `x_train` must hold at least one sample to fit the "
            f"preprocessor on. Received: shape {np.shape(x_train)}")
    columns, categories = _columns(x_train)
    repeated = sorted(str(c) for c, n in collections.Counter(
        columns).items() if n > 1)
    if repeated:
        # A label names no single column (narwhals' DuplicateError came
        # from inside scikit-learn).
        raise ValueError(
            "Argument `x_train` must have unique column labels: a repeated "
            f"label names no single column. Received: labels {repeated} "
            "more than once. Rename them (`x_train.columns = [...]`).")
    numeric = _column_list("numeric", numeric)
    categorical = _column_list("categorical", categorical)
    if categorical is None:  # the columns of other values, unless numeric
        named = _positions(x_train, "numeric", numeric or [])
        categorical = [c for c, p in zip(categories, _positions(
            x_train, "categorical", categories)) if p not in named]
    at_categorical = _positions(x_train, "categorical", categorical)
    if numeric is None:  # a column named categorical is not also scaled
        numeric = [c for p, c in enumerate(columns)
                   if p not in at_categorical]
    at_numeric = _positions(x_train, "numeric", numeric)
    for name, given, at in (("numeric", numeric, at_numeric),
                            ("categorical", categorical, at_categorical)):
        twice = [c for c, p in zip(given, at) if at.count(p) > 1]
        if twice:  # a feature twice, or narwhals' DuplicateError
            raise ValueError(
                f"Argument `{name}` must name each column once. Received: "
                f"{name}={given}, where {twice} name the same column")
    both = [c for c, p in zip(numeric, at_numeric) if p in at_categorical]
    if both:
        raise ValueError(
            f"Columns {both} are in both `numeric` and `categorical`: each "
            "column is either scaled or one-hot encoded. Received: "
            f"numeric={numeric}, categorical={categorical}")
    if not at_numeric and not categorical:
        raise ValueError(
            "`numeric` and `categorical` select no column of `x_train`: "
            "the preprocessor would output no feature. Received: "
            f"numeric={numeric}, categorical={categorical}")
    values = _numbers(_select(x_train, at_numeric), numeric)
    if not impute:
        reject_missing(values, numeric)
    elif len(values):
        # scikit-learn's imputer drops such a column (with a warning), and
        # every later column would move one place to the left.
        _refuse_empty("Numeric", [c for c, e in zip(
            numeric, np.isnan(values).all(axis=0)) if e])
    # The categorical imputer drops such a column too (with a warning):
    # the only one, it made no feature at all, deep in scikit-learn.
    filled = np.asarray(as_categories(_select(x_train, at_categorical)),
                        dtype=object)
    _refuse_empty("Categorical", [
        c for c, column in zip(categorical, filled.T)
        if all(isinstance(v, float) and v != v for v in column)])
    scaler = {"standard": StandardScaler, "minmax": MinMaxScaler,
              "robust": RobustScaler}[scaling]()
    # Without imputation the check is a step of the pipeline, so the saved
    # preprocessor refuses NaN in new data too instead of passing it on.
    steps = [SimpleImputer(strategy="median")] if impute else [
        FunctionTransformer(reject_missing, kw_args={"columns": numeric},
                            feature_names_out="one-to-one")]
    transformers = [("numeric", make_pipeline(*steps, scaler), at_numeric)]
    if categorical:
        transformers.append(("categorical", make_pipeline(
            FunctionTransformer(as_categories,
                                feature_names_out="one-to-one"),
            SimpleImputer(strategy="most_frequent"),
            OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            at_categorical))
    return ColumnTransformer(transformers).fit(x_train)
