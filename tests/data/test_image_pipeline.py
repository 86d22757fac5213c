import keras
import numpy as np
import pytest

from kerastrain.data import channel_stats, image_pipeline
from kerastrain.data.image_pipeline import check_augment

N, CLASSES = 16, 16


def distinct_images(side=6):
    """Image i is the constant i, with label i: every mix is readable."""
    x = np.broadcast_to(np.arange(N, dtype="float32")[:, None, None, None],
                        (N, side, side, 1)).copy()
    return x, np.arange(N)


def one_batch(dataset):
    images, labels = next(iter(dataset))
    return np.asarray(images), np.asarray(labels)


def test_mixup_labels_and_images_are_the_same_convex_combination():
    x, y = distinct_images()
    before = x.copy()
    images, labels = one_batch(image_pipeline(
        x, y, N, CLASSES, augment=(), mixup_alpha=0.4, normalize=False,
        shuffle=False, seed=1))
    assert (labels >= 0).all()
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
    for i in range(N):
        weights = labels[i]
        assert np.count_nonzero(weights > 1e-7) <= 2
        # The image is the same blend of the same two images.
        np.testing.assert_allclose(images[i], weights @ np.arange(N),
                                   atol=1e-4)
    assert not np.allclose(labels, np.eye(N))  # something was mixed
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("alpha", [0.2, 0.4])
def test_mixup_weights_follow_beta_alpha_alpha(alpha):
    from scipy import stats

    # A row's larger weight is max(lam, 1 - lam); for lam ~ Beta(alpha,
    # alpha) its CDF is F(t) - F(1 - t). Rows whose partner has their own
    # class, and lams within float32's reach of 0 or 1 (2% of the mass at
    # alpha 0.2), read as weight 1: the test keeps weights below 1 - cut
    # and conditions the reference on that.
    classes, cut = 64, 1e-5
    x = np.zeros((4096, 2, 2, 1), "float32")
    labels = np.concatenate([np.asarray(batch) for _, batch in image_pipeline(
        x, np.arange(4096) % classes, 256, classes, augment=(),
        mixup_alpha=alpha, normalize=False, seed=3)])
    larger = labels.max(axis=1).astype("float64")
    larger = larger[larger < 1 - cut]
    assert len(larger) > 3500

    def folded_cdf(a):
        beta = stats.beta(a, a)
        kept = beta.cdf(1 - cut) - beta.cdf(cut)
        return lambda t: (beta.cdf(t) - beta.cdf(1 - t)) / kept

    assert stats.kstest(larger, folded_cdf(alpha)).pvalue > 0.01
    # The test tells alphas apart: 0.2 and 0.4 are not confused.
    assert stats.kstest(larger, folded_cdf(0.6 - alpha)).pvalue < 1e-6


@pytest.mark.parametrize("side", [8, 32])
def test_cutmix_labels_are_the_share_of_pixels_pasted(side):
    x, y = distinct_images(side)
    dataset = image_pipeline(x, y, N, CLASSES, augment=(), cutmix_alpha=1.0,
                             normalize=False, seed=2)
    mixed = 0
    for images, labels in dataset.repeat(5):
        images, labels = np.asarray(images), np.asarray(labels)
        for i in range(N):
            # Image i's pixels hold the labels they came from: their
            # shares are the label weights, exactly.
            shares = np.bincount(images[i].astype(int).ravel(),
                                 minlength=N) / images[i].size
            np.testing.assert_allclose(labels[i], shares, atol=1e-6)
            mixed += np.count_nonzero(shares) == 2
    assert mixed > N  # most images got a patch


def test_mixup_or_cutmix_per_batch_never_both():
    x, y = distinct_images()
    dataset = image_pipeline(x, y, N, CLASSES, augment=(), mixup_alpha=0.4,
                             cutmix_alpha=1.0, normalize=False, seed=0)
    kinds = []
    # One batch an epoch, each from a new iterator as `fit` makes them:
    # the pick must change between epochs, not only within one.
    for _ in range(30):
        images = one_batch(dataset)[0].reshape(N, -1)
        constant = (images == images[:, :1]).all()  # mixup: blends of
        whole = np.allclose(images, np.round(images), atol=1e-6)  # constants
        kinds.append("mixup" if constant and not whole else
                     "cutmix" if whole and not constant else "both/none")
    assert "both/none" not in kinds
    assert 5 <= kinds.count("mixup") <= 25  # each about half the batches


def test_only_the_mixer_picked_for_a_batch_runs(monkeypatch):
    """Both mixed every batch, and one result was thrown away."""
    import tensorflow as tf

    from kerastrain.data import cutmix

    runs = tf.Variable(0)
    real = cutmix.CutMix.__call__

    def counted(self, data):
        with tf.control_dependencies([runs.assign_add(1)]):
            return {k: tf.identity(v) for k, v in real(self, data).items()}

    monkeypatch.setattr(cutmix.CutMix, "__call__", counted)
    x, y = distinct_images()
    dataset = image_pipeline(x, y, 4, CLASSES, augment=(), mixup_alpha=0.4,
                             cutmix_alpha=1.0, normalize=False, seed=0)
    batches = sum(1 for _ in dataset) + sum(1 for _ in dataset)
    assert batches == 8 and 1 <= int(runs.numpy()) <= 7


