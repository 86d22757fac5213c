"""Timing shared by the benchmarks: seconds per compiled training step."""

import argparse
import time

import keras
import numpy as np


def step_benchmark_inputs(doc, steps, batch_size, shape):
    """The `--steps`/`--batch-size` flags of a step benchmark, and random
    inputs of `shape` with 10-class labels for that many steps."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.batch_size * args.steps
    x = rng.standard_normal((n,) + tuple(shape)).astype("float32")
    return args, x, rng.integers(0, 10, n)


def step_timer(model, x, y, batch_size, steps, optimizer="sgd"):
    """Compiles `model` (a first fit) and returns a no-argument measure:
    the mean wall time of one of `steps` `fit` steps, for
    `interleaved_best`. The model trains on at each call, which leaves a
    step's time as it was."""
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
    model.fit(x[:batch_size], y[:batch_size], batch_size=batch_size,
              epochs=1, verbose=0)
    n = batch_size * steps

    def measure():
        start = time.perf_counter()
        model.fit(x[:n], y[:n], batch_size=batch_size, epochs=1, verbose=0)
        return (time.perf_counter() - start) / steps
    return measure


def seconds_per_step(model, x, y, batch_size, steps, optimizer="sgd"):
    """Mean wall time of one `fit` step, after a first fit that compiles."""
    return step_timer(model, x, y, batch_size, steps, optimizer)()


def interleaved_best(measures, repeats=3):
    """Runs each no-argument `measure` (returning seconds) `repeats` times,
    interleaved, and returns the best time of each: on a shared machine the
    first runs of a process and passing hiccups would otherwise pick the
    winner."""
    times = [[measure() for measure in measures] for _ in range(repeats)]
    return [min(column) for column in zip(*times)]
