"""One user seed, several independent random streams."""

import numpy as np

from kerastrain._validation import check_int

# Keras' torch backend keeps a layer's seed as an int32.
LAYER_SEED_LIMIT = 2**31
# A model seeds its layers with `seed + i`: its own seed stays below this,
# leaving room for the offsets under `LAYER_SEED_LIMIT`.
MODEL_SEED_LIMIT = 2**30


def spawn_seeds(seed, count):
    """Returns `count` independent integer seeds derived from `seed`.

    Keras' random layers (and `tf.random.Generator`) that start from the
    same seed draw the same numbers, so layers that share one user seed
    make correlated decisions: a flip that always comes with the same
    rotation, two dropout layers that drop the same units. NumPy's
    `SeedSequence` hashes the seed into well-mixed, distinct seeds, which
    also stay clear of the small `seed + i` seeds a model's layers get.

    Args:
        seed: Integer >= 0, or None (then every seed is None: unseeded).
        count: Integer >= 0, how many seeds.

    Returns:
        A list of `count` integers in `[0, 2**31)`, or of Nones.

    Example:

    >>> a, b = spawn_seeds(0, 2)
    >>> a != b and spawn_seeds(0, 2) == [a, b]
    True
    """
    count = check_int("count", count, min_value=0)
    if seed is None:
        return [None] * count
    seed = check_int("seed", seed, min_value=0)
    # 31 bits: a valid seed for every backend's integer type.
    return [int(s) % LAYER_SEED_LIMIT
            for s in np.random.SeedSequence(seed).generate_state(count)]


def tf_generator(seed, spread=False):
    """A stateful `tf.random.Generator` for the tf.data input pipeline:
    from `seed`, or non-deterministic for None. Like Keras' random layers,
    it gives each batch and each epoch new draws, and a seed repeats them.
    Make it eagerly (in a constructor): tf.data traces the calls that use
    it into a graph.

    TensorFlow's `from_seed(s)` starts Philox's counter at `s`, so the
    streams of seeds 1 apart are one stream shifted by a draw: with
    `spread` (a seed a user gives, as 0, 1, 2), `spawn_seeds` spreads the
    seed first. (The pipeline's own seeds come spread already.) With
    TensorFlow's op determinism on, which refuses the machine's entropy,
    a None seed is drawn from TensorFlow's global seed, as its own random
    ops' are (`keras.utils.set_random_seed`), or refused without one."""
    import tensorflow as tf

    if seed is None:
        try:
            return tf.random.Generator.from_non_deterministic_state()
        except RuntimeError:  # op determinism is on
            pass
        try:
            seed = int(tf.random.uniform([], maxval=LAYER_SEED_LIMIT,
                                         dtype=tf.int64))
        except RuntimeError:
            raise ValueError(
                "Argument `seed` must be given while TensorFlow's op "
                "determinism is on and no global seed is set: pass `seed`, "
                "or set the global one (`keras.utils.set_random_seed`) to "
                "draw it from. Received: seed=None") from None
    elif spread:
        [seed] = spawn_seeds(seed, 1)
    return tf.random.Generator.from_seed(seed)
