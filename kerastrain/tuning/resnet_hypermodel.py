"""The search space of a CIFAR-style ResNet and how it is trained."""

import keras
import numpy as np

from kerastrain._seeds import MODEL_SEED_LIMIT
from kerastrain._validation import (check_bool, check_seed, check_size,
                                    is_dataset)
from kerastrain.data._image_inputs import (check_pixel_scales, pixels,
                                           read_dataset)
from kerastrain.data.cutmix import MAX_ALPHA
from kerastrain.data.image_pipeline import (check_augment, image_pipeline,
                                            one_hot_labels)
from kerastrain.models.resnet import (blocks_per_stage, check_input_shape,
                                      check_norm_reads_images, resnet,
                                      valid_depths)
from kerastrain.tuning._hypermodel import (ToolkitHyperModel,
                                           batches_per_epoch)
from kerastrain.tuning._knob import (Knob, category, integer, knob_values,
                                     number, rate)
from kerastrain.tuning.schedule_factory import (OPTIMIZERS, SCHEDULES,
                                                learning_rate_schedule,
                                                make_optimizer)

NORMS = ("batch", "instance", "group", "layer")


# A range of depths becomes a KerasTuner Choice, which lists every value
# in each trial's hyperparameters: (8, 6002) gives 1,000 (ResNet-1202,
# the deepest CIFAR ResNet of He et al., is the 200th).
MAX_DEPTH_CHOICES = 1000


def _check_depth(name, value):
    # A size, as the range's bounds: 2**63 was taken, and built for ever.
    value = check_size(name, value)
    try:
        blocks_per_stage(value)  # the model's own rule
    except ValueError:
        raise ValueError(
            f"Argument `{name}` must be a ResNet depth 6n+2 with n >= 1 "
            f"({', '.join(map(str, valid_depths(up_to=56)))}, ...). "
            f"Received: {name}={value!r}") from None
    return value


def _depths_between(low, high):
    # 6n+2 from the first at or above `low`, as a range, counted before it
    # is listed: (8, 2**31 - 1) would list 357 million.
    depths = range(max(low + (2 - low) % 6, 8), high + 1, 6)
    if len(depths) > MAX_DEPTH_CHOICES:
        raise ValueError(
            f"Argument `depth` as a range (min, max) holds {len(depths):,} "
            f"ResNet depths 6n+2, more than the {MAX_DEPTH_CHOICES:,} a "
            "search lists as its choices (KerasTuner's Choice keeps each "
            "in every trial). Narrow it, or pass a list of depths. "
            f"Received: depth=({low!r}, {high!r})")
    if not depths:
        raise ValueError(
            "Argument `depth` as a range (min, max) must hold a ResNet "
            "depth 6n+2 with n >= 1 (8, 14, 20, ...). Received: "
            f"depth=({low!r}, {high!r})")
    return list(depths)


def _check_augment(augment):
    if augment is not None and not isinstance(augment, (str, tuple, list)):
        raise TypeError(
            "Argument `augment` must be an augmentation's name, or a tuple "
            "or list of names, (name, options) pairs and callables. "
            f"Received: augment={augment!r}")
    # Its options too: a layer that refuses them would stop the search at
    # its first trial's pipeline.
    return check_augment(augment, build=True)


