import numpy as np
import pytest
import torch

from kerastrain.schedules import OneCycle, schedule_values
from tests.schedules.reference import assert_matches, torch_values

CONFIGS = [
    {},
    {"anneal_strategy": "linear"},
    {"three_phase": True},
    {"three_phase": True, "anneal_strategy": "linear", "pct_start": 0.25},
    {"pct_start": 0.5, "div_factor": 10.0, "final_div_factor": 100.0,
     "base_momentum": 0.8, "max_momentum": 0.99},
]


# Runs too short for the rise (pct_start * total_steps < 1) start inside
# the annealing, in PyTorch as here.
SHORT_RUNS = [(kwargs, total_steps)
              for kwargs in CONFIGS[:4] + [{"pct_start": 0.1}]
              for total_steps in (1, 2, 3, 5)]


@pytest.mark.parametrize("kwargs, total_steps", [
    (kwargs, total_steps) for kwargs in CONFIGS for total_steps in (97, 1000)
] + SHORT_RUNS)
def test_rate_and_momentum_equal_pytorch_one_cycle(kwargs, total_steps):
    lrs, momenta = torch_values(
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=0.3, total_steps=total_steps, **kwargs), total_steps)
    schedule = OneCycle(0.3, total_steps, **kwargs)
    assert_matches(schedule, lrs)
    assert_matches(schedule.momentum_schedule, momenta, "momentum")


def test_a_rise_of_zero_steps_is_refused_where_pytorch_divides_by_zero():
    with pytest.raises(ZeroDivisionError):
        torch_values(lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=0.3, total_steps=10, pct_start=0.1), 10)
    with pytest.raises(ValueError, match="pct_start"):
        OneCycle(0.3, 10, pct_start=0.1)


def test_adam_beta_1_cycles_like_the_momentum():
    _, betas = torch_values(
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=0.01, total_steps=200), 200, betas=True)
    assert_matches(OneCycle(0.01, 200).momentum_schedule, betas, "beta_1")


def test_stays_at_the_final_value_after_total_steps():
    schedule = OneCycle(0.1, 100, three_phase=True)
    values = schedule_values(schedule, 300)
    np.testing.assert_array_equal(values[99:], values[99])
    assert values[99] == pytest.approx(0.1 / 25 / 1e4, rel=1e-6)
    momentum = schedule_values(schedule.momentum_schedule, 300)
    np.testing.assert_array_equal(momentum[99:], np.float32(0.95))


def test_momentum_is_high_when_the_rate_is_low():
    schedule = OneCycle(1.0, 500)
    lrs = schedule_values(schedule, 500)
    momenta = schedule_values(schedule.momentum_schedule, 500)
    assert np.argmax(lrs) == np.argmin(momenta)
    assert np.corrcoef(lrs, momenta)[0, 1] < -0.9


@pytest.mark.parametrize("kwargs, match", [
    ({"max_lr": 0.0}, "max_lr"),
    ({"max_lr": -1.0}, "max_lr"),
    ({"total_steps": 0}, "total_steps"),
    ({"pct_start": 0.0}, "pct_start"),
    ({"pct_start": 1.0}, "pct_start"),
    ({"anneal_strategy": "cosine"}, "anneal_strategy"),
    ({"base_momentum": 0.99}, "base_momentum"),
    ({"max_momentum": 1.5}, "max_momentum"),
    ({"div_factor": 0}, "div_factor"),
    ({"total_steps": -1}, "total_steps"),
    ({"total_steps": 2**31}, r"`total_steps` must be at most 2\*\*31 - 1"),
    ({"three_phase": True, "pct_start": 0.6}, "three_phase"),
    ({"max_lr": 1e39}, r"`max_lr` must be a rate that float32 can hold"),
    ({"div_factor": 1e-310}, r"`max_lr / div_factor` and `max_lr / "
     r"div_factor / final_div_factor` must be rates that float32 can hold"),
    # Only the last rate, the peak divided by less than 1, is too large.
    ({"max_lr": 1e38, "div_factor": 1, "final_div_factor": 0.1},
     r"Argument `max_lr / div_factor / final_div_factor` must be a rate "
     r"that float32 can hold .*Received: max_lr / div_factor / "
     r"final_div_factor=1e\+39$"),
])
def test_bad_arguments_are_value_errors_naming_them(kwargs, match):
    arguments = {"max_lr": 0.1, "total_steps": 100, **kwargs}
    with pytest.raises(ValueError, match=match):
        OneCycle(**arguments)


def test_three_phase_must_be_a_bool():
    with pytest.raises(TypeError, match="three_phase"):
        OneCycle(0.1, 100, three_phase="False")  # would read as True


def test_non_numbers_are_type_errors():
    with pytest.raises(TypeError, match="total_steps"):
        OneCycle(0.1, 100.0)
    with pytest.raises(TypeError, match="max_lr"):
        OneCycle("0.1", 100)
