import keras
import numpy as np
import pytest

from kerastrain.optimizers import LARS, SGD, AdamW
from kerastrain.optimizers.scheduled import schedules_count_updates
from kerastrain.schedules import OneCycle
from tests.optimizers import linear
from tests.support import run_python

OPTIMIZERS = [SGD, AdamW, LARS]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("learning_rate, error", [
    (float("nan"), ValueError), (float("inf"), ValueError),
    (-0.1, ValueError), (True, TypeError),
    # inf once Keras stores it in a float32 variable, as the test below
    # shows of Keras' own optimizer.
    (1e39, ValueError)])
def test_a_bad_learning_rate_is_refused_at_construction(optimizer,
                                                        learning_rate, error):
    with pytest.raises(error, match="learning_rate"):
        optimizer(learning_rate)


def test_a_rate_above_float32s_largest_is_inf_in_keras():
    """The premise of refusing 1e39: Keras keeps it as inf."""
    rate = keras.optimizers.SGD(1e39).learning_rate
    assert np.isinf(keras.ops.convert_to_numpy(rate))


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_good_learning_rates_reach_keras(optimizer):
    # An int, a NumPy float and zero are rates Keras takes; so is a
    # schedule.
    for rate in (1, np.float32(0.25), 0.0):
        assert float(optimizer(rate).learning_rate) == float(rate)
    schedule = OneCycle(0.1, 100)
    assert optimizer(schedule)._learning_rate is schedule


def test_a_nan_rate_would_have_trained_the_weights_to_nan():
    # Why the check: Keras itself takes the NaN and trains on it.
    variable = keras.Variable(np.ones(2, "float32"))
    gradient = keras.ops.ones(2)
    keras.optimizers.SGD(float("nan")).apply([gradient], [variable])
    assert np.isnan(keras.ops.convert_to_numpy(variable)).all()


# (optimizer, hyperparameter, its interval's upper end is open)
SCHEDULED = [(SGD, "momentum", False), (LARS, "momentum", False),
             (AdamW, "beta_1", True)]


@pytest.mark.parametrize("optimizer, name, open_top", SCHEDULED)
def test_a_schedule_of_values_outside_the_interval_is_refused(
        optimizer, name, open_top):
    from kerastrain.schedules import (CyclicLR, LinearDecay,
                                      MultiStepDecay, PhaseSchedule,
                                      StepDecay, Warmup)

    inside = PhaseSchedule([0, 5], [0.5, 0.9])
    assert getattr(optimizer(0.1, **{name: inside}), name) is inside
    outside = [PhaseSchedule([0, 5], [-3.0, 0.5]),
               CyclicLR(0.5, 2.0, step_size=3),
               # 0.9 at step 0, 1.0375 at step 2 of its first climb.
               CyclicLR(0.9, 2.0, 4, mode="exp_range", gamma=0.5),
               Warmup(PhaseSchedule([0, 5], [0.9, 0.5]), 2, start_lr=1.5),
               StepDecay(5.0, 10), MultiStepDecay(1.5, [3]),
               LinearDecay(0.5, 10, end_factor=2.5)]
    if open_top:  # 1 itself: Adam's bias correction divides by zero
        outside.append(OneCycle(0.01, 10, max_momentum=1.0)
                       .momentum_schedule)
    for schedule in outside:
        with pytest.raises(ValueError, match=rf"`{name}` must stay in "
                           rf"\[0, 1[\])]: this schedule goes from"):
            optimizer(0.1, **{name: schedule})


@pytest.mark.parametrize("optimizer, name, open_top", SCHEDULED)
def test_a_keras_schedule_is_taken_as_it_is(optimizer, name, open_top):
    # Keras' schedules do not say their range; nothing is evaluated: this
    # one leaves [0, 1] after 10 steps (0.9 * 2 ** (step / 10)), and is
    # neither refused nor called.
    calls = []

    class Counted(keras.optimizers.schedules.ExponentialDecay):
        def __call__(self, step):
            calls.append(step)
            return super().__call__(step)

    decay = Counted(0.9, 10, 2.0)
    assert getattr(optimizer(0.1, **{name: decay}), name) is decay
    assert calls == []


@pytest.mark.parametrize("optimizer, name, open_top", SCHEDULED)
def test_a_callable_that_is_no_schedule_names_both_choices(
        optimizer, name, open_top):
    with pytest.raises(TypeError, match=rf"`{name}` must be a number or a "
                       r"`keras.optimizers.schedules.LearningRateSchedule`"):
        optimizer(0.1, **{name: lambda step: 0.9})


class CountedOneCycle(OneCycle):
    """A one-cycle schedule that counts its evaluations."""

    calls = 0

    def __call__(self, step):
        CountedOneCycle.calls += 1
        return super().__call__(step)


