import copy
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from kerastrain import find_lr
from kerastrain.callbacks import (GradientAccumulation, LRFinder,
                                  LRFinderResult)
from kerastrain.schedules import OneCycle
from tests.support import (ActivityLoss, CrashAt, Reconstructs, to_numpy,
                           two_output_model)


def data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)).astype("float32")
    y = (x[:, :3].sum(axis=1) > 0).astype("float32")
    return x, y


def make_model(optimizer=None, seed=3, dropout=0.2):
    """Dropout (seeded state), BatchNorm (moving statistics) and a schedule:
    everything `find_lr` must put back."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16),
        keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.Dropout(dropout, seed=7), keras.layers.Dense(1)])
    model.compile(optimizer or keras.optimizers.SGD(OneCycle(0.1, 100),
                                                    momentum=0.9),
                  keras.losses.BinaryCrossentropy(from_logits=True))
    return model


def variables(model):
    return ([to_numpy(v) for v in model.variables]
            + [to_numpy(v) for v in model.optimizer.variables])


def copy_of(model, optimizer):
    twin = make_model(optimizer)
    twin.build((None, 8))
    twin.optimizer.build(twin.trainable_variables)
    for a, b in zip(twin.variables, model.variables):
        a.assign(to_numpy(b))
    for a, b in zip(twin.optimizer.variables, model.optimizer.variables):
        a.assign(to_numpy(b))
    return twin


INPUTS = {
    "numpy": lambda x, y: dict(x=x, y=y, batch_size=32),
    "dataset": lambda x, y: dict(
        x=tf.data.Dataset.from_tensor_slices((x, y)).batch(32)),
}


@pytest.mark.parametrize("accumulation", [None, 2])
@pytest.mark.parametrize("kind", list(INPUTS))
def test_the_model_trains_afterwards_as_if_it_never_ran(kind, accumulation):
    x, y = data()

    def optimizer():
        return keras.optimizers.SGD(OneCycle(0.1, 100), momentum=0.9,
                                    gradient_accumulation_steps=accumulation)

    model = make_model(optimizer())
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    twin = copy_of(model, optimizer())
    before = variables(model)

    result = find_lr(model, **INPUTS[kind](x, y), num_steps=30)
    assert len(result.lrs) > 5
    for got, want in zip(variables(model), before):
        np.testing.assert_array_equal(got, want)
    assert isinstance(model.optimizer._learning_rate, OneCycle)

    for m in (model, twin):
        m.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    for got, want in zip(variables(model), variables(twin)):
        np.testing.assert_array_equal(got, want)


def test_a_shuffled_fit_afterwards_draws_as_if_it_never_ran():
    """From the same global seed, the next `fit` with `shuffle=True` draws
    the same order (on torch its data loader seeds from torch's global
    generator, which the test's own fit would have moved)."""
    x, y = data()
    model = make_model(keras.optimizers.SGD(0.05, momentum=0.9))
    twin = make_model(keras.optimizers.SGD(0.05, momentum=0.9))
    for m in (model, twin):  # a first fit draws for itself: done here
        m.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    twin.set_weights(model.get_weights())
    for a, b in zip(twin.optimizer.variables, model.optimizer.variables):
        a.assign(to_numpy(b))
    keras.utils.set_random_seed(11)
    find_lr(model, x, y, num_steps=20)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    keras.utils.set_random_seed(11)
    twin.fit(x, y, batch_size=32, epochs=2, verbose=0)
    for got, want in zip(variables(model), variables(twin)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("metrics", [[], ["accuracy"]])
def test_a_new_models_first_fit_afterwards_draws_as_if_it_never_ran(
        metrics):
    """A model never fitted or evaluated reads one extra batch in its first
    `fit`, to build its compiled loss and metrics: a shuffle on JAX, a data
    loader's seed on torch. `find_lr` leaves them unbuilt, as it found
    them, so that first `fit` still makes that draw."""
    x, y = data()
    histories, weights, built = [], [], []
    for run_finder in (True, False):
        model = make_model(keras.optimizers.SGD(0.05, momentum=0.9))
        if metrics:
            model.compile(model.optimizer, model.loss, metrics=metrics)
        keras.utils.set_random_seed(11)
        if run_finder:
            find_lr(model, x, y, num_steps=20)
        # Each part as found (the loss alone would cause the draw).
        built.append([getattr(part, "built", None) for part in (
            model._compile_loss, model._compile_metrics)])
        histories.append(model.fit(x, y, batch_size=32, epochs=2,
                                   validation_split=0.25,
                                   verbose=0).history)
        weights.append(variables(model))
    assert built[0] == built[1]
    assert histories[0].keys() == histories[1].keys()
    for key, values in histories[1].items():
        np.testing.assert_array_equal(histories[0][key], values)
    for got, want in zip(*weights):
        np.testing.assert_array_equal(got, want)


def test_a_new_two_output_model_logs_each_loss_once_afterwards():
    """Keras adds a loss tracker per output when it builds the compiled
    loss; built again after `find_lr`, it must not add a second set."""
    x, y = data()
    histories = []
    for run_finder in (True, False):
        keras.utils.set_random_seed(0)
        model = two_output_model(8)
        targets = {"a": y[:, None], "b": -y[:, None]}
        if run_finder:
            find_lr(model, x, targets, num_steps=10)
        histories.append(model.fit(x, targets, batch_size=32, epochs=2,
                                   shuffle=False, verbose=0).history)
        losses = model._compile_loss.metrics
        assert sorted(m.name for m in losses) == ["a_loss", "b_loss"]
    assert histories[0].keys() == histories[1].keys()
    for key, values in histories[1].items():
        np.testing.assert_array_equal(histories[0][key], values)


def test_a_float_learning_rate_is_put_back():
    x, y = data()
    model = make_model(keras.optimizers.Adam(3e-3))
    find_lr(model, x, y, num_steps=20)
    assert float(to_numpy(model.optimizer.learning_rate)) == pytest.approx(
        3e-3)
    model.optimizer.learning_rate = 1e-3  # still a settable variable


class RecordRate(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.rates = getattr(self, "rates", [])
        self.rates.append(float(to_numpy(self.model.optimizer.learning_rate)))


def test_rate_grows_exponentially_and_losses_are_smoothed_like_fastai():
    x, y = data()
    model = make_model(keras.optimizers.SGD(0.01))
    finder, record = LRFinder(1e-5, 1e-1, num_steps=40), RecordRate()
    model.fit(x, y, batch_size=32, epochs=5, shuffle=False, verbose=0,
              callbacks=[finder, record])
    result = finder.result
    n = len(result.lrs)
    assert n == 40  # no divergence this low
    expected = 1e-5 * (1e-1 / 1e-5) ** (np.arange(n) / 39)
    np.testing.assert_allclose(result.lrs, expected, rtol=1e-12)
    # ... and it is the rate the optimizer really used at each step.
    np.testing.assert_allclose(record.rates[:n], expected, rtol=1e-5)
    average, smoothed = 0.0, []
    for i, loss in enumerate(result.losses):
        average = 0.98 * average + 0.02 * loss
        smoothed.append(average / (1 - 0.98 ** (i + 1)))
    np.testing.assert_allclose(result.smoothed_losses, smoothed, rtol=1e-12)


def test_under_loss_scaling_the_inner_optimizer_gets_the_rates():
    """Keras wraps the optimizer in a `LossScaleOptimizer` under mixed
    precision; the rate that trains is the inner optimizer's (the
    wrapper's `learning_rate` reads it)."""
    x, y = data()
    model = make_model(keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.01)))
    finder, record = LRFinder(1e-5, 1e-1, num_steps=12), RecordRate()
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
              callbacks=[finder, record])
    expected = np.geomspace(1e-5, 1e-1, 12)
    np.testing.assert_allclose(finder.result.lrs, expected, rtol=1e-12)
    np.testing.assert_allclose(record.rates[:12], expected, rtol=1e-5)
    assert float(to_numpy(model.optimizer.learning_rate)) == \
        pytest.approx(0.01)


