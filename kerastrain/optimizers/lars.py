"""LARS: layer-wise adaptive rate scaling for large-batch SGD."""

import warnings

import keras
from keras import ops

from kerastrain.optimizers._dense import dense
from kerastrain.optimizers.scheduled import (ScheduledHyperparameters,
                                             check_float32,
                                             check_keras_arguments,
                                             check_learning_rate,
                                             check_scheduled)

DEFAULT_EXCLUDED = ("bias", "beta", "gamma")


@keras.saving.register_keras_serializable(package="kerastrain")
class LARS(ScheduledHyperparameters, keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman & Ginsburg, 2017).

    Momentum SGD in which each weight tensor (a "layer") gets its own rate,
    scaled by how large its weights are compared with its gradient, so that
    no layer takes a step out of proportion to its size. This is what lets
    SGD train with batches of thousands. Per variable `w` with gradient `g`
    (Algorithm 1 of the paper):

    ```
    local_lr = trust_coefficient * ||w|| / (||g|| + weight_decay * ||w||)
    v = momentum * v + learning_rate * local_lr * (g + weight_decay * w)
    w = w - v
    ```

    `local_lr` is 1 where `||w||` or the denominator is 0 (a layer at its
    zero initialization). Variables whose name contains one of
    `exclude_from_layer_adaptation` (biases and normalization scales and
    offsets by default, as in SimCLR and the paper's follow-ups) get neither
    the adaptation nor weight decay: plain momentum SGD.

    Weight decay here is the paper's, coupled to the gradient and inside the
    trust ratio; Keras' decoupled `weight_decay` argument is not used.

    Args:
        learning_rate: Float or `LearningRateSchedule` (the global rate).
        momentum: Float in `[0, 1]` or a schedule.
        weight_decay: Float >= 0.
        trust_coefficient: The paper's eta, > 0.
        exclude_from_layer_adaptation: Substrings of variable names to
            exclude: Keras' short names (`kernel`, `bias`, `gamma`, ...),
            not layer names or paths; a pattern of your own that matches
            no variable of the model is warned about. `None` for the
            default, `()` to adapt every variable.
        **kwargs: Keras' optimizer arguments (`clipnorm`,
            `gradient_accumulation_steps`, `name`, ...).

    Example:

    >>> optimizer = LARS(learning_rate=1.0, momentum=0.9, weight_decay=1e-4)

    Reference:
        You, Gitman & Ginsburg, "Large Batch Training of Convolutional
        Networks", 2017.
    """

    scheduled = ("momentum",)

    def __init__(self, learning_rate=0.1, momentum=0.9, weight_decay=0.0,
                 trust_coefficient=0.001, exclude_from_layer_adaptation=None,
                 name="lars", **kwargs):
        check_keras_arguments(kwargs)
        super().__init__(check_learning_rate(learning_rate), name=name,
                         **kwargs)
        self.momentum = check_scheduled("momentum", momentum, 0, 1)
        self.lars_weight_decay = check_float32("weight_decay",
                                               weight_decay, low=0)
        self.trust_coefficient = check_float32(
            "trust_coefficient", trust_coefficient, low=0, low_closed=False)
        if exclude_from_layer_adaptation is None:
            exclude_from_layer_adaptation = DEFAULT_EXCLUDED
        if not isinstance(exclude_from_layer_adaptation, str):
            try:  # a generator would be used up by the check below
                exclude_from_layer_adaptation = list(
                    exclude_from_layer_adaptation)
            except TypeError:
                pass
        if not isinstance(exclude_from_layer_adaptation, list) or not all(
                isinstance(s, str) for s in exclude_from_layer_adaptation):
            raise TypeError(
                "Argument `exclude_from_layer_adaptation` must be a list of "
                "strings (substrings of variable names). Received: "
                "exclude_from_layer_adaptation="
                f"{exclude_from_layer_adaptation!r}")
        self.exclude_from_layer_adaptation = list(
            exclude_from_layer_adaptation)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = self.add_optimizer_variables(variables, "velocity")
        names = sorted({v.name for v in variables})
        unmatched = [s for s in self.exclude_from_layer_adaptation
                     if s not in DEFAULT_EXCLUDED
                     and not any(s in name for name in names)]
        if unmatched:
            # A layer's name ("out") never matches: it is not part of a
            # variable's short name, so that layer would be adapted.
            warnings.warn(
                f"LARS: exclude_from_layer_adaptation entries {unmatched} "
                "match no variable, so they exclude nothing. They are "
                "matched against variables' short names, here "
                f"{names}, not against layer names or paths.", stacklevel=2)

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Refused: LARS decays inside its trust ratio, and excludes from
        both with `exclude_from_layer_adaptation` (Keras' method would be
        accepted and do nothing)."""
        raise ValueError(
            "LARS applies the paper's weight decay inside the layer-wise "
            "rate, and excludes variables from both with the constructor's "
            "`exclude_from_layer_adaptation` (substrings of variable names, "
            f"now {self.exclude_from_layer_adaptation}). Received: "
            f"exclude_from_weight_decay(var_list={var_list!r}, "
            f"var_names={var_names!r})")

    def adapts(self, variable):
        """Whether `variable` gets the layer-wise rate and weight decay."""
        return not any(s in variable.name
                       for s in self.exclude_from_layer_adaptation)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        # The norm of an Embedding's rows on TensorFlow was not the
        # gradient's (the trust ratio 1.34x the paper's on one batch).
        gradient = ops.cast(dense(gradient, variable), dtype)
        # On TensorFlow `variable` is the backend's tf.Variable, named by
        # its whole path: match on the Keras variable's own name, as on the
        # other backends.
        keras_variable = self._trainable_variables[
            self._get_variable_index(variable)]
        if self.adapts(keras_variable):
            decay = self.lars_weight_decay
            # In float32: a float16 sum of squares overflows past 65504,
            # and the trust ratio becomes inf / inf.
            weights = ops.cast(variable, "float32")
            gradient = ops.cast(gradient, "float32")
            w_norm = ops.sqrt(ops.sum(ops.square(weights)))
            g_norm = ops.sqrt(ops.sum(ops.square(gradient)))
            denominator = g_norm + decay * w_norm
            usable = ops.logical_and(w_norm > 0, denominator > 0)
            trust = ops.where(
                usable,
                self.trust_coefficient * w_norm
                / ops.where(usable, denominator, 1.0),
                1.0)
            # The step too, cast at the end: the trust ratio of a gradient
            # near zero passes float16's 65504 (inf, then NaN weights),
            # where the step, at most the rate times trust_coefficient
            # times the weights' norm, is small.
            step = ops.cast(ops.cast(learning_rate, "float32") * trust
                            * (gradient + decay * weights), dtype)
        else:
            step = ops.cast(learning_rate, dtype) * gradient
        velocity = self.velocities[self._get_variable_index(variable)]
        self.assign(velocity, self.current("momentum", dtype) * velocity
                    + step)
        self.assign_sub(variable, velocity)

    def get_config(self):
        config = super().get_config()
        config.update({
            "weight_decay": self.lars_weight_decay,
            "trust_coefficient": self.trust_coefficient,
            "exclude_from_layer_adaptation":
                self.exclude_from_layer_adaptation,
        })
        return config
