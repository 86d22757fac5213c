import keras
import matplotlib.image
import numpy as np
import pytest

from kerastrain.schedules import (CyclicLR, LinearDecay, MultiStepDecay,
                                  OneCycle, PhaseSchedule, StepDecay,
                                  Warmup, plot_schedule, schedule_values)


def test_writes_a_png_with_rate_and_momentum(tmp_path):
    schedule = OneCycle(0.1, 120)
    path = tmp_path / "one_cycle.png"
    figure = plot_schedule(schedule, 120, path=str(path))
    assert matplotlib.image.imread(path).ndim == 3
    rate, momentum = (ax.lines[0].get_ydata() for ax in figure.axes)
    np.testing.assert_allclose(rate.max(), 0.1, rtol=1e-6)
    assert np.argmax(rate) == np.argmin(momentum)
    assert [p.name for p in tmp_path.iterdir()] == ["one_cycle.png"]


def test_plots_keras_built_ins_and_ours_without_momentum():
    figure = plot_schedule(keras.optimizers.schedules.PiecewiseConstantDecay(
        [10], [0.1, 0.01]), 20)
    assert len(figure.axes) == 1
    np.testing.assert_allclose(figure.axes[0].lines[0].get_ydata()[[0, 10,
                                                                    11]],
                               [0.1, 0.1, 0.01], rtol=1e-6)
    figure = plot_schedule(CyclicLR(0.0, 1.0, 5), 21)
    np.testing.assert_allclose(figure.axes[0].lines[0].get_ydata()[[0, 5,
                                                                    10]],
                               [0, 1, 0], atol=1e-7)


def test_a_momentum_and_title_of_ones_own():
    # A triangle from 0.9 down to 0.8 and back, against a cyclic rate.
    momentum = PhaseSchedule([0, 10, 20], [0.9, 0.8, 0.9], anneal="linear")
    figure = plot_schedule(CyclicLR(0.01, 0.1, 10), 21, momentum=momentum,
                           title="cyclic")
    rate_axis, momentum_axis = figure.axes
    assert rate_axis.get_title() == "cyclic"
    np.testing.assert_allclose(momentum_axis.lines[0].get_ydata(),
                               0.9 - 0.01 * (10 - abs(np.arange(21) - 10)),
                               atol=1e-7)


def test_bad_steps():
    with pytest.raises(ValueError, match="steps"):
        plot_schedule(OneCycle(0.1, 10), 0)
    # More steps than a training runs: 10**12 failed the vectorized call,
    # then ran step by step for ever.
    with pytest.raises(ValueError, match=r"`steps` must be at most 2\*\*31"):
        schedule_values(StepDecay(0.1, 3), 10**12)
    # The plot checks them first: NumPy's MemoryError (7 TiB for 10**12
    # steps) and its arange error of a string came before.
    with pytest.raises(ValueError, match=r"`steps` must be at most 2\*\*31"):
        plot_schedule(StepDecay(0.1, 3), 10**12)
    with pytest.raises(TypeError, match=r"`steps` must be an integer"):
        plot_schedule(StepDecay(0.1, 3), "100")


@pytest.mark.parametrize("schedule", [3, None])
def test_a_schedule_that_is_not_callable_names_the_argument(schedule):
    # "'int' object is not callable", from inside.
    with pytest.raises(TypeError, match=r"`schedule` must be a "
                       r"`LearningRateSchedule` or a callable"):
        plot_schedule(schedule, 5)


def test_a_momentum_that_is_a_number_names_the_argument():
    with pytest.raises(TypeError, match=r"`momentum` must be a schedule.*"
                       r"Received: momentum=0.9"):
        plot_schedule(OneCycle(0.1, 10), 10, momentum=0.9)


def rates_a_fit_applies(schedule, steps):
    """The learning rate of each of `steps` compiled training steps, read
    off the weight: SGD on the loss `w * 1` moves `w` by exactly the rate."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(
        1, use_bias=False, kernel_initializer="zeros")])
    model.compile(keras.optimizers.SGD(schedule),
                  lambda y_true, y_pred: keras.ops.mean(y_pred))
    weights = [0.0]

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            weights.append(float(keras.ops.convert_to_numpy(
                self.model.layers[0].kernel)[0, 0]))

    ones = np.ones((steps, 1), "float32")
    model.fit(ones, ones, batch_size=1, shuffle=False, verbose=0,
              callbacks=[Record()])
    return -np.diff(weights)


@pytest.mark.parametrize("schedule", [
    StepDecay(0.1, 7, gamma=0.5),
    MultiStepDecay(0.1, [7, 21], gamma=0.5),
    LinearDecay(0.1, 21),
    CyclicLR(0.01, 0.1, 7, mode="triangular2"),
    OneCycle(0.1, 42),
    Warmup(StepDecay(0.1, 7, gamma=0.5), 7),
    PhaseSchedule([0, 7, 21, 35], [0.01, 0.1, 0.02, 0.05],
                  anneal=["linear", "cos", "exp"]),
], ids=lambda schedule: type(schedule).__name__)
def test_values_are_the_rates_a_compiled_fit_applies(schedule):
    """Step counts that divide exactly (21 / 7) sit on the boundaries, where
    a division rounded up inside a compiled step would move a step into
    the next phase (Keras' own `PolynomialDecay(cycle=True)` does on
    tensorflow)."""
    np.testing.assert_allclose(rates_a_fit_applies(schedule, 42),
                               schedule_values(schedule, 42),
                               rtol=1e-4, atol=2e-6)