class RecordKernel(keras.callbacks.Callback):
    """A linear model's kernel before training and after every batch
    (JAX keeps the weights outside the variables during an epoch: synced
    first)."""

    def on_train_begin(self, logs=None):
        self.kernels = [self.kernel()]

    def on_train_batch_end(self, batch, logs=None):
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        self.kernels.append(self.kernel())

    def kernel(self):
        return to_numpy(self.model.layers[-1].kernel).astype("float64")


def linear_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2)).astype("float32")
    return x, (x @ [1.0, -2.0] + 0.1 * rng.standard_normal(n)).astype(
        "float32")[:, None]


def applied_updates(kernels, x, y, batch_size, accumulate=True):
    """Replays plain SGD on the mean squared error of a linear model in
    NumPy: for each update that moved the kernel, the batch index it was
    applied at, the number of batches it averaged, and the learning rate
    that explains the move (-(dw . g) / (g . g), g the mean gradient).
    With `accumulate=False`, a batch that moved nothing was skipped: the
    next update is its own batch's."""
    batches = len(x) // batch_size
    updates, pending = [], []
    for i in range(len(kernels) - 1):
        w = kernels[i]
        start = (i % batches) * batch_size
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        if not accumulate:
            pending = []
        pending.append(2.0 / batch_size * xb.T @ (xb @ w - yb))
        move = kernels[i + 1] - w
        if np.abs(move).max() > 0:
            g = np.mean(pending, axis=0)
            updates.append((i, len(pending),
                            -np.sum(move * g) / np.sum(g * g)))
            pending = []
    return updates


def linear_model(learning_rate, accumulation=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(1, use_bias=False)])
    model.compile(keras.optimizers.SGD(
        learning_rate, gradient_accumulation_steps=accumulation), "mse")
    return model


