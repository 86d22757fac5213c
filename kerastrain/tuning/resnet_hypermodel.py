"""The search space of a CIFAR-style ResNet and how it is trained."""

import keras
import numpy as np

from kerastrain._validation import check_int
from kerastrain.data.image_pipeline import (check_augment, image_pipeline,
                                            one_hot_labels)
from kerastrain.models.resnet import (blocks_per_stage, resnet,
                                      valid_depths)
from kerastrain.tuning._hypermodel import ToolkitHyperModel, batches_per_epoch
from kerastrain.tuning._knob import Knob, category, integer, number
from kerastrain.tuning.schedule_factory import (OPTIMIZERS, SCHEDULES,
                                                learning_rate_schedule,
                                                make_optimizer)

NORMS = ("batch", "instance", "group", "layer")


def _check_depth(name, value):
    value = check_int(name, value, min_value=1)
    try:
        blocks_per_stage(value)  # the model's own rule
    except ValueError:
        raise ValueError(
            f"Argument `{name}` must be a ResNet depth 6n+2 with n >= 1 "
            f"({', '.join(map(str, valid_depths(up_to=56)))}, ...). "
            f"Received: {name}={value!r}") from None
    return value


def _depths_between(low, high):
    return [d for d in valid_depths(up_to=high) if d >= low]


