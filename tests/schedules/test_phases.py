import math
import re

import numpy as np
import pytest

from kerastrain.schedules import (CyclicLR, LinearDecay, MultiStepDecay,
                                  OneCycle, PhaseSchedule, StepDecay, Warmup,
                                  schedule_values)


def numpy_phases(boundaries, values, anneals, steps):
    """fastai's combine_scheds in float64, with the textbook formulas."""
    out = []
    for step in range(steps):
        value = values[-1]
        for i, (start, end) in enumerate(zip(boundaries, boundaries[1:])):
            if step <= end:
                p = min(max((step - start) / (end - start), 0.0), 1.0)
                v0, v1 = values[i], values[i + 1]
                value = {
                    "linear": lambda: v0 + (v1 - v0) * p,
                    "cos": lambda: v1 + (v0 - v1) / 2 * (
                        1 + math.cos(math.pi * p)),
                    "exp": lambda: v0 * (v1 / v0) ** p,
                }[anneals[i]]()
                break
        out.append(value)
    return np.array(out)


@pytest.mark.parametrize("boundaries, values, anneals", [
    ([0, 10, 100], [0.0, 1.0, 0.0], ["linear", "cos"]),
    ([5, 20.5, 30, 60], [1e-3, 1.0, 1e-2, 1e-6], ["exp", "cos", "exp"]),
    ([0, 50], [0.95, 0.85], ["cos"]),
])
def test_equals_a_numpy_reimplementation(boundaries, values, anneals):
    expected = numpy_phases(boundaries, values, anneals, 80)
    ours = schedule_values(PhaseSchedule(boundaries, values, anneals), 80)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_one_annealer_name_applies_to_every_phase():
    np.testing.assert_array_equal(
        schedule_values(PhaseSchedule([0, 4, 8], [0, 1, 0], "linear"), 12),
        np.float32([0, .25, .5, .75, 1, .75, .5, .25, 0, 0, 0, 0]))


@pytest.mark.parametrize("kwargs, match", [
    ({"boundaries": [0, 10, 5], "values": [0, 1, 0]}, "strictly increasing"),
    ({"boundaries": [0, 10], "values": [0, 1, 0]}, "same length"),
    ({"boundaries": [0], "values": [0]}, "at least 2"),
    ({"boundaries": [0, 10], "values": [0, 1], "anneal": "cosine"},
     "anneal"),
    ({"boundaries": [0, 5, 10], "values": [0, 1, 0],
      "anneal": ["cos"]}, "one per phase"),
    ({"boundaries": [0, 10], "values": [0.0, 1.0], "anneal": "exp"},
     "positive"),
    # inf in float32: inf * 0 is NaN at the ends of the phase.
    ({"boundaries": [0, 10], "values": [0.0, 1e39]}, "float32 can hold"),
    # The ratio is inf in float32 (the values inf past the first step),
    # and XLA flushes a value below the smallest normal to 0 (NaN).
    ({"boundaries": [0, 10], "values": [1e-30, 1e30], "anneal": "exp"},
     "ratio float32 can hold"),
    ({"boundaries": [0, 10], "values": [1e-40, 0.9], "anneal": "exp"},
     "smallest normal"),
    # inf in float32 (NaN values), and one float32 number (a value of 0
    # at 1e8, where it is 1).
    ({"boundaries": [0, 1e39], "values": [1, 0]}, "finite and strictly "
     "increasing in float32"),
    ({"boundaries": [1e8, 1e8 + 1], "values": [1, 0]}, "finite and "
     "strictly increasing in float32"),
    # Each finite, but 6e38 apart: a phase inf long, every value 0.
    ({"boundaries": [-3e38, 3e38], "values": [1.0, 2.0]}, "so must each "
     "phase's length"),
    ({"boundaries": [-3e38, 3e38, 3.1e38], "values": [1.0, 2.0, 1.0],
      "anneal": "cos"}, "so must each phase's length"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PhaseSchedule(**kwargs)


F32_MAX = float(np.finfo("float32").max)
SCHEDULES_OF_RATE = {  # a schedule built on a rate, and the name it has
    "OneCycle": (lambda r: OneCycle(r, 10), "max_lr"),
    "CyclicLR": (lambda r: CyclicLR(0.1, r, 4), "max_lr"),
    "Warmup": (lambda r: Warmup(r, 4), "schedule"),
    "Warmup start_lr": (lambda r: Warmup(0.1, 4, start_lr=r), "start_lr"),
    "StepDecay": (lambda r: StepDecay(r, 3), "initial_lr"),
    "MultiStepDecay": (lambda r: MultiStepDecay(r, [3]), "initial_lr"),
    "LinearDecay": (lambda r: LinearDecay(r, 10), "initial_lr"),
    "LinearDecay factor": (lambda r: LinearDecay(
        1e30, 10, start_factor=r / 1e30), "initial_lr \\* start_factor"),
}


@pytest.mark.parametrize("schedule", list(SCHEDULES_OF_RATE))
def test_every_schedule_refuses_a_rate_float32_cannot_hold(schedule):
    """At float32's largest value every step is finite; above it, where
    the values were inf or NaN, the constructor names the argument."""
    make, name = SCHEDULES_OF_RATE[schedule]
    values = schedule_values(make(F32_MAX * 0.999), 12)
    assert np.isfinite(values).all()
    with pytest.raises(ValueError, match=(
            f"`{name}`.* float32 can hold .*Received: .*{name}=1e\\+39")):
        make(1e39)


@pytest.mark.parametrize("anneal", [None, 1, {"cos"}])
def test_an_anneal_that_is_no_string_or_list_is_a_type_error(anneal):
    with pytest.raises(TypeError, match="anneal"):
        PhaseSchedule([0, 10], [0.0, 1.0], anneal)


@pytest.mark.parametrize("name, boundaries, values", [
    ("boundaries", [0, math.nan], [0, 1]),
    ("boundaries", [0, math.inf], [0, 1]),
    ("boundaries", [-math.inf, 0, 10], [0, 1, 0]),
    ("values", [0, 10], [0, math.inf]),
    ("values", [0, 10], [math.nan, 1]),
    ("values", [0, 10, 20], [0, -math.inf, 1]),
])
def test_non_finite_boundaries_and_values_are_rejected(name, boundaries,
                                                       values):
    received = {"boundaries": boundaries, "values": values}[name]
    with pytest.raises(ValueError, match=(
            rf"Argument `{name}` must hold finite numbers.*Received: "
            rf"{name}={re.escape(repr(received))}$")):
        PhaseSchedule(boundaries, values)


@pytest.mark.parametrize("boundaries, values, name", [
    ([0, "10"], [0, 1], "boundaries"),
    ([0, 10], [0, None], "values"),
    (10, [0, 1], "boundaries"),
])
def test_non_numbers_are_a_type_error(boundaries, values, name):
    with pytest.raises(TypeError, match=f"Argument `{name}` must be a list "
                       "of numbers"):
        PhaseSchedule(boundaries, values)


def test_an_exp_phase_as_wide_as_float32_allows_stays_finite():
    """The widest ratio accepted, 1e38: the geometric mean of the ends
    halfway, as the closed form v0 * (v1 / v0) ** p says."""
    schedule = PhaseSchedule([0, 10], [1e-19, 1e19], anneal="exp")
    values = schedule_values(schedule, 11)
    expected = 1e-19 * (1e38 ** (np.arange(11) / 10))
    np.testing.assert_allclose(values, expected, rtol=1e-5)
