"""AdamW whose `beta_1` may follow a schedule (one-cycle's momentum cycle)."""

import keras

from kerastrain._validation import check_bool
from kerastrain.optimizers._dense import dense
from kerastrain.optimizers.scheduled import (ScheduledHyperparameters,
                                             check_epsilon, check_float32,
                                             check_keras_arguments,
                                             check_keyword,
                                             check_learning_rate,
                                             check_scheduled)


@keras.saving.register_keras_serializable(package="kerastrain")
class AdamW(ScheduledHyperparameters, keras.optimizers.AdamW):
    """Keras' AdamW, with a `beta_1` that may be a schedule.

    With a float `beta_1` it is `keras.optimizers.AdamW`, update for
    update, but for an `Embedding` on TensorFlow, whose gradient comes as
    a row per occurrence of each token: Keras 3.15 squares the rows one
    by one, where jax, torch and this class square each token's summed
    gradient. With a schedule, each update uses the schedule's value at the
    step the learning rate is evaluated at (`scheduled.schedule_step`),
    inside the compiled step, both in the moving
    average and in its bias correction `1 - beta_1(t) ** t` (what PyTorch's
    Adam does when `OneCycleLR(cycle_momentum=True)` sets `betas[0]` each
    step).

    Args:
        learning_rate: Float or `LearningRateSchedule`.
        weight_decay: Decoupled weight decay (Loshchilov & Hutter), >= 0.
        beta_1: Float in `[0, 1)` or a schedule, e.g.
            `OneCycle(...).momentum_schedule`.
        **kwargs: Keras' AdamW arguments (`beta_2` in `[0, 1)`, `epsilon`
            > 0, `amsgrad`, `clipnorm`, `gradient_accumulation_steps`,
            ...). `beta_1` and `beta_2` must stay below 1 in float32,
            and a `beta_1` schedule of kerastrain's must stay in `[0, 1)`.

    Example:

    >>> from kerastrain.schedules import OneCycle
    >>> one_cycle = OneCycle(max_lr=3e-3, total_steps=1000)
    >>> optimizer = AdamW(learning_rate=one_cycle, weight_decay=1e-4,
    ...                   beta_1=one_cycle.momentum_schedule)
    """

    scheduled = ("beta_1",)

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9,
                 **kwargs):
        # beta_1 = 1 zeroes Adam's bias correction `1 - beta_1 ** t`.
        beta_1 = check_scheduled("beta_1", beta_1, 0, 1, high_closed=False)
        check_keyword(kwargs, "beta_2", 0, 1, high_closed=False)
        check_epsilon(kwargs)
        check_keras_arguments(kwargs)
        if "amsgrad" in kwargs:
            kwargs["amsgrad"] = check_bool("amsgrad", kwargs["amsgrad"])
        super().__init__(check_learning_rate(learning_rate),
                         weight_decay=check_float32("weight_decay",
                                                    weight_decay, low=0),
                         beta_1=beta_1 if isinstance(beta_1, float) else 0.9,
                         **kwargs)
        self.beta_1 = beta_1

    def update_step(self, gradient, variable, learning_rate):
        # Keras' Adam squared an Embedding's gradient row by row on
        # TensorFlow: its variance differed from jax's and torch's.
        gradient = dense(gradient, variable)
        if not self.is_scheduled("beta_1"):
            return super().update_step(gradient, variable, learning_rate)
        # Keras' Adam math is used as is: it only does arithmetic with
        # `self.beta_1`, so this step's value stands in for the schedule.
        schedule = self.beta_1
        self.beta_1 = self.current("beta_1", variable.dtype)
        try:
            super().update_step(gradient, variable, learning_rate)
        finally:
            self.beta_1 = schedule
