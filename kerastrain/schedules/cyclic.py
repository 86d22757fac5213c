"""Cyclical learning rates (Smith 2017): a triangle between two bounds."""

import math

import keras
from keras import ops

from kerastrain._validation import (MAX_STEPS, check_choice, check_float,
                                    check_name, check_steps)
from kerastrain.schedules.phases import PhaseSchedule, check_rates

MODES = ("triangular", "triangular2", "exp_range")


@keras.saving.register_keras_serializable(package="kerastrain")
class CyclicLR(keras.optimizers.schedules.LearningRateSchedule):
    """Cyclical learning rate, step for step PyTorch's `CyclicLR`.

    The rate climbs linearly from `base_lr` to `max_lr` in `step_size`
    steps and comes back in as many. The height of each cycle is scaled by
    the mode: `"triangular"` keeps it, `"triangular2"` halves it every
    cycle, `"exp_range"` multiplies it by `gamma ** step`.

    Args:
        base_lr: Lower bound, >= 0.
        max_lr: Upper bound, >= `base_lr`.
        step_size: Steps in half a cycle (PyTorch's `step_size_up`), >= 1.
            Smith suggests 2 to 10 epochs' worth of steps.
        mode: `"triangular"`, `"triangular2"` or `"exp_range"`.
        gamma: Decay of `"exp_range"`, in (0, 1].
        name: Name of the schedule.

    Example:

    >>> schedule = CyclicLR(0.001, 0.01, step_size=4, mode="triangular2")
    >>> [round(float(schedule(s)), 5) for s in (0, 2, 4, 8, 12, 16)]
    [0.001, 0.0055, 0.01, 0.001, 0.0055, 0.001]

    Reference:
        Smith, "Cyclical Learning Rates for Training Neural Networks", 2017.
    """

    def __init__(self, base_lr, max_lr, step_size, mode="triangular",
                 gamma=1.0, name="CyclicLR"):
        super().__init__()
        self.base_lr = check_float("base_lr", base_lr, low=0)
        self.max_lr = check_float("max_lr", max_lr, low=0, low_closed=False)
        check_rates({"max_lr": self.max_lr})
        if self.base_lr > self.max_lr:
            raise ValueError(
                "Argument `base_lr` must be <= `max_lr`. Received: "
                f"base_lr={base_lr}, max_lr={max_lr}")
        self.step_size = check_steps("step_size", step_size)
        self.mode = check_choice("mode", mode, MODES)
        self.gamma = check_float("gamma", gamma, 0, 1, low_closed=False)
        self.name = check_name(name)
        # One cycle's shape, from 0 up to 1 and back.
        self._triangle = PhaseSchedule(
            [0, self.step_size, 2 * self.step_size], [0.0, 1.0, 0.0],
            anneal="linear")

    @property
    def value_range(self):
        """`(least, greatest)` value the schedule takes: the highest is on
        the first climb, `max_lr` at its end but for `"exp_range"`, where
        `step / step_size * gamma ** step` peaks at step -1 / log(gamma)
        when that comes first (every later step stands lower than one of
        the climb's)."""
        height = self.max_lr - self.base_lr
        if self.mode == "exp_range":
            top = self.step_size if self.gamma == 1 else min(
                self.step_size, -1 / math.log(self.gamma))
            height *= max(step / self.step_size * self.gamma ** step
                          for step in {max(1, math.floor(top)),
                                       math.ceil(top)})
        return self.base_lr, self.base_lr + height

    def __call__(self, step):
        with keras.name_scope(self.name):
            step = ops.convert_to_tensor(step)
            period = 2 * self.step_size
            if "int" in keras.backend.standardize_dtype(step.dtype):
                # The place in the cycle in integers: float32 holds steps
                # exactly only up to 2**24, and the optimizers count up to
                # 2**31 - 1 (at 2**24 + 1 the float place was the floor
                # where PyTorch's is a quarter up the climb).
                if period > MAX_STEPS:
                    # No count reaches the first cycle's end, and the
                    # period is past the int32 that JAX computes in.
                    place = ops.cast(step, "float32")
                    completed = ops.zeros_like(place)
                else:
                    completed = ops.floor_divide(step, period)
                    place = ops.cast(step - completed * period, "float32")
                    completed = ops.cast(completed, "float32")
                step = ops.cast(step, "float32")
            else:
                step = ops.cast(step, "float32")
                completed = ops.floor(step / period)  # PyTorch's cycle - 1
                place = step - completed * period
            height = (self.max_lr - self.base_lr) * self._triangle(place)
            if self.mode == "triangular2":
                height = height * ops.power(0.5, completed)
            elif self.mode == "exp_range":
                # exp(step * log(gamma)) with the log taken in float64: 10x
                # closer to PyTorch than float32's gamma ** step.
                height = height * ops.exp(step * math.log(self.gamma))
            return self.base_lr + height

    def get_config(self):
        return {"base_lr": self.base_lr, "max_lr": self.max_lr,
                "step_size": self.step_size, "mode": self.mode,
                "gamma": self.gamma, "name": self.name}
