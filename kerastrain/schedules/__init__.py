"""Learning-rate and momentum schedules.

kerastrain's own schedules, and the Keras built-ins they sit beside, so
that one namespace covers PyTorch's `torch.optim.lr_scheduler` (the README
has the table).
"""

from keras.optimizers.schedules import (
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
)

from kerastrain.schedules.cyclic import CyclicLR
from kerastrain.schedules.decay import LinearDecay, MultiStepDecay, StepDecay
from kerastrain.schedules.one_cycle import OneCycle
from kerastrain.schedules.phases import PhaseSchedule
from kerastrain.schedules.plot import plot_schedule, schedule_values
from kerastrain.schedules.warmup import Warmup

__all__ = [
    "CosineDecay",
    "CosineDecayRestarts",
    "CyclicLR",
    "ExponentialDecay",
    "InverseTimeDecay",
    "LinearDecay",
    "MultiStepDecay",
    "OneCycle",
    "PhaseSchedule",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "StepDecay",
    "Warmup",
    "plot_schedule",
    "schedule_values",
]
