"""Cost of kerastrain's callbacks, as ratios taken in one run on the
current backend (best of 3 interleaved runs), with a ResNet-8 (width 16)
on scikit-learn's digits:

- a 20-epoch `fit` with CheckpointEarlyStopping (saving on every
  improvement), GradientAccumulation(2) and WeightHistograms(freq=1, with
  gradients and plots) / the same `fit` without them (same optimizer,
  accumulating 2 batches, so both do the same training);
- the same cost accounted from inside: 1 + (time spent in the callbacks'
  own hooks) / plain fit. The wall-clock ratio of two runs moves by 10-30%
  on a shared 2-core machine; the hooks' time does not, and it splits into
  a fixed cost per `fit` and a cost per epoch, which gives the shortest
  epoch at which the callbacks cost at most 5%;
- `find_lr` (100 steps, then the full restore) / as many plain training
  steps (as many as it ran, when the loss diverged first).

LRFinder is timed on its own: it ends the `fit` it runs in by design.

Run: KERAS_BACKEND=jax python -m bench.callbacks [--epochs 20]
"""

import argparse
import collections
import functools
import tempfile
import time

import keras
import numpy as np
from sklearn.datasets import load_digits

from bench.timing import interleaved_best
from kerastrain import find_lr
from kerastrain.callbacks import (CheckpointEarlyStopping,
                                  GradientAccumulation, WeightHistograms)
from kerastrain.callbacks._training_state import restore, snapshot
from kerastrain.models import resnet

FIXED_HOOKS = ("on_train_begin", "on_train_end")
EPOCH_HOOKS = ("on_epoch_begin", "on_epoch_end")


def stopwatch(callbacks, seconds):
    """Wraps the train and epoch hooks each callback implements so that
    their wall time adds up in `seconds[(callback class, "fixed" or
    "epoch")]`. The first `on_epoch_begin` of a `fit` counts as fixed: it
    is where work done once per `fit` happens when it needs a built
    model (`WeightHistograms` starts its probe gradient there; on jax it
    compiles beside the first epoch, whose end then waits for it and
    logs the initial weights, a cost this splits between the columns).
    Hooks a callback leaves at Keras' default stay
    unwrapped: Keras dispatches batch hooks asynchronously only when no
    callback implements them."""
    for callback in callbacks:
        for name in FIXED_HOOKS + EPOCH_HOOKS:
            hook = getattr(callback, name)
            if getattr(hook, "_is_default", False):
                continue
            kind = "fixed" if name in FIXED_HOOKS else "epoch"
            key = (type(callback).__name__, kind)
            first = [name == "on_epoch_begin"]

            @functools.wraps(hook)
            def timed(*args, _hook=hook, _key=key, _first=first, **kwargs):
                start = time.perf_counter()
                try:
                    return _hook(*args, **kwargs)
                finally:
                    key = (_key[0], "fixed") if _first[0] else _key
                    _first[0] = False
                    seconds[key] += time.perf_counter() - start

            setattr(callback, name, timed)
    return callbacks


def make_model():
    keras.utils.set_random_seed(0)
    model = resnet((8, 8, 1), 10, depth=8, width=16)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9,
                                       gradient_accumulation_steps=2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def timed_fit(x, y, epochs, batch_size, callbacks):
    model = make_model()
    # Compiles every step the timed fit runs: its last, partial training
    # batch and both validation batch sizes are shapes of their own, which
    # a warm-up on two whole batches left to compile inside the timed fit
    # (seconds on jax, on both sides of the ratio, until 2026-12-08).
    model.fit(x, y, batch_size=batch_size, epochs=1, validation_split=0.15,
              verbose=0)
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
    runs = []  # the hooks' seconds of each run with the callbacks
    with tempfile.TemporaryDirectory() as folder:
        def callbacks():
            runs.append(collections.Counter())
            return stopwatch([
                CheckpointEarlyStopping(f"{folder}/best.keras",
                                        patience=args.epochs),
                GradientAccumulation(2),
                WeightHistograms(f"{folder}/logs", freq=1,
                                 probe=(x[:64], y[:64])),
            ], runs[-1])

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
    # Every run starts from these weights: a range test on a model the
    # plain steps had already trained stops within a few steps (its loss
    # is near its floor, so noise reaches 4x the minimum).
    start_state = snapshot(model)

    def plain_steps():
        start = time.perf_counter()
        model.fit(xs, ys, batch_size=args.batch_size, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
        restore(model, start_state)
        return seconds

    ran = []  # the steps each range test ran before it stopped

    def range_test():
        start = time.perf_counter()
        result = find_lr(model, xs, ys, batch_size=args.batch_size,
                         num_steps=100, end_lr=1.0)
        ran.append(len(result.lrs))
        return time.perf_counter() - start

    steps, finder = interleaved_best([plain_steps, range_test],
                                     repeats=args.repeats)
    # A test that stops early (the loss diverged) is compared with as
    # many plain steps.
    steps *= min(ran) / 100

    print(f"backend {keras.backend.backend()}, ResNet-8 on digits (x"
          f"{args.data_repeats}, {len(x)} samples), batch {args.batch_size}, "
          f"{args.epochs} epochs")
    print(f"fit with CheckpointEarlyStopping + GradientAccumulation + "
          f"WeightHistograms / plain fit: {with_callbacks / plain:.2f}  "
          f"({with_callbacks:.1f} / {plain:.1f} s)")
    # The median run's hooks (the first, warm-up run left out).
    hooks = sorted(runs[1:], key=lambda run: sum(run.values()))[
        len(runs[1:]) // 2]
    total = sum(hooks.values())
    fixed = sum(v for (_, kind), v in hooks.items() if kind == "fixed")
    per_epoch = (total - fixed) / args.epochs
    print(f"1 + callbacks' own time / plain fit: {1 + total / plain:.3f}  "
          f"({total:.2f} s in the hooks: {fixed:.2f} s per fit + "
          f"{per_epoch * 1e3:.0f} ms per epoch)")
    for name in sorted({name for name, _ in hooks}):
        print(f"  {name}: {hooks[name, 'fixed']:.2f} s per fit, "
              f"{hooks[name, 'epoch'] / args.epochs * 1e3:.1f} ms per epoch")
    print(f"plain epochs of {plain / args.epochs:.2f} s; at most 5% from "
          f"epochs of {(fixed / args.epochs + per_epoch) / 0.05:.1f} s "
          f"({args.epochs} epochs)")
    print(f"find_lr ({min(ran)} of 100 steps before it stopped) / as many "
          f"plain steps: {finder / steps:.2f}  ({finder:.2f} / {steps:.2f} s)")


if __name__ == "__main__":
    main()
