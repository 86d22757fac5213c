import math

import numpy as np
import pytest

from kerastrain._validation import (MAX_SIZE, check_float, check_float_list,
                                    check_size)
from kerastrain.data import image_pipeline
from kerastrain.layers import ResidualBlock
from kerastrain.models import resnet
from kerastrain.schedules import OneCycle
from kerastrain.tuning import MLPHyperModel, ResNetHyperModel


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan,
                                   np.float32("inf"), np.float64("nan")])
@pytest.mark.parametrize("bounds", [{}, {"low": 0}, {"high": 1},
                                    {"low": 0, "low_closed": False}])
def test_non_finite_values_are_rejected_by_default(value, bounds):
    with pytest.raises(ValueError, match=r"Argument `x` must be a finite "
                       r"number in .*Received: x=(-?inf|nan)$"):
        check_float("x", value, **bounds)


def test_allow_inf_accepts_inf_inside_the_interval_but_never_nan():
    assert check_float("x", math.inf, low=1, allow_inf=True) == math.inf
    assert check_float("x", -math.inf, high=0, allow_inf=True) == -math.inf
    with pytest.raises(ValueError, match=r"must be in \(1, inf\)"):
        check_float("x", -math.inf, low=1, low_closed=False, allow_inf=True)
    with pytest.raises(ValueError, match="finite number"):
        check_float("x", math.nan, low=1, allow_inf=True)


def test_finite_values_keep_their_message():
    assert check_float("x", 1e308, low=0) == 1e308
    with pytest.raises(ValueError, match=r"^Argument `x` must be in \[0, 1\)"
                       r"\. Received: x=1\.0$"):
        check_float("x", 1, 0, 1, high_closed=False)


@pytest.mark.parametrize("kwargs, name", [
    ({"max_lr": math.inf}, "max_lr"),
    ({"max_lr": math.nan}, "max_lr"),
    ({"div_factor": math.inf}, "div_factor"),
    ({"final_div_factor": math.inf}, "final_div_factor"),
])
def test_a_schedule_refuses_infinite_arguments(kwargs, name):
    arguments = {"max_lr": 0.1, "total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=f"Argument `{name}` must be a "
                       "finite number"):
        OneCycle(**arguments)


def test_check_float_list():
    assert check_float_list("v", (0, np.int64(2), np.float32(0.5))) == [
        0.0, 2.0, 0.5]
    with pytest.raises(ValueError, match=r"finite.*Received: v=\[1, nan\]$"):
        check_float_list("v", [1, math.nan])
    for bad in ([True, 1], None, ["1"]):
        with pytest.raises(TypeError, match="Argument `v` must be a list"):
            check_float_list("v", bad)


def test_an_int_beyond_floats_range_is_a_value_error_naming_it():
    # float(10**400) raises OverflowError, which named nothing.
    with pytest.raises(ValueError, match="rate"):
        check_float("rate", 10**400, 0, 1)
    with pytest.raises(ValueError, match="rate"):
        check_float("rate", -10**400)
    with pytest.raises(ValueError, match=r"Argument `values` must hold "
                       "finite numbers"):
        check_float_list("values", [0, 10**400])


def test_verbose_is_an_int_or_a_bool_as_keras_callbacks_take_it():
    from kerastrain._validation import check_verbose

    assert [check_verbose(v) for v in (True, np.False_, 0, 2,
                                       np.int64(1))] == [1, 0, 0, 2, 1]
    with pytest.raises(ValueError, match=r"`verbose`.*Received: verbose=-1"):
        check_verbose(-1)
    with pytest.raises(TypeError, match=r"`verbose`.*verbose='1'"):
        check_verbose("1")


def _pixels_and_labels():
    return np.zeros((4, 8, 8, 1), "float32"), np.arange(4) % 2


@pytest.mark.parametrize("name, make", [
    ("num_classes", lambda n: resnet((8, 8, 1), n)),
    ("width", lambda n: resnet((8, 8, 1), 10, width=n)),
    ("filters", lambda n: ResidualBlock(n)),
    ("input_dim", lambda n: MLPHyperModel(n, 2)),
    ("num_classes", lambda n: MLPHyperModel(5, n)),
    ("units", lambda n: MLPHyperModel(5, 2, units=n)),
    ("num_classes", lambda n: ResNetHyperModel((8, 8, 1), n)),
    ("batch_size", lambda n: image_pipeline(*_pixels_and_labels(), n, 2)),
    ("num_classes", lambda n: image_pipeline(*_pixels_and_labels(), 4, n)),
])
def test_a_size_past_int32_is_refused_naming_it(name, make):
    """2**63 failed inside torch ("Overflow when unpacking long long"),
    JAX or NumPy, naming no argument; 2**31 - 1 is the largest size."""
    with pytest.raises(ValueError, match=rf"`{name}` must be at most "
                       rf"2\*\*31 - 1 = 2147483647.*{name}={2**63}"):
        make(2**63)
    assert check_size(name, MAX_SIZE) == MAX_SIZE
