"""kerastrain: a training toolkit for Keras 3 on TensorFlow, JAX and PyTorch.

Importing the package registers its layers, schedules and optimizers with
Keras' serialization, so a `.keras` file that uses them loads with plain
`keras.saving.load_model`.
"""

from kerastrain import (callbacks, data, io, layers, models, optimizers,
                        schedules)
from kerastrain.callbacks import find_lr

__version__ = "0.1.0"

__all__ = ["callbacks", "data", "find_lr", "io", "layers", "models",
           "optimizers", "schedules", "__version__"]