def test_each_augmentation_draws_its_own_random_numbers():
    # A vertical bar left of centre: after "flip" it is right of centre
    # or not; "rotate" then tilts it one way or the other. Layers seeded
    # alike would tie the two decisions together.
    x = np.zeros((1024, 16, 16, 1), "float32")
    x[:, 2:14, 4:6, 0] = 1.0
    images, _ = one_batch(image_pipeline(
        x, np.zeros(1024, int), 1024, 2, augment=("flip", "rotate"),
        normalize=False, shuffle=False, seed=0))
    cols = np.arange(16)

    def centre(rows):
        mass = images[:, rows, :, 0].sum(axis=1)
        return (mass * cols).sum(axis=1) / mass.sum(axis=1)

    flipped = centre(slice(0, 16)) > 7.5
    tilt = centre(slice(2, 6)) > centre(slice(10, 14))
    assert 0.4 < flipped.mean() < 0.6 and 0.3 < tilt.mean() < 0.7
    # Independent draws agree about half the time (standard error 0.016).
    assert abs(np.mean(flipped == tilt) - 0.5) < 0.1


def test_alpha_zero_keeps_the_one_hot_labels_exactly():
    x, y = distinct_images()
    _, labels = one_batch(image_pipeline(x, y, N, CLASSES, augment=(),
                                         shuffle=False, seed=0))
    np.testing.assert_array_equal(labels, np.eye(N, dtype="float32"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_whole_float_labels_are_the_integers_they_hold(dtype):
    """As Keras' sparse losses and MLPHyperModel take them (labels read
    from a CSV, say); bools as 0 and 1."""
    x, y = distinct_images()
    _, labels = one_batch(image_pipeline(x, y.astype(dtype), N, CLASSES,
                                         augment=(), shuffle=False, seed=0))
    np.testing.assert_array_equal(labels, np.eye(N, dtype="float32"))
    _, labels = one_batch(image_pipeline(x[:2], np.array([True, False]), 2,
                                         2, augment=(), shuffle=False))
    np.testing.assert_array_equal(labels, [[0, 1], [1, 0]])


def test_evaluation_mode_is_normalization_only_and_deterministic():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 8, 8, 3)).astype("uint8")
    y = rng.integers(0, 3, 20)
    stats = channel_stats(x)
    dataset = image_pipeline(x, y, 8, 3, mixup_alpha=0.3, normalize=stats,
                             training=False)
    first = [np.asarray(b[0]) for b in dataset]
    second = [np.asarray(b[0]) for b in dataset]
    assert len(first) == len(second) == 3
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    expected = (x.astype("float32") / 255 - stats[0]) / stats[1]
    np.testing.assert_allclose(np.concatenate(first), expected, atol=1e-5)
    labels = np.concatenate([np.asarray(b[1]) for b in dataset])
    np.testing.assert_array_equal(labels, np.eye(3)[y])


