"""One hyperparameter of a HyperModel: fixed, a list of choices, or a range.

Every knob of `ResNetHyperModel` and `MLPHyperModel` is a constructor
argument whose form says what the caller wants: a single value fixes it, a
list gives the choices, a `(min, max)` tuple narrows a numeric range. The
argument is checked once, at construction, with the messages of
`kerastrain._validation`; `Knob.declare(hp)` then registers it with
KerasTuner and returns the trial's value. A value that the caller already
put in the tuner's `HyperParameters` (`hp.Fixed("norm", "group")`) wins, as
KerasTuner intends, and is checked against the same rules.
"""

import functools

import numpy as np

from kerastrain._validation import (FLOAT32_MAX, FLOAT32_TINY, check_choice,
                                    check_float, check_size)

SAMPLINGS = ("linear", "log")


def number(low=0.0, high=FLOAT32_MAX, low_closed=True, high_closed=True):
    """A `check(name, value)` for a real knob in an interval (`check_float`
    of `kerastrain._validation`), by default one that float32 holds: a
    larger rate or penalty is inf where the model computes, and trained
    the weights to NaN."""
    return functools.partial(check_float, low=low, high=high,
                             low_closed=low_closed, high_closed=high_closed)


def rate():
    """A `check(name, value)` for a learning rate: at least float32's
    smallest normal number (a smaller one is 0 or a denormal where the
    update computes, and trained nothing: 5e-324 was stored as 0.0) and
    at most its largest."""
    return number(low=FLOAT32_TINY)


def integer(min_value=1):
    """A `check(name, value)` for an integer knob from `min_value` to
    `MAX_SIZE` (a size: units, layers)."""
    return functools.partial(check_size, min_value=min_value)


def category(*allowed):
    """A `check(name, value)` for a categorical knob: `value` must be of
    the type of `allowed` (TypeError) and one of them (ValueError)."""
    kind = type(allowed[0])

    def check(name, value):
        if kind is bool and isinstance(value, np.bool_):
            value = bool(value)
        if not isinstance(value, kind):
            raise TypeError(
                f"Argument `{name}` must be a {kind.__name__}, a list of "
                f"them, or a tuple of them. Received: {name}={value!r}")
        return check_choice(name, value, allowed)

    check.categorical = True
    return check


