"""Optimizer hyperparameters that follow a schedule.

Keras optimizers take a float `momentum`/`beta_1` that is frozen into the
compiled train step; only `learning_rate` may be a schedule. The mixin here
lets a subclass accept a `LearningRateSchedule` for other hyperparameters
too, evaluates it inside the step at the same step count as the learning
rate (`schedule_step`), and (de)serializes it with the optimizer.
"""

import numbers

import keras
import numpy as np
from keras import ops

from kerastrain._validation import (FLOAT32_TINY, check_bool, check_float,
                                    check_in_float32, check_steps)
from kerastrain.schedules.phases import check_rates

LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule

# Set on an optimizer while its schedules count applied updates.
_COUNTS_UPDATES = "_kerastrain_schedules_count_updates"
# Set on a learning-rate schedule that counts batches all the same.
_COUNTS_BATCHES = "_kerastrain_counts_batches"


def schedule_step(optimizer):
    """The step at which `optimizer` evaluates its schedules, as a tensor.

    Keras evaluates a learning-rate schedule at the raw step count
    `optimizer._iterations`, which counts batches (micro-batches when
    `gradient_accumulation_steps` is set). While `schedules_count_updates`
    is on (a `GradientAccumulation` callback turns it on for its `fit`), the
    step is `optimizer.iterations`, the number of applied updates. The
    learning rate and every scheduled hyperparameter read this one step, so
    a one-cycle's momentum stays in phase with its learning rate.

    Args:
        optimizer: A Keras optimizer.

    Returns:
        The integer step tensor.

    Example:

    >>> import keras
    >>> sgd = keras.optimizers.SGD(0.1, gradient_accumulation_steps=4)
    >>> _ = sgd._iterations.assign(10)
    >>> int(schedule_step(sgd))
    10
    >>> schedules_count_updates(sgd)
    >>> int(schedule_step(sgd))
    2
    """
    if getattr(optimizer, _COUNTS_UPDATES, False):
        return optimizer.iterations
    return optimizer._iterations


def schedules_count_updates(optimizer, on=True):
    """Makes every schedule of `optimizer` count applied updates (`on`), or
    gives the learning rate back to Keras, which counts batches.

    Keras evaluates a learning-rate schedule at the batch count even when
    it accumulates gradients; with `on`, the learning-rate schedule and
    the scheduled hyperparameters are evaluated at `optimizer.iterations`
    instead (see `schedule_step`). The compiled train step must be traced
    again after a change.

    Args:
        optimizer: A Keras optimizer.
        on: Whether schedules count applied updates.

    Returns:
        None.

    Example:

    >>> import keras
    >>> sgd = keras.optimizers.SGD(0.1, gradient_accumulation_steps=4)
    >>> schedules_count_updates(sgd)
    >>> schedules_count_updates(sgd, on=False)
    """
    if on:
        setattr(optimizer, _COUNTS_UPDATES, True)
        optimizer._get_current_learning_rate = lambda: _learning_rate(
            optimizer)
        return
    for name in (_COUNTS_UPDATES, "_get_current_learning_rate"):
        if name in vars(optimizer):
            delattr(optimizer, name)


def counts_batches(schedule):
    """Marks a learning-rate schedule to be evaluated at the batch count
    (`optimizer._iterations`) even while `schedules_count_updates` is on:
    the LR range test's ramp, which sets one rate per batch.

    Args:
        schedule: A `LearningRateSchedule`.

    Returns:
        `schedule`.
    """
    setattr(schedule, _COUNTS_BATCHES, True)
    return schedule


def has_schedules(optimizer):
    """Whether `optimizer` evaluates anything at a step: a learning-rate
    schedule, or a scheduled hyperparameter of kerastrain's optimizers.
    Without one, the step they read changes nothing."""
    return isinstance(optimizer._learning_rate, LearningRateSchedule) or any(
        optimizer.is_scheduled(name)
        for name in getattr(optimizer, "scheduled", ()))


def _learning_rate(optimizer):
    # Keras' `_get_current_learning_rate`, evaluating a schedule at
    # `schedule_step` (read at call time: LRFinder may swap the rate).
    rate = optimizer._learning_rate
    if isinstance(rate, LearningRateSchedule):
        return rate(optimizer._iterations if getattr(
            rate, _COUNTS_BATCHES, False) else schedule_step(optimizer))
    return type(optimizer)._get_current_learning_rate(optimizer)


