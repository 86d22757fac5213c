import math

import numpy as np
import pytest

from kerastrain.data import RandomResizedCrop, image_pipeline

H, W = 12, 20  # not square: rows and columns must not be mixed up


def ramps(n):
    """Channel 0 is each pixel's column, channel 1 its row."""
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    image = np.stack([cols, rows], axis=-1).astype("float32")
    return np.broadcast_to(image, (n, H, W, 2)).copy()


def boxes_of(images):
    """The crop box (top, left, height, width) as fractions of the side,
    read back from cropped ramps, and the largest deviation of each output
    from the bilinear resize of that box (which, on a ramp, is exactly
    linear: out[i, j] = (left + j * width / (W - 1)) * (W - 1))."""
    images = np.asarray(images, "float64")
    cols, rows = images[..., 0], images[..., 1]
    left = cols[:, 0, 0] / (W - 1)
    width = (cols[:, 0, -1] - cols[:, 0, 0]) / (W - 1)
    top = rows[:, 0, 0] / (H - 1)
    height = (rows[:, -1, 0] - rows[:, 0, 0]) / (H - 1)
    j, i = np.arange(W) / (W - 1), np.arange(H) / (H - 1)
    expected_cols = (left[:, None, None] + j[None, None, :]
                     * width[:, None, None]) * (W - 1)
    expected_rows = (top[:, None, None] + i[None, :, None]
                     * height[:, None, None]) * (H - 1)
    error = np.maximum(np.abs(cols - expected_cols).max(axis=(1, 2)),
                       np.abs(rows - expected_rows).max(axis=(1, 2)))
    return top, left, height, width, error


def test_each_image_is_a_box_of_the_drawn_area_and_ratio_resized():
    crop = RandomResizedCrop(scale=(0.3, 0.9), ratio=(0.5, 2.0), seed=0)
    top, left, height, width, error = boxes_of(crop(ramps(512)))
    assert error.max() < 1e-3  # a bilinear resize of one box
    assert (top >= -1e-6).all() and (left >= -1e-6).all()
    assert (top + height <= 1 + 1e-6).all()
    assert (left + width <= 1 + 1e-6).all()
    area, ratio = height * width, (width * W) / (height * H)  # in pixels
    assert area.min() >= 0.3 - 1e-5 and area.max() <= 0.9 + 1e-5
    assert ratio.min() >= 0.5 - 1e-4 and ratio.max() <= 2.0 + 1e-4
    # Uniform area: the mean of U(0.3, 0.9) is 0.6 (std of the mean of
    # 512 draws: 0.0077).
    assert area.mean() == pytest.approx(0.6, abs=0.03)
    # At a random place, not about the centre as Keras' RandomZoom does.
    off_centre = np.abs(left - (1 - width) / 2)
    assert off_centre.max() > 0.1
    assert np.corrcoef(left, top)[0, 1] == pytest.approx(0, abs=0.15)


def test_aspect_ratio_is_log_uniform():
    # Areas of at most a quarter fit every ratio in (0.5, 2) inside the
    # 12 x 20 image, so the ratio is log-uniform on the whole range: the log
    # is uniform on (-ln 2, ln 2), of mean 0 and std 2 ln 2 / sqrt(12), and
    # the ratio has mean (2 - 0.5) / (2 ln 2) = 1.082 (a uniform ratio
    # would give 1.25, and a mean log of 0.155).
    n = 2048
    crop = RandomResizedCrop(scale=(0.2, 0.25), ratio=(0.5, 2.0), seed=2)
    _, _, height, width, error = boxes_of(crop(ramps(n)))
    assert error.max() < 1e-3
    ratio = (width * W) / (height * H)
    log_ratio = np.log(ratio)
    log_2 = math.log(2.0)
    assert log_ratio.min() >= -log_2 - 1e-3 and log_ratio.max() <= log_2 + 1e-3
    assert abs(log_ratio.mean()) < 5 * (2 * log_2 / math.sqrt(12 * n))
    ratio_mean = 1.5 / (2 * log_2)
    ratio_std = math.sqrt((4 - 0.25) / (4 * log_2) - ratio_mean ** 2)
    assert abs(ratio.mean() - ratio_mean) < 5 * ratio_std / math.sqrt(n)


