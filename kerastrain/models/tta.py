"""Test-time augmentation: one model that averages its predictions over
shifted copies of the input image."""

import keras

from kerastrain._validation import (check_bool, check_choice, check_int,
                                     check_model_inputs)
from kerastrain.models.ensemble import probabilities

DATA_FORMATS = ("channels_last", "channels_first")


def tta(model, shift=1, from_logits=True, data_format=None, name="tta"):
    """Averages `model`'s class probabilities over the image and four
    copies of it shifted by `shift` pixels (down, up, right, left).

    Test-time augmentation, for shifts (fastai's `Learner.tta` averages
    predictions over the training's random augmentations and blends in
    the plain one; here the five fixed views weigh the same): a model
    trained on randomly translated images (`image_pipeline`'s `"shift"`)
    scores each test image as the mean of five views, the
    vacated border filled with zeros like `RandomTranslation`'s
    `fill_mode="constant"`. The result is a functional model built from
    Keras' own `ZeroPadding2D` and `Cropping2D` and `model` itself (its
    weights shared, not copied): it predicts five times the work of one
    view, and saves and loads as `.keras` like any other model, on any
    backend.

    Args:
        model: A Keras model with one input of images, `(batch, height,
            width, channels)` or channels first (see `data_format`), and
            one output of class scores.
        shift: Pixels to shift by, >= 1 and smaller than the height and the
            width.
        from_logits: Whether `model` outputs logits (softmax is applied to
            each view; a sigmoid to a single logit) or probabilities
            (averaged as they are).
        data_format: `"channels_last"` or `"channels_first"`, the layout
            of `model`'s images. None: the layout `model`'s own layers
            were built with (those with a `data_format`: convolutions,
            pooling, `Flatten`, ...; `models.resnet` is channels-last
            whatever the global setting), else Keras'
            `image_data_format()`.
        name: Name of the new model.

    Returns:
        A `keras.Model` with `model`'s input, giving probabilities.

    Example:

    >>> import keras, numpy as np
    >>> net = keras.Sequential([keras.Input((8, 8, 1)),
    ...                         keras.layers.Flatten(), keras.layers.Dense(3)])
    >>> tta(net).predict(np.ones((2, 8, 8, 1)), verbose=0).sum(-1).round(5)
    array([1., 1.], dtype=float32)
    """
    if not isinstance(model, keras.Model):
        raise TypeError("Argument `model` must be a Keras model. Received: "
                        f"model={model!r}")
    shift = check_int("shift", shift, min_value=1)
    check_bool("from_logits", from_logits)
    inputs = check_model_inputs("model", model)
    if len(inputs) != 1 or len(model.outputs) != 1 or len(
            inputs[0].shape) != 4:
        raise ValueError(
            "Argument `model` must have one input of images (batch, height, "
            "width, channels) and one output. Received: inputs "
            f"{[tuple(i.shape) for i in inputs]}, "
            f"{len(model.outputs)} output(s)")
    data_format = _data_format(model, data_format)
    channels_last = data_format == "channels_last"
    size = inputs[0].shape[1:3] if channels_last else inputs[0].shape[2:4]
    if any(s is None or shift >= s for s in size):
        raise ValueError(
            "Argument `shift` must be smaller than the image's height and "
            f"width (known in the model's input). Received: shift={shift} "
            f"for images of {tuple(size)}")
    image = keras.Input(shape=inputs[0].shape[1:], dtype=inputs[0].dtype)
    outputs = [model(image)]
    # (top, bottom) and (left, right) padding; the crop takes as much from
    # the other side, so the size stays.
    for rows, cols in (((shift, 0), (0, 0)), ((0, shift), (0, 0)),
                       ((0, 0), (shift, 0)), ((0, 0), (0, shift))):
        padded = keras.layers.ZeroPadding2D(
            (rows, cols), data_format=data_format)(image)
        shifted = keras.layers.Cropping2D(
            (rows[::-1], cols[::-1]), data_format=data_format)(padded)
        outputs.append(model(shifted))
    if from_logits:
        outputs = [probabilities(o) for o in outputs]
    # float32, as the softmax (mixed precision would round to float16).
    return keras.Model(image, keras.layers.Average(dtype="float32")(outputs),
                       name=name)


def _data_format(model, data_format):
    """`data_format` checked, or for None the one `model`'s layers agree
    on, those of nested models (an `ensemble`'s members) included, or the
    global one where none has any. A `Flatten` counts only where no other
    layer tells: its `data_format` (the global one unless given) orders
    what it flattens, whatever layout the convolutions before it read."""
    if data_format is not None:
        return check_choice("data_format", data_format, DATA_FORMATS)
    layers = [layer for layer in model._flatten_layers()
              if getattr(layer, "data_format", None) in DATA_FORMATS]
    found = ({layer.data_format for layer in layers
              if not isinstance(layer, keras.layers.Flatten)}
             or {layer.data_format for layer in layers})
    if len(found) > 1:
        raise ValueError(
            "Argument `model` has layers of both image layouts; pass "
            "`data_format` (one of channels_last, channels_first). "
            "Received: data_format=None")
    return found.pop() if found else keras.config.image_data_format()
