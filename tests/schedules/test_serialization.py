"""Every schedule survives `get_config`, Keras' (de)serialization and a
`.keras` file, inside the optimizer of a saved model; what every schedule
shares besides: its `name` and, where it has one, its `value_range`."""

import keras
import numpy as np
import pytest

from kerastrain import optimizers, schedules
from tests.optimizers import linear
from tests.optimizers.test_sgd import keras_sgd_in_numpy
from tests.support import to_numpy

SCHEDULES = [
    schedules.OneCycle(0.1, 50, three_phase=True, anneal_strategy="linear"),
    schedules.OneCycle(0.1, 50).momentum_schedule,
    schedules.CyclicLR(0.01, 0.1, 5, mode="exp_range", gamma=0.99),
    # Highest at step 20 of its first climb of 50.
    schedules.CyclicLR(0.01, 0.1, 50, mode="exp_range", gamma=0.95),
    schedules.Warmup(schedules.CosineDecay(0.1, 40), 10, start_lr=0.01),
    schedules.Warmup(schedules.CyclicLR(0.01, 0.1, 5), 3),
    schedules.Warmup(0.05, 5),
    schedules.StepDecay(0.1, 7, gamma=0.5),
    schedules.MultiStepDecay(0.1, [5, 20, 30], gamma=0.3),
    schedules.LinearDecay(0.1, 30, end_factor=0.05),
    schedules.PhaseSchedule([0, 5, 50], [1e-3, 0.1, 1e-4], ["exp", "cos"]),
]
IDS = [type(s).__name__ for s in SCHEDULES]
STEPS = np.arange(60)


def values(schedule):
    return schedules.schedule_values(schedule, len(STEPS))


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_round_trip_through_keras_serialization(schedule):
    config = keras.optimizers.schedules.serialize(schedule)
    assert config["registered_name"].startswith("kerastrain>") or (
        config["module"].startswith("keras"))
    restored = keras.optimizers.schedules.deserialize(config)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    np.testing.assert_array_equal(values(restored), values(schedule))


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_runs_inside_the_compiled_train_step(schedule, tmp_path):
    """The rate the optimizer used at each step is the schedule's (the
    weights are NumPy's replay of SGD at the schedule's values); it is
    kept in the model's `.keras` file, with the update count."""
    model = keras.Sequential([keras.Input((linear.D,)),
                              keras.layers.Dense(linear.UNITS)])
    model.set_weights(linear.initial_weights())
    model.compile(optimizers.SGD(schedule, momentum=0.5), "mse")
    x, y = linear.data()
    model.fit(x, y, batch_size=linear.N, epochs=4, shuffle=False,
              verbose=0)  # 4 steps
    expected = linear.numpy_fit(keras_sgd_in_numpy(
        values(schedule), [0.5] * len(STEPS), nesterov=False), 4)
    for got, want in zip(model.weights, expected):
        np.testing.assert_allclose(to_numpy(got), want, rtol=1e-5,
                                   atol=1e-6)
    optimizer = model.optimizer
    np.testing.assert_allclose(to_numpy(optimizer.learning_rate),
                               values(schedule)[4], rtol=1e-6)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path).optimizer
    assert int(to_numpy(loaded.iterations)) == 4
    np.testing.assert_allclose(to_numpy(loaded.learning_rate),
                               values(schedule)[4], rtol=1e-6)
    assert loaded.get_config() == optimizer.get_config()


def test_optimizers_with_scheduled_momentum_reload(tmp_path):
    one_cycle = schedules.OneCycle(0.1, 20)
    for optimizer in (
            optimizers.SGD(one_cycle, one_cycle.momentum_schedule),
            optimizers.AdamW(one_cycle, beta_1=one_cycle.momentum_schedule),
            optimizers.LARS(one_cycle, one_cycle.momentum_schedule, 1e-4)):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer, "mse")
        model.fit(np.ones((4, 2)), np.zeros((4, 1)), epochs=2, verbose=0)
        path = str(tmp_path / f"{type(optimizer).__name__}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path).optimizer
        assert type(loaded) is type(optimizer)
        assert loaded.get_config() == optimizer.get_config()


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_value_range_bounds_every_value(schedule):
    bounds = getattr(schedule, "value_range", None)
    if isinstance(schedule, schedules.Warmup) and isinstance(
            schedule.schedule, schedules.CosineDecay):
        assert bounds is None  # Keras' schedules do not say theirs
        return
    low, high = bounds
    # Past the end too, and through many cycles of the cyclic ones.
    seen = schedules.schedule_values(schedule, 500)
    assert low - 1e-7 <= seen.min() and seen.max() <= high + 1e-7
    # The bounds are reached, not merely bounds: the checks that use them
    # refuse a schedule only for values it takes.
    np.testing.assert_allclose([seen.min(), seen.max()], [low, high],
                               rtol=1e-5, atol=1e-7)


def test_a_warmup_of_no_steps_takes_the_range_of_its_schedule():
    """`start_lr` is never taken: (0.85, 2.0) was said of a momentum that
    stays in [0.85, 0.95], and the optimizers refused it as above 1."""
    momentum = schedules.OneCycle(0.1, 100).momentum_schedule
    warmup = schedules.Warmup(momentum, 0, start_lr=2.0)
    seen = schedules.schedule_values(warmup, 100)
    np.testing.assert_allclose(warmup.value_range,
                               [seen.min(), seen.max()], rtol=1e-6)
    optimizers.SGD(0.1, momentum=warmup)  # in [0, 1]: taken


@pytest.mark.parametrize("make", [
    lambda name: schedules.PhaseSchedule([0, 5], [0.1, 0.2], name=name),
    lambda name: schedules.OneCycle(0.1, 10, name=name),
    lambda name: schedules.CyclicLR(0.01, 0.1, 5, name=name),
    lambda name: schedules.Warmup(0.1, 5, name=name),
    lambda name: schedules.StepDecay(0.1, 5, name=name),
    lambda name: schedules.MultiStepDecay(0.1, [5], name=name),
    lambda name: schedules.LinearDecay(0.1, 5, name=name),
])
@pytest.mark.parametrize("name", ["one/cycle", None, 3, "one cycle",
                                  "lr(1)", "\u00e9", "a>", "a>_b", "a>>b"])
def test_a_name_keras_scopes_refuse_is_refused_at_construction(make, name):
    # Keras' or TensorFlow's names refuse it only inside `fit`.
    with pytest.raises(ValueError, match=r"`name` must be a string of "
                       r"letters, digits and `_ \. -`, with `>` only"):
        make(name)


@pytest.mark.parametrize("make", [
    lambda name: schedules.OneCycle(0.1, 10, name=name),
    lambda name: schedules.StepDecay(0.1, 5, name=name),
])
@pytest.mark.parametrize("name", ["0.lr-v2>a_b", "_lr", "-lr", ">a",
                                  "a>.b", ""])
def test_every_name_that_is_taken_trains(make, name, tmp_path):
    # Each of these trains on TensorFlow too (the first character is free
    # in its nested scopes): none may be refused, nor a file holding it.
    schedule = make(name)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizers.SGD(schedule, 0.9), "mse")
    model.fit(np.ones((4, 2)), np.zeros((4, 1)), batch_size=2, verbose=0)
    assert int(to_numpy(model.optimizer.iterations)) == 2
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    config = loaded.optimizer.get_config()["learning_rate"]
    assert config["config"]["name"] == name
    assert int(to_numpy(loaded.optimizer.iterations)) == 2
