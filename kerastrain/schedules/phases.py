"""Phases of annealers: the one mechanism behind warmup, cyclic and one-cycle.

fastai builds every schedule from phases (`combine_scheds`), each moving a
value from a start to an end with an annealing function. `PhaseSchedule`
is that mechanism as a Keras `LearningRateSchedule`; `OneCycle`, the
momentum of one-cycle, the triangle of `CyclicLR` and the ramp of `Warmup`
are configurations of it.

Precision: every annealer is written as a sum of two non-negative terms,
`start * w0 + end * w1`, with `w0` computed from the distance to the end of
the phase and `w1` from the distance to its start. In float32 the value
then keeps a relative error of a few ulps everywhere, also next to a tiny
endpoint (one-cycle ends 250,000 times below its peak), where the textbook
`end + (start - end) * (1 + cos(pi * pct)) / 2` loses most of its digits.
"""

import math

import keras
from keras import ops

import numpy as np

from kerastrain._validation import (FLOAT32_MAX, FLOAT32_TINY, check_choice,
                                    check_float_list, check_name)


def _fractions(start, end, step):
    """(distance to the end, distance to the start), as fractions of the
    phase, clipped to [0, 1]."""
    length = end - start
    to_end = ops.clip((end - step) / length, 0.0, 1.0)
    from_start = ops.clip((step - start) / length, 0.0, 1.0)
    return to_end, from_start


def anneal_linear(v0, v1, start, end, step):
    """Straight line from `v0` at `start` to `v1` at `end`."""
    to_end, from_start = _fractions(start, end, step)
    return v0 * to_end + v1 * from_start


def anneal_cos(v0, v1, start, end, step):
    """Half a cosine from `v0` to `v1`, flat at both ends (SGDR, one-cycle):
    `v0 * cos(pi/2 * p)^2 + v1 * sin(pi/2 * p)^2`, which is PyTorch's
    `v1 + (v0 - v1) / 2 * (1 + cos(pi * p))`."""
    to_end, from_start = _fractions(start, end, step)
    half_pi = math.pi / 2
    return (v0 * ops.square(ops.sin(half_pi * to_end))
            + v1 * ops.square(ops.sin(half_pi * from_start)))


def anneal_exp(v0, v1, start, end, step):
    """Geometric path from `v0` to `v1` (both > 0), as an LR range test."""
    _, from_start = _fractions(start, end, step)
    return v0 * ops.power(v1 / v0, from_start)


def exp_fits_float32(v0, v1):
    """Whether `anneal_exp` from `v0` to `v1` (both > 0) computes in
    float32: it takes `v0 * (v1 / v0) ** p` there, where a ratio past its
    range is inf (or 0), and XLA flushes a value below its smallest
    normal number to 0."""
    return (min(v0, v1) >= FLOAT32_TINY
            and FLOAT32_TINY <= v1 / v0 <= FLOAT32_MAX)


ANNEALERS = {"linear": anneal_linear, "cos": anneal_cos, "exp": anneal_exp}


def check_rates(rates):
    """Raises a `ValueError` naming those of `rates` (a dict of learning
    rates by name, each already checked finite and >= 0, or computed from
    such) that float32 cannot hold: a larger one is inf where the
    schedules compute, and NaN wherever it is interpolated (inf * 0)."""
    over = {name: rate for name, rate in rates.items()
            if rate > FLOAT32_MAX}
    if over:
        names = " and ".join(f"`{name}`" for name in over)
        several = len(over) > 1
        raise ValueError(
            f"Argument{'s' if several else ''} {names} must be "
            f"{'rates' if several else 'a rate'} that float32 can hold "
            f"(<= {FLOAT32_MAX:.4g}), where it is computed. "
            "Received: " + ", ".join(
                f"{name}={rate:g}" for name, rate in over.items()))


def _checked_phases(boundaries, values):
    """`boundaries` and `values` as lists of floats, if they make phases
    that float32 computes: finite, as many of each, at least two, and
    boundaries strictly increasing (in float32 too)."""
    # NaN slips through every comparison below and inf turns the
    # annealers' arithmetic into NaN: both are refused here.
    boundaries = check_float_list("boundaries", boundaries)
    values = check_float_list("values", values)
    if any(abs(v) > FLOAT32_MAX for v in values):
        # They would be inf in the float32 arithmetic, and NaN at the
        # ends of a phase (inf * 0).
        raise ValueError(
            "Argument `values` must hold numbers that float32 can "
            f"hold (magnitude <= {FLOAT32_MAX:.4g}). Received: "
            f"values={values}")
    if len(boundaries) < 2 or len(values) != len(boundaries):
        raise ValueError(
            "Arguments `boundaries` and `values` must have the same "
            "length, at least 2 (one phase). Received: "
            f"boundaries={boundaries}, values={values}")
    if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
        raise ValueError(
            "Argument `boundaries` must be strictly increasing. "
            f"Received: boundaries={boundaries}")
    # The step is compared with them in float32: 1e39 is inf there
    # (NaN values), and 1e8 and 1e8 + 1 are one number (a phase of
    # length 0); a phase's length divides there too (-3e38 to 3e38 is
    # inf long, and every value was 0).
    with np.errstate(over="ignore"):
        lengths = np.diff(np.float32(boundaries))
    if any(abs(b) > FLOAT32_MAX for b in boundaries) or not (
            (lengths > 0) & np.isfinite(lengths)).all():
        raise ValueError(
            "Argument `boundaries` must stay finite and strictly "
            "increasing in float32, where the step is compared with "
            "them (steps past 2**24 = 16,777,216 round to even "
            "numbers and coarser), and so must each phase's length. "
            f"Received: boundaries={boundaries}")
    return boundaries, values


