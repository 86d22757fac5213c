"""PyTorch's StepLR, MultiStepLR and LinearLR under their own argument
names, as thin configurations of Keras' built-in schedules (the math stays
Keras'; `tests/schedules/test_decay.py` shows the values are PyTorch's)."""

import keras

from kerastrain._validation import check_float, check_name, check_steps
from kerastrain.schedules.phases import check_rates

schedules = keras.optimizers.schedules


@keras.saving.register_keras_serializable(package="kerastrain")
class StepDecay(schedules.ExponentialDecay):
    """Multiplies the rate by `gamma` every `step_size` steps (PyTorch's
    `StepLR`): Keras' `ExponentialDecay(staircase=True)`.

    Args:
        initial_lr: Rate at step 0, > 0.
        step_size: Steps between two decays, >= 1.
        gamma: Factor applied at each decay, in (0, 1].
        name: Name of the schedule.

    Example:

    >>> schedule = StepDecay(0.1, step_size=30)
    >>> [round(float(schedule(s)), 4) for s in (0, 29, 30, 60)]
    [0.1, 0.1, 0.01, 0.001]
    """

    def __init__(self, initial_lr, step_size, gamma=0.1, name="StepDecay"):
        self.initial_lr = check_float("initial_lr", initial_lr, low=0,
                                      low_closed=False)
        check_rates({"initial_lr": self.initial_lr})
        self.step_size = check_steps("step_size", step_size)
        self.gamma = check_float("gamma", gamma, 0, 1, low_closed=False)
        super().__init__(self.initial_lr, self.step_size, self.gamma,
                         staircase=True, name=check_name(name))

    @property
    def value_range(self):
        """`(least, greatest)` value the schedule takes: with `gamma < 1`
        it decays toward 0, which float32 reaches."""
        return 0.0 if self.gamma < 1 else self.initial_lr, self.initial_lr

    def __call__(self, step):
        step = keras.ops.convert_to_tensor(step)
        if "int" not in keras.backend.standardize_dtype(step.dtype):
            return super().__call__(step)
        with keras.name_scope(self.name):
            # The decays so far counted in integers: Keras divides in
            # float32, which holds steps exactly only up to 2**24 (with a
            # `step_size` of 20,000,001 the rate fell two steps early).
            decays = keras.ops.floor_divide(step, self.step_size)
            return self.initial_lr * keras.ops.power(
                self.gamma, keras.ops.cast(decays, "float32"))

    def get_config(self):
        return {"initial_lr": self.initial_lr, "step_size": self.step_size,
                "gamma": self.gamma, "name": self.name}


@keras.saving.register_keras_serializable(package="kerastrain")
class MultiStepDecay(schedules.PiecewiseConstantDecay):
    """Multiplies the rate by `gamma` at each milestone (PyTorch's
    `MultiStepLR`): Keras' `PiecewiseConstantDecay`.

    The rate changes at the milestone step itself, as in PyTorch (Keras'
    boundaries change it one step later, hence `milestone - 1` below).

    Args:
        initial_lr: Rate at step 0, > 0.
        milestones: Strictly increasing steps >= 1.
        gamma: Factor applied at each milestone, in (0, 1].
        name: Name of the schedule.

    Example:

    >>> schedule = MultiStepDecay(0.1, milestones=[10, 15])
    >>> [round(float(schedule(s)), 4) for s in (0, 9, 10, 15)]
    [0.1, 0.1, 0.01, 0.001]
    """

    def __init__(self, initial_lr, milestones, gamma=0.1,
                 name="MultiStepDecay"):
        self.initial_lr = check_float("initial_lr", initial_lr, low=0,
                                      low_closed=False)
        check_rates({"initial_lr": self.initial_lr})
        try:
            milestones = list(milestones)
        except TypeError:
            raise TypeError(
                "Argument `milestones` must be a list of integers. "
                f"Received: milestones={milestones!r}") from None
        if not milestones:
            raise ValueError(
                "Argument `milestones` must list at least one step. "
                f"Received: milestones={milestones}")
        for milestone in milestones:
            check_steps("milestones", milestone)
        if any(a >= b for a, b in zip(milestones, milestones[1:])):
            raise ValueError(
                "Argument `milestones` must be strictly increasing. "
                f"Received: milestones={milestones}")
        self.milestones = [int(m) for m in milestones]
        self.gamma = check_float("gamma", gamma, 0, 1, low_closed=False)
        super().__init__(
            [m - 1 for m in self.milestones],
            [self.initial_lr * self.gamma ** i
             for i in range(len(self.milestones) + 1)],
            name=check_name(name))

    @property
    def value_range(self):
        """`(least, greatest)` value the schedule takes: its last and its
        first."""
        return self.values[-1], self.values[0]

    def get_config(self):
        return {"initial_lr": self.initial_lr, "milestones": self.milestones,
                "gamma": self.gamma, "name": self.name}


@keras.saving.register_keras_serializable(package="kerastrain")
class LinearDecay(schedules.PolynomialDecay):
    """Moves the rate linearly from `start_factor * initial_lr` to
    `end_factor * initial_lr` over `decay_steps`, then holds it (PyTorch's
    `LinearLR`): Keras' `PolynomialDecay(power=1)`.

    The defaults are the course's rule "decay linearly to 1% at step tau,
    then stay constant", with `decay_steps=tau`. With
    `start_factor < end_factor` it is a linear warmup.

    Args:
        initial_lr: Reference rate, > 0.
        decay_steps: Steps of the linear part (tau), >= 1.
        end_factor: Fraction of `initial_lr` reached at `decay_steps`,
            >= 0 (0: decay to zero, as PyTorch's `LinearLR` allows).
        start_factor: Fraction of `initial_lr` at step 0, > 0.
        name: Name of the schedule.

    Example:

    >>> schedule = LinearDecay(0.1, decay_steps=100)
    >>> [round(float(schedule(s)), 4) for s in (0, 50, 100, 500)]
    [0.1, 0.0505, 0.001, 0.001]
    """

    def __init__(self, initial_lr, decay_steps, end_factor=0.01,
                 start_factor=1.0, name="LinearDecay"):
        self.initial_lr = check_float("initial_lr", initial_lr, low=0,
                                      low_closed=False)
        self.end_factor = check_float("end_factor", end_factor, low=0)
        self.start_factor = check_float("start_factor", start_factor, low=0,
                                        low_closed=False)
        check_rates({"initial_lr": self.initial_lr})
        check_rates({"initial_lr * start_factor":
                     self.initial_lr * self.start_factor,
                     "initial_lr * end_factor":
                     self.initial_lr * self.end_factor})
        decay_steps = check_steps("decay_steps", decay_steps)
        super().__init__(self.initial_lr * self.start_factor, decay_steps,
                         end_learning_rate=self.initial_lr * self.end_factor,
                         power=1.0, name=check_name(name))

    @property
    def value_range(self):
        """`(least, greatest)` value the schedule takes: its start and its
        end, the lower first."""
        return tuple(sorted((self.initial_learning_rate,
                             self.end_learning_rate)))

    def get_config(self):
        return {"initial_lr": self.initial_lr,
                "decay_steps": self.decay_steps,
                "end_factor": self.end_factor,
                "start_factor": self.start_factor, "name": self.name}
