"""Optimizer hyperparameters that follow a schedule.

Keras optimizers take a float `momentum`/`beta_1` that is frozen into the
compiled train step; only `learning_rate` may be a schedule. The mixin here
lets a subclass accept a `LearningRateSchedule` for other hyperparameters
too, evaluates it from the optimizer's update count inside the step, and
(de)serializes it with the optimizer.
"""

import keras
from keras import ops

from kerastrain._validation import check_float

LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule


def check_scheduled(name, value, low, high):
    """Returns `value` if it is a schedule, or a float in `[low, high]`."""
    if isinstance(value, LearningRateSchedule):
        return value
    return check_float(name, value, low, high)


class ScheduledHyperparameters:
    """Mixin for a Keras optimizer whose attributes named in `scheduled`
    may hold a schedule instead of a float."""

    scheduled = ()

    def is_scheduled(self, name):
        return isinstance(getattr(self, name), LearningRateSchedule)

    def _backend_update_step(self, grads, trainable_variables,
                             learning_rate):
        # Evaluate each schedule once per update, not once per variable.
        self._values = {
            name: getattr(self, name)(self.iterations)
            for name in self.scheduled if self.is_scheduled(name)}
        try:
            return super()._backend_update_step(grads, trainable_variables,
                                                learning_rate)
        finally:
            self._values = {}

    def current(self, name, dtype):
        """The hyperparameter's value at this update, as a tensor.

        Schedules see `self.iterations`, the number of updates applied so
        far (it counts once per accumulated update when
        `gradient_accumulation_steps` is set), the step PyTorch's schedulers
        count too.
        """
        value = getattr(self, name)
        if isinstance(value, LearningRateSchedule):
            value = getattr(self, "_values", {}).get(name)
            if value is None:  # called outside an update
                value = getattr(self, name)(self.iterations)
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