def test_augmented_training_batches_feed_model_fit():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 16, 16, 3)).astype("uint8")
    y = np.eye(4)[rng.integers(0, 4, 64)]  # one-hot labels work too
    dataset = image_pipeline(x, y, 16, 4, augment=("flip", "rotate", "crop"),
                             mixup_alpha=0.2, cutmix_alpha=1.0, seed=0)
    images, labels = one_batch(dataset)
    assert images.shape == (16, 16, 16, 3) and labels.shape == (16, 4)
    assert abs(images.mean()) < 0.5  # normalized
    model = keras.Sequential([keras.Input((16, 16, 3)),
                              keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(4)])
    model.compile("adam", keras.losses.CategoricalCrossentropy(
        from_logits=True))
    history = model.fit(dataset, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"x": np.zeros((4, 8, 8))}, ValueError, r"\(N, H, W, C\)"),
    ({"y": np.array([0, 1, 2, 5])}, ValueError, r"\[0, 4\)"),
    ({"y": np.array([0, 1, 2])}, ValueError, "same number"),
    ({"mixup_alpha": -0.1}, ValueError, "mixup_alpha"),
    ({"cutmix_alpha": -1.0}, ValueError, "cutmix_alpha"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"augment": ("flip", "blur")}, ValueError, "blur"),
    ({"augment": (("rotate", 0.02),)}, ValueError, "rotate"),
    ({"augment": (("rotate", {"factor": 0.02}, 1),)}, ValueError, "rotate"),
    ({"augment": (("rotate", {"factr": 0.02}),)}, ValueError,
     "'rotate'.*factr"),
    ({"augment": (("rotate", {"factr": 0.02}),), "training": False},
     ValueError, "'rotate'.*factr"),
    ({"augment": (("shift", {"seed": 3}),)}, ValueError, "seed"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"y": None}, ValueError, r"Argument `y`.*Received: y=None"),
    ({"y": np.zeros(0, int)}, ValueError, r"`y` must hold one label.*no"),
    ({"x": np.zeros((0, 8, 8, 3)), "y": np.zeros(0, int)}, ValueError,
     r"`x` must hold at least one image.*\(0, 8, 8, 3\)"),
    ({"x": np.zeros((4, 0, 8, 3))}, ValueError,
     r"at least one pixel and one channel.*\(4, 0, 8, 3\)"),
    ({"x": np.zeros((4, 8, 8, 0), "uint8")}, ValueError,
     r"at least one pixel and one channel.*\(4, 8, 8, 0\)"),
    ({"y": np.array([0, 1, 2, 5])}, ValueError, r"Argument `y`.*\[0, 5\]"),
    ({"y": np.array([0.0, 1.5, 2.0, 3.0])}, ValueError,
     r"`y` must hold integers in \[0, 4\).*float64 with values in "
     r"\[0.0, 3.0\]"),
    ({"y": np.array([0.0, np.nan, 2.0, 3.0])}, ValueError,
     r"`y` must hold integers in \[0, 4\).*float64"),
    ({"y": np.array([0.0, 1.0, 2.0, 4.0])}, ValueError, r"\[0.0, 4.0\]"),
    # Integer one-hot rows of another width than num_classes.
    ({"y": np.eye(3, dtype=int)[[0, 1, 2, 0]]}, ValueError,
     r"Argument `y`.*y.shape=\(4, 3\), num_classes=4"),
    ({"y": np.zeros((4, 2, 2), int)}, ValueError, r"y.shape=\(4, 2, 2\)"),
    ({"y": np.full((4, 4), np.nan)}, ValueError, "Argument `y`.*sum"),
    ({"normalize": "imagenet"}, TypeError,
     r"`normalize`.*Received: normalize='imagenet'"),
    ({"normalize": (0.5,)}, TypeError, "normalize"),
    ({"normalize": ([0.5, 0.5], [1.0, 1.0])}, ValueError,
     r"`normalize`.*per channel of `x` \(3\)"),
    ({"normalize": ([0.5] * 3, [0.2, 0.0, 0.2])}, ValueError,
     r"`normalize`.*std of at least"),
    # Above 0 in float32, but subnormal: flushed to 0, every pixel inf.
    ({"normalize": (0.0, 1e-45)}, ValueError,
     r"`normalize`.*std of at least 1.175e-38"),
    # inf in float32, where the pipeline computes.
    ({"normalize": (1e40, 1.0)}, ValueError,
     r"`normalize` must hold numbers that float32 can hold"),
    ({"normalize": ([0.5] * 3, ["a", "b", "c"])}, TypeError,
     r"normalize\[1\]"),
    ({"normalize": ([0.5] * 3, [np.nan] * 3)}, ValueError,
     r"normalize\[1\]"),
    ({"augment": 3}, TypeError, r"Argument `augment`.*Received: augment=3"),
    # Keras' RandomFlip takes any mode and flips nothing for an unknown one.
    ({"augment": (("flip", {"mode": "diagonal"}),)}, ValueError,
     r"'flip'.*horizontal, vertical.*mode='diagonal'"),
    # Keras raises NotImplementedError for it.
    ({"augment": (("rotate", {"fill_mode": "bogus"}),)}, ValueError,
     r"'rotate' \(RandomRotation\) rejected.*fill_mode"),
    ({"augment": ("flip", keras.layers.RandomFlip)}, TypeError,
     r"`augment` holds the class RandomFlip: pass an instance"),
    # Keras' layers compare a factor with its bounds, which NaN passes:
    # every image, then the model trained on them, was NaN.
    ({"augment": (("rotate", {"factor": np.nan}),)}, ValueError,
     r"'rotate' in `augment` got option factor=nan: its numbers must be "
     r"finite"),
    ({"augment": (("shift", {"width_factor": [0.1, -np.inf]}),)},
     ValueError, r"'shift' in `augment` got option width_factor="),
    # A side of 1 pixel: Keras refused the default factor, 1.5, naming
    # options {} the user never passed.
    ({"x": np.zeros((4, 1, 8, 3)), "augment": ("shift",)}, ValueError,
     r"'shift'.*images 1x8 pixels need a `height_factor` of their own"),
    ({"x": np.zeros((4, 8, 1, 3)),
      "augment": (("shift", {"height_factor": 0.1}),)}, ValueError,
     r"'shift'.*images 8x1 pixels need a `width_factor` of their own"),
    # An integer is finite: the layer's own refusal, not an OverflowError
    # from the finiteness check.
    ({"augment": (("rotate", {"factor": 10**400}),)}, ValueError,
     r"'rotate' \(RandomRotation\) rejected the options"),
    ({"training": "no"}, TypeError, r"`training` must be True or False"),
    # float32 Gamma draws of about alpha each: their sum overflowed, and
    # every mixed batch was NaN.
    ({"mixup_alpha": 1e40}, ValueError, r"`mixup_alpha` must be in \[0, "),
    ({"cutmix_alpha": 3e38}, ValueError, r"`cutmix_alpha` must be in \[0, "),
    # Their min and max, asked for the message, failed inside NumPy.
    ({"y": np.array(list("abca"))}, ValueError,
     r"`y` must hold integers in \[0, 4\).*dtype <U1 \(not numbers"),
    ({"y": np.array([0, "a", 1, 2], dtype=object)}, ValueError,
     r"dtype object \(not numbers"),
    ({"shuffle": 0}, TypeError, r"`shuffle` must be True or False"),
    ({"cache": "yes"}, TypeError, r"`cache` must be True or False"),
    ({"deterministic": 1}, TypeError,
     r"`deterministic` must be None, True or False"),
    ({"drop_remainder": 1}, TypeError,
     r"`drop_remainder` must be True or False"),
    # An evaluation would score part of the data.
    ({"drop_remainder": True, "training": False}, ValueError,
     r"`drop_remainder` must be False with training=False"),
    # No whole batch: every pass would be empty.
    ({"drop_remainder": True, "batch_size": 5}, ValueError,
     r"`batch_size` must be at most the number of images with "
     r"drop_remainder=True.*batch_size=5 for 4 images"),
    ({"augment": ("randaugment",), "x": np.zeros((4, 8, 8, 2))}, ValueError,
     r"1 or 3 channels.*x.shape=\(4, 8, 8, 2\)"),
    ({"augment": ("randaugment",), "x": np.zeros((4, 8, 8, 4))}, ValueError,
     r"1 or 3 channels.*x.shape=\(4, 8, 8, 4\)"),
])
def test_bad_input(kwargs, error, match):
    arguments = {"x": np.zeros((4, 8, 8, 3)), "y": np.arange(4),
                 "batch_size": 2, "num_classes": 4, **kwargs}
    with pytest.raises(error, match=match):
        image_pipeline(**arguments)


