"""Scheduled hyperparameters under gradient accumulation: evaluated at the
step the learning rate is evaluated at, with and without the
`GradientAccumulation` callback."""

import keras
import numpy as np
import pytest

from kerastrain.callbacks import GradientAccumulation
from kerastrain.optimizers import SGD, AdamW
from kerastrain.optimizers.scheduled import (schedule_step,
                                             schedules_count_updates)
from kerastrain.schedules import OneCycle, schedule_values
from tests.optimizers import linear
from tests.optimizers.test_adamw import (BETA_2, DECAY, EPSILON,
                                         keras_adamw_in_numpy)
from tests.optimizers.test_sgd import keras_sgd_in_numpy
from tests.support import to_numpy

K = 4         # micro-batches per update
UPDATES = 12


def fit_accumulated(optimizer, callbacks=()):
    """`linear`'s regression, each update accumulated over K micro-batches
    of N/K samples: their mean gradient is the full-batch one."""
    model = keras.Sequential([keras.Input((linear.D,)),
                              keras.layers.Dense(linear.UNITS)])
    model.set_weights(linear.initial_weights())
    model.compile(optimizer=optimizer, loss="mse")
    x, y = linear.data()
    model.fit(x, y, batch_size=linear.N // K, epochs=UPDATES, shuffle=False,
              verbose=0, callbacks=list(callbacks))
    return [to_numpy(w) for w in model.weights]


def at(schedule, steps):
    return schedule_values(schedule, int(steps.max()) + 1)[steps]


def make(name, one_cycle):
    if name == "sgd":
        return SGD(one_cycle, one_cycle.momentum_schedule,
                   gradient_accumulation_steps=K)
    return AdamW(one_cycle, weight_decay=DECAY,
                 beta_1=one_cycle.momentum_schedule, beta_2=BETA_2,
                 epsilon=EPSILON, gradient_accumulation_steps=K)


def numpy_update(name, lrs, momenta):
    if name == "sgd":
        return keras_sgd_in_numpy(lrs, momenta, nesterov=False)
    return keras_adamw_in_numpy(lrs, momenta)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
@pytest.mark.parametrize("callback", [False, True])
def test_scheduled_momentum_is_in_phase_with_the_learning_rate(name,
                                                               callback):
    """Update t (0-based) happens at batch count K*t + K - 1, where Keras
    evaluates the learning rate; with the callback both count updates, t.
    The replay evaluates rate and momentum (or beta_1) at that one step."""
    one_cycle = OneCycle(0.05, UPDATES if callback else UPDATES * K)
    ours = fit_accumulated(make(name, one_cycle), [GradientAccumulation(K)]
                           if callback else [])
    updates = np.arange(UPDATES)
    step = updates if callback else K * updates + K - 1
    lrs = at(one_cycle, step)
    expected = linear.numpy_fit(numpy_update(
        name, lrs, at(one_cycle.momentum_schedule, step)), UPDATES)
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)
    if not callback:
        # The momentum at the update count instead (out of phase) ends
        # elsewhere: the comparison above can tell the two apart.
        out_of_phase = linear.numpy_fit(numpy_update(
            name, lrs, at(one_cycle.momentum_schedule, updates)), UPDATES)
        assert np.abs(out_of_phase[0] - expected[0]).max() > 1e-3


@pytest.mark.parametrize("counts_updates", [False, True])
def test_learning_rate_and_momentum_read_the_same_step(counts_updates):
    one_cycle = OneCycle(0.05, 40)
    sgd = SGD(one_cycle, one_cycle.momentum_schedule,
              gradient_accumulation_steps=K)
    if counts_updates:
        schedules_count_updates(sgd)
    for count in (0, 3, 17, 40):
        sgd._iterations.assign(count)
        step = count // K if counts_updates else count
        assert int(to_numpy(schedule_step(sgd))) == step
        np.testing.assert_allclose(
            [float(to_numpy(sgd.learning_rate)),
             float(to_numpy(sgd.current("momentum", "float32")))],
            [float(to_numpy(one_cycle(step))),
             float(to_numpy(one_cycle.momentum_schedule(step)))], rtol=1e-6)
    schedules_count_updates(sgd, on=False)
    assert int(to_numpy(schedule_step(sgd))) == 40
    assert "_get_current_learning_rate" not in vars(sgd)
