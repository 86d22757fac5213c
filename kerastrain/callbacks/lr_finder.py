"""The LR range test (Smith 2017), as fastai's `lr_find` runs it."""

import math
import warnings

import keras
import numpy as np

from kerastrain._validation import (FLOAT32_MAX, FLOAT32_TINY, check_bool,
                                    check_float, check_int, check_seed,
                                    check_steps, check_targets, is_dataset,
                                    needs_targets)
from kerastrain.callbacks import _training_state as state
from kerastrain.callbacks.lr_finder_result import LRFinderResult
from kerastrain.optimizers.scheduled import counts_batches
from kerastrain.schedules.phases import (PhaseSchedule, check_rates,
                                         exp_fits_float32)


class LRFinder(keras.callbacks.Callback):
    """Runs an LR range test during `fit`, then puts the model back.

    The learning rate grows exponentially from `start_lr` to `end_lr` over
    `num_steps` batches, one rate each (also for a batch whose update a
    `LossScaleOptimizer` skips); the loss of every batch is recorded and
    smoothed (exponential moving average, debiased). Training stops
    after `num_steps` batches, or as soon as the smoothed loss exceeds
    `diverge_factor` times its minimum (for a negative loss: rises above
    it by `diverge_factor - 1` times its size) or becomes NaN. At the end (with
    `restore=True`), the weights, every optimizer variable (its step count
    included) and the learning rate (a schedule included) are put back, so
    the model trains afterwards as if the test had never run. The result is
    in `.result`. If an exception stops the `fit` (Keras then skips the
    end), call `put_back()`; a `fit` of the same model with this callback
    puts it back first.

    `kerastrain.find_lr` runs this for you; use the callback directly to run
    the test inside your own `fit` call (KerasTuner's `search`, say).

    Args:
        start_lr: First learning rate, > 0.
        end_lr: Last learning rate, > `start_lr`.
        num_steps: Number of batches, >= 2 (a `fit` that ends sooner,
            without divergence, warns).
        beta: Smoothing of the loss, in [0, 1).
        diverge_factor: Stop when the smoothed loss exceeds this times its
            minimum, > 1 (`float("inf")`: only a NaN loss stops the test,
            fastai's `stop_div=False`). The rule is relative to the
            minimum's size, so a signed loss whose minimum sits near zero
            (Keras' cosine similarity of an untrained model) stops on
            batch noise, and a bounded one may never rise far enough
            (cosine similarity at -0.9 cannot rise by 2.7): pass
            `float("inf")` for such losses and read the curve.
        restore: Whether to restore the model at the end.

    Example:

    >>> finder = LRFinder(start_lr=1e-6, end_lr=1.0, num_steps=50)
    >>> # model.fit(x, y, epochs=10, callbacks=[finder])
    >>> # finder.result.suggestion()

    Reference:
        Smith, "Cyclical Learning Rates for Training Neural Networks", 2017;
        fastai's `Learner.lr_find`.
    """

    def __init__(self, start_lr=1e-7, end_lr=10.0, num_steps=100, beta=0.98,
                 diverge_factor=4.0, restore=True):
        super().__init__()
        self.start_lr = check_float("start_lr", start_lr, low=0,
                                    low_closed=False)
        check_rates({"start_lr": self.start_lr})  # before end_lr's range
        self.end_lr = check_float("end_lr", end_lr, low=self.start_lr,
                                  low_closed=False)
        check_rates({"end_lr": self.end_lr})
        if not exp_fits_float32(self.start_lr, self.end_lr):
            # With a scheduled optimizer the ramp is an `exp` phase:
            # refused here, not inside `fit`.
            raise ValueError(
                f"Arguments `start_lr` (at least {FLOAT32_TINY:.4g}, "
                "float32's smallest normal number) and `end_lr` must span "
                f"a ratio float32 can hold (at most {FLOAT32_MAX:.4g}). "
                f"Received: start_lr={start_lr}, end_lr={end_lr}")
        # At most the optimizers' int32 step count: 2**63 ran for ever.
        self.num_steps = check_steps("num_steps", num_steps, min_value=2)
        self.beta = check_float("beta", beta, 0, 1, high_closed=False)
        self.diverge_factor = check_float("diverge_factor", diverge_factor,
                                          low=1, low_closed=False,
                                          allow_inf=True)
        self.restore = check_bool("restore", restore)
        self.result = None
        self._saved = self._saved_model = None

    def lr_at(self, step):
        """The learning rate of step `step` (0-based).

        Args:
            step: The step, from 0; past `num_steps - 1` it stays `end_lr`.

        Returns:
            `start_lr * (end_lr / start_lr) ** (step / (num_steps - 1))`.

        Example:

        >>> LRFinder(1e-4, 1e-2, num_steps=3).lr_at(1)
        0.001
        """
        fraction = min(step / (self.num_steps - 1), 1.0)
        return self.start_lr * (self.end_lr / self.start_lr) ** fraction

    def on_train_begin(self, logs=None):
        model = self.model
        state.require_built(model, "LRFinder")
        if model.steps_per_execution != 1:
            raise ValueError(
                "LRFinder sets the learning rate before each batch and "
                "records each batch's loss, so it needs a model compiled "
                "with steps_per_execution=1. Received: steps_per_execution="
                f"{model.steps_per_execution} (`find_lr` runs the test at 1 "
                "and puts it back).")
        if self._saved is not None and self._saved_model == id(model):
            # A test an exception stopped (Keras skips `on_train_end`):
            # this one starts from the model as it was before that one.
            self.put_back()
        self._saved, self._saved_model = state.snapshot(model), id(model)
        optimizer = state.base_optimizer(model.optimizer)
        # A float rate lives in a variable: set it before each batch, no
        # recompilation. A schedule is swapped for the same exponential
        # ramp as a schedule of the optimizer's step, which needs the train
        # step traced again. (Set directly: the public setter would untrack
        # a learning-rate variable and change the optimizer's variables.)
        self._settable = isinstance(optimizer._learning_rate, keras.Variable)
        # A LossScaleOptimizer skips the update of a batch whose gradients
        # overflow, and the step count with it.
        self._skips = optimizer is not model.optimizer
        if self._settable:
            self._initial_rate = keras.ops.convert_to_numpy(
                optimizer._learning_rate)
        else:
            self._lay_ramp(optimizer, state.iterations(optimizer))
        self._lrs, self._losses, self._smoothed = [], [], []
        self._average, self._best = 0.0, math.inf
        self._diverged = False
        self._new_epoch = True

    def _lay_ramp(self, optimizer, first):
        """Swaps in the ramp as a schedule whose step `first` is the test's
        first batch, and has the train step traced again for it."""
        self._first = first
        ramp = PhaseSchedule([first, first + self.num_steps - 1],
                             [self.start_lr, self.end_lr], anneal="exp",
                             name="lr_range_test")
        # One rate per batch, as recorded, also while a GradientAccumulation
        # callback has the optimizer's schedules count updates.
        counts_batches(ramp)
        optimizer._learning_rate = ramp
        state.retrace(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._new_epoch = True

    def on_train_batch_begin(self, batch, logs=None):
        # Keras logs the running mean of the epoch; reset it so that the
        # logged loss is this batch's.
        self.model.reset_metrics()
        optimizer = state.base_optimizer(self.model.optimizer)
        if self._settable:
            optimizer._learning_rate.assign(self.lr_at(len(self._losses)))
        elif self._new_epoch or self._skips:
            # The ramp must give batch n its rate, as the recorded one and
            # fastai's (whose schedule advances per batch while AMP skips
            # updates). Between epochs another callback may have moved the
            # step count (GradientAccumulation does when its number
            # changes), and a LossScaleOptimizer leaves it behind at each
            # skipped update: lay the ramp again from where the count now
            # stands (the train step is traced again, once per skip).
            state.sync(self.model)  # JAX's, during an epoch
            first = state.iterations(optimizer) - len(self._losses)
            if first != self._first:
                self._lay_ramp(optimizer, first)
        self._new_epoch = False

    def on_train_batch_end(self, batch, logs=None):
        step = len(self._losses)
        loss = float(logs["loss"])
        self._lrs.append(self.lr_at(step))
        self._losses.append(loss)
        self._average = self.beta * self._average + (1 - self.beta) * loss
        smoothed = self._average / (1 - self.beta ** (step + 1))
        self._smoothed.append(smoothed)
        self._best = min(self._best, smoothed)
        # fastai's `smoothed > 4 * best`, measured as a rise above the
        # minimum so that a negative loss (Keras' cosine similarity) is
        # not past 4x its minimum at once; the same for positive losses.
        rise = smoothed - self._best
        self._diverged = (not math.isfinite(smoothed) or rise > (
            self.diverge_factor - 1) * abs(self._best))
        if step + 1 >= self.num_steps or self._diverged:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.result = LRFinderResult(self._lrs, self._losses,
                                     self._smoothed, self.num_steps)
        if self._lrs and not self._diverged and (
                len(self._lrs) < self.num_steps):
            warnings.warn(
                f"LRFinder: the fit ended after {len(self._lrs)} of "
                f"num_steps={self.num_steps} batches, before the loss "
                f"diverged: the rate reached only {self._lrs[-1]:.3g} of "
                f"end_lr={self.end_lr:.3g}. Give the fit more epochs (or "
                "steps per epoch), or ask for fewer num_steps; `find_lr` "
                "runs as many as it needs.", stacklevel=2)
        self.put_back()

    def put_back(self):
        """Restores the model as it was before the test (or only its
        learning rate, with `restore=False`). Safe to call twice."""
        if self._saved is None:
            return
        if self.restore:
            state.restore(self.model, self._saved)
        elif self._settable:
            state.base_optimizer(self.model.optimizer)._learning_rate.assign(
                self._initial_rate)
        else:
            state.restore_learning_rate(self.model, self._saved)
        self._saved = self._saved_model = None


def find_lr(model, x, y=None, batch_size=32, start_lr=1e-7, end_lr=10.0,
            num_steps=100, beta=0.98, diverge_factor=4.0, seed=0):
    """Runs the LR range test on a compiled model and restores it.

    Trains `num_steps` batches with an exponentially growing learning rate,
    records the loss, and puts everything back: weights, optimizer
    variables and step count, learning rate or schedule. The model then
    trains exactly as if `find_lr` had never run. A model compiled with
    `steps_per_execution` > 1 runs the test one step at a time and gets
    its setting back; a model not built yet is built on the first batch.
    A `tf.data.Dataset` that reshuffles each iteration cannot be put back:
    the test iterates it, so the next `fit` gets the shuffle order after
    (pass NumPy arrays, or a dataset without `.shuffle`, for a following
    `fit` identical to one without the test).

    Args:
        model: A compiled Keras model.
        x: Inputs: a NumPy array (a list or dict of them for a model with
            several inputs), or a `tf.data.Dataset` of `(x, y)` batches
            (of inputs alone for a model without a compiled loss, trained
            by its `add_loss`, or with a `compute_loss` or `train_step` of
            its own).
        y: Targets, with NumPy `x`: as many samples as `x`; None only
            where the model trains without them, as above.
        batch_size: Batch size, with NumPy `x`.
        start_lr, end_lr, num_steps, beta, diverge_factor: See `LRFinder`.
        seed: None or an integer >= 0: the seed of the order in which
            NumPy samples are drawn (a private generator). The global
            random states (NumPy's, and torch's, which Keras' torch
            backend draws a seed from for every epoch's data loader) are
            put back as they were. So is the one extra draw of a model
            never fitted or evaluated: its first `fit` reads a batch to
            build its compiled loss and metrics (a shuffle on JAX, a data
            loader's seed on torch); `find_lr` leaves them unbuilt, as
            it found them, so that `fit` still makes the draw.

    Returns:
        An `LRFinderResult`: `lrs`, `losses`, `smoothed_losses`,
        `suggestion(method)`, `plot(path)`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(), "mse")
    >>> x = np.random.default_rng(0).standard_normal((256, 3))
    >>> result = find_lr(model, x, x.sum(axis=1), num_steps=40)
    >>> 1e-3 < result.suggestion() < 1.0
    True
    """
    if getattr(model, "optimizer", None) is None or not getattr(
            model, "compiled", False):
        raise ValueError("find_lr needs a compiled model: call "
                         "`model.compile(optimizer, loss)` first.")
    finder = LRFinder(start_lr, end_lr, num_steps, beta, diverge_factor)
    seed = check_seed("seed", seed)
    if is_dataset(x):
        if y is not None:
            raise ValueError(
                "Argument `y` must be None when `x` is a `tf.data.Dataset` "
                "of (x, y) batches: the targets come from it. Received: y "
                f"of type {type(y).__name__}")
        check_targets("x", x, model)
        fit_args = dict(x=x.repeat(), steps_per_epoch=num_steps, epochs=1,
                        shuffle=False)
    else:
        batch_size = check_int("batch_size", batch_size, min_value=1)
        count = _num_samples("x", x)
        if y is None and needs_targets(model):
            # Keras' loss got None as targets, deep in the first step.
            raise ValueError(
                "Argument `y` must hold the targets of `x` for the model's "
                "compiled loss. Received: y=None")
        labels = count if y is None else _num_samples("y", y)
        if labels != count:
            raise ValueError(
                "Arguments `x` and `y` must have the same number of "
                f"samples. Received: {count} in x, {labels} in y")
        if not count:
            raise ValueError("Argument `x` must hold at least one sample. "
                             "Received: 0 samples")
        order = np.random.default_rng(seed).permutation(count)
        x, y = _take(x, order), None if y is None else _take(y, order)
        epochs = math.ceil(num_steps / math.ceil(count / batch_size))
        fit_args = dict(x=x, y=y, batch_size=batch_size, epochs=epochs,
                        shuffle=False)
    if not model.built:
        if is_dataset(x):  # a batch of inputs alone, or a tuple
            first = keras.utils.unpack_x_y_sample_weight(
                next(iter(x.take(1))))[0]
        else:
            first = _take(x, np.arange(min(batch_size, count)))
        model(keras.tree.map_structure(np.asarray, first))
    steps_per_execution = model.steps_per_execution
    if steps_per_execution != 1:
        # `fit` makes its train function anew when there is none.
        model.steps_per_execution, model.train_function = 1, None
    random_state = state.global_random_state()
    unbuilt = state.unbuilt_compile_state(model)
    try:
        model.fit(**fit_args, verbose=0, callbacks=[finder])
    finally:
        finder.put_back()  # also when fit was interrupted
        state.restore_global_random_state(random_state)
        state.unbuild(model, unbuilt)
        if steps_per_execution != 1:
            model.steps_per_execution = steps_per_execution
            model.train_function = None
    return finder.result


def _leaves(value):
    """The arrays of a NumPy input: one, or those of a list or dict (a
    model with several inputs or outputs)."""
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)) and value and all(
            hasattr(v, "shape") for v in value):
        return list(value)
    return [value]


def _num_samples(name, value):
    counts = set()
    for leaf in _leaves(value):
        try:  # a PyDataset or a ragged list fails NumPy's way
            array = np.asarray(leaf)
        except (TypeError, ValueError):
            array = np.empty((), object)
        if array.ndim == 0 or array.dtype == object:
            also = " or a tf.data.Dataset" if name == "x" else ""
            raise TypeError(
                f"Argument `{name}` must be a NumPy array (or a list or dict "
                f"of them){also}. Received: {name} of type "
                f"{type(value).__name__}")
        counts.add(len(array))
    if len(counts) != 1:
        raise ValueError(
            f"The arrays of `{name}` must have the same number of samples. "
            f"Received: {sorted(counts)}")
    return counts.pop()


def _take(value, order):
    if isinstance(value, dict):
        return {k: np.asarray(v)[order] for k, v in value.items()}
    leaves = _leaves(value)
    if len(leaves) > 1 or leaves[0] is not value:
        return type(value)(np.asarray(v)[order] for v in leaves)
    return np.asarray(value)[order]