@pytest.mark.parametrize("rate", ["schedule", "float"])
def test_the_ramp_is_the_rate_that_trains(rate):
    """Read from the weights: each update moves them by the ramp's rate,
    also on a model whose train step was traced with its own schedule."""
    x, y = linear_data()
    model = linear_model(OneCycle(0.05, 100) if rate == "schedule" else 0.01)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    finder, record = LRFinder(1e-4, 1e-1, num_steps=12), RecordKernel()
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
              callbacks=[finder, record])
    updates = applied_updates(record.kernels, x, y, 32)
    assert [(i, n) for i, n, _ in updates] == [(i, 1) for i in range(12)]
    np.testing.assert_allclose([lr for _, _, lr in updates],
                               finder.result.lrs, rtol=1e-3)


@pytest.mark.parametrize("rate", ["schedule", "float"])
def test_find_lr_trains_at_the_ramp_after_a_fit(rate):
    """Each batch's loss, replayed in NumPy at the recorded rates. On jax,
    `find_lr` kept the model's traced train step alive while it had it
    traced again for the ramp, and jax reused that trace: a fitted model
    with a schedule trained at its own rates, paired with the ramp's."""
    x, y = linear_data()
    model = linear_model(OneCycle(0.05, 100) if rate == "schedule" else 0.01)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    w = to_numpy(model.layers[-1].kernel).astype("float64")
    result = find_lr(model, tf.data.Dataset.from_tensor_slices(
        (x, y)).batch(32), start_lr=1e-4, end_lr=1e-1, num_steps=12)
    expected = []
    for i, lr in enumerate(result.lrs):
        start = i % (len(x) // 32) * 32
        xb, yb = x[start:start + 32], y[start:start + 32]
        residual = xb @ w - yb
        expected.append(np.mean(residual ** 2))
        w = w - lr * 2.0 / 32 * xb.T @ residual
    assert len(result.lrs) == 12
    np.testing.assert_allclose(result.losses, expected, rtol=1e-4)


@pytest.mark.parametrize("rate", ["schedule", "float"])
def test_with_gradient_accumulation_in_the_same_fit(rate):
    """GradientAccumulation makes the schedules count updates, and moves
    the step count when its number changes (16 -> 32 here, at epoch 1):
    each update is still applied at the ramp's rate of the batch that
    completes it, and everything comes back, the accumulation setting
    included."""
    x, y = linear_data()
    model = linear_model(OneCycle(0.05, 100) if rate == "schedule" else 0.01,
                         accumulation=2)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    before = variables(model)
    finder, record = LRFinder(1e-4, 1e-1, num_steps=20), RecordKernel()
    model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0,
              callbacks=[finder, GradientAccumulation({0: 2, 1: 4}),
                         record])
    assert len(finder.result.lrs) == 20  # past the change, no divergence
    updates = applied_updates(record.kernels, x, y, 32)
    # 2 batches per update in epoch 0 (batches 0-7), 4 from epoch 1 on.
    assert [(i, n) for i, n, _ in updates] == [
        (1, 2), (3, 2), (5, 2), (7, 2), (11, 4), (15, 4), (19, 4)]
    np.testing.assert_allclose(
        [lr for _, _, lr in updates],
        [finder.result.lrs[i] for i, _, _ in updates], rtol=1e-3)
    for got, want in zip(variables(model), before):
        np.testing.assert_array_equal(got, want)
    assert model.optimizer.gradient_accumulation_steps == 2
    assert not hasattr(model.optimizer, "_kerastrain_accumulation_steps")
    assert isinstance(model.optimizer._learning_rate,
                      OneCycle if rate == "schedule" else keras.Variable)


@pytest.mark.parametrize("rate", ["schedule", "float"])
def test_updates_a_loss_scale_skips_leave_the_ramp_on_its_batches(rate):
    """A LossScaleOptimizer whose scale starts near float32's maximum
    skips the first updates (their gradients overflow) and halves the
    scale each time: every update that is applied still moves the weights
    by the recorded rate of its batch, as in fastai (whose schedule
    advances per batch while AMP skips), and everything comes back."""
    x, y = linear_data()
    x, y = 100 * x, 100 * y  # losses of about 1e5, stable below 1e-4
    model = linear_model(OneCycle(1e-5, 100) if rate == "schedule"
                         else 1e-6)
    model.compile(keras.optimizers.LossScaleOptimizer(
        model.optimizer, initial_scale=2.0 ** 118), "mse")
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    model.optimizer.dynamic_scale.assign(2.0 ** 118)
    before = variables(model)
    finder = LRFinder(1e-8, 1e-5, num_steps=12, diverge_factor=float("inf"))
    record = RecordKernel()
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
              callbacks=[finder, record])
    updates = applied_updates(record.kernels, x, y, 32, accumulate=False)
    skipped = 12 - len(updates)
    # The first few, until the scale fits (and maybe one more later).
    assert 3 <= skipped <= 10
    assert updates[0][0] >= 3 and all(n == 1 for _, n, _ in updates)
    np.testing.assert_allclose(
        [lr for _, _, lr in updates],
        [finder.result.lrs[i] for i, _, _ in updates], rtol=1e-3)
    np.testing.assert_allclose(finder.result.lrs,
                               np.geomspace(1e-8, 1e-5, 12), rtol=1e-12)
    for got, want in zip(variables(model), before):
        np.testing.assert_array_equal(got, want)