@pytest.mark.parametrize("optimizer, keras_optimizer", [
    (SGD, keras.optimizers.SGD), (AdamW, keras.optimizers.AdamW)])
def test_weight_decay_evaluates_the_schedule_once_per_update(
        optimizer, keras_optimizer):
    """Keras' decoupled decay reads the learning rate once per variable, a
    schedule's whole computation each time (in a traced step, as many
    copies); ours reads it once for the decay, beside the update's own.
    (On torch, Keras swaps its own classes for fused versions that read it
    once; subclasses such as ours take the generic path.)"""
    variables = [keras.Variable(np.ones(2, "float32")) for _ in range(5)]
    grads = [keras.ops.full((2,), 0.5)] * len(variables)
    counts = {}
    for make in (optimizer, keras_optimizer):
        instance = make(CountedOneCycle(0.1, 10), weight_decay=0.01)
        instance.build(variables)
        CountedOneCycle.calls = 0
        instance.apply(grads, variables)
        counts[make] = CountedOneCycle.calls
    fused = keras.backend.backend() == "torch"
    assert counts == {keras_optimizer: 2 if fused else 1 + len(variables),
                      optimizer: 2}


@pytest.mark.parametrize("optimizer, keras_optimizer", [
    (SGD, keras.optimizers.SGD), (AdamW, keras.optimizers.AdamW)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.02])
def test_weight_decay_under_a_schedule_is_kerass_exactly(
        optimizer, keras_optimizer, weight_decay):
    """The same updates as Keras' optimizer, zero decay (which ours skips
    where Keras subtracts `w * 0 * lr`) included."""
    ours = linear.fit(optimizer(OneCycle(0.05, 10),
                                weight_decay=weight_decay), 10)
    built_in = linear.fit(keras_optimizer(OneCycle(0.05, 10),
                                          weight_decay=weight_decay), 10)
    linear.assert_same_as_keras_built_in(ours, built_in)
    # The decay moved the weights.
    without = linear.fit(optimizer(OneCycle(0.05, 10), weight_decay=0.0),
                         10)
    assert (np.abs(without[0] - built_in[0]).max() > 1e-6) == (
        weight_decay > 0)


@pytest.mark.parametrize("counts_updates", [False, True])
def test_weight_decay_leaves_the_rate_as_it_found_it(counts_updates):
    """The decay reads the rate once through a stand-in for Keras'
    `_get_current_learning_rate`; after the update the optimizer reads it
    as before: Keras' own method, or the one `schedules_count_updates`
    set, which then still counts applied updates."""
    variables = [keras.Variable(np.ones(2, "float32")) for _ in range(3)]
    grads = [keras.ops.full((2,), 0.5)] * len(variables)
    one_cycle = OneCycle(0.1, 10)
    optimizer = SGD(one_cycle, 0.9, weight_decay=0.01,
                    gradient_accumulation_steps=2)
    if counts_updates:
        schedules_count_updates(optimizer)
    before = vars(optimizer).get("_get_current_learning_rate")
    optimizer.build(variables)
    for _ in range(4):  # two updates of two micro-batches
        optimizer.apply(grads, variables)
    assert vars(optimizer).get("_get_current_learning_rate") is before
    step = 2 if counts_updates else 4
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(optimizer.learning_rate),
        keras.ops.convert_to_numpy(one_cycle(step)), rtol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="tf.distribute is TensorFlow's")
def test_under_a_mirrored_strategy_the_schedule_goes_on():
    """Two replicas (two logical CPUs, set before TensorFlow starts, hence
    a subprocess) each reach the decay before their merged update: the
    rate read afterwards is the schedule's at the step reached, not a
    replica's stand-in (a tensor of the traced step)."""
    out = run_python("tensorflow", """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from kerastrain.optimizers import SGD
from kerastrain.schedules import OneCycle
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = SGD(OneCycle(0.1, 20), 0.9, weight_decay=0.01)
    model.compile(optimizer, "mse")
rng = np.random.default_rng(0)
model.fit(rng.random((32, 3), "float32"), rng.random((32, 2), "float32"),
          batch_size=8, verbose=0)
step = int(keras.ops.convert_to_numpy(optimizer.iterations))
rate = keras.ops.convert_to_numpy(optimizer.learning_rate)
print(step, float(rate), "_get_current_learning_rate" in vars(optimizer))
""")
    step, rate, left = out.split()[-3:]
    assert step == "4" and left == "False"
    assert float(rate) == pytest.approx(float(OneCycle(0.1, 20)(4)),
                                        rel=1e-6)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("steps, error", [
    (2.5, TypeError), (True, TypeError), (1, ValueError),
    # Past the int32 step count: failed inside the first step.
    (2**40, ValueError)])
