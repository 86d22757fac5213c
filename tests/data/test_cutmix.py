import numpy as np
import pytest

from kerastrain.data import CutMix
from kerastrain.data.cutmix import MAX_ALPHA


def reference_pasted_shares(alpha, side, draws, rng):
    """The pasted area's share, as the paper's code (`rand_bbox` in
    clovaai/CutMix-PyTorch, timm's with `correct_lam`) draws it."""
    lam = rng.beta(alpha, alpha, draws)
    cut = (side * np.sqrt(1.0 - lam)).astype(int)
    shares = np.ones(draws)
    for axis in range(2):
        centre = rng.integers(0, side, draws)
        low = np.clip(centre - cut // 2, 0, side)
        high = np.clip(centre + cut // 2, 0, side)
        shares *= (high - low) / side
    return shares


def pasted_shares(alpha, side, batches):
    # Image i is the constant i: the pixels not equal to i were pasted.
    n = 64
    images = np.broadcast_to(np.arange(n, dtype="float32")[:, None, None,
                                                           None],
                             (n, side, side, 1)).copy()
    labels = np.eye(n, dtype="float32")
    mix = CutMix(alpha, seed=0)
    shares = []
    for _ in range(batches):
        out = mix({"images": images, "labels": labels})
        mixed, weights = np.asarray(out["images"]), np.asarray(out["labels"])
        pasted = (mixed[..., 0] != np.arange(n)[:, None, None]).mean(
            axis=(1, 2))
        partner_pasted = 1.0 - weights[np.arange(n), np.arange(n)]
        # An image paired with itself pastes its own pixels.
        keep = weights[np.arange(n), np.arange(n)] < 1.0
        np.testing.assert_allclose(pasted[keep], partner_pasted[keep],
                                   atol=1e-6)
        shares.append(partner_pasted)
    return np.concatenate(shares)


@pytest.mark.parametrize("alpha, side", [(1.0, 8), (0.4, 32), (2.0, 16)])
def test_pasted_area_follows_the_papers_draw(alpha, side):
    ours = pasted_shares(alpha, side, batches=40)
    ref = reference_pasted_shares(alpha, side, 200_000,
                                  np.random.default_rng(0))
    error = ref.std() / np.sqrt(len(ours))
    assert abs(ours.mean() - ref.mean()) < 5 * error
    # The spread, too: a Beta(alpha, alpha) of another alpha would differ.
    assert abs(ours.std() - ref.std()) < 0.1 * ref.std()


def test_labels_stay_convex_and_images_keep_their_shape():
    rng = np.random.default_rng(1)
    images = rng.random((8, 6, 6, 3)).astype("float32")
    labels = np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
    out = CutMix(1.0, seed=1)({"images": images, "labels": labels})
    mixed = np.asarray(out["labels"])
    assert np.asarray(out["images"]).shape == images.shape
    assert (mixed >= 0).all()
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-6)


def test_a_seed_repeats_the_boxes():
    images = np.arange(4 * 8 * 8, dtype="float32").reshape(4, 8, 8, 1)
    labels = np.eye(4, dtype="float32")

    def run(seed):
        mix = CutMix(1.0, seed=seed)
        batches = [mix({"images": images, "labels": labels})
                   for _ in range(3)]
        return [np.asarray(batch[key]) for batch in batches
                for key in ("images", "labels")]

    first = run(5)
    second = run(5)
    assert len(first) == len(second) == 6
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    # Another seed draws other boxes (the seed reaches the generator).
    other = run(6)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_the_largest_alpha_still_halves_the_weight():
    """Beta(alpha, alpha) of a huge alpha is 1/2. Past `MAX_ALPHA` the sum
    of the two float32 Gamma draws overflows: a weight of 0 (3e38, every
    image replaced whole) or NaN (an alpha float32 cannot hold)."""
    ours = pasted_shares(MAX_ALPHA, 8, batches=10)
    ref = reference_pasted_shares(1e6, 8, 200_000, np.random.default_rng(0))
    assert abs(ours.mean() - ref.mean()) < 5 * ref.std() / np.sqrt(
        len(ours))


@pytest.mark.parametrize("kwargs, error", [
    ({"alpha": 0.0}, ValueError), ({"alpha": -1.0}, ValueError),
    ({"alpha": 3e38}, ValueError), ({"alpha": 1e40}, ValueError),
    ({"alpha": "1"}, TypeError), ({"seed": 0.5}, TypeError),
    ({"seed": -1}, ValueError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        CutMix(**kwargs)


def test_images_of_the_wrong_rank_are_a_clear_error():
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        CutMix(1.0)({"images": np.zeros((8, 8, 3), "float32"),
                     "labels": np.eye(3, dtype="float32")})


def test_integer_one_hot_labels_mix_like_float_ones():
    images = np.arange(8 * 8 * 8, dtype="float32").reshape(8, 8, 8, 1)
    rows = np.eye(4)[np.arange(8) % 4]
    out_int = CutMix(1.0, seed=3)({"images": images,
                                   "labels": rows.astype("int32")})
    out_float = CutMix(1.0, seed=3)({"images": images,
                                     "labels": rows.astype("float32")})
    mixed = np.asarray(out_int["labels"])
    assert mixed.dtype == np.float32
    # Fractions survive: the same boxes give the same weights.
    np.testing.assert_array_equal(mixed, np.asarray(out_float["labels"]))
    assert not np.isin(mixed, [0.0, 1.0]).all()


@pytest.mark.parametrize("labels, match", [
    (np.eye(3, dtype="float32"), r"8 images, 3 label rows"),
    (np.arange(8, dtype="float32"), r"labels \(N, K\).*\(8,\)"),
])
def test_labels_that_do_not_fit_the_images_are_a_clear_error(labels, match):
    images = np.zeros((8, 6, 6, 3), "float32")
    with pytest.raises(ValueError, match=match):
        CutMix(1.0, seed=0)({"images": images, "labels": labels})