def test_find_lr_runs_one_step_at_a_time_under_steps_per_execution():
    """Compiled with steps_per_execution=4, the model runs the test as one
    compiled with 1 does (every step's rate and loss), then gets 4 back."""
    x, y = data()
    results = {}
    for steps in (1, 4):
        model = make_model(keras.optimizers.SGD(0.01), dropout=0.0)
        model.compile(model.optimizer, model.loss,
                      steps_per_execution=steps)
        results[steps] = find_lr(model, x, y, num_steps=20,
                                 diverge_factor=float("inf"))
    assert model.steps_per_execution == 4
    np.testing.assert_allclose(results[4].lrs, results[1].lrs)
    np.testing.assert_allclose(results[4].losses, results[1].losses,
                               rtol=1e-5)
    # The callback alone refuses it; Keras on torch refuses
    # steps_per_execution > 1 in any `fit`, before the callbacks start.
    match = ("must be 1 with the PyTorch backend"
             if keras.backend.backend() == "torch"
             else "LRFinder sets the learning rate before each batch")
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LRFinder()])


def test_a_model_without_input_is_built_on_the_first_batch():
    """On TensorFlow, `fit` builds such a model after the callbacks start;
    find_lr builds it first. Same seed, same initial weights: the same
    curve as the model given an `Input`."""
    x, y = data()
    curves = []
    for layers in ([keras.Input((8,))], []):
        keras.utils.set_random_seed(1)
        model = keras.Sequential(layers + [keras.layers.Dense(4, "relu"),
                                           keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.01),
                      keras.losses.BinaryCrossentropy(from_logits=True))
        curves.append(find_lr(model, x, y, num_steps=15).losses)
        model.fit(x, y, epochs=1, verbose=0)  # and it trains afterwards
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-6)


def test_a_model_trained_without_targets_takes_inputs_alone():
    """A compiled loss under a `compute_loss` that makes its own targets,
    and `add_loss` alone, on arrays and on a dataset of inputs, the model
    built by `find_lr` from such a batch (it took the batch's first row
    for the inputs): the curves of a twin given the targets the model
    makes, and of the same model given an `Input`."""
    x, _ = data()
    inputs = tf.data.Dataset.from_tensor_slices(x).batch(16)

    def curve(kind, x, y=None, built=True, loss="mse"):
        keras.utils.set_random_seed(2)
        layers = [keras.layers.Dense(8)]
        if loss is None:
            layers.append(ActivityLoss())
        model = kind(([keras.Input((8,))] if built else []) + layers)
        model.compile(keras.optimizers.SGD(0.01), loss)
        return find_lr(model, x, y, num_steps=12).losses

    np.testing.assert_allclose(curve(Reconstructs, x),
                               curve(keras.Sequential, x, x), rtol=1e-6)
    np.testing.assert_allclose(
        curve(Reconstructs, inputs, built=False),
        curve(keras.Sequential, tf.data.Dataset.zip((inputs, inputs))),
        rtol=1e-6)
    np.testing.assert_allclose(
        curve(keras.Sequential, inputs, built=False, loss=None),
        curve(keras.Sequential, inputs, loss=None), rtol=1e-6)


