import copy

import keras
import numpy as np
import pytest

from kerastrain import optimizers
from kerastrain.callbacks import GradientAccumulation
from kerastrain.callbacks.gradient_accumulation import count_after_change
from tests.support import CrashAt, to_numpy

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


def updates_by_rule(callback, batches, epochs):
    """The documented rule, written out: which batches (indices within an
    epoch) each update averages. k consecutive batches per update; when k
    changes, an unfinished group is applied as an update of its own; a
    group still unfinished when `fit` ends is not applied."""
    groups, group, steps = [], [], None
    for epoch in range(epochs):
        if callback.steps_at(epoch) != steps and group:
            groups.append(group)
            group = []
        steps = callback.steps_at(epoch)
        for batch in range(batches):
            group.append(batch)
            if len(group) == steps:
                groups.append(group)
                group = []
    return groups


LR, DECAY = 0.2, 0.8                      # ExponentialDecay(LR, 1, DECAY)
MOMENTUM, MOMENTUM_END, MOMENTUM_STEPS = 0.9, 0.3, 6  # PolynomialDecay


def sgd_replay(groups, x, y, micro_batch):
    """NumPy float64 replay of SGD with momentum on `make_linear`: update t
    takes the mean gradient of its group's batches (each of the mean
    squared error of `micro_batch` samples) at the rate and momentum of
    step t."""
    kernel, bias = (w.astype("float64") for w in linear_weights())
    velocities = [np.zeros_like(kernel), np.zeros_like(bias)]
    for t, group in enumerate(groups):
        grads = [np.zeros_like(kernel), np.zeros_like(bias)]
        for batch in group:
            rows = slice(batch * micro_batch, (batch + 1) * micro_batch)
            residual = x[rows] @ kernel + bias - y[rows]
            scale = 2.0 / residual.size / len(group)
            grads[0] += scale * x[rows].T @ residual
            grads[1] += scale * residual.sum(axis=0)
        lr = LR * DECAY ** t
        momentum = MOMENTUM_END + (MOMENTUM - MOMENTUM_END) * (
            1 - min(t, MOMENTUM_STEPS) / MOMENTUM_STEPS)
        for w, g, v in zip((kernel, bias), grads, velocities):
            v[...] = momentum * v - lr * g
            w += v
    return [kernel, bias]


def linear_weights():
    rng = np.random.default_rng(2)
    return [rng.standard_normal((5, 2)).astype("float32"),
            rng.standard_normal((2,)).astype("float32")]


@pytest.mark.parametrize("steps", [
    {0: 4, 1: 1}, {0: 4, 1: 2}, {0: 2, 1: 1},   # lowered, batches pending
    {0: 2, 1: 3}, {0: 2, 1: 4, 2: 3},           # raised, batches pending
])
def test_a_change_with_batches_pending_matches_a_numpy_replay(steps):
    """3 batches per epoch, so every change finds batches pending; each
    update must be the mean of its batches' gradients, and the schedules
    (rate and scheduled momentum) advance once per update."""
    x, y = data()
    x, y = x[:12], y[:12]
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    model.set_weights(linear_weights())
    model.compile(optimizers.SGD(
        schedule(), keras.optimizers.schedules.PolynomialDecay(
            MOMENTUM, MOMENTUM_STEPS, MOMENTUM_END),
        gradient_accumulation_steps=2), "mse")
    callback = GradientAccumulation(steps)
    with pytest.warns(UserWarning, match="applied now as one update"):
        model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
                  callbacks=[callback])
    groups = updates_by_rule(callback, batches=3, epochs=3)
    expected = sgd_replay(groups, x.astype("float64"), y.astype("float64"),
                          micro_batch=4)
    for got, want in zip(weights(model), expected):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert int(to_numpy(model.optimizer.iterations)) == len(groups)
    assert callback.count_updates(3, epochs=3) == len(groups)


class WeightPerBatch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        if keras.backend.backend() == "jax":
            self.model.jax_state_sync()  # JAX keeps the weights in the loop
        self.values.append(float(to_numpy(self.model.weights[0])[0, 0]))


