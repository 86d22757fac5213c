"""Input pipeline throughput on 32x32x3 images, batch 128, as ratios taken
in one run on the current backend (best of 3 interleaved runs):

(a) a bare `from_tensor_slices().batch().prefetch()` pipeline;
(b) `image_pipeline` with flip + rotate + crop and mixup (batched), on
    tf.data's parallel calls (`deterministic=False`);
(b') the same in order, the default with a seed (same batches every run);
(c) the same augmentations naively per example in `Dataset.map` before
    batching, then the same mixup;
(c') the same per example on tf.data's parallel calls, as (b) runs: (b) /
    (c') is what batching alone gains, (b) / (c) also counts the parallel
    calls that (c) goes without.

Targets (issue #6): (b) >= 3x (c) and >= 0.5x (a); and a small CNN's `fit`
on (b) within 10% of its `fit` on (a), cached (not input-bound).

Run: KERAS_BACKEND=jax python -m bench.pipeline [--batches 40]
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from bench.timing import interleaved_best
from kerastrain._seeds import spawn_seeds
from kerastrain.data import image_pipeline
from kerastrain.data.image_pipeline import _augmenters

BATCH, CLASSES = 128, 10


def seconds_for(dataset, batches):
    iterator = iter(dataset)
    next(iterator)  # warm-up: tracing and the first fill of the prefetch
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return time.perf_counter() - start


def naive(x, labels, seed, parallel=False):
    augment = ("flip", "rotate", "crop")
    layers = _augmenters(augment, spawn_seeds(seed, len(augment)))
    mixup = keras.layers.MixUp(alpha=0.2, seed=seed)

    def per_example(image, label):
        for layer in layers:
            image = layer(image)
        return image, label

    def mix(images, labels):
        mixed = mixup({"images": images, "labels": labels})
        return mixed["images"], mixed["labels"]

    return (tf.data.Dataset.from_tensor_slices((x, labels)).repeat()
            .map(per_example, num_parallel_calls=tf.data.AUTOTUNE
                 if parallel else None, deterministic=not parallel)
            .batch(BATCH).map(mix)
            .prefetch(tf.data.AUTOTUNE))


def small_cnn():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(CLASSES)])
    model.compile("adam", keras.losses.CategoricalCrossentropy(
        from_logits=True))
    return model


def fit_seconds(dataset, steps):
    model = small_cnn()
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = BATCH * 20
    x = rng.integers(0, 256, (n, 32, 32, 3)).astype("uint8")
    y = rng.integers(0, CLASSES, n)
    one_hot = np.eye(CLASSES, dtype="float32")[y]

    bare = (tf.data.Dataset.from_tensor_slices(
        (x.astype("float32") / 255, one_hot)).repeat().batch(BATCH)
        .prefetch(tf.data.AUTOTUNE))
    ours = image_pipeline(x, y, BATCH, CLASSES, mixup_alpha=0.2,
                          seed=0, deterministic=False).repeat()
    ordered = image_pipeline(x, y, BATCH, CLASSES, mixup_alpha=0.2,
                             seed=0).repeat()
    slow = naive(x.astype("float32") / 255, one_hot, 0)
    slow_parallel = naive(x.astype("float32") / 255, one_hot, 0,
                          parallel=True)
    a, b, b_ordered, c, c_parallel = (
        args.batches * BATCH / seconds for seconds in interleaved_best(
            [lambda: seconds_for(bare, args.batches),
             lambda: seconds_for(ours, args.batches),
             lambda: seconds_for(ordered, args.batches),
             lambda: seconds_for(slow, args.batches),
             lambda: seconds_for(slow_parallel, args.batches)]))

    cached = bare.take(20).cache().repeat()
    fit_a, fit_b = interleaved_best([lambda: fit_seconds(cached, 40),
                                     lambda: fit_seconds(ours, 40)])
    print(f"backend {keras.backend.backend()}, 32x32x3, batch {BATCH}")
    print(f"images/s: (a) bare {a:,.0f}, (b) image_pipeline {b:,.0f}, "
          f"(b') in order {b_ordered:,.0f}, (c) naive per example {c:,.0f}"
          f", (c') per example on parallel calls {c_parallel:,.0f}")
    print(f"(b') / (b): {b_ordered / b:.2f} (the cost of reproducible "
          "batches)")
    print(f"(b) / (c): {b / c:.2f} (target >= 3); (b) / (a): {b / a:.2f} "
          "(target >= 0.5)")
    print(f"batching alone: (b) / (c'), both on parallel calls, "
          f"{b / c_parallel:.2f}; (b') / (c), both in order, "
          f"{b_ordered / c:.2f}")
    print(f"small CNN fit, steps/s on (b) / on (a) cached: "
          f"{fit_a / fit_b:.2f} (target >= 0.9; {40 / fit_b:.1f} / "
          f"{40 / fit_a:.1f} steps/s)")


if __name__ == "__main__":
    main()
