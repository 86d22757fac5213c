import copy

import keras
import numpy as np
import pytest

from kerastrain.callbacks import GradientAccumulation
from tests.support import to_numpy

N = 32


def data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((N, 5)).astype("float32"),
            rng.standard_normal((N, 2)).astype("float32"))


def make_model(optimizer):
    """No batch-dependent layer, a mean loss: accumulation is exact."""
    rng = np.random.default_rng(1)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, "tanh"),
                              keras.layers.Dense(2)])
    model.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.5
                       for w in model.weights])
    model.compile(optimizer, "mse")
    return model


def schedule():
    return keras.optimizers.schedules.ExponentialDecay(0.2, 1, 0.8)


def weights(model):
    return [to_numpy(w) for w in model.weights]


@pytest.mark.parametrize("steps, micro_batch", [(2, 4), (4, 2), (8, 4)])
def test_k_micro_batches_equal_one_big_batch(steps, micro_batch):
    x, y = data()
    accumulated = make_model(keras.optimizers.SGD(
        schedule(), gradient_accumulation_steps=2))
    accumulated.fit(x, y, batch_size=micro_batch, epochs=3, shuffle=False,
                    verbose=0, callbacks=[GradientAccumulation(steps)])
    big = make_model(keras.optimizers.SGD(schedule()))
    big.fit(x, y, batch_size=steps * micro_batch, epochs=3, shuffle=False,
            verbose=0)
    for got, want in zip(weights(accumulated), weights(big)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    # The schedule advanced once per update: as many as the big batches.
    assert int(to_numpy(accumulated.optimizer.iterations)) == 3 * N // (
        steps * micro_batch)


def test_a_change_mid_fit_equals_big_batches_of_each_size():
    x, y = data()
    callback = copy.deepcopy(GradientAccumulation({0: 1, 1: 2, 3: 4}))
    accumulated = make_model(keras.optimizers.SGD(
        schedule(), gradient_accumulation_steps=2))
    accumulated.fit(x, y, batch_size=4, epochs=5, shuffle=False, verbose=0,
                    callbacks=[callback])
    big = make_model(keras.optimizers.SGD(schedule()))
    for batch_size, epochs in ((4, 1), (8, 2), (16, 2)):
        big.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False,
                verbose=0)
    for got, want in zip(weights(accumulated), weights(big)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert int(to_numpy(accumulated.optimizer.iterations)) == 8 + 8 + 4


def test_the_schedule_is_back_to_keras_after_fit():
    x, y = data()
    model = make_model(keras.optimizers.SGD(schedule(),
                                            gradient_accumulation_steps=2))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0,
              callbacks=[GradientAccumulation(2)])
    assert "_get_current_learning_rate" not in vars(model.optimizer)


def test_pending_batches_at_a_change_warn():
    x, y = data()
    model = make_model(keras.optimizers.SGD(0.1,
                                            gradient_accumulation_steps=2))
    with pytest.warns(UserWarning, match="still accumulated"):
        # 32 / 8 = 4 batches per epoch: 3 of them pending under 3 per update.
        model.fit(x, y, batch_size=8, epochs=2, verbose=0,
                  callbacks=[GradientAccumulation({0: 3, 1: 2})])


def test_needs_an_optimizer_with_accumulators():
    x, y = data()
    model = make_model(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[GradientAccumulation(2)])


def test_steps_at():
    callback = GradientAccumulation({4: 2, 8: 4})
    assert [callback.steps_at(e) for e in (0, 3, 4, 7, 8, 100)] == [
        1, 1, 2, 2, 4, 4]


@pytest.mark.parametrize("steps, error, match", [
    (0, ValueError, "steps"),
    (-2, ValueError, "steps"),
    (2.0, ValueError, "steps"),
    ("4", ValueError, "steps"),
    (True, ValueError, "steps"),
    ({}, ValueError, "steps"),
    ({0: 0}, ValueError, r"steps\[0\]"),
    ({0: 1, 3: 1.5}, ValueError, r"steps\[3\]"),
    ({-1: 2}, ValueError, "key -1"),
    ({"2": 2}, ValueError, "key '2'"),
])
def test_bad_steps(steps, error, match):
    with pytest.raises(error, match=match):
        GradientAccumulation(steps)