@pytest.mark.parametrize("batched", [False, True])
def test_an_existing_dataset_gives_the_same_batches_as_arrays(batched):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 8, 8, 3)).astype("uint8")
    y = rng.integers(0, 3, 12)
    source = tf.data.Dataset.from_tensor_slices((x, y))
    if batched:
        source = source.batch(5)
    from_arrays = list(image_pipeline(x, y, 4, 3, training=False))
    from_dataset = list(image_pipeline(source, None, 4, 3, training=False))
    # Batches of 4 of the 12 samples, each sample once, in both.
    assert len(from_arrays) == len(from_dataset) == 3
    assert sum(len(a) for a, _ in from_dataset) == len(x)
    for (a, la), (b, lb) in zip(from_arrays, from_dataset):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
    with pytest.raises(ValueError, match="must be None"):
        image_pipeline(source, y, 4, 3)


def test_a_seed_gives_the_same_augmented_mixed_batches_every_time():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 8, 8, 3)).astype("uint8")
    y = rng.integers(0, 4, 96)

    def batches(seed):
        dataset = image_pipeline(x, y, 8, 4, augment=("flip", "shift",
                                                      "rotate"),
                                 mixup_alpha=0.4, seed=seed)
        return [(np.asarray(a), np.asarray(b)) for a, b in dataset]

    first, second = batches(3), batches(3)
    assert len(first) == len(second) == 96 // 8
    for (a, la), (b, lb) in zip(first, second):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    other = batches(4)
    assert not np.array_equal(first[0][0], other[0][0])


