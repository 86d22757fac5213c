"""Cost of kerastrain's layers in a compiled training step, as ratios taken
in one run on the current backend:

- InstanceNormalization (shifted two-pass moments) / Keras'
  GroupNormalization(groups=-1), in a ResNet-20 with each;
- ResNet-20 with DropPath (drop_path_rate=0.1) / the same without.

Run: KERAS_BACKEND=jax python -m bench.layers [--steps 30] [--batch-size 64]
"""

import keras

from bench.timing import (interleaved_best, step_benchmark_inputs,
                          step_timer)
from kerastrain.layers import normalization as norms
from kerastrain.models import resnet


def keras_instance_norm_resnet():
    """ResNet-20 whose instance norms are Keras' GroupNormalization."""
    original = norms.InstanceNormalization
    norms.InstanceNormalization = (
        lambda **kw: keras.layers.GroupNormalization(groups=-1,
                                                     epsilon=1e-5, **kw))
    try:
        return resnet((32, 32, 3), 10, depth=20, norm="instance")
    finally:
        norms.InstanceNormalization = original


def main():
    args, x, y = step_benchmark_inputs(__doc__, steps=30, batch_size=64,
                                       shape=(32, 32, 3))

    def timer(model):
        return step_timer(model, x, y, args.batch_size, args.steps)

    # Each pair timed in turn, best of 3 (until 2026-12-08 each model once,
    # one after the other, where passing load picked the winner).
    ours, theirs = interleaved_best([
        timer(resnet((32, 32, 3), 10, depth=20, norm="instance")),
        timer(keras_instance_norm_resnet())])
    plain, dropped = interleaved_best([
        timer(resnet((32, 32, 3), 10, depth=20)),
        timer(resnet((32, 32, 3), 10, depth=20, drop_path_rate=0.1))])
    print(f"backend {keras.backend.backend()}, ResNet-20 on 32x32x3, batch "
          f"{args.batch_size}, {args.steps} steps each")
    print(f"InstanceNormalization / GroupNormalization(groups=-1): "
          f"{ours / theirs:.2f}  ({ours * 1e3:.0f} / {theirs * 1e3:.0f} "
          "ms per step)")
    print(f"with DropPath / without: {dropped / plain:.2f}  "
          f"({dropped * 1e3:.0f} / {plain * 1e3:.0f} ms per step)")


if __name__ == "__main__":
    main()
