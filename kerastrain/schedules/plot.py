"""A picture of a schedule: learning rate (and momentum) against step."""

import numpy as np
from keras import ops

from kerastrain._validation import check_steps
from kerastrain.io import new_figure, save_figure


def schedule_values(schedule, steps):
    """The values of `schedule` at steps `0 .. steps - 1`, as NumPy.

    Evaluated in one vectorized call where the schedule allows it, step by
    step otherwise (some Keras built-ins only take a scalar step).
    kerastrain's schedules give the rates a compiled training step uses
    (checked by training on every backend). Keras' `PolynomialDecay` with
    `cycle=True` can round a step at an exact cycle boundary into the next
    cycle, and differently here than inside a compiled step.

    Args:
        schedule: A `LearningRateSchedule`, or any callable of the step.
        steps: The number of steps, >= 1.

    Returns:
        A float64 NumPy array of `steps` values.

    Example:

    >>> from kerastrain.schedules import StepDecay
    >>> values = schedule_values(StepDecay(0.1, step_size=2, gamma=0.5), 5)
    >>> values.round(6).tolist()  # float32 rates, as the optimizer uses
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """
    if not callable(schedule):
        raise TypeError(
            "Argument `schedule` must be a `LearningRateSchedule` or a "
            f"callable of the step. Received: schedule={schedule!r}")
    # No more than a training's steps: 10**12 failed the vectorized call
    # and then ran the step-by-step one for ever.
    check_steps("steps", steps)
    try:
        values = ops.convert_to_numpy(schedule(ops.arange(steps)))
        if np.shape(values) == (steps,):
            return values.astype("float64")
    except Exception:  # noqa: BLE001 - fall back to scalar steps
        pass
    return np.array([float(ops.convert_to_numpy(schedule(step)))
                     for step in range(steps)])


def plot_schedule(schedule, steps, path=None, momentum=None, title=None):
    """Plots a learning-rate schedule, and its momentum where it has one.

    Args:
        schedule: A `LearningRateSchedule` (or any callable of the step).
        steps: Number of steps to draw, >= 1.
        path: Where to write the PNG (atomically); None to only return the
            figure.
        momentum: A momentum schedule to draw on a second axis. Defaults to
            `schedule.momentum_schedule` where there is one (`OneCycle`).
        title: Figure title; defaults to the schedule's class name.

    Returns:
        The matplotlib `Figure`.

    Example:

    >>> from kerastrain.schedules import OneCycle
    >>> figure = plot_schedule(OneCycle(0.1, 200), 200)
    >>> [ax.get_ylabel() for ax in figure.axes]
    ['learning rate', 'momentum']
    """
    if momentum is None:
        momentum = getattr(schedule, "momentum_schedule", None)
    elif not callable(momentum):
        raise TypeError(
            "Argument `momentum` must be a schedule (a callable of the "
            f"step) or None. Received: momentum={momentum!r}")
    # `steps` checked first: np.arange(10**12) failed with a MemoryError,
    # and np.arange("100") with NumPy's message, naming nothing.
    values = schedule_values(schedule, steps)
    x = np.arange(steps)
    figure, ax = new_figure(figsize=(6.5, 3.8))
    ax.plot(x, values, color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    if momentum is not None:
        twin = ax.twinx()
        twin.plot(x, schedule_values(momentum, steps), color="tab:orange",
                  linestyle="--")
        twin.set_ylabel("momentum")
        ax.yaxis.label.set_color("tab:blue")
        twin.yaxis.label.set_color("tab:orange")
    ax.set_title(title or type(schedule).__name__)
    if path is not None:
        save_figure(figure, path)
    return figure
