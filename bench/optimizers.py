"""Cost of scheduled hyperparameters in a compiled training step, as ratios
taken in one run on the current backend (best of 3 interleaved runs
of each), on an MLP big enough that the
optimizer's share of a step shows (64 -> 1024 -> 1024 -> 10, batch 256):

- Keras SGD with a OneCycle rate / with a constant rate (cost of a schedule);
- kerastrain SGD with OneCycle rate and cycling momentum / Keras SGD with the
  same rate and a constant momentum;
- kerastrain AdamW with a cycling beta_1 / Keras AdamW, same rate;
- kerastrain LARS / Keras SGD with momentum.

Run: KERAS_BACKEND=jax python -m bench.optimizers [--steps 50]
"""

import keras

from bench.timing import (interleaved_best, seconds_per_step,
                          step_benchmark_inputs)
from kerastrain import optimizers
from kerastrain.schedules import OneCycle


def mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(1024, "relu"),
        keras.layers.Dense(1024, "relu"), keras.layers.Dense(10)])


def main():
    args, x, y = step_benchmark_inputs(__doc__, steps=50, batch_size=256,
                                       shape=(64,))
    one_cycle = OneCycle(0.05, 10 * args.steps)
    momentum = one_cycle.momentum_schedule

    def timed(make_optimizer):
        return seconds_per_step(mlp(), x, y, args.batch_size, args.steps,
                                optimizer=make_optimizer())


    pairs = {
        "Keras SGD, OneCycle rate / constant rate": (
            lambda: keras.optimizers.SGD(one_cycle, 0.9),
            lambda: keras.optimizers.SGD(0.05, 0.9)),
        "kerastrain SGD, cycling momentum / Keras SGD, constant momentum": (
            lambda: optimizers.SGD(one_cycle, momentum),
            lambda: keras.optimizers.SGD(one_cycle, 0.9)),
        "kerastrain AdamW, cycling beta_1 / Keras AdamW": (
            lambda: optimizers.AdamW(one_cycle, beta_1=momentum),
            lambda: keras.optimizers.AdamW(one_cycle)),
        "kerastrain LARS / Keras SGD with momentum": (
            lambda: optimizers.LARS(one_cycle, 0.9),
            lambda: keras.optimizers.SGD(one_cycle, 0.9)),
    }
    timed(lambda: keras.optimizers.SGD(0.05))  # warms the process up
    print(f"backend {keras.backend.backend()}, MLP 64-1024-1024-10, batch "
          f"{args.batch_size}, {args.steps} steps each")
    for label, (ours, theirs) in pairs.items():
        a, b = interleaved_best([lambda: timed(ours),
                                 lambda: timed(theirs)])
        print(f"{label}: {a / b:.2f}  ({a * 1e3:.1f} / {b * 1e3:.1f} ms "
              "per step)")


if __name__ == "__main__":
    main()