class ResNetHyperModel(ToolkitHyperModel):
    """KerasTuner search space of a CIFAR-style ResNet and its training.

    Each trial builds `kerastrain.models.resnet` (depth, width,
    normalization, stochastic depth) and trains it with kerastrain's `SGD`
    (Nesterov momentum) or `AdamW` under a `OneCycle`, warmup + cosine,
    `CyclicLR` or constant learning rate peaking at `max_lr`, with
    decoupled weight decay, mixup and label smoothing. The loss is
    `CategoricalCrossentropy(from_logits=True, label_smoothing=...)` on
    one-hot labels (mixup makes soft ones); the metric is logged as
    `accuracy`, so `objective="val_accuracy"` works.

    Every knob is a constructor argument: a single value fixes it, a list
    gives the choices, a `(min, max)` tuple narrows a numeric range
    (categorical knobs take a tuple of choices too). A value set in the
    tuner's `HyperParameters` (`hp.Fixed("norm", "group")`, passed as
    `hyperparameters=hp`) overrides the argument.

    `fit` (called by the tuner with the arguments of `search`) takes
    images `x` (N, H, W, C) with integer or one-hot labels `y`, or a
    `tf.data.Dataset` of `(image, label)` pairs, and builds the trial's
    `kerastrain.data.image_pipeline` (augmentation, then mixup at the
    trial's alpha); `validation_data` goes through the same pipeline in
    evaluation mode. Images are not standardized (uint8 are scaled to
    [0, 1]): evaluate the best model on `image_pipeline(x, y, batch_size,
    num_classes, training=False, normalize=False)`. The schedule spans
    exactly the updates of each `fit` call: with `Hyperband`, the epochs of
    the trial's round (from `initial_epoch` to `epochs`), so a one-cycle
    ends annealed whatever the budget. `build` compiles for a nominal
    1,000 updates; `fit` recompiles, weights untouched.

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: Number of classes, >= 2.
        depth: Depths 6n+2 (8, 14, 20, ...); a range keeps the valid ones.
        width: Channels of the first stage; a range is sampled by powers of
            two from its minimum (`(8, 32)`: 8, 16, 32).
        norm: `"batch"`, `"instance"`, `"group"` and/or `"layer"`.
        drop_path_rate: Stochastic-depth rate of the last block, [0, 1).
        optimizer: `"sgd"` and/or `"adamw"`.
        schedule: `"one_cycle"`, `"cosine_warmup"`, `"cyclic"` and/or
            `"constant"` (see `schedule_factory.learning_rate_schedule`).
        max_lr: Peak learning rate, > 0; ranges are sampled on a log scale.
        weight_decay: Decoupled weight decay, >= 0; ranges on a log scale
            (fix it to 0 to turn it off).
        mixup_alpha: Mixup's Beta parameter, >= 0 (0: no mixup).
        label_smoothing: In [0, 1).
        augment: Augmentations of `image_pipeline` for every trial, e.g.
            `("flip", "shift")` (pad-and-crop) for CIFAR, or with options,
            `("shift", ("rotate", {"factor": 0.02}))`; none by default.
        seed: Optional integer seed of the pipeline and of DropPath.
        name: Optional name of the HyperModel.
        tunable: KerasTuner's flag: whether the knobs join the search
            space.

    Example:

    ```python
    import keras_tuner as kt
    hypermodel = ResNetHyperModel((32, 32, 3), 10, depth=20,
                                  schedule="one_cycle", augment=("flip",))
    tuner = kt.RandomSearch(hypermodel, objective="val_accuracy",
                            max_trials=20, directory="tuning")
    tuner.search(x_train, y_train, validation_data=(x_val, y_val),
                 epochs=30, batch_size=128,
                 callbacks=[CheckpointEarlyStopping("ckpt/best.keras")])
    best = tuner.get_best_models()[0]
    ```
    """

    def __init__(self, input_shape, num_classes, depth=(8, 20),
                 width=(8, 32), norm=NORMS, drop_path_rate=(0.0, 0.2),
                 optimizer=OPTIMIZERS, schedule=SCHEDULES,
                 max_lr=(1e-3, 1e-1), weight_decay=(1e-5, 1e-2),
                 mixup_alpha=(0.0, 0.4), label_smoothing=(0.0, 0.2),
                 augment=(), seed=None, name=None, tunable=True):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(
                "Argument `input_shape` must be (height, width, channels). "
                f"Received: input_shape={input_shape}")
        self.input_shape = tuple(check_int("input_shape", d, min_value=1)
                                 for d in input_shape)
        self.num_classes = check_int("num_classes", num_classes,
                                     min_value=2)
        self.augment = check_augment(augment)
        self.seed = None if seed is None else check_int("seed", seed)
        super().__init__([
            Knob("depth", depth, _check_depth, integer=True,
                 grid=_depths_between),
            Knob("width", width, integer(), integer=True, sampling="log",
                 step=2),
            Knob("norm", norm, category(*NORMS)),
            Knob("drop_path_rate", drop_path_rate,
                 number(high=1.0, high_closed=False)),
            Knob("optimizer", optimizer, category(*OPTIMIZERS)),
            Knob("schedule", schedule, category(*SCHEDULES)),
            Knob("max_lr", max_lr, number(low_closed=False), sampling="log"),
            Knob("weight_decay", weight_decay, number(), sampling="log"),
            Knob("mixup_alpha", mixup_alpha, number()),
            Knob("label_smoothing", label_smoothing,
                 number(high=1.0, high_closed=False)),
        ], name=name, tunable=tunable)

    def build_model(self, values):
        return resnet(self.input_shape, self.num_classes,
                      depth=values["depth"], width=values["width"],
                      norm=values["norm"],
                      drop_path_rate=values["drop_path_rate"],
                      seed=self.seed)

    def compile_model(self, model, values, total_steps,
                      gradient_accumulation_steps=None):
        rate, momentum = learning_rate_schedule(
            values["schedule"], values["max_lr"], total_steps)
        model.compile(
            optimizer=make_optimizer(values["optimizer"], rate, momentum,
                                     values["weight_decay"],
                                     gradient_accumulation_steps),
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True,
                label_smoothing=values["label_smoothing"]),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])

    def labels(self, y):
        """One-hot float32 labels from integer or one-hot `y`."""
        return one_hot_labels(np.asarray(y), self.num_classes)

    def training_data(self, values, x, y, batch_size, validation_data,
                      kwargs):
        pipeline = dict(batch_size=batch_size, num_classes=self.num_classes,
                        normalize=False, seed=self.seed)
        kwargs = dict(kwargs)
        train = image_pipeline(x, y, augment=self.augment,
                               mixup_alpha=values["mixup_alpha"],
                               shuffle=kwargs.pop("shuffle", True),
                               **pipeline)
        if validation_data is not None:
            if isinstance(validation_data, (tuple, list)):
                val_x, val_y = validation_data[:2]
            else:
                val_x, val_y = validation_data, None
            validation_data = image_pipeline(val_x, val_y, training=False,
                                             **pipeline)
        # The pipeline shuffles (Keras would only warn it cannot).
        return (dict(kwargs, x=train, shuffle=False,
                     validation_data=validation_data),
                batches_per_epoch(train, batch_size))
