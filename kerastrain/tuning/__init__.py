"""KerasTuner search spaces for the toolkit's models, and the toolkit's
callbacks made per-trial inside a search."""

from kerastrain.tuning._hypermodel import TrialTypeError, TrialValueError
from kerastrain.tuning.mlp_hypermodel import MLPHyperModel
from kerastrain.tuning.per_trial import (execution_of, per_trial_callbacks,
                                         trial_id_of)
from kerastrain.tuning.resnet_hypermodel import ResNetHyperModel
from kerastrain.tuning.schedule_factory import (learning_rate_schedule,
                                                make_optimizer)

__all__ = ["MLPHyperModel", "ResNetHyperModel", "TrialTypeError",
           "TrialValueError", "execution_of", "learning_rate_schedule",
           "make_optimizer", "per_trial_callbacks", "trial_id_of"]