def test_the_callback_refuses_a_model_fit_builds_too_late():
    x, y = data()
    model = keras.Sequential([keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    finder = LRFinder(num_steps=5)
    if keras.backend.backend() == "tensorflow":
        with pytest.raises(ValueError, match="built"):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[finder])
    else:  # jax and torch build the model before the callbacks start
        model.fit(x, y, epochs=1, verbose=0, callbacks=[finder])
        assert len(finder.result.lrs) == 5


def test_several_inputs_as_a_list():
    x, y = data()
    a, b = keras.Input((5,)), keras.Input((3,))
    keras.utils.set_random_seed(0)
    model = keras.Model([a, b], keras.layers.Dense(1)(
        keras.layers.Concatenate()([a, b])))
    model.compile(keras.optimizers.SGD(0.01), "mse")
    twin = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    twin.compile(keras.optimizers.SGD(0.01), "mse")
    twin.set_weights(model.get_weights())
    split = find_lr(model, [x[:, :5], x[:, 5:]], y, num_steps=10)
    whole = find_lr(twin, x, y, num_steps=10)
    np.testing.assert_allclose(split.losses, whole.losses, rtol=1e-5)


class BatchesOf(keras.utils.PyDataset):
    """Keras' own batched input, three batches of four."""

    def __init__(self, x):
        super().__init__()
        self.x = x

    def __len__(self):
        return 3

    def __getitem__(self, index):
        rows = self.x[4 * index:4 * index + 4]
        return rows, np.zeros(len(rows))


@pytest.mark.parametrize("x, y, error, match", [
    (np.zeros((100, 8)), np.zeros(120), ValueError, "100 in x, 120 in y"),
    ((row for row in np.zeros((4, 8))), None, TypeError, "x of type gen"),
    (np.zeros((10, 8)), "labels", TypeError, "y of type str"),
    ({"a": np.zeros((10, 8)), "b": np.zeros((9, 8))}, np.zeros(10),
     ValueError, r"\[9, 10\]"),
    # NumPy read its batches as a ragged array and said so.
    (BatchesOf(np.zeros((12, 8))), None, TypeError,
     r"`x` must be a NumPy array.*x of type BatchesOf"),
])
def test_bad_inputs(x, y, error, match):
    model = make_model(keras.optimizers.SGD(0.01))
    with pytest.raises(error, match=match):
        find_lr(model, x, y)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"seed": "a"}, TypeError, "seed"),
    ({"x": np.zeros((0, 8)), "y": np.zeros(0)}, ValueError,
     "at least one sample"),
    ({"x": "dataset", "y": np.zeros(4)}, ValueError, "`y` must be None"),
    # Keras' loss got None as its targets, deep in the first step.
    ({"y": None}, ValueError, r"`y` must hold the targets of `x` for the "
     r"model's compiled loss.*Received: y=None"),
    # The same, deep in the first step, for a dataset of inputs alone.
    ({"x": "inputs", "y": None}, ValueError, r"`x` must give \(inputs, "
     r"targets\) batches for the model's compiled loss.*element_spec"),
])
def test_bad_find_lr_arguments(kwargs, error, match):
    x, y = data()
    arguments = {"x": x, "y": y, **kwargs}
    if isinstance(arguments["x"], str):
        arguments["x"] = tf.data.Dataset.from_tensor_slices(
            x if arguments["x"] == "inputs" else (x, y)).batch(8)
    with pytest.raises(error, match=match):
        find_lr(make_model(keras.optimizers.SGD(0.01)), **arguments)


def test_each_loss_is_its_batch_not_kerass_running_mean():
    """Step 0's loss is the first batch's at the initial weights, step 1's
    the second batch's after one update: recomputed in NumPy."""
    x, y = data()
    model = make_model(keras.optimizers.SGD(0.01), dropout=0.0)
    initial = model.get_weights()
    result = find_lr(model, x, y, batch_size=32, num_steps=10, seed=5)
    order = np.random.default_rng(5).permutation(len(x))
    probe = make_model(keras.optimizers.SGD(result.lrs[0]), dropout=0.0)
    probe.set_weights(initial)

    def batch_loss(rows):
        logits = to_numpy(probe(x[rows], training=True))[:, 0]
        return np.mean(np.maximum(logits, 0) - logits * y[rows]
                       + np.log1p(np.exp(-np.abs(logits))))

    assert result.losses[0] == pytest.approx(batch_loss(order[:32]),
                                             rel=1e-5)
    probe.fit(x[order[:32]], y[order[:32]], batch_size=32, verbose=0)
    assert result.losses[1] == pytest.approx(batch_loss(order[32:64]),
                                             rel=1e-4)


def test_a_fit_too_short_for_the_ramp_warns():
    """8 batches of the 20 asked for, no divergence: the curve stops at
    1e-4 * 1000 ** (7 / 19), and the warning says so; a fit long enough
    does not warn."""
    x, y = data()
    model = make_model(keras.optimizers.SGD(0.01))
    finder = LRFinder(1e-4, 1e-1, num_steps=20)
    with pytest.warns(UserWarning, match=(
            r"ended after 8 of num_steps=20 batches, before the loss "
            r"diverged: the rate reached only 0\.00127 of end_lr=0\.1")):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0,
                  callbacks=[finder])
    assert len(finder.result.lrs) == 8
    assert finder.result.lrs[-1] == pytest.approx(1e-4 * 1000 ** (7 / 19))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="LRFinder")
        model.fit(x, y, batch_size=32, epochs=3, verbose=0,
                  callbacks=[LRFinder(1e-4, 1e-1, num_steps=20)])


def test_stops_when_the_loss_diverges():
    x, y = data()
    model = make_model(keras.optimizers.SGD(0.01))
    with warnings.catch_warnings():  # stopped early, but not short
        warnings.filterwarnings("error", message="LRFinder")
        result = find_lr(model, x, y, start_lr=1e-4, end_lr=1e4,
                         num_steps=100)
    assert len(result.lrs) < 100
    last = result.smoothed_losses[-1]
    assert not np.isfinite(last) or last > 4 * np.min(
        result.smoothed_losses[:-1])
    # An infinite factor stops only at a NaN loss: it runs further.
    model = make_model(keras.optimizers.SGD(0.01))
    unbounded = find_lr(model, x, y, start_lr=1e-4, end_lr=1e4,
                        num_steps=100, diverge_factor=float("inf"))
    assert len(unbounded.lrs) > len(result.lrs)
    assert np.isfinite(unbounded.smoothed_losses[:-1]).all()