def test_ratio_only_from_the_part_that_fits():
    # A whole-image area leaves only the image's own ratio.
    crop = RandomResizedCrop(scale=(1.0, 1.0), ratio=(0.5, 2.0), seed=1)
    _, _, height, width, _ = boxes_of(crop(ramps(16)))
    np.testing.assert_allclose(height, 1.0, atol=1e-5)
    np.testing.assert_allclose(width, 1.0, atol=1e-5)


@pytest.mark.parametrize("ratio, height, width", [
    ((5.0, 6.0), 0.5, 1.0),  # all too wide: the widest box that fits
    ((0.1, 0.2), 1.0, 0.5),  # all too tall: the tallest
])
def test_where_no_ratio_fits_the_area_still_comes_from_scale(ratio, height,
                                                             width):
    # A box of half the image's area is at most twice as wide as the image
    # is, in fractions of each side (ratios 5-6 in pixels are 3-3.6 of the
    # 12 x 20 image); the image clipped such a box to 0.41 of its area.
    crop = RandomResizedCrop(scale=(0.5, 0.5), ratio=ratio, seed=0)
    _, _, got_height, got_width, error = boxes_of(crop(ramps(16)))
    assert error.max() < 1e-3
    np.testing.assert_allclose(got_height, height, atol=1e-5)
    np.testing.assert_allclose(got_width, width, atol=1e-5)


def test_full_scale_square_ratio_is_the_identity():
    x = np.random.default_rng(0).random((8, H, W, 3)).astype("float32")
    out = RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0), seed=0)(x)
    np.testing.assert_allclose(np.asarray(out), x, atol=1e-5)


def test_a_seed_repeats_the_sequence_and_each_call_draws_anew():
    x = ramps(32)
    first, second = RandomResizedCrop(seed=5), RandomResizedCrop(seed=5)
    a, b = np.asarray(first(x)), np.asarray(second(x))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, np.asarray(first(x)))
    assert not np.array_equal(a, np.asarray(RandomResizedCrop(seed=6)(x)))


def test_seeds_one_apart_draw_unrelated_crops():
    """TensorFlow's `from_seed(s)` starts Philox's counter at s: seed 1's
    crops were seed 0's shifted by a draw (240 of 256 boxes the same)."""
    x = ramps(64)

    def boxes(seed):
        crop = RandomResizedCrop(seed=seed)
        return np.concatenate([np.stack(boxes_of(crop(x))[:4], axis=1)
                               for _ in range(4)])

    zero = boxes(0)
    for seed in (1, 2):
        same = np.isclose(boxes(seed)[:, None], zero[None]).all(-1)
        assert same.sum() <= 2, seed


def test_one_image_or_a_batch():
    crop = RandomResizedCrop(seed=0)
    assert tuple(crop(ramps(1)[0]).shape) == (H, W, 2)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        crop(np.zeros((H, W), "float32"))


def test_in_image_pipeline_by_name_or_as_a_callable():
    x, y = ramps(64), np.arange(64) % 4
    for augment in (("crop",), (RandomResizedCrop(scale=(0.2, 0.3)),)):
        images, _ = next(iter(image_pipeline(
            x, y, 64, 4, augment=augment, normalize=False, seed=0)))
        assert images.shape == (64, H, W, 2)
        _, _, height, width, error = boxes_of(images)
        assert error.max() < 1e-3
        low = 0.5 if augment == ("crop",) else 0.2
        high = 1.0 if augment == ("crop",) else 0.3
        assert (height * width >= low - 1e-5).all()
        assert (height * width <= high + 1e-5).all()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"scale": (0.0, 1.0)}, ValueError, r"scale\[0\]"),
    ({"scale": (0.5, 1.5)}, ValueError, r"scale\[1\]"),
    ({"scale": (0.9, 0.5)}, ValueError, "min <= max"),
    ({"scale": 0.5}, TypeError, "pair"),
    ({"ratio": (-1.0, 2.0)}, ValueError, r"ratio\[0\]"),
    ({"ratio": (1.0, 2.0, 3.0)}, TypeError, "pair"),
    ({"seed": "a"}, TypeError, "seed"),
    ({"seed": -1}, ValueError, r"`seed` must be None or an integer >= 0"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        RandomResizedCrop(**kwargs)