@pytest.mark.parametrize("steps, expected", [
    # Updates of batches [0 1 2], [3], [4], [5]: the first applied at the
    # start of epoch 1, so it shows after batch 3.
    ({0: 4, 1: 1}, [0, 0, 0, -2, -3, -4]),
    # [0 1 2], [3 4]; batch 5 still pending at the end.
    ({0: 4, 1: 2}, [0, 0, 0, -1, -2, -2]),
    # [0 1], [2], [3 4 5].
    ({0: 2, 1: 3}, [0, -1, -1, -2, -2, -3]),
])
def test_every_update_moves_a_unit_gradient_by_the_rate(steps, expected):
    """The reviewer's check: gradient 1 and rate 1 everywhere, so every
    update, a mean, moves the weight by exactly 1."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(
        1, use_bias=False, kernel_initializer="zeros")])
    model.compile(keras.optimizers.SGD(1.0, gradient_accumulation_steps=2),
                  lambda y_true, y_pred: keras.ops.mean(y_pred))
    recorder = WeightPerBatch()
    ones = np.ones((3, 1), "float32")
    with pytest.warns(UserWarning, match="still accumulated"):
        model.fit(ones, ones, batch_size=1, epochs=2, shuffle=False,
                  verbose=0, callbacks=[GradientAccumulation(steps),
                                        recorder])
    assert recorder.values == expected


def test_count_after_change():
    # 2 updates of 4 and 3 pending: 3 updates, continued at 2 per update.
    assert count_after_change(11, 4, 2) == 6
    assert count_after_change(8, 4, 3) == 6   # nothing pending
    assert count_after_change(0, 2, 5) == 0


def test_under_loss_scaling_it_drives_the_inner_optimizer():
    """Keras wraps the optimizer in a `LossScaleOptimizer` under mixed
    precision; the accumulators, the count and the schedule are the inner
    one's. (Scaling by a power of two is exact, so is the comparison.)"""
    x, y = data()
    accumulated = make_model(keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(schedule(), gradient_accumulation_steps=2)))
    accumulated.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
                    callbacks=[GradientAccumulation({0: 2, 1: 4})])
    big = make_model(keras.optimizers.SGD(schedule()))
    for batch_size, epochs in ((8, 1), (16, 2)):
        big.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False,
                verbose=0)
    for got, want in zip(weights(accumulated), weights(big)):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_fit_resumed_from_a_backup_matches_the_uninterrupted_one(tmp_path):
    """The restored step count was accumulated under 4 batches per update
    (epoch 2's number), not under the new optimizer's constructor value."""
    x, y = data()

    def run(callbacks, backup=None, model=None):
        model = model or make_model(keras.optimizers.SGD(
            schedule(), gradient_accumulation_steps=2))
        callbacks = [GradientAccumulation({0: 4, 3: 8}), *callbacks]
        if backup:
            callbacks.append(keras.callbacks.BackupAndRestore(backup))
        model.fit(x, y, batch_size=4, epochs=5, shuffle=False, verbose=0,
                  callbacks=callbacks)
        return model

    uninterrupted = run([])
    backup = str(tmp_path / "backup")
    with pytest.raises(KeyboardInterrupt):
        run([CrashAt(3, batch=1)], backup)
    resumed = run([], backup)
    for got, want in zip(weights(resumed), weights(uninterrupted)):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert int(to_numpy(resumed.optimizer.iterations)) == int(
        to_numpy(uninterrupted.optimizer.iterations)) == 2 * 3 + 1 * 2
    # The same model object resumed in the same process: the crashed
    # epoch 3 had set 8 batches per update, but the restored count is the
    # end of epoch 2's, accumulated under 4. Also when the crash comes at
    # epoch 3's end, after this callback noted it and before the backup
    # wrote it.
    for crash in (CrashAt(3, batch=1), CrashAt(3)):
        crashed = make_model(keras.optimizers.SGD(
            schedule(), gradient_accumulation_steps=2))
        backup = str(tmp_path / f"same-model-{crash.batch}")
        with pytest.raises(KeyboardInterrupt):
            run([crash], backup, crashed)
        run([], backup, crashed)
        for got, want in zip(weights(crashed), weights(uninterrupted)):
            np.testing.assert_allclose(got, want, atol=1e-6)


def test_a_second_fit_from_epoch_zero_goes_on_from_the_first():
    """fit(epochs=2) with 4 batches per update, then fit(epochs=2) with 2
    (initial_epoch 0 again, nothing restored): the count was accumulated
    under 4, as in one fit whose epochs 2-3 use 2."""
    x, y = data()

    def sgd():
        return keras.optimizers.SGD(schedule(),
                                    gradient_accumulation_steps=2)

    twice = make_model(sgd())
    for steps in (4, 2):
        twice.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
                  callbacks=[GradientAccumulation(steps)])
    once = make_model(sgd())
    once.fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0,
             callbacks=[GradientAccumulation({0: 4, 2: 2})])
    for got, want in zip(weights(twice), weights(once)):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_the_schedule_is_back_to_keras_after_fit():
    """After `fit`, the rate and a scheduled momentum are evaluated at
    Keras' batch count again (the callback counted updates during it)."""
    from kerastrain.optimizers.scheduled import schedule_step

    x, y = data()
    momentum = keras.optimizers.schedules.PolynomialDecay(0.9, 20, 0.5)
    model = make_model(optimizers.SGD(schedule(), momentum,
                                      gradient_accumulation_steps=2))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0,
              callbacks=[GradientAccumulation(2)])
    optimizer = model.optimizer
    batches = int(to_numpy(optimizer._iterations))
    assert (batches, int(to_numpy(optimizer.iterations))) == (4, 2)
    assert int(to_numpy(schedule_step(optimizer))) == batches
    np.testing.assert_allclose(to_numpy(optimizer.learning_rate),
                               to_numpy(schedule()(batches)), rtol=1e-6)
    np.testing.assert_allclose(
        to_numpy(optimizer.current("momentum", "float32")),
        to_numpy(momentum(batches)), rtol=1e-6)