def shifted(image, dy, dx):
    """`image` moved down `dy` and right `dx` whole pixels, zeros filling
    in: pad-and-crop, index by index."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((abs(dy),) * 2, (abs(dx),) * 2, (0, 0)))
    return padded[abs(dy) - dy:abs(dy) - dy + height,
                  abs(dx) - dx:abs(dx) - dx + width]


@pytest.mark.parametrize("side", [8, 16, 5])
def test_shift_is_pad_and_crop_by_whole_pixels_equally_likely(side):
    """Each image comes out moved by whole pixels (Keras' bilinear
    default moved by fractions, blurring), at most p = side // 8 (at
    least 1) each way, zeros filling in; the (2p + 1)^2 shifts equally
    likely (a chi-square test)."""
    from scipy import stats

    n = 900
    x = np.random.default_rng(0).uniform(0.1, 1.0, (n, side, side, 1))
    images = np.concatenate([batch[0] for batch in image_pipeline(
        x.astype("float32"), np.zeros(n, int), 300, 2, augment=("shift",),
        normalize=False, shuffle=False, seed=0).as_numpy_iterator()])
    p = max(1, side // 8)
    moves = [(dy, dx) for dy in range(-p, p + 1) for dx in range(-p, p + 1)]
    counts = dict.fromkeys(moves, 0)
    for image, original in zip(images, x.astype("float32")):
        (move,) = [m for m in moves
                   if np.array_equal(image, shifted(original, *m))]
        counts[move] += 1
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3, counts


def test_shift_on_a_one_pixel_side_takes_its_own_factor():
    """Images one pixel high shift along their width with a height
    factor of the user's: each row is the original moved by a whole
    pixel at most, zeros filling in."""
    x = np.random.default_rng(0).uniform(0.1, 1.0, (64, 1, 8, 1))
    images = np.concatenate([batch[0] for batch in image_pipeline(
        x.astype("float32"), np.zeros(64, int), 64, 2,
        augment=(("shift", {"height_factor": 0.0}),), normalize=False,
        shuffle=False, seed=0).as_numpy_iterator()])
    moves = []
    for image, original in zip(images, x.astype("float32")):
        (move,) = [dx for dx in (-1, 0, 1)
                   if np.array_equal(image, shifted(original, 0, dx))]
        moves.append(move)
    assert set(moves) == {-1, 0, 1}


def test_batches_stay_float32_under_a_mixed_precision_policy():
    x = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3)).astype(
        "uint8")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        images, labels = one_batch(image_pipeline(
            x, np.arange(16) % 4, 8, 4, augment=("flip", "shift", "rotate",
                                                 "crop"),
            mixup_alpha=0.2, cutmix_alpha=1.0, seed=0))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert images.dtype == labels.dtype == np.float32
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)


def test_options_reach_the_named_layer():
    # Rows of distinct values: a vertical flip reverses them.
    x = np.broadcast_to(np.arange(6, dtype="float32")[None, :, None, None],
                        (64, 6, 6, 1)).copy()
    vertical = ("flip", {"mode": "vertical"})
    images, _ = one_batch(image_pipeline(
        x, np.zeros(64, int), 64, 2, augment=(vertical,), normalize=False,
        shuffle=False, seed=0))
    flipped = [np.array_equal(i, x[0][::-1]) for i in images]
    kept = [np.array_equal(i, x[0]) for i in images]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def spot_displacement(augment, side=33):
    """How far a rotation moves a bright spot 14 pixels from the centre
    of 256 images: at most 14 * 2 * pi * factor."""
    x = np.zeros((256, side, side, 1), "float32")
    x[:, 16, 30, 0] = 1.0
    images, _ = one_batch(image_pipeline(
        x, np.zeros(256, int), 256, 2, augment=augment, normalize=False,
        shuffle=False, seed=0))
    rows, cols = np.indices((side, side))
    weights = images[..., 0] / images[..., 0].sum(axis=(1, 2), keepdims=True)
    row = (weights * rows).sum(axis=(1, 2))
    col = (weights * cols).sum(axis=(1, 2))
    return np.hypot(row - 16, col - 30), images


def test_a_pair_sets_the_layer_magnitude_and_keeps_its_random_stream():
    small, _ = spot_displacement((("rotate", {"factor": 0.02}),))
    default, images = spot_displacement(("rotate",))
    # The chord of 2 * pi * factor on a radius of 14, plus a pixel of
    # bilinear spread.
    assert small.max() <= 14 * 2 * np.pi * 0.02 + 0.5
    assert default.max() > 14 * 2 * np.pi * 0.02 + 0.5
    assert default.max() <= 14 * 2 * np.pi * 0.04 + 0.5
    # The same options as the name's defaults: the same draws.
    _, same = spot_displacement((("rotate", {"factor": 0.04}),))
    np.testing.assert_array_equal(same, images)


def test_augment_entries_are_checked_and_one_name_alone_is_one_entry():
    pair = ("rotate", {"factor": 0.02})
    assert check_augment("flip") == ("flip",)
    assert check_augment(["shift", pair]) == ("shift", pair)
    assert check_augment(None) == ()
    # A dict kept only its keys, dropping the options; a set has no order.
    for unordered in ({"rotate": {"factor": 0.1}}, {"flip", "rotate"}):
        with pytest.raises(TypeError, match=r"ordered sequence.*\(name, "
                           r"options\) pairs"):
            check_augment(unordered)


def test_randaugment_runs_changes_images_and_keeps_their_range():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 16, 16, 3)).astype("uint8")
    images, labels = one_batch(image_pipeline(
        x, np.arange(64) % 2, 64, 2, augment=("randaugment",),
        normalize=False, shuffle=False, seed=0))
    assert images.shape == x.shape and labels.shape == (64, 2)
    assert images.min() >= 0.0 and images.max() <= 1.0 + 1e-6
    # Two random operations per image: most images change visibly.
    changed = np.abs(images - x / 255.0).mean(axis=(1, 2, 3)) > 0.01
    assert changed.mean() > 0.5


def test_integer_pixels_of_any_dtype_are_scaled_like_uint8():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 6, 6, 3))  # int64
    images, _ = one_batch(image_pipeline(
        x, np.arange(8) % 2, 8, 2, normalize=False, training=False))
    np.testing.assert_allclose(images, x / 255.0, atol=1e-6)
    mean, std = channel_stats(x)
    np.testing.assert_allclose(mean, (x / 255.0).mean(axis=(0, 1, 2)),
                               rtol=1e-5)
    np.testing.assert_allclose(std, (x / 255.0).std(axis=(0, 1, 2)),
                               rtol=1e-4)
    with pytest.raises(ValueError, match=r"`x`.*\[0, 255\].*\[0, 300\]"):
        image_pipeline(np.linspace(0, 300, 432).astype(int).reshape(
            4, 6, 6, 3), np.arange(4) % 2, 2, 2)


def test_randaugment_refuses_float_pixels_outside_its_range():
    # RandAugment on [0, 1] would clip 0..255 floats to a white image.
    x = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3))
    with pytest.raises(ValueError, match=r"`x` holds values in \[0.*, 25\d"):
        image_pipeline(x, np.arange(8) % 2, 4, 2, augment=("randaugment",))
    # Its own range given as an option is the one checked.
    option = ("randaugment", {"value_range": (0, 255)})
    images, _ = one_batch(image_pipeline(
        x, np.arange(8) % 2, 8, 2, augment=(option,), normalize=False,
        seed=0))
    assert images.max() > 1.0 and images.max() <= 255.0 + 1e-3


def test_randaugment_refuses_a_range_past_1_for_integer_images():
    """uint8 images are scaled to [0, 1], which lies inside (0, 255):
    the range check passed, and 186 of 256 images came out on 0..255,
    the rest on [0, 1]. The default range, and (0, 1), are taken."""
    x = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), "uint8")
    for option in (("randaugment", {"value_range": (0, 255)}),
                   keras.layers.RandAugment(value_range=(0, 255))):
        with pytest.raises(ValueError, match=r"integer images as 8-bit "
                           r"pixels scaled to \[0, 1\], but its "
                           r"value_range is \[0, 255\]"):
            image_pipeline(x, np.arange(8) % 2, 4, 2, augment=(option,))
    for option in ("randaugment", ("randaugment", {"value_range": (0, 1)})):
        images, _ = one_batch(image_pipeline(
            x, np.arange(8) % 2, 8, 2, augment=(option,), normalize=False,
            seed=0))
        assert 0.0 <= images.min() and images.max() <= 1.0


def test_non_finite_pixels_are_refused_with_their_count():
    x = np.random.default_rng(0).random((8, 6, 6, 3)).astype("float32")
    bad = x.copy()
    bad[0, 0, 0, 0], bad[3, 1, 2, 1], bad[5, 0, 0, 2] = np.nan, np.inf, np.nan
    with pytest.raises(ValueError, match=r"`x`.*3 of the 864 values"):
        image_pipeline(bad, np.arange(8) % 2, 4, 2, training=False)
    assert np.isnan(bad).sum() == 2  # not modified


def test_a_mean_and_std_pair_standardizes_each_channel():
    x = np.random.default_rng(0).random((8, 6, 6, 3)).astype("float32")
    mean, std = [0.1, 0.5, 0.9], [0.5, 2.0, 4.0]
    images, _ = one_batch(image_pipeline(
        x, np.arange(8) % 2, 8, 2, normalize=(mean, std), training=False))
    expected = (x - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(images, expected, atol=1e-6)
    # One number for every channel.
    images, _ = one_batch(image_pipeline(
        x, np.arange(8) % 2, 8, 2, normalize=(0.5, 0.25), training=False))
    np.testing.assert_allclose(images, (x - 0.5) / 0.25, atol=1e-5)


def test_integer_labels_as_a_column_are_class_indices():
    x = np.zeros((4, 6, 6, 1), "float32")
    y = np.array([[2], [0], [1], [3]])  # keras.datasets.cifar10's shape
    _, labels = one_batch(image_pipeline(x, y, 4, 4, training=False))
    np.testing.assert_array_equal(labels, np.eye(4)[[2, 0, 1, 3]])


def test_an_infinite_or_empty_dataset_is_refused():
    import tensorflow as tf

    x = np.zeros((8, 4, 4, 1), "float32")
    y = np.arange(8) % 2
    source = tf.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(ValueError, match=r"`x` must be finite.*repeat"):
        image_pipeline(source.repeat(), None, 4, 2)
    # NumPy's own "need at least one array to concatenate" does not match.
    empty = r"`x` must hold at least one \(image, label\) pair"
    with pytest.raises(ValueError, match=empty):
        image_pipeline(source.take(0), None, 4, 2)
    # Of unknown size, and empty once read.
    with pytest.raises(ValueError, match=empty):
        image_pipeline(source.filter(lambda a, b: b > 5), None, 4, 2)


def test_a_dataset_of_images_of_different_sizes_is_refused():
    import tensorflow as tf

    def images():
        for side in (4, 6, 5):
            yield np.zeros((side, side, 3), "float32"), 1

    source = tf.data.Dataset.from_generator(images, output_signature=(
        tf.TensorSpec((None, None, 3)), tf.TensorSpec((), tf.int32)))
    with pytest.raises(ValueError, match=r"images of one size.*Resize.*"
                       r"shape \[4,4,3\].*\[6,6,3\]"):
        image_pipeline(source, None, 2, 2)


def test_a_batched_dataset_of_images_without_channels_is_refused():
    import tensorflow as tf

    x = np.zeros((8, 6, 6), "float32")
    source = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 2))
    for batched in (source.batch(4), source.batch(4, drop_remainder=True)):
        with pytest.raises(ValueError, match=r"channel axis \(B, H, W\)"):
            image_pipeline(batched, None, 4, 2)
    one_hot = tf.data.Dataset.from_tensor_slices((x, np.eye(2)[np.arange(
        8) % 2])).batch(4)
    with pytest.raises(ValueError, match=r"channel axis"):
        image_pipeline(one_hot, None, 4, 2)
    # Unbatched images with one-hot labels are still read as such.
    rgb = tf.data.Dataset.from_tensor_slices((
        np.zeros((8, 6, 6, 3), "float32"), np.eye(2)[np.arange(8) % 2]))
    _, labels = one_batch(image_pipeline(rgb, None, 8, 2, training=False))
    np.testing.assert_array_equal(labels, np.eye(2)[np.arange(8) % 2])
    # One-hot labels as wide as the images are high, and the wrong
    # num_classes: both readings are named.
    wide = tf.data.Dataset.from_tensor_slices((
        np.zeros((8, 6, 6, 3), "float32"), np.eye(6)[np.arange(8) % 2]))
    with pytest.raises(ValueError, match=r"channel axis.*single images "
                       r"\(H, W, C\).*6 entries where num_classes=2"):
        image_pipeline(wide, None, 4, 2)
    # Also when the label length is unknown, as from a generator: only a
    # label as long as the first image axis could be a batch's.
    unknown = tf.data.Dataset.from_generator(
        lambda: iter(rgb.as_numpy_iterator()), output_signature=(
            tf.TensorSpec((6, 6, 3)), tf.TensorSpec((None,))))
    _, labels = one_batch(image_pipeline(unknown, None, 8, 2,
                                         training=False))
    np.testing.assert_array_equal(labels, np.eye(2)[np.arange(8) % 2])


def test_channel_stats_match_a_float64_reference():
    """1.5 million values a channel: float32 sums over the strided axes had
    the std off by 1.4e-4 (the mean by 0.35 at CIFAR-10's size)."""
    x = np.random.default_rng(0).integers(0, 256, (500, 32, 32, 3),
                                          dtype=np.uint8)
    reference = x.astype("float64") / 255
    mean, std = channel_stats(x)
    assert mean.dtype == std.dtype == np.float32
    np.testing.assert_allclose(mean, reference.mean(axis=(0, 1, 2)),
                               rtol=1e-6)
    np.testing.assert_allclose(std, reference.std(axis=(0, 1, 2)) + 1e-7,
                               rtol=1e-6)


def test_images_of_several_shapes_are_named():
    images = [np.zeros((8, 8, 1)), np.zeros((9, 8, 1))]
    with pytest.raises(ValueError, match=r"one shape .*\(8, 8, 1\), "
                       r"\(9, 8, 1\)"):
        image_pipeline(images, [0, 1], 2, 2)


def test_drop_remainder_gives_whole_batches_and_others_sit_out_each_pass():
    """16 distinct images in batches of 6: two whole batches a pass (12
    distinct images), of one shape, and over the passes every image
    trains (the pass reshuffles before it batches)."""
    x, y = distinct_images()
    dataset = image_pipeline(x, y, 6, CLASSES, augment=(),
                             normalize=False, seed=0, drop_remainder=True)
    assert int(dataset.cardinality()) == 2
    assert dataset.element_spec[0].shape[0] == 6  # static: one shape
    left_out, seen = [], set()
    for _ in range(8):
        ids = np.concatenate([np.asarray(labels).argmax(-1)
                              for _, labels in dataset])
        assert ids.shape == (12,) and len(set(ids)) == 12
        left_out.append(frozenset(range(N)) - set(ids))
        seen.update(ids)
    assert seen == set(range(N))
    assert len(set(left_out)) > 1
    # Without it, the same pipeline gives all 16, the last batch of 4.
    sizes = [len(labels) for _, labels in image_pipeline(
        x, y, 6, CLASSES, augment=(), normalize=False, seed=0)]
    assert sizes == [6, 6, 4]


def test_numpy_bools_are_bools():
    """`normalize` and `deterministic` refused NumPy's True, which every
    other flag takes."""
    x = np.random.default_rng(0).uniform(size=(6, 8, 8, 3)).astype(
        "float32")
    kwargs = {"augment": ("flip",), "seed": 3}

    def batches(flag):
        return [np.asarray(images) for images, _ in image_pipeline(
            x, np.arange(6) % 3, 3, 3, normalize=flag, deterministic=flag,
            **kwargs)]

    for ours, plain in zip(batches(np.True_), batches(True)):
        np.testing.assert_array_equal(ours, plain)


def test_evaluation_with_its_own_statistics_is_warned_about():
    import warnings

    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 3)).astype(
        "float32")
    y = np.arange(4) % 2
    with pytest.warns(UserWarning, match=r"own statistics.*"
                      r"normalize=channel_stats\(x_train\)"):
        image_pipeline(x, y, 2, 2, training=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        image_pipeline(x, y, 2, 2, training=False,
                       normalize=channel_stats(x))
        image_pipeline(x, y, 2, 2, training=False, normalize=False)
        image_pipeline(x, y, 2, 2, augment=())


def test_normalize_none_leaves_the_images_as_they_are():
    x = np.random.default_rng(1).uniform(2.0, 3.0, size=(4, 6, 6, 3))
    images = [np.asarray(batch) for batch, _ in image_pipeline(
        x.astype("float32"), np.arange(4) % 2, 4, 2, augment=(),
        normalize=None, shuffle=False)]
    np.testing.assert_array_equal(images[0], x.astype("float32"))


@pytest.mark.parametrize("augment", ["flip", "shift", "rotate",
                                     "randaugment"])
def test_the_global_image_format_changes_nothing(augment):
    # The pipeline's images are channels-last; under a global
    # channels_first, Keras' layers read the channels as the width: a flip
    # swapped red and blue and flipped no image.
    import keras

    x = np.zeros((16, 8, 8, 3), "uint8")
    x[:, :, :4, 0] = 255  # the left half red

    def batch():
        return np.asarray(next(iter(image_pipeline(
            x, np.arange(16) % 2, 16, 2, augment=(augment,),
            normalize=False, shuffle=False, seed=0)))[0])

    last = batch()
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        first = batch()
    finally:
        keras.config.set_image_data_format(previous)
    np.testing.assert_allclose(first, last, atol=1e-6)
    if augment != "randaugment":  # (which may change colours)
        assert not last[..., 1:].any()  # the red stays red
    if augment == "flip":  # some images flipped: red on the right
        assert 0 < (last[:, :, 7, 0] > 0.5).all(axis=1).sum() < 16


def test_under_op_determinism_an_unseeded_pipeline_follows_the_global_seed():
    """With TensorFlow's op determinism on (Keras' recipe for reproducible
    runs), every pipeline without a `seed`, an evaluation one that draws
    nothing too, failed inside TensorFlow ("from_non_deterministic_state
    cannot be called when determinism is enabled"): its streams now come
    from the global seed, and without one `seed` is named."""
    import tensorflow as tf
    # Not in TensorFlow's public API: the test turns determinism back off.
    from tensorflow.python.framework.config import disable_op_determinism

    images, labels = distinct_images()

    def batches(**kwargs):
        return [tuple(np.asarray(t) for t in batch) for batch in
                image_pipeline(images, labels, 4, CLASSES, **kwargs)]

    tf.config.experimental.enable_op_determinism()
    try:
        runs = []
        for _ in range(2):
            keras.utils.set_random_seed(3)
            runs.append(batches(mixup_alpha=0.4))
        for (xa, ya), (xb, yb) in zip(*runs):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
        assert len(batches(training=False)) == N // 4
        tf.random.set_seed(None)
        with pytest.raises(ValueError, match=r"Argument `seed` must be "
                           r"given while TensorFlow's op determinism is on"):
            image_pipeline(images, labels, 4, CLASSES)
    finally:
        disable_op_determinism()
        keras.utils.set_random_seed(0)


def test_a_list_of_images_is_read_as_one_array():
    """A list of images reads as their array (once): 8-bit ones are
    scaled, as RandAugment's range check sees, and images of several
    shapes are named, not NumPy's "inhomogeneous shape"."""
    rng = np.random.default_rng(0)
    images = list(rng.integers(0, 256, (8, 16, 16, 3), "uint8"))
    batch, _ = one_batch(image_pipeline(images, np.arange(8) % 2, 8, 2,
                                        training=False, normalize=False))
    np.testing.assert_allclose(batch, np.stack(images) / 255.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"value_range is \[0, 255\]"):
        image_pipeline(images, np.arange(8) % 2, 4, 2, augment=(
            ("randaugment", {"value_range": (0, 255)}),))
    with pytest.raises(ValueError, match=r"images of one shape.*several "
                       r"shapes, \[\(4, 4, 1\), \(5, 5, 1\)\]"):
        image_pipeline([np.zeros((4, 4, 1), "uint8"),
                        np.zeros((5, 5, 1), "uint8")], [0, 1], 2, 2)
