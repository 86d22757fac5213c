import math

import keras
import numpy as np
import pytest

from kerastrain.callbacks import GradientAccumulation
from kerastrain.optimizers import SGD, AdamW
from kerastrain.schedules import CyclicLR, LinearDecay, OneCycle, Warmup
from kerastrain.tuning._hypermodel import scheduled_updates
from kerastrain.tuning.schedule_factory import (SCHEDULES,
                                                learning_rate_schedule,
                                                make_optimizer)


def values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_one_cycle_comes_with_its_momentum():
    rate, momentum = learning_rate_schedule("one_cycle", 0.2, 40)
    assert isinstance(rate, OneCycle)
    assert (rate.max_lr, rate.total_steps) == (0.2, 40)
    np.testing.assert_allclose(values(momentum, [0, 11, 39]),
                               [0.95, 0.85, 0.95], atol=1e-6)


def test_cosine_warmup_rises_for_a_tenth_then_decays_to_zero():
    rate, momentum = learning_rate_schedule("cosine_warmup", 0.1, 50)
    assert isinstance(rate, Warmup) and momentum is None
    assert rate.warmup_steps == 5
    # Linear from 0 to the peak in 5 steps, then half a cosine in 45.
    expected = [0.1 * s / 5 for s in range(5)] + [
        0.05 * (1 + math.cos(math.pi * (s - 5) / 45)) for s in range(5, 51)]
    np.testing.assert_allclose(values(rate, range(51)), expected,
                               atol=1e-6)


