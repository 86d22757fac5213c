"""Linear warmup in front of any schedule."""

import numbers

import keras
from keras import ops

from kerastrain._validation import check_float, check_name, check_steps
from kerastrain.schedules.phases import anneal_linear, check_rates

LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule


@keras.saving.register_keras_serializable(package="kerastrain")
class Warmup(LearningRateSchedule):
    """Ramps linearly from `start_lr` to a schedule's first value, then
    runs the schedule.

    For `step < warmup_steps` the rate goes linearly from `start_lr` to
    `schedule(0)`; from then on it is `schedule(step - warmup_steps)`, so
    the wrapped schedule starts fresh after the warmup (PyTorch's
    `SequentialLR([LinearLR, schedule], milestones=[warmup_steps])`).
    Keras' `CosineDecay(warmup_target=...)` does the same for cosine decay
    only; this wraps anything.

    Args:
        schedule: A float (constant rate after warmup) or a
            `LearningRateSchedule`.
        warmup_steps: Steps of the ramp, >= 0 (0: no warmup).
        start_lr: Rate at step 0, >= 0.
        name: Name of the schedule.

    Example:

    >>> schedule = Warmup(keras.optimizers.schedules.ExponentialDecay(
    ...     0.1, decay_steps=10, decay_rate=0.5), warmup_steps=5)
    >>> [round(float(schedule(s)), 3) for s in (0, 1, 5, 15)]
    [0.0, 0.02, 0.1, 0.05]

    Reference:
        Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in
        1 Hour", 2017 (gradual warmup).
    """

    def __init__(self, schedule, warmup_steps, start_lr=0.0, name="Warmup"):
        super().__init__()
        if isinstance(schedule, numbers.Real) and not isinstance(schedule,
                                                                 bool):
            schedule = check_float("schedule", schedule, low=0)
        elif not isinstance(schedule, LearningRateSchedule):
            raise TypeError(
                "Argument `schedule` must be a float or a "
                "`keras.optimizers.schedules.LearningRateSchedule`. "
                f"Received: schedule={schedule!r}")
        self.schedule = schedule
        self.warmup_steps = check_steps("warmup_steps", warmup_steps,
                                        min_value=0)
        self.start_lr = check_float("start_lr", start_lr, low=0)
        check_rates({"start_lr": self.start_lr, **(
            {"schedule": schedule} if isinstance(schedule, float) else {})})
        self.name = check_name(name)

    @property
    def value_range(self):
        """`(least, greatest)` value the schedule takes, or None where the
        wrapped schedule does not say (Keras' own do not)."""
        if isinstance(self.schedule, float):
            inner = (self.schedule, self.schedule)
        else:
            inner = getattr(self.schedule, "value_range", None)
            if inner is None:
                return None
        if not self.warmup_steps:  # `start_lr` is never taken
            return tuple(inner)
        return min(self.start_lr, inner[0]), max(self.start_lr, inner[1])

    def _after(self, step):
        if isinstance(self.schedule, float):
            return ops.full_like(step, self.schedule, dtype="float32")
        return ops.cast(self.schedule(step), "float32")

    def __call__(self, step):
        with keras.name_scope(self.name):
            step = ops.convert_to_tensor(step)
            # The wrapped schedule gets the step in its own type: an
            # integer one is exact past 2**24, where float32 is not (a
            # `CyclicLR` counts its place in the cycle in integers).
            after = self._after(ops.maximum(step - self.warmup_steps, 0))
            if self.warmup_steps == 0:
                return after
            target = self._after(ops.zeros_like(step))
            step = ops.cast(step, "float32")
            ramp = anneal_linear(self.start_lr, target, 0.0,
                                 float(self.warmup_steps), step)
            return ops.where(step < self.warmup_steps, ramp, after)

    def get_config(self):
        schedule = self.schedule
        if not isinstance(schedule, float):
            schedule = keras.optimizers.schedules.serialize(schedule)
        return {"schedule": schedule, "warmup_steps": self.warmup_steps,
                "start_lr": self.start_lr, "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["schedule"], dict):
            config["schedule"] = keras.optimizers.schedules.deserialize(
                config["schedule"])
        return cls(**config)
