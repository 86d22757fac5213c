"""PyTorch's schedulers as the reference, and the comparison they need."""

import numpy as np
import torch

from kerastrain.schedules import schedule_values

# kerastrain's own schedules meet rtol 1e-6 at every step (measured: at most
# 3.3e-7 relative). Keras' built-ins compute in float32 with formulas that
# lose digits: PolynomialDecay (behind `LinearDecay` and PyTorch's
# PolynomialLR) forms `1 - step / decay_steps`, whose error is half an ulp of
# 1, so relative to the peak rate rather than to the value; ExponentialDecay
# takes `decay_rate ** p` with float32 `pow` (measured: 5.9e-6 relative, 3.3
# ulps of the peak); CosineDecay near its floor likewise. Comparisons that go
# through them allow a few float32 ulps of the peak on top (`peak_ulps`).
RTOL = 1e-6
ULP = float(np.finfo(np.float32).eps)


def torch_values(make_scheduler, steps, lr=1.0, betas=False):
    """Learning rate and momentum that a PyTorch scheduler sets before each
    of `steps` optimizer steps. `make_scheduler(optimizer)` builds it; the
    optimizer is SGD with momentum, or Adam when `betas` (whose momentum is
    `betas[0]`)."""
    param = torch.nn.Parameter(torch.zeros(1))
    if betas:
        optimizer = torch.optim.Adam([param], lr=lr)
    else:
        optimizer = torch.optim.SGD([param], lr=lr, momentum=0.9)
    scheduler = make_scheduler(optimizer)
    lrs, momenta = [], []
    for _ in range(steps):
        group = optimizer.param_groups[0]
        lrs.append(group["lr"])
        momenta.append(group["betas"][0] if betas else group["momentum"])
        optimizer.step()
        scheduler.step()
    return np.array(lrs), np.array(momenta)


def assert_matches(schedule, expected, what="learning rate", peak_ulps=0):
    """`schedule` at steps 0..n-1 equals `expected` (PyTorch's, float64)
    within RTOL, plus `peak_ulps` float32 ulps of the peak. Returns the
    largest relative error, for the record."""
    ours = schedule_values(schedule, len(expected))
    peak = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(ours, expected, rtol=RTOL,
                               atol=peak_ulps * ULP * peak, err_msg=what)
    nonzero = expected != 0
    return float(np.max(np.abs(ours - expected)[nonzero]
                        / np.abs(expected[nonzero])))


def torch_cyclic_lr_at(steps, base_lr, max_lr, step_size):
    """PyTorch's triangular `CyclicLR` rate at each of `steps` (any size:
    PyTorch computes the place in the cycle in Python floats)."""
    scheduler = torch.optim.lr_scheduler.CyclicLR(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0),
        base_lr=base_lr, max_lr=max_lr, step_size_up=step_size,
        cycle_momentum=False)
    rates = []
    for step in steps:
        scheduler.last_epoch = step
        scheduler._get_lr_called_within_step = True  # no warning
        rates.append(scheduler.get_lr()[0])
    return rates