@pytest.mark.parametrize("total_steps", [40, 7, 4])
def test_cyclic_runs_two_cycles_over_the_updates(total_steps):
    rate, momentum = learning_rate_schedule("cyclic", 0.1, total_steps)
    assert momentum is None
    # Troughs at 0, T / 2 and T, peaks at T / 4 and 3T / 4, the second
    # half as high, straight lines between (NumPy's interpolation).
    steps = np.arange(total_steps + 1)
    quarter = total_steps / 4
    expected = np.interp(steps, [0, quarter, 2 * quarter, 3 * quarter,
                                 total_steps],
                         [0.025, 0.1, 0.025, 0.0625, 0.025])
    np.testing.assert_allclose(values(rate, steps), expected, atol=1e-6)
    if total_steps == 40:  # a whole number of steps a cycle: PyTorch's
        np.testing.assert_allclose(
            values(rate, steps), values(CyclicLR(0.025, 0.1, 10,
                                                 mode="triangular2"), steps),
            atol=1e-6)
    # No new cycle starts in the last updates (CyclicLR, of whole steps
    # a cycle, started one there at 7 updates).
    tail = values(rate, steps[-1 - total_steps // 4:])
    assert (np.diff(tail) <= 1e-9).all()


def test_constant_is_the_peak_rate():
    assert learning_rate_schedule("constant", 0.03, 1) == (0.03, None)


MINIMUM_UPDATES = {"one_cycle": 4, "cosine_warmup": 2, "cyclic": 4}


def test_every_schedule_but_constant_has_a_minimum_checked_below():
    # "constant" runs on any fit (one update): only total_steps >= 1 holds.
    assert set(SCHEDULES) == set(MINIMUM_UPDATES) | {"constant"}
    with pytest.raises(ValueError, match=r"`total_steps` must be an integer "
                       r">= 1\. Received: total_steps=0"):
        learning_rate_schedule("constant", 0.1, 0)


@pytest.mark.parametrize("name, minimum", MINIMUM_UPDATES.items())
def test_too_few_updates_is_a_clear_error(name, minimum):
    learning_rate_schedule(name, 0.1, minimum)
    with pytest.raises(ValueError, match=f"`{name}` schedule needs at "
                       f"least {minimum} updates; this fit runs"):
        learning_rate_schedule(name, 0.1, minimum - 1)


@pytest.mark.parametrize("name", SCHEDULES)
def test_a_peak_rate_float32_cannot_hold_is_refused(name):
    # 1e40 is inf in float32: the warmup and cosine gave [nan, inf, inf],
    # and "constant" handed it on as it was.
    with pytest.raises(ValueError, match=r"`max_lr` must be a rate that "
                       r"float32 can hold.*max_lr=1e\+40"):
        learning_rate_schedule(name, 1e40, 100)
    assert np.isfinite(float(keras.ops.convert_to_numpy(
        learning_rate_schedule(name, 3e38, 100)[0] if name == "constant"
        else learning_rate_schedule(name, 3e38, 100)[0](50))))


@pytest.mark.parametrize("name", SCHEDULES)
def test_a_peak_rate_below_float32s_normal_numbers_is_refused(name):
    # 5e-324 became 0 in float32 and 1e-45 a denormal that XLA flushes to
    # 0: the schedules trained nothing.
    for tiny in (5e-324, 1e-45):
        with pytest.raises(ValueError, match=r"`max_lr` must be in "
                           r"\[1.17549e-38, inf\)"):
            learning_rate_schedule(name, tiny, 100)
    # The smallest allowed peak is reached, not 0, where it is computed.
    smallest = float(np.finfo("float32").tiny)
    rate = learning_rate_schedule(name, smallest, 100)[0]
    peak = rate if name == "constant" else values(rate, range(100)).max()
    assert np.float32(peak) == np.float32(smallest)


def test_make_optimizer():
    rate, momentum = learning_rate_schedule("one_cycle", 0.1, 100)
    sgd = make_optimizer("sgd", rate, momentum, weight_decay=5e-4,
                         gradient_accumulation_steps=2)
    assert type(sgd) is SGD and sgd.nesterov
    assert sgd.momentum is momentum
    assert (sgd.weight_decay, sgd.gradient_accumulation_steps) == (5e-4, 2)
    adamw = make_optimizer("adamw", 0.001, weight_decay=0.0)
    assert type(adamw) is AdamW
    assert (adamw.beta_1, adamw.weight_decay) == (0.9, 0.0)
    # The argument is `name` (the HyperModels' knob is `optimizer`).
    with pytest.raises(ValueError, match="`name` must be one of 'sgd'"):
        make_optimizer("adam", 0.001)
    with pytest.raises(ValueError, match="`name` must be one of 'one_cycle'"):
        learning_rate_schedule("nope", 0.1, 100)


@pytest.mark.parametrize("momentum, error, match", [
    (1.0, ValueError, r"`momentum` \(AdamW's `beta_1`\) must be in \[0, 1\)"
     r"\. Received: momentum=1\.0"),
    ("x", TypeError, r"`momentum` \(AdamW's `beta_1`\) must be a number"),
    (LinearDecay(1.5, 10), ValueError,
     r"`momentum` \(AdamW's `beta_1`\) must stay in \[0, 1\)"),
])
def test_a_bad_adamw_momentum_names_momentum(momentum, error, match):
    # AdamW's messages named `beta_1`, which the caller never wrote.
    with pytest.raises(error, match=match):
        make_optimizer("adamw", 0.001, momentum)
    # SGD takes it as `momentum` (Keras allows 1.0 there).
    assert make_optimizer("sgd", 0.001, 1.0).momentum == 1.0


@pytest.mark.parametrize("steps, epochs, initial_epoch", [
    (2, 3, 0), ({0: 1, 1: 3}, 3, 0), ({0: 4, 2: 2}, 4, 1), (1, 2, 1)])
def test_scheduled_updates_are_the_optimizers_update_count(
        steps, epochs, initial_epoch):
    """Replays GradientAccumulation's bookkeeping: compared with the
    optimizer's count after a real fit of 7 batches per epoch."""
    x = np.zeros((28, 2), "float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    accumulation = GradientAccumulation(steps)
    model.compile(keras.optimizers.SGD(0.1, gradient_accumulation_steps=max(
        2, accumulation.steps_at(initial_epoch))), "mse")
    model.fit(x, x[:, :1], batch_size=4, epochs=epochs,
              initial_epoch=initial_epoch, verbose=0,
              callbacks=[accumulation])
    updates = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    assert scheduled_updates(7, epochs, initial_epoch, accumulation) == (
        updates)
    assert scheduled_updates(7, epochs, initial_epoch) == 7 * (
        epochs - initial_epoch)
