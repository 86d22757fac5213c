import numpy as np
import pytest

from kerastrain.optimizers import LARS
from kerastrain.schedules import OneCycle, schedule_values
from tests.optimizers import linear

STEPS = 20


def paper_lars_in_numpy(lrs, momenta, decay, eta, adapted):
    """Algorithm 1 of You et al. (2017), per weight tensor; `adapted[i]`
    says whether tensor i gets the trust ratio and weight decay."""
    def update(t, weights, grads, velocities):
        velocities = velocities or [np.zeros_like(w) for w in weights]
        for w, g, v, adapt in zip(weights, grads, velocities, adapted):
            local_lr, step = 1.0, g
            if adapt:
                w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
                local_lr = eta * w_norm / (g_norm + decay * w_norm)
                step = g + decay * w
            v[...] = momenta[t] * v + lrs[t] * local_lr * step
            w -= v
        return velocities
    return update


@pytest.mark.parametrize("decay, excluded, adapted", [
    (0.0, None, [True, False]),     # default: the bias is excluded
    (5e-3, None, [True, False]),
    (5e-3, (), [True, True]),
])
def test_matches_the_papers_update(decay, excluded, adapted):
    rate = OneCycle(2.0, STEPS)
    optimizer = LARS(rate, momentum=0.9, weight_decay=decay,
                     trust_coefficient=0.02,
                     exclude_from_layer_adaptation=excluded)
    ours = linear.fit(optimizer, STEPS)
    expected = linear.numpy_fit(paper_lars_in_numpy(
        schedule_values(rate, STEPS), [0.9] * STEPS, decay, 0.02, adapted),
        STEPS)
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_zero_layer_takes_the_plain_rate():
    """At a zero kernel the trust ratio would be 0/0: LARS uses 1 there, so
    the first update is plain SGD's (the paper leaves this case open)."""
    _, bias = linear.initial_weights()
    kernel = np.zeros_like(linear.initial_weights()[0])
    ours = linear.fit(LARS(0.05, momentum=0.9, weight_decay=1e-3,
                           exclude_from_layer_adaptation=[]), 1,
                      weights=[kernel, bias])
    grad_kernel, _ = linear.gradients(kernel.astype("float64"), bias)
    np.testing.assert_allclose(ours[0], -0.05 * grad_kernel, rtol=1e-5)


def test_scheduled_momentum_matches_numpy():
    one_cycle = OneCycle(0.5, STEPS)
    ours = linear.fit(LARS(0.5, one_cycle.momentum_schedule), STEPS)
    expected = linear.numpy_fit(paper_lars_in_numpy(
        [0.5] * STEPS, schedule_values(one_cycle.momentum_schedule, STEPS),
        0.0, 0.001, [True, False]), STEPS)
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_config_round_trip():
    optimizer = LARS(OneCycle(1.0, 10), momentum=OneCycle(1.0, 10)
                     .momentum_schedule, weight_decay=1e-4,
                     exclude_from_layer_adaptation=["bias"])
    restored = LARS.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    assert restored.lars_weight_decay == 1e-4


@pytest.mark.parametrize("kwargs, error, match", [
    ({"weight_decay": -1.0}, ValueError, "weight_decay"),
    ({"trust_coefficient": 0.0}, ValueError, "trust_coefficient"),
    ({"momentum": 2.0}, ValueError, "momentum"),
    ({"exclude_from_layer_adaptation": "bias"}, TypeError,
     "exclude_from_layer_adaptation"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        LARS(0.1, **kwargs)
