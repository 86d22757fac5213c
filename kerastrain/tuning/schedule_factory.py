"""Schedules and optimizers by name, laid out over a number of updates.

timm's `scheduler_factory` in miniature: the search space names a schedule
(`"one_cycle"`, ...) and an optimizer (`"sgd"`, `"adamw"`); these functions
turn the names, a peak rate and the number of updates of a `fit` into
kerastrain objects. The momentum comes with the schedule: one-cycle cycles
it against the rate (SGD's `momentum`, AdamW's `beta_1`), the others keep
it at 0.9.
"""

import keras

from kerastrain._validation import (FLOAT32_TINY, check_choice, check_float,
                                    check_int)
from kerastrain.optimizers import SGD, AdamW
from kerastrain.schedules import OneCycle, PhaseSchedule, Warmup
from kerastrain.schedules.one_cycle import MIN_STEPS as ONE_CYCLE_MIN_STEPS
from kerastrain.schedules.phases import check_rates

SCHEDULES = ("one_cycle", "cosine_warmup", "cyclic", "constant")
OPTIMIZERS = ("sgd", "adamw")
# Fewest updates each schedule is laid out on (one-cycle's: see its module).
MIN_STEPS = {"one_cycle": ONE_CYCLE_MIN_STEPS, "cosine_warmup": 2,
             "cyclic": 4, "constant": 1}
MOMENTUM = 0.9
# Goyal et al. warm up for 5 of 90 epochs; a tenth suits short runs.
WARMUP_FRACTION = 0.1
# Smith (2017, section 3.3): the lower bound a third to a quarter of the
# upper one; two cycles ("triangular2", the second half as high).
CYCLIC_DIVISOR = 4.0
CYCLES = 2


def learning_rate_schedule(name, max_lr, total_steps):
    """The learning rate of schedule `name`, and its momentum.

    - `"one_cycle"`: `OneCycle(max_lr, total_steps)`, with its momentum
      cycle (0.95 down to 0.85 and back).
    - `"cosine_warmup"`: linear warmup over the first 10% of the updates,
      then cosine decay from `max_lr` to 0 at `total_steps`.
    - `"cyclic"`: two triangular cycles between `max_lr / 4` and `max_lr`,
      the second half as high (`CyclicLR(mode="triangular2")`'s shape),
      ending at `total_steps` as the cosine does, whatever number of
      updates (`CyclicLR`'s whole steps would start a third cycle in up
      to three last updates).
    - `"constant"`: `max_lr` throughout.

    Args:
        name: One of `SCHEDULES`.
        max_lr: The peak learning rate, > 0.
        total_steps: Updates the schedule spans (those of the `fit` that
            uses it), at least `MIN_STEPS[name]`.

    Returns:
        `(learning_rate, momentum)`: a `LearningRateSchedule` or a float,
        and a momentum schedule or None (meaning a constant 0.9).

    Example:

    >>> rate, momentum = learning_rate_schedule("one_cycle", 0.1, 100)
    >>> rate.total_steps, round(float(momentum(0)), 2)
    (100, 0.95)
    """
    check_choice("name", name, SCHEDULES)
    # At least float32's smallest normal number, as the hypermodels' knob:
    # a smaller one is 0 or a denormal where the update computes.
    max_lr = check_float("max_lr", max_lr, low=FLOAT32_TINY)
    check_rates({"max_lr": max_lr})  # inf in float32: NaN rates
    total_steps = check_int("total_steps", total_steps, min_value=1)
    if total_steps < MIN_STEPS[name]:
        raise ValueError(
            f"The `{name}` schedule needs at least {MIN_STEPS[name]} "
            f"updates; this fit runs {total_steps} (epochs x batches per "
            "epoch). Train more epochs or use smaller batches. Received: "
            f"total_steps={total_steps}")
    if name == "one_cycle":
        one_cycle = OneCycle(max_lr, total_steps)
        return one_cycle, one_cycle.momentum_schedule
    if name == "cosine_warmup":
        warmup = max(1, round(WARMUP_FRACTION * total_steps))
        cosine = keras.optimizers.schedules.CosineDecay(
            max_lr, decay_steps=total_steps - warmup)
        return Warmup(cosine, warmup_steps=warmup), None
    if name == "cyclic":
        low, half_cycle = max_lr / CYCLIC_DIVISOR, total_steps / (2 * CYCLES)
        values = [low]
        for cycle in range(CYCLES):
            values += [low + (max_lr - low) / 2 ** cycle, low]
        return PhaseSchedule([i * half_cycle for i in range(2 * CYCLES + 1)],
                             values, anneal="linear"), None
    return max_lr, None


def make_optimizer(name, learning_rate, momentum=None, weight_decay=0.0,
                   gradient_accumulation_steps=None):
    """kerastrain's `SGD` (Nesterov) or `AdamW` with the given rate.

    Args:
        name: `"sgd"` or `"adamw"`.
        learning_rate: Float or `LearningRateSchedule`.
        momentum: SGD's momentum or AdamW's `beta_1`: a schedule, or None
            for 0.9.
        weight_decay: Decoupled weight decay, >= 0 (Keras applies it as
            `w -= learning_rate * weight_decay * w` for both).
        gradient_accumulation_steps: None, or an integer >= 2 (Keras'
            accumulators, which `GradientAccumulation` drives).

    Returns:
        The optimizer.

    Example:

    >>> rate, momentum = learning_rate_schedule("one_cycle", 0.1, 100)
    >>> make_optimizer("sgd", rate, momentum, weight_decay=5e-4).nesterov
    True
    """
    check_choice("name", name, OPTIMIZERS)
    momentum = MOMENTUM if momentum is None else momentum
    kwargs = {"weight_decay": check_float("weight_decay", weight_decay,
                                          low=0)}
    if gradient_accumulation_steps is not None:
        kwargs["gradient_accumulation_steps"] = check_int(
            "gradient_accumulation_steps", gradient_accumulation_steps,
            min_value=2)
    if name == "sgd":
        return SGD(learning_rate, momentum=momentum, nesterov=True,
                   **kwargs)
    try:
        return AdamW(learning_rate, beta_1=momentum, **kwargs)
    except (TypeError, ValueError) as error:
        said = str(error)
        if "`beta_1`" not in said:
            raise
        # The caller wrote `momentum`, which AdamW takes as `beta_1`.
        raise type(error)(
            said.replace("Argument `beta_1`",
                         "Argument `momentum` (AdamW's `beta_1`)")
            .replace("beta_1=", "momentum=")) from None