def test_put_back_after_a_fit_that_raised():
    """Keras skips `on_train_end` when `fit` raises: the schedules still
    counted updates, so a plain `fit` after it trained at rates that Keras
    would not use. `put_back()` gives them back: the next plain `fit`
    trains as a model that never had the callback, from the same state."""
    x, y = data()

    def crashed():
        model = make_model(keras.optimizers.SGD(
            schedule(), gradient_accumulation_steps=2))
        callback = GradientAccumulation(2)
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, batch_size=4, epochs=3, shuffle=False,
                      verbose=0, callbacks=[callback, CrashAt(1, batch=4)])
        return model, callback

    def plain_twin(model):
        """A model that never had the callback, in `model`'s state."""
        twin = make_model(keras.optimizers.SGD(
            schedule(), gradient_accumulation_steps=2))
        twin.optimizer.build(twin.trainable_variables)
        twin.set_weights(model.get_weights())
        for mine, theirs in zip(twin.optimizer.variables,
                                model.optimizer.variables):
            mine.assign(to_numpy(theirs))  # a copy: JAX donates buffers
        return twin

    def fit_on(model):
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        return weights(model)

    model, callback = crashed()
    assert int(to_numpy(model.optimizer._iterations)) == 8 + 5  # 1 pending
    twin = plain_twin(model)
    # The check can fail: without put_back the rates differ.
    left = fit_on(model)
    assert not all(np.allclose(a, b, atol=1e-6)
                   for a, b in zip(left, fit_on(twin)))
    model, callback = crashed()
    twin = plain_twin(model)
    callback.put_back()
    callback.put_back()  # twice is harmless
    for got, want in zip(fit_on(model), fit_on(twin)):
        np.testing.assert_allclose(got, want, atol=1e-6)


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


@pytest.mark.parametrize("call, error, match", [
    # -3 updates, and 2.0 updates, were the answers.
    (lambda c: c.count_updates(-3, 2), ValueError, "`batches` must be"),
    (lambda c: c.count_updates(2.5, 2), TypeError, "`batches` must be"),
    (lambda c: c.count_updates(3, -1), ValueError, "`epochs` must be"),
    (lambda c: c.count_updates(3, 2, initial_epoch=0.5), TypeError,
     "`initial_epoch` must be"),
    (lambda c: c.steps_at(2.5), TypeError, "`epoch` must be"),
    (lambda c: c.steps_at(-1), ValueError, "`epoch` must be"),
])
def test_the_helpers_refuse_counts_that_are_no_counts(call, error, match):
    with pytest.raises(error, match=match):
        call(GradientAccumulation({0: 2, 2: 4}))


def test_a_model_saved_at_one_batch_per_update_loads(tmp_path):
    """Keras' optimizers refuse gradient_accumulation_steps=1 in their
    constructor, which loading calls: the file records the number the
    optimizer was created with, while the fit itself ran at 1."""
    from kerastrain.callbacks import CheckpointEarlyStopping

    x, y = data()
    model = make_model(keras.optimizers.SGD(0.1,
                                            gradient_accumulation_steps=3))
    checkpoint = CheckpointEarlyStopping(tmp_path / "best.keras",
                                         monitor="loss")
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
              callbacks=[GradientAccumulation({0: 1, 5: 2}), checkpoint])
    assert model.optimizer.gradient_accumulation_steps == 1
    assert int(to_numpy(model.optimizer.iterations)) == 16  # per batch
    model.save(tmp_path / "after.keras")
    for path in ("best.keras", "after.keras"):
        loaded = keras.saving.load_model(tmp_path / path)
        assert loaded.optimizer.gradient_accumulation_steps == 3
        for got, want in zip(weights(loaded), weights(model)):
            np.testing.assert_array_equal(got, want)
    # Copies (KerasTuner's) report from their own state.
    duplicate = copy.deepcopy(model.optimizer)
    duplicate.gradient_accumulation_steps = 4
    assert duplicate.get_config()["gradient_accumulation_steps"] == 4
    assert model.optimizer.get_config()["gradient_accumulation_steps"] == 3


def test_a_fit_too_short_for_one_update_warns():
    # 2 epochs of 3 batches under 8 per update: the weights never moved.
    x, y = data()
    model = make_model(keras.optimizers.SGD(0.1,
                                            gradient_accumulation_steps=2))
    before = weights(model)
    with pytest.warns(UserWarning, match=r"applied no update: its 6 "
                      r"batches are still accumulated, fewer than the 8"):
        model.fit(x[:12], y[:12], batch_size=4, epochs=2, verbose=0,
                  callbacks=[GradientAccumulation(8)])
    for got, want in zip(weights(model), before):
        np.testing.assert_array_equal(got, want)