def test_a_negative_loss_stops_at_the_same_rise_above_its_minimum():
    # Keras' cosine similarity loss is negative, and 4x a negative minimum
    # lies below it: the test stopped at its first step.
    x, y = data()

    def shifted(y_true, y_pred):
        return keras.losses.binary_crossentropy(
            y_true, y_pred, from_logits=True) - 10.0

    def model():
        m = make_model()
        m.compile(keras.optimizers.SGD(0.01), shifted)
        return m

    calm = find_lr(model(), x, y[:, None], start_lr=1e-5, end_lr=1e-1,
                   num_steps=40)
    assert len(calm.lrs) == 40
    assert max(calm.smoothed_losses) < 0
    wild = find_lr(model(), x, y[:, None], start_lr=1e-4, end_lr=1e4,
                   num_steps=100)
    assert len(wild.lrs) < 100
    last, best = wild.smoothed_losses[-1], min(wild.smoothed_losses[:-1])
    assert not np.isfinite(last) or last - best > 3 * abs(best)


def test_the_suggestion_is_useful_on_standardized_tabular_data():
    features, labels = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(features).astype("float32")
    y = labels.astype("float32")

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((30,)),
                              keras.layers.Dense(32, "relu"),
                              keras.layers.Dense(1)])
        m.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.BinaryCrossentropy(from_logits=True))
        return m

    suggested = find_lr(model(), x, y, batch_size=32).suggestion()
    losses = {}
    for lr in (suggested, suggested / 100):
        m = model()
        m.optimizer.learning_rate = lr
        losses[lr] = m.fit(x, y, batch_size=32, epochs=1, shuffle=False,
                           verbose=0).history["loss"][-1]
    assert np.isfinite(losses[suggested])
    assert losses[suggested] < losses[suggested / 100]
    assert losses[suggested] < 0.69  # below chance: it did not diverge


def fastai_valley(lrs, losses, num_it):
    """fastai's `valley` (fastai/callback/schedule.py), verbatim but for
    the return value; the `max_end` update sits inside the `j` loop, as
    there."""
    n = len(losses)
    max_start, max_end = 0, 0

    # find the longest valley
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]

    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)

    return float(lrs[idx])


def fastai_steep(lrs, losses, num_it):
    """fastai's `steep`, in NumPy: the steepest slope per log rate."""
    grads = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    return float(lrs[grads.argmin()])


def fastai_minimum(lrs, losses, num_it):
    """fastai's `minimum`: a tenth of the rate at the lowest loss."""
    return float(lrs[losses.argmin()]) / 10


FASTAI = {"valley": fastai_valley, "steep": fastai_steep,
          "minimum": fastai_minimum}


