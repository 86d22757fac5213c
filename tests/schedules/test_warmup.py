import keras
import numpy as np
import pytest
import torch

from kerastrain.schedules import (CyclicLR, OneCycle, StepDecay, Warmup,
                                  schedule_values)
from tests.schedules.reference import (assert_matches, torch_cyclic_lr_at,
                                       torch_values)

lr_scheduler = torch.optim.lr_scheduler


def test_warmup_then_cosine_equals_pytorch_sequential_lr():
    warmup, decay = 10, 90
    lrs, _ = torch_values(lambda opt: lr_scheduler.SequentialLR(
        opt, [lr_scheduler.LinearLR(opt, start_factor=0.01, end_factor=1.0,
                                    total_iters=warmup),
              lr_scheduler.CosineAnnealingLR(opt, T_max=decay)],
        milestones=[warmup]), warmup + decay, lr=0.5)
    cosine = keras.optimizers.schedules.CosineDecay(0.5, decay)
    # Keras' CosineDecay near its floor: one ulp of the peak (reference.py).
    assert_matches(Warmup(cosine, warmup, start_lr=0.005), lrs, peak_ulps=1)


def test_warmup_then_step_decay_equals_pytorch_sequential_lr():
    lrs, _ = torch_values(lambda opt: lr_scheduler.SequentialLR(
        opt, [lr_scheduler.LinearLR(opt, start_factor=0.2, total_iters=7),
              lr_scheduler.StepLR(opt, step_size=15, gamma=0.5)],
        milestones=[7]), 60, lr=0.1)
    assert_matches(Warmup(StepDecay(0.1, 15, 0.5), 7, start_lr=0.02), lrs)


def test_from_zero_equals_keras_cosine_decay_with_warmup():
    keras_warm = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=50, warmup_target=0.1, warmup_steps=20, alpha=0.01)
    ours = Warmup(keras.optimizers.schedules.CosineDecay(0.1, 50, alpha=0.01),
                  20)
    np.testing.assert_allclose(schedule_values(ours, 100),
                               schedule_values(keras_warm, 100), rtol=1e-6,
                               atol=1e-9)


def test_float_schedule_and_closed_form():
    values = schedule_values(Warmup(0.3, 4, start_lr=0.1), 8)
    np.testing.assert_allclose(values, [0.1, 0.15, 0.2, 0.25, 0.3, 0.3, 0.3,
                                        0.3], rtol=1e-6)


def test_zero_warmup_steps_is_the_schedule_itself():
    inner = OneCycle(0.1, 50)
    np.testing.assert_array_equal(schedule_values(Warmup(inner, 0), 60),
                                  schedule_values(inner, 60))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"warmup_steps": -1}, ValueError, "warmup_steps"),
    ({"warmup_steps": 2.5}, TypeError, "warmup_steps"),
    ({"warmup_steps": 2**32}, ValueError,
     r"`warmup_steps` must be at most 2\*\*31 - 1"),
    ({"start_lr": -0.1}, ValueError, "start_lr"),
    ({"schedule": "cosine"}, TypeError, "schedule"),
    ({"schedule": -1.0}, ValueError, "schedule"),
])
def test_bad_arguments(kwargs, error, match):
    arguments = {"schedule": 0.1, "warmup_steps": 5, **kwargs}
    with pytest.raises(error, match=match):
        Warmup(**arguments)


def test_a_wrapped_cyclic_lr_keeps_its_place_past_2_to_the_24():
    """Warmup handed the wrapped schedule a float32 step, which holds
    steps exactly only up to 2**24: a `CyclicLR` inside it lost its place
    in the cycle there (0.5 where PyTorch has 0.25)."""
    steps = [2**24 + 1, 2**24 + 3, 2**25 + 5, 10**8 + 3]
    expected = torch_cyclic_lr_at(steps, 0.0, 1.0, 4)
    schedule = Warmup(CyclicLR(0.0, 1.0, 4), 10)
    ours = [float(keras.ops.convert_to_numpy(schedule(
        keras.ops.convert_to_tensor(step + 10, "int32")))) for step in steps]
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-12)
