import keras
import numpy as np
import pytest
import torch

from kerastrain.schedules import CyclicLR
from tests.schedules.reference import (assert_matches, torch_cyclic_lr_at,
                                       torch_values)


@pytest.mark.parametrize("mode, gamma", [
    ("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.995),
    ("exp_range", 0.9999)])
@pytest.mark.parametrize("step_size", [1, 7, 100])
def test_equals_pytorch_cyclic_lr_over_several_cycles(mode, gamma, step_size):
    steps = 5 * 2 * step_size + 3  # five full cycles and a bit
    lrs, _ = torch_values(
        lambda opt: torch.optim.lr_scheduler.CyclicLR(
            opt, base_lr=0.001, max_lr=0.1, step_size_up=step_size,
            mode=mode, gamma=gamma, cycle_momentum=False), steps)
    assert_matches(CyclicLR(0.001, 0.1, step_size, mode, gamma), lrs)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_steps_past_float32s_exact_integers_keep_their_place(dtype):
    """The optimizers count steps up to 2**31 - 1; float32 holds them
    exactly only up to 2**24 (an odd step past it took the place of an
    even one: the floor where PyTorch is a quarter up the climb).
    Triangular only: PyTorch's `triangular2` overflows there."""
    steps = [2**24 + 1, 2**24 + 3, 2**25 + 5, 10**8 + 3, 2**31 - 2]
    expected = torch_cyclic_lr_at(steps, 0.001, 0.01, 4)
    schedule = CyclicLR(0.001, 0.01, 4)
    ours = [float(keras.ops.convert_to_numpy(schedule(
        keras.ops.convert_to_tensor(step, dtype)))) for step in steps]
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("step_size", [2**30, 2**31 - 1])
def test_a_half_cycle_past_int32s_half_is_computed(step_size):
    """Its period, 2 * step_size, is past the int32 that JAX counts in:
    the integer place in the cycle failed there (OverflowError)."""
    steps = [0, 5, 2**30 - 1, 2**31 - 2]
    expected = torch_cyclic_lr_at(steps, 0.1, 0.2, step_size)
    schedule = CyclicLR(0.1, 0.2, step_size)
    ours = [float(keras.ops.convert_to_numpy(schedule(
        keras.ops.convert_to_tensor(step, "int32")))) for step in steps]
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_equal_bounds_give_a_constant():
    lrs, _ = torch_values(
        lambda opt: torch.optim.lr_scheduler.CyclicLR(
            opt, 0.05, 0.05, step_size_up=3, cycle_momentum=False), 20)
    assert_matches(CyclicLR(0.05, 0.05, 3), lrs)


@pytest.mark.parametrize("kwargs, match", [
    ({"base_lr": 0.2}, "base_lr"),
    ({"base_lr": -0.1}, "base_lr"),
    ({"max_lr": 0.0, "base_lr": 0.0}, "max_lr"),
    ({"step_size": 0}, "step_size"),
    ({"step_size": 2**31}, r"`step_size` must be at most 2\*\*31 - 1"),
    ({"mode": "triangle"}, "mode"),
    ({"gamma": 0.0}, "gamma"),
    ({"gamma": 1.1}, "gamma"),
])
def test_bad_arguments_are_value_errors_naming_them(kwargs, match):
    arguments = {"base_lr": 0.01, "max_lr": 0.1, "step_size": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        CyclicLR(**arguments)