def fastai_suggestion(lrs, losses, num_it=100, method="valley"):
    """fastai's `lr_find` window: skip `num_it // 10` steps at the start
    and 5 at the end, and stop before the first NaN."""
    lrs, losses = lrs[num_it // 10:-5], losses[num_it // 10:-5]
    nan = np.flatnonzero(np.isnan(losses))
    if len(nan):
        lrs, losses = lrs[:nan[0]], losses[:nan[0]]
    return FASTAI[method](lrs, losses, num_it)


def known_curve():
    lrs = np.geomspace(1e-6, 1.0, 100)
    log = np.log10(lrs)
    # Flat, then falling fastest at 1e-3, bottoming out at 1e-1, then up.
    losses = 2 - np.tanh(log + 3) + np.where(log > -1, 50 * (log + 1) ** 2,
                                             0)
    return lrs, losses


@pytest.mark.parametrize("stopped_at", [None, 75])
@pytest.mark.parametrize("seed", [None, 0, 1, 2, 3])
def test_valley_is_fastais(seed, stopped_at):
    """Also when the test stopped early (at divergence): fastai's window
    skips a tenth of the steps asked for, not of those recorded."""
    lrs, losses = known_curve()
    if seed is not None:
        # Noise gives many competing decreasing runs; seed 3 ends in NaN.
        rng = np.random.default_rng(seed)
        losses = losses + rng.normal(0, 0.05, losses.shape)
        if seed == 3:
            losses[70:] = np.nan
    lrs, losses = lrs[:stopped_at], losses[:stopped_at]
    result = LRFinderResult(lrs, losses, losses, num_steps=100)
    assert result.suggestion("valley") == fastai_suggestion(lrs, losses,
                                                            num_it=100)


def test_valley_stays_in_a_stretch_of_two_from_the_first_step():
    """A short test whose loss falls once, then climbs (a divergence):
    fastai's index is -1 there, which Python read as the last rate, where
    the loss is 4.5x its minimum. The suggestion must lie in the stretch
    where the loss falls."""
    lrs = np.geomspace(1e-3, 1.0, 6)
    losses = np.array([3.0, 2.0, 2.5, 4.0, 6.0, 9.0])
    assert fastai_valley(lrs, losses, 6) == lrs[-1]  # it matters
    result = LRFinderResult(lrs, losses, losses, num_steps=6)
    assert result.suggestion("valley") in lrs[:2]


@pytest.mark.parametrize("method", ["steep", "minimum"])
@pytest.mark.parametrize("stopped_at", [None, 75])
@pytest.mark.parametrize("seed", [None, 0, 1, 3])
def test_steep_and_minimum_are_fastais(method, seed, stopped_at):
    # One grid step is a factor of 1.15: an index off by one fails here.
    lrs, losses = known_curve()
    if seed is not None:
        losses = losses + np.random.default_rng(seed).normal(
            0, 0.05, losses.shape)
        if seed == 3:
            losses[70:] = np.nan
    lrs, losses = lrs[:stopped_at], losses[:stopped_at]
    result = LRFinderResult(lrs, losses, losses, num_steps=100)
    assert result.suggestion(method) == fastai_suggestion(
        lrs, losses, num_it=100, method=method)


def test_suggestions_on_a_known_curve(tmp_path):
    lrs, losses = known_curve()
    result = LRFinderResult(lrs, losses, losses)
    # The closed form's places, within half a grid step (a factor 1.07).
    assert result.suggestion("steep") == pytest.approx(1e-3, rel=0.07)
    assert result.suggestion("minimum") == pytest.approx(1e-2, rel=0.07)
    # The longest decreasing run is the window's first 73 points, up to
    # the minimum; fastai's start is one before (-1), so the index is
    # -1 + 24 + 12 = 35 of the window, 1e-6 * 10 ** (45 / 16.5).
    assert result.suggestion("valley") == pytest.approx(5.34e-4, rel=1e-2)
    figure = result.plot(str(tmp_path / "lr.png"))
    assert (tmp_path / "lr.png").exists()
    result.plot(str(tmp_path / "curve"))  # matplotlib's default: PNG
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert len(figure.axes[0].lines) == 5  # two curves, three suggestions
    with pytest.raises(ValueError, match="method"):
        result.suggestion("slide")


def test_a_result_written_as_json_reads_back_whole(tmp_path):
    """A range test stopped by a NaN loss: JSON writes it as null, and it
    reads back as NaN, the suggestions and the steps asked for the
    same."""
    import json

    from kerastrain.io import write_json

    lrs, losses = known_curve()
    losses = losses.copy()
    losses[-3:] = np.nan
    result = LRFinderResult(lrs, losses, losses * 1.5, num_steps=150)
    write_json(result.get_config(), str(tmp_path / "result.json"))
    with open(tmp_path / "result.json") as f:
        again = LRFinderResult.from_config(json.load(f))
    for name in ("lrs", "losses", "smoothed_losses"):
        np.testing.assert_array_equal(getattr(again, name),
                                      getattr(result, name))
    assert again.num_steps == 150
    assert [again.suggestion(m) for m in ("valley", "steep", "minimum")
            ] == [result.suggestion(m)
                  for m in ("valley", "steep", "minimum")]


@pytest.mark.parametrize("change, match", [
    # Suggestions read losses at the rates' indices: silently wrong.
    (lambda lrs, losses: (lrs[:10], losses, losses, None),
     r"equal length.*lrs=\(10,\), losses=\(100,\)"),
    (lambda lrs, losses: (lrs, losses, losses[:-1], None),
     "smoothed_losses=\\(99,\\)"),
    (lambda lrs, losses: (-lrs, losses, losses, None), "`lrs` must hold"),
    (lambda lrs, losses: (np.where(lrs > 0.5, np.nan, lrs), losses, losses,
                          None), "`lrs` must hold"),
    # Listed high to low, the valley fell past the minimum; a repeated
    # rate was an infinite slope, which "steep" picked.
    (lambda lrs, losses: (lrs[::-1], losses[::-1], losses[::-1], None),
     "`lrs` must increase strictly"),
    (lambda lrs, losses: (np.where(np.arange(100) == 50, lrs[49], lrs),
                          losses, losses, None),
     "`lrs` must increase strictly"),
    (lambda lrs, losses: (lrs, losses, losses, -3), "`num_steps`.* >= 100"),
    (lambda lrs, losses: (lrs, losses, losses, 99), "`num_steps`.* >= 100"),
])
def test_a_result_refuses_a_curve_that_does_not_hold_together(change,
                                                              match):
    lrs, losses = known_curve()
    *curve, num_steps = change(lrs, losses)
    with pytest.raises(ValueError, match=match):
        LRFinderResult(*curve, num_steps=num_steps)


@pytest.mark.parametrize("name, value", [
    ("lrs", "abc"), ("losses", {"a": 1}),
    ("smoothed_losses", [[1.0], [1.0, 2.0]])])
def test_a_result_names_a_curve_that_is_no_numbers(name, value):
    # NumPy's errors ("could not convert string to float", "setting an
    # array element with a sequence") named no argument.
    lrs, losses = known_curve()
    curves = dict(lrs=lrs, losses=losses, smoothed_losses=losses)
    with pytest.raises(TypeError, match=rf"`{name}` must be a sequence of "
                       rf"numbers, one per step. Received: {name}="):
        LRFinderResult(**{**curves, name: value})
    # A NaN loss (a test that diverged) is a number.
    assert np.isnan(LRFinderResult(lrs, losses * np.nan, losses).losses).all()


def test_a_test_stopped_by_an_exception_is_put_back_by_the_next_fit():
    # Keras skips `on_train_end` when `fit` raises: the next `fit` with the
    # callback must not snapshot the half-tested model as the one to
    # restore.
    x, y = data()
    model = make_model(keras.optimizers.SGD(0.01))
    before = variables(model)
    finder = LRFinder(1e-4, 1.0, num_steps=20)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
                  callbacks=[finder, CrashAt(0, batch=5)])
    assert any(not np.array_equal(a, b)
               for a, b in zip(variables(model), before))
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[finder])
    for got, want in zip(variables(model), before):
        np.testing.assert_array_equal(got, want)


