import keras
import matplotlib.image
import numpy as np
import pytest

from kerastrain.schedules import CyclicLR, OneCycle, plot_schedule


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


def test_bad_steps():
    with pytest.raises(ValueError, match="steps"):
        plot_schedule(OneCycle(0.1, 10), 0)
