"""TensorFlow's sparse gradients as the dense ones of the other backends."""

from keras import ops


def dense(gradient, variable):
    """`gradient` as a dense tensor of `variable`'s shape.

    TensorFlow gives an `Embedding`'s gradient as `IndexedSlices`, a row
    per occurrence of each token. Squared or normed row by row, a token
    repeated in the batch counts as several rows instead of their sum,
    which is its gradient on jax and torch (Keras 3.15's Adam on
    TensorFlow squares the rows, and its moving variance differs). Added
    to zeros, the rows of each token are summed. Other gradients come back
    as they are.
    """
    # By name, without importing TensorFlow (a torch tensor has an
    # `indices` method too).
    if type(gradient).__name__ != "IndexedSlices":
        return gradient
    return ops.add(ops.zeros_like(variable), gradient)