def check_learning_rate(learning_rate):
    """Returns `learning_rate` if it is a schedule, a callable or a
    variable, or a number that is finite, >= 0 and one float32 can hold.
    Keras takes NaN or infinity (or 1e40, inf in float32) as a rate and
    trains the weights to NaN; PyTorch's optimizers refuse a negative
    rate, which would climb the loss."""
    if isinstance(learning_rate, numbers.Real):  # bools included: refused
        learning_rate = check_float("learning_rate", learning_rate, low=0)
        check_rates({"learning_rate": learning_rate})  # inf in a variable
    return learning_rate


def check_accumulation(kwargs):
    """Checks `kwargs["gradient_accumulation_steps"]`, where given: None
    or 0 (no accumulation, as Keras reads them), or an integer >= 2.
    Keras checks only `>= 2`: 2.5 failed inside TensorFlow's step, and on
    JAX and torch updated the weights at batches 4 and 9 of 10 while
    `iterations` counted 4 updates."""
    name = "gradient_accumulation_steps"
    if kwargs.get(name) is None:
        return
    # At most the optimizers' int32 step count: 2**40 failed inside the
    # first step (torch: division by zero, JAX: an overflow).
    steps = check_steps(name, kwargs[name], min_value=0)
    if steps == 1:
        raise ValueError(
            f"Argument `{name}` must be None or 0 (no accumulation), or an "
            f"integer >= 2. Received: {name}=1")
    kwargs[name] = steps


# Keras' optimizers take these unchecked: inf or 0 clipped or scaled every
# gradient to NaN or 0, a negative clip turned clipping off.
CLIPPING = ("clipnorm", "clipvalue", "global_clipnorm", "loss_scale_factor")


def check_keras_arguments(kwargs):
    """Checks the arguments of Keras' base optimizer in `kwargs`, where
    given: `gradient_accumulation_steps` (`check_accumulation`), each
    of `CLIPPING`, None or a number > 0 that float32 holds, and the
    weights' moving average's: `use_ema` a bool (Keras took "no" as
    True, and averaged), `ema_momentum` in [0, 1] (NaN passed Keras'
    check, and the average made every weight NaN at the end of `fit`)
    and `ema_overwrite_frequency` None or a step count (`check_steps`)."""
    check_accumulation(kwargs)
    for name in CLIPPING:
        check_keyword(kwargs, name, 0, low_closed=False, none=True)
    if "use_ema" in kwargs:
        kwargs["use_ema"] = check_bool("use_ema", kwargs["use_ema"])
    check_keyword(kwargs, "ema_momentum", 0, 1)
    if kwargs.get("ema_overwrite_frequency") is not None:
        kwargs["ema_overwrite_frequency"] = check_steps(
            "ema_overwrite_frequency", kwargs["ema_overwrite_frequency"])


def check_epsilon(kwargs):
    """Checks `kwargs["epsilon"]`, where given: at least float32's smallest
    normal number. XLA (JAX, and TensorFlow's compiled steps) flushes a
    smaller one to 0, and a weight that got no gradient is then
    0 / 0 = NaN."""
    check_keyword(kwargs, "epsilon", FLOAT32_TINY)


def check_keyword(kwargs, name, low, high=None, low_closed=True,
                  high_closed=True, none=False):
    """Checks `kwargs[name]`, where given (None only where `none` says
    Keras takes it): a number that Keras' optimizers pass to the update
    unchecked (NaN trains the weights to NaN), refused outside its
    interval (see `check_float32`) as PyTorch's optimizers refuse it."""
    if name in kwargs and kwargs[name] is None and not none:
        raise TypeError(
            f"Argument `{name}` must be a number, not None (leave it out "
            f"for Keras' default). Received: {name}=None")
    if kwargs.get(name) is not None:
        kwargs[name] = check_float32(name, kwargs[name], low, high,
                                     low_closed, high_closed)


def check_float32(name, value, low=None, high=None, low_closed=True,
                  high_closed=True):
    """Returns `float(value)` if it lies in the interval (as `check_float`
    writes it), an open bound also in float32, where the update computes:
    `beta_1=0.99999999` is 1.0 there, and Adam's bias correction
    `1 - beta_1 ** t` divides by zero. A number float32 cannot hold (its
    magnitude over 3.4e38) is refused: it is inf there."""
    value = check_in_float32(name, check_float(name, value, low, high,
                                               low_closed, high_closed))
    rounded = float(np.float32(value))
    if (not low_closed and rounded == low) or (not high_closed
                                               and rounded == high):
        raise ValueError(
            f"Argument `{name}` rounds to {rounded:g} in float32, where the "
            f"update computes it, and must not equal it. Received: "
            f"{name}={value!r}")
    return value


