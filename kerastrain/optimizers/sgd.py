"""SGD whose momentum may follow a schedule (one-cycle's momentum cycle)."""

import keras
from keras import ops

from kerastrain._validation import check_bool
from kerastrain.optimizers.scheduled import (ScheduledHyperparameters,
                                             check_keras_arguments,
                                             check_keyword,
                                             check_learning_rate,
                                             check_scheduled)


@keras.saving.register_keras_serializable(package="kerastrain")
class SGD(ScheduledHyperparameters, keras.optimizers.SGD):
    """Keras' SGD, with a `momentum` that may be a schedule.

    With a float `momentum` it is `keras.optimizers.SGD`, update for update.
    With a schedule, the momentum of each update is the schedule's value at
    the step the learning rate is evaluated at (the update count; with
    `gradient_accumulation_steps` and no `GradientAccumulation` callback,
    the batch count, as Keras counts for the learning rate; see
    `scheduled.schedule_step`), evaluated inside the compiled train step
    on every backend, in Keras' update rule:

    ```
    velocity = momentum(t) * velocity - learning_rate(t) * g
    w = w + velocity          # nesterov: w + momentum(t) * velocity - lr * g
    ```

    Args:
        learning_rate: Float or `LearningRateSchedule`.
        momentum: Float in `[0, 1]` or a `LearningRateSchedule` giving it
            per step, e.g. `OneCycle(...).momentum_schedule`.
        nesterov: Whether to use Nesterov momentum.
        **kwargs: Keras' optimizer arguments (`weight_decay` >= 0,
            `clipnorm`, `gradient_accumulation_steps`, ...).

    Example:

    >>> from kerastrain.schedules import OneCycle
    >>> one_cycle = OneCycle(max_lr=0.1, total_steps=1000)
    >>> optimizer = SGD(learning_rate=one_cycle,
    ...                 momentum=one_cycle.momentum_schedule, nesterov=True)
    """

    scheduled = ("momentum",)

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False,
                 **kwargs):
        momentum = check_scheduled("momentum", momentum, 0, 1)
        check_keyword(kwargs, "weight_decay", 0, none=True)
        check_keras_arguments(kwargs)
        scheduled = not isinstance(momentum, float)
        # Keras' check wants a float; any non-zero one makes it build the
        # velocity slots.
        super().__init__(check_learning_rate(learning_rate),
                         momentum=0.5 if scheduled else momentum,
                         nesterov=check_bool("nesterov", nesterov), **kwargs)
        self.momentum = momentum

    def update_step(self, gradient, variable, learning_rate):
        if not self.is_scheduled("momentum"):
            return super().update_step(gradient, variable, learning_rate)
        # keras.optimizers.SGD.update_step, with the momentum of this step.
        momentum = self.current("momentum", variable.dtype)
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        velocity = self.momentums[self._get_variable_index(variable)]
        self.assign(velocity, velocity * momentum - gradient * learning_rate)
        if self.nesterov:
            self.assign_add(variable,
                            velocity * momentum - gradient * learning_rate)
        else:
            self.assign_add(variable, velocity)