def _widths(knob):
    """The widths a trial may draw: powers of 2 times the least, up to
    the greatest, for a range (the knob steps by a factor of 2)."""
    if knob.range is None:
        return [knob.fixed] if knob.choices is None else knob.choices
    low, high = knob.range
    return [low * 2**k for k in range((high // low).bit_length())]


def _norm_fits(norm, input_shape, widths):
    """The error of `resnet` for `norm` at the first of `widths` it does
    not suit (a norm that would see one value per mean), or None."""
    for width in widths:
        try:
            check_norm_reads_images(norm, input_shape, width)
        except ValueError as error:
            return error
    return None


def _norm_check(input_shape, widths):
    """The check of `norm` for images of `input_shape` and the widths a
    trial may draw."""
    check_name = category(*NORMS)

    def check(name, value):
        value = check_name(name, value)
        error = _norm_fits(value, input_shape, widths)
        if error is not None:
            raise ValueError(
                f"Argument `{name}` cannot be {value!r} with the widths this "
                f"search may draw, {widths}. {error}") from None
        return value

    check.categorical = True
    return check


def _max_lr_knobs(max_lr, optimizer):
    """The peak rate: one `max_lr` knob for every optimizer, or, from a
    dict `{optimizer: value, choices or range}`, a `max_lr_<optimizer>`
    knob per optimizer the dict names (it must name each one the
    `optimizer` knob can take), present only in its trials: also one the
    tuner's HyperParameters set in place of the knob's."""
    check = rate()
    if not isinstance(max_lr, dict):
        return [Knob("max_lr", max_lr, check, sampling="log")]
    searched = optimizer.values
    if (not set(max_lr) <= set(OPTIMIZERS)
            or not set(searched) <= set(max_lr)):
        raise ValueError(
            "Argument `max_lr` as a dict must give a peak rate (a value, "
            "choices or a range) for each optimizer searched, "
            f"{', '.join(map(repr, searched))}, keyed by its name among "
            f"{', '.join(map(repr, OPTIMIZERS))}. Received: "
            f"max_lr={max_lr!r}")
    return [Knob(f"max_lr_{name}", max_lr[name], check, sampling="log",
                 parent=("optimizer", name))
            for name in OPTIMIZERS if name in max_lr]


def _declared_rates(hp):
    """The peak-rate names `hp` holds, active in this trial: `max_lr`
    and/or `max_lr_<optimizer>`, declared by the user or registered by an
    earlier `build`."""
    return [name for name in ("max_lr", *(f"max_lr_{o}" for o in OPTIMIZERS))
            if name in hp]


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
    `hyperparameters=hp`) overrides the argument; a declared `max_lr`
    overrides a `max_lr` dict too (see `trial_values`).

    `fit` (called by the tuner with the arguments of `search`) takes
    images `x` (N, H, W, C) with integer or one-hot labels `y`, or a
    `tf.data.Dataset` of `(image, label)` pairs, and builds the trial's
    `kerastrain.data.image_pipeline` (augmentation, then mixup at the
    trial's alpha); `validation_data` goes through the same pipeline in
    evaluation mode. Images are not standardized (uint8 are scaled to
    [0, 1]): evaluate the best model on `image_pipeline(x, y, batch_size,
    num_classes, training=False, normalize=False)`. Training and
    validation images must reach the model on one scale, both within
    about [0, 1] or both beyond it: uint8 training images beside float
    validation images in 0..255 are a `ValueError` naming
    `validation_data`. The schedule spans
    exactly the updates of each `fit` call: with `Hyperband`, the epochs of
    the trial's round (from `initial_epoch` to `epochs`), so a one-cycle
    ends annealed whatever the budget; with `steps_per_epoch`, the
    pipeline is repeated so that every epoch runs that many batches;
    without, given `validation_data`, each epoch reads a pass of both
    pipelines from one iterator per `fit` (`kerastrain.data.fit_passes`).
    `build` compiles for a nominal
    1,000 updates; `fit` recompiles, weights untouched.

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: Number of classes, >= 2.
        depth: Depths 6n+2 (8, 14, 20, ...); a range `(min, max)` keeps
            the valid ones inside it (`(8, 21)`: 8, 14, 20) and must hold
            one.
        width: Channels of the first stage; a range is sampled by powers of
            two from its minimum (`(8, 32)`: 8, 16, 32).
        norm: `"batch"`, `"instance"`, `"group"` and/or `"layer"`. Images
            so small that the last stage's feature map is 1x1 (4x4 or
            less) allow `"batch"` and `"layer"` only, the default then.
        drop_path_rate: Stochastic-depth rate of the last block, [0, 1).
        optimizer: `"sgd"` and/or `"adamw"`.
        schedule: `"one_cycle"`, `"cosine_warmup"`, `"cyclic"` and/or
            `"constant"` (see `schedule_factory.learning_rate_schedule`).
        max_lr: Peak learning rate, > 0; ranges are sampled on a log scale.
            A dict gives each optimizer its own, e.g. `{"sgd": (0.02, 0.5),
            "adamw": (3e-4, 1e-2)}` (SGD's good rates are 10-100x Adam's):
            knobs `max_lr_sgd` and `max_lr_adamw`, each in the trials of
            its optimizer only (KerasTuner's conditional scope).
        weight_decay: Decoupled weight decay, >= 0; ranges on a log scale
            (fix it to 0 to turn it off).
        mixup_alpha: Mixup's Beta parameter, >= 0 (0: no mixup).
        label_smoothing: In [0, 1).
        augment: Augmentations of `image_pipeline` for every trial, e.g.
            `("flip", "shift")` (pad-and-crop) for CIFAR, or with options,
            `("shift", ("rotate", {"factor": 0.02}))`; none by default.
        seed: Optional integer seed of the pipeline and of DropPath, in
            [0, 2**30) (residual block i gets `seed + i`).
        name: Optional name of the HyperModel.
        tunable: KerasTuner's flag: whether the knobs join the search
            space.
        drop_remainder: Whether each training pass leaves out its last,
            smaller batch (`image_pipeline(drop_remainder=True)`): every
            step then has one shape, which jax compiles and TensorFlow
            traces once per trial instead of twice. The validation batch
            size is `fit`'s `validation_batch_size` (default
            `batch_size`); the whole validation set in one batch makes one
            shape there too.

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
                 augment=(), seed=None, name=None, tunable=True,
                 drop_remainder=False):
        self.input_shape = check_input_shape(input_shape, dynamic=False)
        self.num_classes = check_size("num_classes", num_classes,
                                      min_value=2)
        self.augment = _check_augment(augment)
        self.seed = check_seed("seed", seed, high=MODEL_SEED_LIMIT)
        self.drop_remainder = check_bool("drop_remainder", drop_remainder)
        depth = Knob("depth", depth, _check_depth, integer=True,
                     grid=_depths_between, bounds=integer())
        width = Knob("width", width, integer(), integer=True,
                     sampling="log", step=2)
        widths = _widths(width)
        if norm is NORMS:
            # The default: only the norms that work for these images.
            norm = tuple(n for n in NORMS
                         if _norm_fits(n, self.input_shape, widths) is None)
        optimizer = Knob("optimizer", optimizer, category(*OPTIMIZERS))
        super().__init__([
            depth,
            width,
            Knob("norm", norm, _norm_check(self.input_shape, widths)),
            Knob("drop_path_rate", drop_path_rate,
                 number(high=1.0, high_closed=False)),
            optimizer,
            Knob("schedule", schedule, category(*SCHEDULES)),
            *_max_lr_knobs(max_lr, optimizer),
            Knob("weight_decay", weight_decay, number(), sampling="log"),
            # The pipeline's bound (Beta's two draws must sum in float32).
            Knob("mixup_alpha", mixup_alpha, number(high=MAX_ALPHA)),
            Knob("label_smoothing", label_smoothing,
                 number(high=1.0, high_closed=False)),
        ], name=name, tunable=tunable)

    def trial_values(self, hp):
        """`{knob: value}` for the trial `hp` describes (registering the
        knobs with `hp` where they are new).

        A `max_lr` declared in `hp` beforehand is the trial's peak rate
        whatever the optimizer, also where the constructor's `max_lr` is a
        dict: its `max_lr_<optimizer>` knobs are then left out of the
        space. A `max_lr_<optimizer>` declared beside it, or where
        `max_lr` is one rate, would be silently ignored: a `ValueError`.

        Args:
            hp: The trial's `HyperParameters`.

        Returns:
            A dict of the knobs' values.
        """
        per_optimizer = [knob for knob in self.knobs
                         if knob.name.startswith("max_lr_")]
        declared = _declared_rates(hp)
        if not per_optimizer:
            if "max_lr" in declared:  # the knob's own name: read
                declared.remove("max_lr")
            if declared:
                names = ", ".join(f"`{name}`" for name in declared)
                raise ValueError(
                    f"The tuner's HyperParameters declare {names}, which this "
                    "ResNetHyperModel does not read: its `max_lr` is one "
                    "peak rate for every optimizer (knob `max_lr`). "
                    "Declare `max_lr` instead, or pass `max_lr` as a dict "
                    "per optimizer, e.g. {'sgd': (0.02, 0.5), 'adamw': "
                    "(3e-4, 1e-2)}.")
            return knob_values(self.knobs, hp)
        if "max_lr" not in declared:
            values = knob_values(self.knobs, hp)
            rate_knob = f"max_lr_{values['optimizer']}"
            if values.get(rate_knob) is None:
                raise ValueError(
                    f"The tuner's HyperParameters set `optimizer` to "
                    f"{values['optimizer']!r}, for which the `max_lr` dict "
                    f"gives no peak rate (knob `{rate_knob}`). Add it to the "
                    "dict, or declare `max_lr` in the HyperParameters.")
            return values
        if len(declared) > 1:
            others = ", ".join(f"`{name}`" for name in declared[1:])
            raise ValueError(
                "The tuner's HyperParameters declare both `max_lr` (one peak "
                f"rate for every optimizer) and {others} (the "
                "rate of one optimizer); declare one of them.")
        values = knob_values([knob for knob in self.knobs
                              if knob not in per_optimizer], hp)
        # Read, not registered: it may sit in a conditional scope of the
        # user's own.
        values["max_lr"] = rate()("max_lr", hp.get("max_lr"))
        return values

    def build_model(self, values):
        return resnet(self.input_shape, self.num_classes,
                      depth=values["depth"], width=values["width"],
                      norm=values["norm"],
                      drop_path_rate=values["drop_path_rate"],
                      seed=self.seed)

    def compile_model(self, model, values, total_steps,
                      gradient_accumulation_steps=None):
        max_lr = values.get("max_lr", values.get(
            f"max_lr_{values['optimizer']}"))
        rate, momentum = learning_rate_schedule(
            values["schedule"], max_lr, total_steps)
        model.compile(
            optimizer=make_optimizer(values["optimizer"], rate, momentum,
                                     values["weight_decay"],
                                     gradient_accumulation_steps),
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True,
                label_smoothing=values["label_smoothing"]),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])

    def inputs(self, x):
        """Images `x` as the pipeline gives them to the model: integer
        pixels scaled to [0, 1] (`training_data` does not standardize)."""
        return pixels(x)

    def labels(self, y):
        """One-hot float32 labels from integer or one-hot `y`."""
        return one_hot_labels(np.asarray(y), self.num_classes)

    def _check_image_shape(self, x, name):
        """Refuses images of another shape than `input_shape`, naming
        `name` (Keras' error came from inside the stem's convolution)."""
        if tuple(np.shape(x)[1:]) != self.input_shape:
            raise ValueError(
                f"Argument `{name}` must hold images of input_shape="
                f"{self.input_shape}, shape (N, *input_shape). Received: "
                f"images of shape {np.shape(x)}")

    def _in_memory(self, x, y, name="x"):
        """A dataset of (image, label) pairs `x` (with `y` None) read into
        arrays, as `image_pipeline` reads it; anything else as it is."""
        if is_dataset(x):
            if y is not None:
                # Its shape check read the dataset as one image, of ().
                is_or_holds = "is" if name == "x" else "holds"
                raise ValueError(
                    f"Argument `{name}` {is_or_holds} a dataset of (image, "
                    "label) pairs: its labels come with it, so pass no "
                    "separate labels. Received: labels of type "
                    f"{type(y).__name__} beside it")
            return read_dataset(x, self.num_classes)
        return x, y

    def training_data(self, values, x, y, batch_size, validation_data,
                      kwargs):
        if kwargs.get("sample_weight") is not None or (isinstance(
                validation_data, (tuple, list)) and len(validation_data) > 2):
            raise ValueError(
                "Sample weights (`sample_weight`, or a third entry of "
                "`validation_data`) cannot reach the image pipeline's "
                "augmented, mixed batches: ResNetHyperModel trains without "
                "them. Weigh classes with the data instead.")
        pipeline = dict(batch_size=batch_size, num_classes=self.num_classes,
                        normalize=False, seed=self.seed)
        kwargs = dict(kwargs)
        # Datasets read here, as the pipeline would, to compare the
        # pixel scales of both sides.
        x, y = self._in_memory(x, y)
        self._check_image_shape(x, "x")
        train = image_pipeline(x, y, augment=self.augment,
                               mixup_alpha=values["mixup_alpha"],
                               shuffle=kwargs.pop("shuffle", True),
                               drop_remainder=self.drop_remainder,
                               **pipeline)
        validation_batch_size = kwargs.pop("validation_batch_size", None)
        if validation_data is not None:
            if isinstance(validation_data, (tuple, list)):
                val_x, val_y = validation_data[:2]
            else:
                val_x, val_y = validation_data, None
            val_x, val_y = self._in_memory(val_x, val_y, "validation_data")
            self._check_image_shape(val_x, "validation_data")
            validation_data = _validation_pipeline(val_x, val_y, dict(
                pipeline, batch_size=batch_size if validation_batch_size is
                None else check_size("validation_batch_size",
                                     validation_batch_size)))
            # After the pipelines' own checks of the pixels.
            check_pixel_scales(x, val_x)
        # The pipeline shuffles (Keras would only warn it cannot).
        return (dict(kwargs, x=train, shuffle=False,
                     validation_data=validation_data),
                batches_per_epoch(train, batch_size))


def _validation_pipeline(x, y, pipeline):
    """`image_pipeline` of the validation images `x` and labels `y`. Its
    errors name its own arguments, `x` and `y`, which a caller of `fit`
    reads as the training data: they now say they are about
    `validation_data`."""
    try:
        return image_pipeline(x, y, training=False, **pipeline)
    except (ValueError, TypeError) as error:
        if type(error) not in (ValueError, TypeError):
            raise
        raise type(error)(
            "In `validation_data` (its images are the `x`, its labels the "
            f"`y` below): {error}") from None