def test_a_bad_accumulation_count_is_refused_at_construction(
        optimizer, steps, error):
    """Keras checks only `>= 2`: 2.5 failed inside TensorFlow's step, and
    on JAX and torch updated the weights at batches 4 and 9 of 10."""
    with pytest.raises(error, match="gradient_accumulation_steps"):
        optimizer(0.1, gradient_accumulation_steps=steps)
    taken = optimizer(0.1, gradient_accumulation_steps=np.int64(3))
    assert taken.gradient_accumulation_steps == 3
    # Keras reads 0 as no accumulation, and saves it so.
    assert not optimizer(0.1, gradient_accumulation_steps=0
                         ).gradient_accumulation_steps


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name", ["clipnorm", "clipvalue", "global_clipnorm",
                                  "loss_scale_factor"])
@pytest.mark.parametrize("value, error", [
    (float("inf"), ValueError), (float("nan"), ValueError),
    (0.0, ValueError), (-1.0, ValueError), (1e39, ValueError),
    ("abc", TypeError)])
def test_a_bad_clip_or_loss_scale_is_refused_at_construction(
        optimizer, name, value, error):
    """Keras takes them unchecked: inf or 0 trains the weights to NaN (or
    clips every gradient to 0), a negative clip turns clipping off, a
    string fails inside the first step."""
    with pytest.raises(error, match=rf"`{name}`"):
        optimizer(0.1, **{name: value})


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("kwargs, error, name", [
    # A string read as True: the weights were averaged.
    ({"use_ema": "no"}, TypeError, "use_ema"),
    # NaN passed Keras' range check: every weight NaN at the end of fit.
    ({"use_ema": True, "ema_momentum": float("nan")}, ValueError,
     "ema_momentum"),
    ({"ema_momentum": 1.5}, ValueError, "ema_momentum"),
    ({"ema_momentum": None}, TypeError, "ema_momentum"),
    ({"use_ema": True, "ema_overwrite_frequency": 2.5}, TypeError,
     "ema_overwrite_frequency"),
    ({"use_ema": True, "ema_overwrite_frequency": True}, TypeError,
     "ema_overwrite_frequency"),
    ({"use_ema": True, "ema_overwrite_frequency": 0}, ValueError,
     "ema_overwrite_frequency"),
])
def test_bad_moving_average_arguments_are_refused_at_construction(
        optimizer, kwargs, error, name):
    with pytest.raises(error, match=rf"`{name}`"):
        optimizer(0.1, **kwargs)


def test_a_moving_average_that_is_taken_averages_as_keras_does():
    """Two steps and the end of training (`finalize_variable_values`):
    the weight is the moving average Keras' SGD makes of the same
    arguments, which the plain weight is not."""
    def averaged(optimizer):
        weight = keras.Variable(np.zeros(2, "float32"))
        for gradient in ([6.0, 8.0], [1.0, -2.0]):
            optimizer.apply([keras.ops.convert_to_tensor(
                np.array(gradient, "float32"))], [weight])
        optimizer.finalize_variable_values([weight])
        return keras.ops.convert_to_numpy(weight)

    expected = averaged(keras.optimizers.SGD(
        0.1, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=5))
    # NumPy numbers taken too (Keras' own refuses an np.int64 frequency).
    np.testing.assert_allclose(averaged(SGD(
        0.1, use_ema=True, ema_momentum=np.float32(0.5),
        ema_overwrite_frequency=np.int64(5))), expected, rtol=1e-6)
    assert not np.allclose(averaged(SGD(0.1)), expected)


def test_a_clipnorm_that_is_taken_clips_as_keras_does():
    """A clip taken (a NumPy number too) is Keras' own: one step on a
    weight whose gradient has norm 10, clipped to 0.5, moves it as Keras'
    SGD with that clip does, 20x less far than without it."""
    keras_step = linear_step(keras.optimizers.SGD(0.1, clipnorm=0.5))
    ours = SGD(0.1, clipnorm=np.float32(0.5), clipvalue=None,
               loss_scale_factor=None)
    assert ours.clipnorm == 0.5
    np.testing.assert_allclose(linear_step(ours), keras_step, rtol=1e-6)
    assert np.linalg.norm(linear_step(SGD(0.1))) == pytest.approx(
        20 * np.linalg.norm(keras_step), rel=1e-5)


def linear_step(optimizer):
    """The first update of a weight of 0s, whose gradient is (6, 8), norm
    10."""
    weight = keras.Variable(np.zeros(2, "float32"))
    optimizer.apply([keras.ops.convert_to_tensor(
        np.array([6.0, 8.0], "float32"))], [weight])
    return keras.ops.convert_to_numpy(weight)
