"""The benchmark's own pipelines build and give what they claim; its
timings are not tested (machines are shared and noisy)."""

import numpy as np
import pytest

from bench.pipeline import BATCH, CLASSES, naive


@pytest.mark.parametrize("parallel", [False, True])
def test_the_naive_per_example_pipeline_augments_and_mixes(parallel):
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 32, 32, 3)).astype("float32")
    labels = np.eye(CLASSES, dtype="float32")[np.arange(BATCH) % CLASSES]
    images, mixed = (np.asarray(t) for t in next(iter(naive(
        x, labels, 0, parallel=parallel))))
    assert images.shape == x.shape and mixed.shape == labels.shape
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-5)
    assert (mixed.max(axis=1) < 1 - 1e-4).any()  # labels were mixed
    # Augmented: one example run through the augmentations alone moves.
    alone = np.asarray(next(iter(naive(x[:1].repeat(BATCH, axis=0),
                                       labels[:1].repeat(BATCH, axis=0),
                                       0, parallel=parallel)))[0])
    assert not np.allclose(alone, x[:1], atol=1e-3)
