"""StepDecay, MultiStepDecay and LinearDecay against PyTorch, and the Keras
built-ins that the README's table maps the other PyTorch schedulers to."""

import keras
import numpy as np
import pytest
import torch

from kerastrain import schedules
from tests.schedules.reference import assert_matches, torch_values

lr_scheduler = torch.optim.lr_scheduler
LR = 0.1

# (PyTorch scheduler, the equivalent schedule, steps, float32 ulps of peak
# that Keras' own arithmetic needs on top of rtol; see reference.py)
EQUIVALENTS = {
    "StepLR": (lambda o: lr_scheduler.StepLR(o, step_size=30, gamma=0.5),
               schedules.StepDecay(LR, 30, gamma=0.5), 200, 0),
    "MultiStepLR": (
        lambda o: lr_scheduler.MultiStepLR(o, [10, 50, 51, 90], gamma=0.3),
        schedules.MultiStepDecay(LR, [10, 50, 51, 90], gamma=0.3), 150, 0),
    "LinearLR to 1% at tau": (
        lambda o: lr_scheduler.LinearLR(o, 1.0, 0.01, total_iters=100),
        schedules.LinearDecay(LR, 100), 250, 1),
    "LinearLR to zero": (
        lambda o: lr_scheduler.LinearLR(o, 1.0, 0.0, total_iters=100),
        schedules.LinearDecay(LR, 100, end_factor=0.0), 150, 1),
    "LinearLR as warmup": (
        lambda o: lr_scheduler.LinearLR(o, 1 / 3, 1.0, total_iters=5),
        schedules.LinearDecay(LR, 5, end_factor=1.0, start_factor=1 / 3), 20,
        1),
    "ConstantLR": (
        lambda o: lr_scheduler.ConstantLR(o, factor=0.25, total_iters=8),
        keras.optimizers.schedules.PiecewiseConstantDecay(
            [7], [LR * 0.25, LR]), 30, 0),
    "ExponentialLR": (
        lambda o: lr_scheduler.ExponentialLR(o, gamma=0.97),
        keras.optimizers.schedules.ExponentialDecay(LR, 1, 0.97), 200, 4),
    "PolynomialLR": (
        lambda o: lr_scheduler.PolynomialLR(o, total_iters=100, power=2.0),
        schedules.PolynomialDecay(LR, 100, 0.0, power=2.0), 150, 1),
    "CosineAnnealingLR": (
        lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=100, eta_min=1e-4),
        schedules.CosineDecay(LR, 100, alpha=1e-4 / LR), 101, 1),
    "CosineAnnealingWarmRestarts": (
        lambda o: lr_scheduler.CosineAnnealingWarmRestarts(
            o, T_0=20, T_mult=2, eta_min=1e-3),
        schedules.CosineDecayRestarts(LR, 20, t_mul=2.0, m_mul=1.0,
                                      alpha=1e-3 / LR), 140, 1),
}


@pytest.mark.parametrize("name", list(EQUIVALENTS))
def test_equals_pytorch_per_step(name):
    make, schedule, steps, peak_ulps = EQUIVALENTS[name]
    lrs, _ = torch_values(make, steps, lr=LR)
    assert_matches(schedule, lrs, name, peak_ulps=peak_ulps)


def test_torch_named_decays_are_keras_built_ins():
    # No second implementation: the math is Keras'.
    assert isinstance(schedules.StepDecay(LR, 3),
                      keras.optimizers.schedules.ExponentialDecay)
    assert isinstance(schedules.MultiStepDecay(LR, [3]),
                      keras.optimizers.schedules.PiecewiseConstantDecay)
    assert isinstance(schedules.LinearDecay(LR, 3),
                      keras.optimizers.schedules.PolynomialDecay)


@pytest.mark.parametrize("make, error, match", [
    (lambda: schedules.StepDecay(0.0, 10), ValueError, "initial_lr"),
    (lambda: schedules.StepDecay(LR, 0), ValueError, "step_size"),
    (lambda: schedules.StepDecay(LR, 10, gamma=0.0), ValueError, "gamma"),
    (lambda: schedules.MultiStepDecay(LR, [30, 10]), ValueError,
     "milestones"),
    (lambda: schedules.MultiStepDecay(LR, [10, 10]), ValueError,
     "milestones"),
    (lambda: schedules.MultiStepDecay(LR, []), ValueError, "milestones"),
    (lambda: schedules.MultiStepDecay(LR, [0, 5]), ValueError, "milestones"),
    # Past the optimizers' int32 step count: a wrong rate from the first
    # step on torch, an OverflowError in the fit on JAX.
    (lambda: schedules.MultiStepDecay(LR, [5, 3_000_000_000]), ValueError,
     r"`milestones` must be at most 2\*\*31 - 1"),
    (lambda: schedules.StepDecay(LR, 2**31), ValueError,
     r"`step_size` must be at most 2\*\*31 - 1"),
    (lambda: schedules.LinearDecay(LR, 2**31), ValueError,
     r"`decay_steps` must be at most 2\*\*31 - 1"),
    (lambda: schedules.MultiStepDecay(LR, [2.5]), TypeError, "milestones"),
    (lambda: schedules.MultiStepDecay(LR, 10), TypeError, "milestones"),
    (lambda: schedules.MultiStepDecay(LR, None), TypeError, "milestones"),
    (lambda: schedules.LinearDecay(LR, 0), ValueError, "decay_steps"),
    (lambda: schedules.LinearDecay(LR, 10, end_factor=-0.5), ValueError,
     "end_factor"),
    (lambda: schedules.LinearDecay(LR, 10, start_factor=-1.0), ValueError,
     "start_factor"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_the_last_step_an_int32_count_reaches_trains_as_a_milestone():
    """The largest milestone taken, 2**31 - 1, is compared with the step
    in the optimizer's int32 on every backend: one update at the first
    milestone, then the rate is LR * gamma."""
    schedule = schedules.MultiStepDecay(LR, [1, 2**31 - 1], gamma=0.5)
    optimizer = keras.optimizers.SGD(schedule)
    variable = keras.Variable(np.zeros(2, "float32"))
    for _ in range(2):
        optimizer.apply([keras.ops.ones(2)], [variable])
    # Steps 0 and 1: rates LR and LR * 0.5.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable),
                               -(LR + LR * 0.5), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_a_step_size_past_2_to_the_24_decays_on_its_step(dtype):
    """Keras divides the step by `step_size` in float32: 20,000,001 is
    20,000,000 there, and the rate fell two steps early. PyTorch's StepLR:
    `initial_lr * gamma ** (step // step_size)`."""
    size = 20_000_001
    steps = [size - 2, size - 1, size, 2 * size - 1, 2 * size]
    schedule = schedules.StepDecay(0.1, size, gamma=0.1)
    ours = [float(keras.ops.convert_to_numpy(schedule(
        keras.ops.convert_to_tensor(step, dtype)))) for step in steps]
    np.testing.assert_allclose(ours, [0.1 * 0.1 ** (s // size)
                                      for s in steps], rtol=1e-6)
