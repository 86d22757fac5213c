"""Cost of kerastrain's callbacks, as ratios taken in one run on the
current backend (best of 3 interleaved runs), with a ResNet-8 (width 16)
on scikit-learn's digits:

- a 20-epoch `fit` with CheckpointEarlyStopping (saving on every
  improvement), GradientAccumulation(2) and WeightHistograms(freq=1, with
  gradients and plots) / the same `fit` without them (same optimizer,
  accumulating 2 batches, so both do the same training);
- `find_lr` (100 steps, then the full restore) / 100 plain training steps.

LRFinder is timed on its own: it ends the `fit` it runs in by design.

Run: KERAS_BACKEND=jax python -m bench.callbacks [--epochs 20]
"""

import argparse
import tempfile
import time

import keras
import numpy as np
from sklearn.datasets import load_digits

from bench.timing import interleaved_best
from kerastrain import find_lr
from kerastrain.callbacks import (CheckpointEarlyStopping,
                                  GradientAccumulation, WeightHistograms)
from kerastrain.models import resnet


def make_model():
    keras.utils.set_random_seed(0)
    model = resnet((8, 8, 1), 10, depth=8, width=16)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9,
                                       gradient_accumulation_steps=2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def timed_fit(x, y, epochs, batch_size, callbacks):
    model = make_model()
    model.fit(x[:batch_size * 2], y[:batch_size * 2], batch_size=batch_size,
              verbose=0)  # compiles
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=epochs,
              validation_split=0.15, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-repeats", type=int, default=1,
                        help="tile the digits this many times (longer "
                             "epochs, same fixed costs)")
    args = parser.parse_args()
    digits = load_digits()
    x = np.tile((digits.images[..., None] / 16.0).astype("float32"),
                (args.data_repeats, 1, 1, 1))
    y = np.tile(digits.target, args.data_repeats)
    with tempfile.TemporaryDirectory() as folder:
        def callbacks():
            return [
                CheckpointEarlyStopping(f"{folder}/best.keras",
                                        patience=args.epochs),
                GradientAccumulation(2),
                WeightHistograms(f"{folder}/logs", freq=1,
                                 probe=(x[:64], y[:64])),
            ]

        # One short run first: imports (matplotlib, tensorboard) are paid
        # once per process, not per fit.
        timed_fit(x[:256], y[:256], 1, args.batch_size, callbacks())
        plain, with_callbacks = interleaved_best([
            lambda: timed_fit(x, y, args.epochs, args.batch_size, []),
            lambda: timed_fit(x, y, args.epochs, args.batch_size,
                              callbacks())], repeats=args.repeats)

    model = make_model()
    n = 100 * args.batch_size
    xs, ys = np.resize(x, (n,) + x.shape[1:]), np.resize(y, n)
    model.fit(xs[:64], ys[:64], batch_size=args.batch_size, verbose=0)

    def plain_steps():
        start = time.perf_counter()
        model.fit(xs, ys, batch_size=args.batch_size, epochs=1, verbose=0)
        return time.perf_counter() - start

    def range_test():
        start = time.perf_counter()
        find_lr(model, xs, ys, batch_size=args.batch_size, num_steps=100,
                end_lr=1.0)
        return time.perf_counter() - start

    steps, finder = interleaved_best([plain_steps, range_test],
                                     repeats=args.repeats)

    print(f"backend {keras.backend.backend()}, ResNet-8 on digits (x"
          f"{args.data_repeats}, {len(x)} samples), batch {args.batch_size}, "
          f"{args.epochs} epochs")
    print(f"fit with CheckpointEarlyStopping + GradientAccumulation + "
          f"WeightHistograms / plain fit: {with_callbacks / plain:.2f}  "
          f"({with_callbacks:.1f} / {plain:.1f} s)")
    print(f"find_lr (100 steps) / 100 plain steps: {finder / steps:.2f}  "
          f"({finder:.1f} / {steps:.1f} s)")


if __name__ == "__main__":
    main()