def check_scheduled(name, value, low, high, high_closed=True):
    """Returns `value` if it is a float in `[low, high]` (`[low, high)` with
    `high_closed=False`, in float32 too), or a schedule whose
    `value_range`, where it has one (kerastrain's schedules do), lies
    there. Keras' own schedules are taken as they are."""
    if isinstance(value, LearningRateSchedule):
        bounds = getattr(value, "value_range", None)
        if bounds is None:
            return value
        try:
            for bound in bounds:
                check_float32(name, bound, low, high,
                              high_closed=high_closed)
        except ValueError:
            interval = f"[{low:g}, {high:g}{']' if high_closed else ')'}"
            raise ValueError(
                f"Argument `{name}` must stay in {interval}: this schedule "
                f"goes from {bounds[0]:g} to {bounds[1]:g}. Received: "
                f"{name}={value!r}") from None
        return value
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(
            f"Argument `{name}` must be a number or a "
            "`keras.optimizers.schedules.LearningRateSchedule`. Received: "
            f"{name}={value!r}")
    return check_float32(name, value, low, high, high_closed=high_closed)


class ScheduledHyperparameters:
    """Mixin for a Keras optimizer whose attributes named in `scheduled`
    may hold a schedule instead of a float."""

    scheduled = ()

    def is_scheduled(self, name):
        return isinstance(getattr(self, name), LearningRateSchedule)

    def _backend_update_step(self, grads, trainable_variables,
                             learning_rate):
        # Evaluate each schedule once per update, not once per variable,
        # at the step the learning rate is evaluated at.
        step = schedule_step(self)
        self._values = {
            name: getattr(self, name)(step)
            for name in self.scheduled if self.is_scheduled(name)}
        try:
            return super()._backend_update_step(grads, trainable_variables,
                                                learning_rate)
        finally:
            self._values = {}

    def _apply_weight_decay(self, variables):
        # Keras' decoupled decay, with the learning rate evaluated once per
        # update: Keras reads `self.learning_rate` once per variable, which
        # evaluates a schedule again for each (a ResNet-8's traced step
        # held 29 copies of a one-cycle), and with `weight_decay=0.0` it
        # still subtracts `w * 0 * lr` from every variable. Same values.
        if not self.weight_decay:
            return
        rate = self.learning_rate
        # Keras' method, or the one `schedules_count_updates` set. Under a
        # tf.distribute strategy the replicas each get here before their
        # merged decay runs, the second finding the first's stand-in:
        # what it stands in for is the one to put back.
        own = vars(self).get("_get_current_learning_rate")
        own = getattr(own, "stands_in_for", own)

        def stand_in():
            return rate

        stand_in.stands_in_for = own
        self._get_current_learning_rate = stand_in
        try:
            super()._apply_weight_decay(variables)
        finally:
            vars(self).pop("_get_current_learning_rate", None)
            if own is not None:
                self._get_current_learning_rate = own

    def current(self, name, dtype):
        """The hyperparameter's value at this update, as a tensor.

        Schedules see `schedule_step(self)`, the step the learning-rate
        schedule sees: the batch count, as Keras counts for its learning
        rate, or, while a `GradientAccumulation` callback drives the
        optimizer, the number of applied updates.

        Args:
            name: The hyperparameter, one of `scheduled`.
            dtype: The dtype to cast it to.

        Returns:
            A scalar tensor.
        """
        value = getattr(self, name)
        if isinstance(value, LearningRateSchedule):
            value = getattr(self, "_values", {}).get(name)
            if value is None:  # called outside an update
                value = getattr(self, name)(schedule_step(self))
        return ops.cast(value, dtype)

    def get_config(self):
        config = super().get_config()
        for name in self.scheduled:
            value = getattr(self, name)
            if isinstance(value, LearningRateSchedule):
                value = keras.optimizers.schedules.serialize(value)
            config[name] = value
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for name in cls.scheduled:
            if isinstance(config.get(name), dict):
                config[name] = keras.optimizers.schedules.deserialize(
                    config[name], custom_objects=custom_objects)
        return super().from_config(config, custom_objects=custom_objects)
