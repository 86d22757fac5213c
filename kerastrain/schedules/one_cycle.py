"""The one-cycle policy (Smith & Topin) with its matching momentum cycle."""

import keras

from kerastrain._validation import (check_bool, check_choice, check_float,
                                    check_steps)
from kerastrain.schedules.phases import PhaseSchedule, check_rates

# Fewest updates the recipes and searches lay a one-cycle schedule on: its
# peak falls at step 0.3 * total - 1, which from 4 updates on leaves its
# rise a step (with fewer, `OneCycle`, as PyTorch's, starts inside the
# annealing).
MIN_STEPS = 4


@keras.saving.register_keras_serializable(package="kerastrain")
class OneCycle(PhaseSchedule):
    """One-cycle learning rate, step for step PyTorch's `OneCycleLR`.

    The rate rises from `max_lr / div_factor` to `max_lr` during the first
    `pct_start` of training, then anneals to
    `max_lr / (div_factor * final_div_factor)`. With `three_phase=True` it
    comes back down to the start value symmetrically before the final
    annealing (fastai's original shape). Past `total_steps` the rate stays at
    its final value (PyTorch raises there instead).

    `momentum_schedule` is the matching momentum: high when the rate is low,
    from `max_momentum` down to `base_momentum` and back. Give it to
    `kerastrain.optimizers.SGD(momentum=...)` or `AdamW(beta_1=...)`, which
    evaluate it inside the compiled step.

    Args:
        max_lr: Peak learning rate, > 0.
        total_steps: Number of optimizer updates in the cycle, >= 1.
            Where `pct_start * total_steps < 1` the rise has no step and
            the rate starts inside the annealing, as PyTorch's does.
        pct_start: Fraction of the cycle spent rising, in (0, 1); not
            exactly `1 / total_steps` (a rise of zero steps, where PyTorch
            divides by zero).
        div_factor: `max_lr / div_factor` is the starting rate.
        final_div_factor: The final rate is the starting rate divided by
            this.
        anneal_strategy: `"cos"` or `"linear"`.
        three_phase: Whether to use the three-phase shape. The peak step,
            `pct_start * total_steps - 1`, must then lie below
            `(total_steps - 1) / 2` (a `pct_start` below about 0.5), where
            PyTorch's descent to `max_lr / div_factor` would outlast the
            cycle and its third phase never come: a `ValueError`.
        base_momentum: Lowest momentum, reached at the peak rate.
        max_momentum: Highest momentum, at the start and the end.
        name: Name of the schedule.

    Example:

    >>> schedule = OneCycle(max_lr=0.1, total_steps=100)
    >>> [round(float(schedule(s)), 4) for s in (0, 29, 99)]
    [0.004, 0.1, 0.0]
    >>> [round(float(schedule.momentum_schedule(s)), 2) for s in (0, 29, 99)]
    [0.95, 0.85, 0.95]

    Reference:
        Smith & Topin, "Super-Convergence: Very Fast Training of Neural
        Networks Using Large Learning Rates", 2017; Smith, "A disciplined
        approach to neural network hyper-parameters", 2018.
    """

    def __init__(self, max_lr, total_steps, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4, anneal_strategy="cos",
                 three_phase=False, base_momentum=0.85, max_momentum=0.95,
                 name="OneCycle"):
        self.max_lr = check_float("max_lr", max_lr, low=0, low_closed=False)
        self.total_steps = check_steps("total_steps", total_steps)
        self.pct_start = check_float("pct_start", pct_start, 0, 1,
                                     low_closed=False, high_closed=False)
        self.div_factor = check_float("div_factor", div_factor, low=0,
                                      low_closed=False)
        self.final_div_factor = check_float(
            "final_div_factor", final_div_factor, low=0, low_closed=False)
        self.anneal_strategy = check_choice("anneal_strategy",
                                            anneal_strategy, ("cos", "linear"))
        self.three_phase = check_bool("three_phase", three_phase)
        self.base_momentum = check_float("base_momentum", base_momentum, 0, 1)
        self.max_momentum = check_float("max_momentum", max_momentum, 0, 1)
        if self.base_momentum > self.max_momentum:
            raise ValueError(
                "Argument `base_momentum` must be <= `max_momentum`. "
                f"Received: base_momentum={base_momentum}, "
                f"max_momentum={max_momentum}")

        # PyTorch's phase ends: the peak is at step pct_start * total - 1.
        peak = self.pct_start * self.total_steps - 1
        last = self.total_steps - 1
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        check_rates({"max_lr": self.max_lr, "max_lr / div_factor": initial,
                     "max_lr / div_factor / final_div_factor": final})
        high, low = self.max_momentum, self.base_momentum
        if self.three_phase:
            boundaries = [0, peak, 2 * peak, last]
            values = [initial, self.max_lr, initial, final]
            momenta = [high, low, high, high]
        else:
            boundaries, values = [0, peak, last], [initial, self.max_lr, final]
            momenta = [high, low, high]
        # A run too short for its warmup (pct_start * total_steps < 1):
        # PyTorch's step 0 already lies past the phases that end before
        # it and starts inside the next one, as does this schedule.
        while len(boundaries) > 2 and boundaries[1] < 0:
            del boundaries[0], values[0], momenta[0]
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError(
                "Arguments `pct_start` and `total_steps` leave a phase "
                "without steps: the peak falls at step "
                f"pct_start * total_steps - 1 = {peak:g}, which must not be "
                "0 (PyTorch divides by zero there)"
                + (" and, with three_phase=True, must be below "
                   "(total_steps - 1) / 2" if self.three_phase else "")
                + f". Received: pct_start={pct_start}, "
                f"total_steps={total_steps}")
        self._boundaries, self._momenta = boundaries, momenta
        super().__init__(boundaries, values, self.anneal_strategy, name=name)

    @property
    def momentum_schedule(self):
        """The momentum that goes with this rate (PyTorch's
        `cycle_momentum=True`), as a `PhaseSchedule`."""
        return PhaseSchedule(self._boundaries, self._momenta,
                             self.anneal_strategy,
                             name=f"{self.name}_momentum")

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "anneal_strategy": self.anneal_strategy,
            "three_phase": self.three_phase,
            "base_momentum": self.base_momentum,
            "max_momentum": self.max_momentum,
            "name": self.name,
        }