class Knob:
    """A search-space argument, validated at construction.

    Args:
        name: The argument's name, also the KerasTuner hyperparameter's.
        value: A single value (fixed), a list of values (choices), or, for
            numeric knobs, a `(min, max)` tuple (a range, bounds included).
            For categorical knobs a tuple is a list of choices too.
        check: `check(name, value)` returns one value normalized (e.g. an
            int as a float) or raises a `TypeError`/`ValueError` naming the
            argument: `category(...)`, `number(...)` or `integer(...)`.
        integer: Whether a range is of integers (`hp.Int`).
        sampling: `"linear"` or `"log"`, how a range is sampled.
        step: For an integer range, the step (a factor with `"log"`).
        grid: Optional `grid(min, max)` giving the valid values inside a
            range, for knobs whose valid values are sparse (ResNet depths);
            the range then becomes a choice among them, and must hold one.
        bounds: Optional `check(name, value)` of a range's bounds, by
            default `check`; with a `grid`, a looser one lets the bounds
            fall between valid values (`depth=(8, 21)`: 8, 14, 20).
        parent: Optional `(knob name, value)`: the knob exists only in the
            trials where that (earlier) knob takes that value (KerasTuner's
            `conditional_scope`), e.g. `("optimizer", "sgd")`.
    """

    def __init__(self, name, value, check, integer=False, sampling="linear",
                 step=None, grid=None, bounds=None, parent=None):
        check_choice("sampling", sampling, SAMPLINGS)
        self.name, self.check, self.integer = name, check, integer
        self.parent = parent
        self.sampling, self.step = sampling, step
        self.check_bounds = check if bounds is None else bounds
        self.fixed = self.choices = self.range = None
        categorical = getattr(check, "categorical", False)
        if isinstance(value, list) or (categorical
                                       and isinstance(value, tuple)):
            self._set_choices(value)
        elif isinstance(value, tuple):
            self._set_range(value, grid)
        elif isinstance(value, (set, frozenset, dict)):
            raise TypeError(
                f"Argument `{name}` must be a value, a list of choices or a "
                f"(min, max) tuple. Received: {name}={value!r}")
        else:
            self.fixed = check(name, value)

    def _set_choices(self, values):
        if not values:
            raise ValueError(
                f"Argument `{self.name}` must list at least one choice. "
                f"Received: {self.name}={values!r}")
        # In order, once each (a list's `in` made a wide range of depths
        # quadratic: (8, 10**6) ran for minutes).
        choices = list(dict.fromkeys(self.check(self.name, value)
                                     for value in values))
        if len(choices) == 1:
            self.fixed = choices[0]
        else:
            self.choices = choices

    def _set_range(self, bounds, grid):
        name = self.name
        if len(bounds) != 2:
            raise ValueError(
                f"Argument `{name}` as a tuple must be a range (min, max); "
                f"pass a list for a set of choices. Received: "
                f"{name}={bounds!r}")
        low, high = (self.check_bounds(name, bound) for bound in bounds)
        if low > high:
            raise ValueError(
                f"Argument `{name}` must be a range (min, max) with "
                f"min <= max. Received: {name}=({low!r}, {high!r})")
        if self.sampling == "log" and low <= 0:
            raise ValueError(
                f"Argument `{name}` is sampled on a log scale: its range "
                f"must have min > 0 (fix it to 0 instead to turn it off). "
                f"Received: {name}=({low!r}, {high!r})")
        if grid is not None:
            values = grid(low, high)
            if not values:
                raise ValueError(
                    f"Argument `{name}` as a range (min, max) must hold at "
                    f"least one valid value; ({low!r}, {high!r}) holds "
                    f"none. Received: {name}={bounds!r}")
            self._set_choices(values)
        elif low == high:
            self.fixed = low
        else:
            self.range = (low, high)

    def declare(self, hp):
        """Registers the knob with `hp` and returns the trial's value
        (None where a `parent` condition leaves it out)."""
        if self.parent is not None:
            name, value = self.parent
            with hp.conditional_scope(name, [value]):
                return self._declare(hp)
        return self._declare(hp)

    def _declare(self, hp):
        if self.fixed is not None:
            value = hp.Fixed(self.name, self.fixed)
        elif self.choices is not None:
            # The first choice is the default, a yes/no one's too (which
            # KerasTuner's `Boolean` would make False).
            value = (hp.Boolean(self.name, default=self.choices[0])
                     if self.boolean
                     else hp.Choice(self.name, self.choices))
        elif self.integer:
            value = hp.Int(self.name, *self.range, step=self.step,
                           sampling=self.sampling)
        else:
            value = hp.Float(self.name, *self.range, sampling=self.sampling)
        if value is None:  # in a conditional scope that is not active
            return None
        if self.boolean and value in (0, 1):
            value = bool(value)  # KerasTuner may hand bools back as 0/1
        # A value set beforehand in the tuner's HyperParameters bypasses
        # the constructor's checks; hold it to the same rules.
        return self.check(self.name, value)

    @property
    def boolean(self):
        value = self.fixed if self.choices is None else self.choices[0]
        return isinstance(value, bool)

    @property
    def values(self):
        """The values the knob can take, for a fixed value or choices
        (None for a range)."""
        if self.fixed is not None:
            return [self.fixed]
        return None if self.choices is None else list(self.choices)

    def __repr__(self):
        if self.fixed is not None:
            return f"{self.name}={self.fixed!r}"
        if self.choices is not None:
            return f"{self.name}={self.choices!r}"
        return f"{self.name}={self.range!r}"


def knob_values(knobs, hp):
    """`{name: value}` of the trial, every knob registered with `hp`; a
    knob whose `parent` condition does not hold in this trial is left
    out."""
    values = {knob.name: knob.declare(hp) for knob in knobs}
    return {name: value for name, value in values.items()
            if value is not None}
