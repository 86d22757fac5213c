"""Keras' histogram equalization with one `bincount`, inside tf.data too.

Keras 3.15's `Equalization` chooses how to count its 256-bin histogram by
the *global* backend: under jax it unrolls one comparison and sum per bin
(jax cannot compile a `bincount` of unknown length). Inside tf.data the
layer computes with TensorFlow whatever the global backend, so under jax
`RandAugment` put 47,000 TensorFlow ops in the pipeline's graph for one
batch: 15 s to build it and several times the per-batch time of the
tensorflow backend. Counting by the layer's own backend restores the
single `bincount` there; where the layer computes with jax itself, Keras'
loop stays.
"""

import types


def count_bins_once(equalization):
    """Makes the Keras `Equalization` layer `equalization` count its
    histogram with `bincount` whenever the backend it computes with (not
    the global one) allows it. Returns the layer."""
    keras_count = equalization._custom_histogram_fixed_width

    def count(self, values, value_range, nbins):
        if self.backend.name == "jax":
            return keras_count(values, value_range, nbins)
        value_min, value_max = (self.backend.cast(v, "float32")
                                for v in value_range)
        scaled = ((self.backend.cast(values, "float32") - value_min)
                  * (nbins - 1) / (value_max - value_min))
        indices = self.backend.numpy.clip(
            self.backend.cast(scaled, "int32"), 0, nbins - 1)
        return self.backend.numpy.bincount(
            self.backend.numpy.reshape(indices, [-1]), minlength=nbins)

    equalization._custom_histogram_fixed_width = types.MethodType(
        count, equalization)
    return equalization