def test_the_callback_survives_deepcopy_and_restores():
    x, y = data()
    model = make_model(keras.optimizers.SGD(0.01))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = variables(model)
    finder = copy.deepcopy(LRFinder(num_steps=15))
    model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[finder])
    assert 2 < len(finder.result.lrs) <= 15
    for got, want in zip(variables(model), before):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kwargs, match", [
    ({"start_lr": 0.0}, "start_lr"),
    ({"start_lr": 1.0, "end_lr": 0.5}, "end_lr"),
    ({"num_steps": 1}, "num_steps"),
    ({"num_steps": 2**40}, r"`num_steps` must be at most 2\*\*31 - 1"),
    ({"beta": 1.0}, "beta"),
    ({"diverge_factor": 1.0}, "diverge_factor"),
    ({"diverge_factor": float("nan")}, "diverge_factor"),
    # The ramp's schedule computes in float32: they failed inside `fit`,
    # and only for an optimizer with a schedule, naming PhaseSchedule's
    # `values`.
    ({"start_lr": 1e-30, "end_lr": 1e10}, r"`start_lr` .*`end_lr` must "
     r"span a ratio float32 can hold.*start_lr=1e-30"),
    ({"start_lr": 1e-40}, r"`start_lr` \(at least 1\.175e-38"),
    ({"end_lr": 1e39}, "`end_lr` must be a rate that float32 can hold"),
    # It named `end_lr`, which is in range.
    ({"start_lr": 1e40}, r"`start_lr` must be a rate that float32 can "
     r"hold.*start_lr=1e\+40"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LRFinder(**kwargs)
    with pytest.raises(TypeError, match="restore"):
        LRFinder(restore="no")  # would read as True


def test_needs_a_compiled_model():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="compiled"):
        find_lr(model, *data())


@pytest.mark.parametrize("learning_rate", [0.02, OneCycle(0.1, 50)])
def test_without_restore_only_the_learning_rate_comes_back(learning_rate):
    x, y = data()
    model = make_model(keras.optimizers.SGD(learning_rate))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    kernel = to_numpy(model.weights[0]).copy()
    finder = LRFinder(1e-4, 1e-2, num_steps=10, restore=False)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[finder])
    assert not np.array_equal(to_numpy(model.weights[0]), kernel)
    if isinstance(learning_rate, float):
        assert float(to_numpy(model.optimizer.learning_rate)) == \
            pytest.approx(0.02)
    else:
        assert model.optimizer._learning_rate is learning_rate


@pytest.mark.parametrize("recorded", [0, 1, 3, 17])
def test_repr_of_a_test_stopped_too_early_to_suggest(recorded):
    """17 of 100 steps asked for leave 2 inside fastai's window (from step
    10 to 5 before the end), too few: no suggestion, so the repr names
    none instead of raising."""
    lrs, losses = known_curve()
    result = LRFinderResult(lrs[:recorded], losses[:recorded],
                            losses[:recorded], num_steps=100)
    with pytest.raises(ValueError, match="too few to suggest"):
        result.suggestion()
    assert repr(result).startswith(f"LRFinderResult({recorded} steps")
    assert "valley" not in repr(result)
    result.plot()  # the curve alone
    full = LRFinderResult(lrs, losses, losses)
    assert f"valley {full.suggestion():.2g}" in repr(full)


def test_a_numpy_batch_size_is_taken():
    """It was checked, then handed on as NumPy's int64, which torch's
    data loader refused."""
    x, y = data()
    result = find_lr(make_model(keras.optimizers.SGD(0.01)), x, y,
                     batch_size=np.int64(8), num_steps=5)
    assert len(result.lrs) == 5
