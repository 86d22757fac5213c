"""The search space of a multilayer perceptron for tabular data."""

import functools
import re

import keras
import keras_tuner
import numpy as np

from kerastrain._seeds import MODEL_SEED_LIMIT
from kerastrain._validation import check_seed, check_size
from kerastrain.data.balance import METHODS, balance
from kerastrain.layers.normalization import normalization
from kerastrain.tuning._hypermodel import (ToolkitHyperModel,
                                           batches_per_epoch, is_dataset)
from kerastrain.tuning._knob import Knob, category, integer, number, rate

BALANCING = ("none", "class_weight") + METHODS

# The message of a dataset label check failing in the tf.data pipeline,
# inside TensorFlow's error.
_LABEL_ERROR = re.compile(r"assertion failed: \[(Argument `[^\n]*?\.)\]")


class MLPHyperModel(ToolkitHyperModel):
    """KerasTuner search space of an MLP for tabular data, class balancing
    included.

    Each trial builds `num_layers` blocks of Dense(`units`) -> optional
    BatchNormalization -> ReLU -> Dropout(`dropout`), with an L2 penalty
    on the kernels, and a linear output; it trains with Adam at a constant
    `learning_rate`. Binary problems (`num_classes=2`) get one logit,
    `BinaryCrossentropy(from_logits=True)` and the metrics `accuracy`
    (threshold at logit 0) and `auc`; multiclass ones get `num_classes`
    logits, `SparseCategoricalCrossentropy(from_logits=True)` and
    `accuracy`. Labels are integers (one-hot rows are turned into them).
    A `tf.data.Dataset` given as `x` or as `validation_data` must yield
    batches `(features, labels)` (or with sample weights) whose labels
    follow the same rules: its `element_spec` is checked before training,
    and every batch as it is read (a bad one stops `fit` with a
    `ValueError` naming the dataset and the labels it held).

    `balancing` decides how the trial treats imbalanced classes: `"none"`,
    `"class_weight"` (Keras' `class_weight`, "balanced" weights from
    scikit-learn's `compute_class_weight`), or resampling of the training
    split by `kerastrain.data.balance` (`"smote"`, `"oversample"`,
    `"undersample"`). Resampling and class weights touch the training data
    only, never `validation_data`; a `validation_split` is cut off first,
    as Keras would, and then left alone. Balancing other than `"none"`
    needs NumPy features, not a dataset.

    Every knob is a constructor argument: a single value fixes it, a list
    gives the choices, a `(min, max)` tuple narrows a numeric range; a
    value set in the tuner's `HyperParameters` overrides it.

    Args:
        input_dim: Number of features, >= 1.
        num_classes: Number of classes, >= 2.
        num_layers: Hidden layers, >= 1.
        units: Units per hidden layer; a range is sampled by powers of two
            from its minimum (`(16, 256)`: 16, 32, ..., 256).
        dropout: Dropout rate after each hidden layer, in [0, 1).
        l2: L2 factor on the kernels, >= 0; ranges on a log scale (fix it
            to 0 to turn it off).
        batch_norm: `True` and/or `False`.
        learning_rate: Adam's rate, > 0; ranges on a log scale.
        balancing: `"none"`, `"class_weight"`, `"smote"`, `"oversample"`
            and/or `"undersample"`.
        seed: Optional integer seed of the resampling and dropout, in
            [0, 2**30) (dropout layer i gets `seed + i`).
        name: Optional name of the HyperModel.
        tunable: KerasTuner's flag: whether the knobs join the search
            space.

    Example:

    ```python
    import keras_tuner as kt
    hypermodel = MLPHyperModel(x_train.shape[1], 2,
                               balancing=["class_weight", "smote"])
    tuner = kt.BayesianOptimization(
        hypermodel, objective=kt.Objective("val_auc", "max"),
        max_trials=30, directory="tuning")
    tuner.search(x_train, y_train, validation_data=(x_val, y_val),
                 epochs=50, batch_size=64)
    ```
    """

    def __init__(self, input_dim, num_classes, num_layers=(1, 3),
                 units=(16, 256), dropout=(0.0, 0.5), l2=(1e-6, 1e-2),
                 batch_norm=(False, True), learning_rate=(1e-4, 1e-2),
                 balancing=("none", "class_weight", "smote"), seed=None,
                 name=None, tunable=True):
        self.input_dim = check_size("input_dim", input_dim, min_value=1)
        self.num_classes = check_size("num_classes", num_classes,
                                      min_value=2)
        self.seed = check_seed("seed", seed, high=MODEL_SEED_LIMIT)
        super().__init__([
            Knob("num_layers", num_layers, integer(), integer=True),
            Knob("units", units, integer(), integer=True, sampling="log",
                 step=2),
            Knob("dropout", dropout, number(high=1.0, high_closed=False)),
            Knob("l2", l2, number(), sampling="log"),
            Knob("batch_norm", batch_norm, category(False, True)),
            Knob("learning_rate", learning_rate, rate(),
                 sampling="log"),
            Knob("balancing", balancing, category(*BALANCING)),
        ], name=name, tunable=tunable)

    @property
    def binary(self):
        return self.num_classes == 2

    def build_model(self, values):
        regularizer = (keras.regularizers.L2(values["l2"]) if values["l2"]
                       else None)
        inputs = keras.Input((self.input_dim,))
        x = inputs
        for i in range(1, values["num_layers"] + 1):
            x = keras.layers.Dense(values["units"],
                                   use_bias=not values["batch_norm"],
                                   kernel_regularizer=regularizer,
                                   name=f"dense{i}")(x)
            if values["batch_norm"]:
                x = normalization("batch", values["units"],
                                  name=f"batch_norm{i}")(x)
            x = keras.layers.Activation("relu", name=f"relu{i}")(x)
            if values["dropout"]:
                # A seed per layer: alike, same-width layers would drop
                # the same units.
                x = keras.layers.Dropout(
                    values["dropout"],
                    seed=None if self.seed is None else self.seed + i,
                    name=f"dropout{i}")(x)
        # float32 logits under mixed precision, as resnet's: float16
        # ones saturate at 65504 and quantize the probabilities.
        outputs = keras.layers.Dense(1 if self.binary else self.num_classes,
                                     name="logits", dtype="float32")(x)
        return keras.Model(inputs, outputs, name="mlp")

    def compile_model(self, model, values, total_steps,
                      gradient_accumulation_steps=None):
        # The rate is constant: the number of updates does not matter.
        optimizer = keras.optimizers.Adam(
            values["learning_rate"],
            gradient_accumulation_steps=gradient_accumulation_steps)
        if self.binary:
            loss = keras.losses.BinaryCrossentropy(from_logits=True)
            metrics = [keras.metrics.BinaryAccuracy(name="accuracy",
                                                    threshold=0.0),
                       keras.metrics.AUC(from_logits=True, name="auc")]
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True)
            metrics = [keras.metrics.SparseCategoricalAccuracy(
                name="accuracy")]
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)

    def inputs(self, x):
        """Features `x` as float32, as the model trains on them."""
        return np.asarray(x, "float32")

    def _features(self, x, name):
        """`inputs(x)`, refused unless it has `input_dim` features, naming
        `name` (Keras' own error names neither)."""
        x = self.inputs(x)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"Argument `{name}` must hold rows of input_dim="
                f"{self.input_dim} features, shape (N, {self.input_dim}). "
                f"Received: features of shape {x.shape}")
        return x

    def labels(self, y):
        """Integer labels in [0, num_classes) from integer labels, (N,) or
        (N, 1), or one-hot rows, (N, num_classes)."""
        y = np.asarray(y)
        if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
            raise TypeError(
                "Argument `y` must hold class indices (integers) or one-hot "
                f"rows. Received: y of dtype {y.dtype}; map the classes to "
                "0, 1, ... first.")
        if y.ndim == 2 and y.shape[1] == self.num_classes:
            # Soft or multi-label rows (and empty ones) have no one class.
            if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
                raise ValueError(
                    f"Argument `y` given as rows of width {self.num_classes} "
                    "must be one-hot: a single 1 per row. Received rows "
                    "with other values or sums.")
            y = np.argmax(y, axis=1)
        elif y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        elif y.ndim != 1:
            raise ValueError(
                "Argument `y` must have shape (N,), (N, 1) or (N, "
                f"{self.num_classes}). Received: y.shape={y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(y == np.round(y)):
                raise ValueError("Labels must be class indices (integers) "
                                 "or one-hot rows.")
            y = y.astype("int64")
        if y.size and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(
                f"Labels must be in [0, {self.num_classes}). Received "
                f"range [{y.min()}, {y.max()}]")
        return y

    def _checked_dataset(self, dataset, name):
        """`dataset` of `(features, labels[, sample_weights])` batches with
        its labels checked as `labels` checks NumPy ones, and given as
        int64 class indices, shape (batch,).

        The `element_spec` is checked here: labels must be numbers or
        bools of shape (batch,), (batch, 1) or (batch, num_classes). The
        values are checked in the pipeline, batch by batch: a bad one fails
        the `fit` reading it with a `ValueError` naming `name` (see `fit`).

        Args:
            dataset: A `tf.data.Dataset` of batches.
            name: The argument it was given as, `"x"` or
                `"validation_data"`.

        Returns:
            The dataset mapped through the checks.
        """
        import tensorflow as tf

        what = (f"Argument `{name}`, a tf.data.Dataset, must yield labels "
                "`y`")
        spec = dataset.element_spec
        if not (isinstance(spec, tuple) and len(spec) in (2, 3)):
            raise ValueError(
                f"Argument `{name}`, a tf.data.Dataset, must yield batches "
                "(features, labels) or (features, labels, sample_weights). "
                f"Received elements: {spec}")
        label = spec[1]
        if not isinstance(label, tf.TensorSpec) or not (
                label.dtype.is_integer or label.dtype.is_floating
                or label.dtype == tf.bool):
            raise TypeError(
                f"{what} that are class indices (integers) or one-hot rows, "
                f"as dense numbers. Received labels: {label}; map the "
                "classes to 0, 1, ... first.")
        shape, n = label.shape, self.num_classes
        if shape.rank == 0:
            raise ValueError(
                f"{what} in batches, shape (batch,): it yields single "
                f"samples. Batch it, e.g. `{name}.batch(32)`. Received "
                f"labels: {label}")
        if shape.rank is None or shape.rank > 2 or (
                shape.rank == 2 and shape[1] not in (None, 1, n)):
            raise ValueError(
                f"{what} of shape (batch,), (batch, 1) or (batch, {n}). "
                f"Received labels: {label}")
        return dataset.map(functools.partial(
            _checked_labels, num_classes=n, what=what))

    def fit(self, hp, model, *args, **kwargs):
        """Trains `model` for the trial `hp`, as `ToolkitHyperModel.fit`
        does; a dataset batch whose labels break `labels`' rules raises a
        `ValueError` naming the dataset's argument (KerasTuner's
        `FatalValueError`, which stops a search).

        Args:
            hp: The trial's `HyperParameters`.
            model: The model `build` made.
            *args: `x`, `y`, ... as `ToolkitHyperModel.fit` takes them.
            **kwargs: Likewise.

        Returns:
            The `History`.
        """
        try:
            return super().fit(hp, model, *args, **kwargs)
        except Exception as error:  # tf.errors.InvalidArgumentError
            found = (type(error).__name__ == "InvalidArgumentError"
                     and _LABEL_ERROR.search(str(error)))
            if not found:
                raise
            # KerasTuner's fatal kind of ValueError: the data is the same
            # for every trial, so the search stops at once.
            raise keras_tuner.errors.FatalValueError(
                found.group(1)) from None

    def training_data(self, values, x, y, batch_size, validation_data,
                      kwargs):
        method = values["balancing"]
        if is_dataset(validation_data):
            validation_data = self._checked_dataset(validation_data,
                                                   "validation_data")
        elif validation_data is not None:
            val_x, val_y, *weights = validation_data
            # Keras' third entry, the validation sample weights, weighs the
            # val_loss the tuner scores.
            validation_data = (self._features(val_x, "validation_data"),
                               self.labels(val_y), *(
                None if w is None else np.asarray(w, "float32")
                for w in weights))
        with self.per_trial("balancing"):
            _check_balancing(method, is_dataset(x), kwargs)
        if is_dataset(x):
            return (dict(kwargs, x=self._checked_dataset(x, "x"),
                         validation_data=validation_data),
                    batches_per_epoch(x, batch_size))
        x, y = self._features(x, "x"), self.labels(y)
        if method == "class_weight":
            kwargs = dict(kwargs, class_weight=balanced_class_weight(y))
        elif method != "none":
            with self.per_trial("balancing"):  # a class too small to split
                x, y = balance(x, y, method, seed=self.seed, verbose=0)
        return (dict(kwargs, x=x, y=y, batch_size=batch_size,
                     validation_data=validation_data),
                batches_per_epoch(x, batch_size))


def _check_balancing(method, dataset, kwargs):
    """Raises where `fit`'s arguments clash with the balancing `method`:
    a resampling or class weights of its own, which needs arrays."""
    if method != "none" and kwargs.get("sample_weight") is not None:
        raise ValueError(
            f"Argument `sample_weight` cannot be combined with the "
            f"trial's balancing={method!r}, which resamples the data or "
            "sets class weights itself; fix `balancing` to 'none' to "
            "weigh samples yourself.")
    if dataset and method != "none":
        raise ValueError(
            f"Class balancing {method!r} needs the training data as "
            "NumPy arrays `x, y`; a tf.data.Dataset can only be used "
            "with balancing='none'.")
    if method == "class_weight" and kwargs.get("class_weight") is not None:
        raise ValueError(
            "The trial's balancing='class_weight' sets `class_weight`"
            "; do not pass one to `search`/`fit` as well, or fix "
            "`balancing` to another method.")


def balanced_class_weight(y):
    """`{class: weight}` with scikit-learn's "balanced" weights,
    `n_samples / (n_classes * count)`.

    Example:

    >>> balanced_class_weight(np.array([0, 0, 0, 1]))
    {0: 0.6666666666666666, 1: 2.0}
    """
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.unique(y)
    weights = compute_class_weight("balanced", classes=classes, y=y)
    return dict(zip(classes.tolist(), weights.tolist()))


def _checked_labels(features, labels, *weights, num_classes, what):
    """A dataset batch with its labels checked in graph (tf.data feeds
    every backend) and turned into int64 indices, shape (batch,)."""
    import tensorflow as tf

    def check(ok, template, *values):
        """The assertion op: `template` filled with `values` if not `ok`.
        """
        message = tf.strings.format(template, values) if values else template
        return tf.debugging.Assert(ok, [message])

    def indices(y):
        # Class indices stored as whole floats or bools, as `labels`
        # takes them.
        checks = []
        low, high = tf.reduce_min(y), tf.reduce_max(y)
        empty = tf.equal(tf.size(y), 0)
        if y.dtype.is_floating:
            checks.append(check(
                tf.reduce_all(tf.equal(y, tf.round(y))),
                f"{what} that are class indices (whole numbers) or one-hot "
                "rows. Received: a batch of labels in [{}, {}] holding "
                "others (or NaN).", low, high))
        with tf.control_dependencies(checks):
            checks = [check(
                tf.logical_or(empty, tf.logical_and(
                    low >= 0, high < num_classes)),
                f"{what} in [0, {num_classes}) (or one-hot rows of width "
                f"{num_classes}). Received: a batch of labels in [{{}}, "
                "{}].", low, high)]
        with tf.control_dependencies(checks):
            return tf.cast(y, "int64")

    def from_rows(y):
        rows = tf.cast(y, "float64")
        ok = tf.reduce_all(tf.logical_or(tf.equal(rows, 0.0),
                                         tf.equal(rows, 1.0)))
        ok = tf.logical_and(ok, tf.reduce_all(tf.equal(
            tf.reduce_sum(rows, axis=1), 1.0)))
        done = check(ok, f"{what} given as rows of width {num_classes} "
                     "to be one-hot: a single 1 per row. Received: a batch "
                     "of rows with other values or sums.")
        with tf.control_dependencies([done]):
            return tf.argmax(rows, axis=1)

    def from_column(y):
        done = check(tf.equal(tf.shape(y)[1], 1),
                     f"{what} of shape (batch,), (batch, 1) or (batch, "
                     f"{num_classes}). Received: a batch of labels of "
                     "shape {}.", tf.shape(y))
        with tf.control_dependencies([done]):
            return indices(y[:, 0])

    if labels.dtype == tf.bool:
        labels = tf.cast(labels, "int64")
    if labels.shape.rank == 1:
        labels = indices(labels)
    elif labels.shape[1] == num_classes:
        labels = from_rows(labels)
    elif labels.shape[1] == 1:
        labels = from_column(labels)
    else:  # a width unknown until the batch is read
        labels = tf.cond(tf.equal(tf.shape(labels)[1], num_classes),
                         lambda: from_rows(labels),
                         lambda: from_column(labels))
    return (features, labels, *weights)