def _checked_anneals(anneal, values):
    """The annealer of each phase between `values`, from `anneal` (one
    name, or one per phase); an `exp` phase must compute in float32."""
    num_phases = len(values) - 1
    if isinstance(anneal, str):
        anneals = [anneal] * num_phases
    elif isinstance(anneal, (list, tuple)):
        anneals = list(anneal)
    else:
        raise TypeError(
            "Argument `anneal` must be a string or a list of strings, one "
            f"per phase. Received: anneal={anneal!r}")
    if len(anneals) != num_phases:
        raise ValueError(
            f"Argument `anneal` must be a string or a list of "
            f"{num_phases} strings, one per phase. Received: "
            f"anneal={anneal!r}")
    for a in anneals:
        check_choice("anneal", a, tuple(ANNEALERS))
    for a, v0, v1 in zip(anneals, values, values[1:]):
        if a == "exp" and (v0 <= 0 or v1 <= 0):
            raise ValueError(
                "An `exp` phase needs positive values. Received: "
                f"values={values}")
        if a == "exp" and not exp_fits_float32(v0, v1):
            raise ValueError(
                "An `exp` phase needs values of at least "
                f"{FLOAT32_TINY:.4g} (float32's smallest normal number) "
                "whose ratio float32 can hold (from "
                f"{FLOAT32_TINY:.4g} to {FLOAT32_MAX:.4g}). Received: "
                f"values={values}")
    return anneals


@keras.saving.register_keras_serializable(package="kerastrain")
class PhaseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule made of consecutive annealing phases.

    Phase `i` runs from step `boundaries[i]` to step `boundaries[i + 1]`
    and moves the value from `values[i]` to `values[i + 1]` with its
    annealer. Before the first boundary the value is `values[0]`; after the
    last one it stays at `values[-1]`. A step on a boundary belongs to the
    phase that ends there (PyTorch's `OneCycleLR` convention).

    Use it directly for a custom shape (any hyperparameter: learning rate,
    momentum, weight decay), or through `OneCycle`, `CyclicLR` and `Warmup`.

    Args:
        boundaries: Strictly increasing steps, one more than the phases.
            They may be fractional (PyTorch places one-cycle's peak at
            `pct_start * total_steps - 1`).
        values: The value at each boundary, as many as `boundaries`.
        anneal: `"cos"`, `"linear"` or `"exp"`, or a list with one per
            phase. `"exp"` needs positive values.
        name: Name of the schedule.

    Example:

    >>> warm_then_cos = PhaseSchedule([0, 10, 100], [0.0, 1.0, 0.0],
    ...                               anneal=["linear", "cos"])
    >>> [round(float(warm_then_cos(s)), 3) for s in (0, 5, 10, 55, 100, 200)]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """

    def __init__(self, boundaries, values, anneal="cos", name="PhaseSchedule"):
        super().__init__()
        boundaries, values = _checked_phases(boundaries, values)
        anneals = _checked_anneals(anneal, values)
        self.boundaries = boundaries
        self.values = values
        self.anneal = anneal if isinstance(anneal, str) else anneals
        self.name = check_name(name)
        self._anneals = anneals

    @property
    def value_range(self):
        """`(least, greatest)` value the schedule takes: its annealers
        move monotonically between the values at the boundaries."""
        return min(self.values), max(self.values)

    def __call__(self, step):
        with keras.name_scope(self.name):
            step = ops.cast(step, "float32")
            value = ops.full_like(step, self.values[-1])
            # From the last phase back, so that the first phase whose end is
            # not passed wins.
            phases = list(zip(self.boundaries, self.boundaries[1:],
                              self.values, self.values[1:], self._anneals))
            for start, end, v0, v1, anneal in reversed(phases):
                phase_value = ANNEALERS[anneal](v0, v1, start, end, step)
                value = ops.where(step <= end, phase_value, value)
            return value

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values,
                "anneal": self.anneal, "name": self.name}
