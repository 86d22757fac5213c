"""The image recipes' training and members trained together
(recipes/common/training.py)."""

import keras
import pytest

from recipes import common


def without_training(monkeypatch, record):
    """Replaces `fit_passes` by a fake that trains nothing: it hands
    `record` each stage of the fit (`{epoch: pipeline}`) as the epochs it
    spans, its pipeline and the validation pipeline, and the callbacks,
    and returns a History of the fit's epochs. What is checked are the
    pipelines the fit gets (the recipes' quick tests train through the
    real one)."""
    import kerastrain.data

    def fit_passes(model, data, validation_data, *, epochs, callbacks,
                   **kwargs):
        starts = sorted(data)
        record([(range(start, stop), data[start]) for start, stop in zip(
            starts, starts[1:] + [epochs])], validation_data, callbacks)
        history = keras.callbacks.History()
        history.epoch = list(range(epochs))
        return history

    monkeypatch.setattr(kerastrain.data, "fit_passes", fit_passes)


def small_run(tmp_path, n_train, n_val):
    """Training and validation digits-like images of 4 classes, a small
    ResNet-8 and a recipe's arguments (4 epochs of batches of 16)."""
    import argparse

    import numpy as np

    from kerastrain.models import resnet

    rng = np.random.default_rng(0)
    train = (rng.random((n_train, 8, 8, 1), "float32"),
             np.arange(n_train) % 4)
    val = (rng.random((n_val, 8, 8, 1), "float32"), np.arange(n_val) % 4)
    return train, val, resnet((8, 8, 1), 4, depth=8, width=4), (
        argparse.Namespace(epochs=4, batch_size=16, seed=0,
                           out=str(tmp_path), resumed={}))


def test_no_fit_or_member_replays_the_batches_of_another(
        tmp_path, monkeypatch):
    import numpy as np

    import kerastrain.data
    from kerastrain.models import resnet

    real = kerastrain.data.image_pipeline
    training_calls = []

    def spy(*args, **kwargs):
        if kwargs.get("training", True):
            training_calls.append((args, kwargs))
        return real(*args, **kwargs)

    fits = []
    monkeypatch.setattr(kerastrain.data, "image_pipeline", spy)
    without_training(monkeypatch, lambda *fit: fits.append(fit))
    train, val, model, args = small_run(tmp_path, 32, 8)
    history = common.fit_image_classifier(
        model, train, val, args, max_lr=0.1, weight_decay=0.0,
        augment=("shift",), mixup_alpha=0.2)
    assert history.epoch == [0, 1, 2, 3]
    # One fit, with mixup for 3 epochs, then without; one checkpoint, and
    # its backup, for the whole run.
    assert len(fits) == 1
    stages, _, callbacks = fits[0]
    assert [epochs for epochs, _ in stages] == [range(0, 3), range(3, 4)]
    assert [type(c).__name__ for c in callbacks] == [
        "CheckpointEarlyStopping"]
    assert callbacks[0].backup_dir == str(tmp_path / common.BACKUP)
    assert len(training_calls) == 2
    assert [kwargs["mixup_alpha"] for _, kwargs in training_calls] == [
        0.2, 0.0]
    single_seeds = [kwargs["seed"] for _, kwargs in training_calls]

    def first_batch(args, kwargs):
        images, _ = next(iter(real(*args, **{**kwargs, "mixup_alpha": 0.0})))
        return np.asarray(images)

    # Same shuffle and shifts would give the same batch.
    first, second = (first_batch(*call) for call in training_calls)
    assert not np.array_equal(first, second)
    assert training_calls[0][1]["seed"] == 0  # the user's seed, first

    # Members trained together: each fit gives each member a pipeline of
    # its own seed, the first member's those of the one model above.
    training_calls.clear()
    members, together = common.trained_together(
        lambda i: resnet((8, 8, 1), 4, depth=8, width=4, name=f"m{i}"), 2)
    common.fit_image_classifier(
        together, train, val, args, max_lr=0.1, weight_decay=0.0,
        augment=("shift",), mixup_alpha=0.2)
    seeds = [kwargs["seed"] for _, kwargs in training_calls]
    assert len(seeds) == 4 and len(set(seeds)) == 4
    assert seeds[0] == 0 and seeds[2] == single_seeds[1]


def test_the_one_cycle_spans_exactly_the_whole_batches_the_fits_read(
        tmp_path, monkeypatch):
    """36 training images in batches of 16: each epoch trains on two
    whole batches (a third of 4 would be a shape of its own), and the
    one-cycle schedule ends at the last of them; the validation images,
    in batches of `eval_batch_size`, are all scored."""

    def record(stages, validation_data, callbacks):
        read.extend((len(epochs), [len(labels) for _, labels in data],
                     [len(labels) for _, labels in validation_data])
                    for epochs, data in stages)

    read = []
    without_training(monkeypatch, record)
    train, val, model, args = small_run(tmp_path, 36, 10)
    common.fit_image_classifier(
        model, train, val, args, max_lr=0.1, weight_decay=0.0,
        augment=("shift",), mixup_alpha=0.2, eval_batch_size=10)
    assert [r[1:] for r in read] == [([16, 16], [10])] * 2
    schedule = model.optimizer._learning_rate  # Keras keeps it there
    assert schedule.total_steps == sum(r[0] * len(r[1]) for r in read) == 8
    assert common.steps_per_epoch(args, 36, whole_batches=True) == 2
    assert common.steps_per_epoch(args, 36) == 3


def test_whole_batches_need_a_batch_size_the_training_samples_fill():
    import argparse

    args = argparse.Namespace(epochs=4, batch_size=64)
    with pytest.raises(common.RecipeError, match=r"--batch-size 64 is more "
                       r"than the 50 training samples, and the training "
                       r"reads whole batches only"):
        common.one_cycle_steps(args, 50, whole_batches=True)
    assert common.one_cycle_steps(args, 50) == 4


@pytest.mark.parametrize("seed", [0, 7, common.MAX_SEED])
def test_member_seeds_give_every_stream_its_own(seed):
    from kerastrain._seeds import MODEL_SEED_LIMIT

    alone = common.member_seeds(seed, 1)
    assert (alone.first_fit, alone.model) == ([seed], [seed])
    for count in (2, 3, 5):
        seeds = common.member_seeds(seed, count)
        pipelines = seeds.first_fit + seeds.second_fit
        assert len(set(pipelines)) == 2 * count
        assert len(set(seeds.model)) == count
        assert all(0 <= s < MODEL_SEED_LIMIT for s in seeds.model)
        # Member 0 trains as a run without members does.
        assert [seeds.first_fit[0], seeds.second_fit[0],
                seeds.model[0]] == [alone.first_fit[0],
                                    alone.second_fit[0], alone.model[0]]
        # A model seeds its layers with seed + i: the other members'
        # models stay clear of the pipelines' seeds and of each other's
        # first thousand layers.
        for i, model_seed in enumerate(seeds.model[1:], 1):
            others = [s for j, s in enumerate(seeds.model) if j != i]
            assert all(abs(model_seed - s) > 1000
                       for s in others + pipelines)


def test_members_trained_together_learn_as_each_would_alone():
    import numpy as np

    from kerastrain.models import resnet
    from tests.support import to_numpy

    def build(i):
        keras.utils.set_random_seed(i)  # each member's initial weights
        return resnet((8, 8, 1), 4, depth=8, width=4, name=f"member{i}")

    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 1), "float32")
    y = np.eye(4, dtype="float32")[np.arange(32) % 4]

    def fit(model, data):
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                      keras.losses.CategoricalCrossentropy(from_logits=True))
        model.fit(*data, batch_size=8, epochs=2, shuffle=False, verbose=0)

    members, together = common.trained_together(build, 2)
    # Built alike, the members' variables would share paths; on torch,
    # Keras then cleared only one member's gradients between steps.
    paths = [v.path for v in together.trainable_variables]
    assert len(set(paths)) == len(paths)
    # Each member reads its own batches: here the other's in reverse.
    xs, ys = (x, x[::-1]), (y, y[::-1])
    fit(together, (xs, ys))
    for i, member in enumerate(members):
        alone = build(i)
        fit(alone, (xs[i], ys[i]))
        for trained, reference in zip(member.weights, alone.weights):
            np.testing.assert_allclose(to_numpy(trained),
                                       to_numpy(reference),
                                       rtol=1e-5, atol=1e-6)


def test_one_cycle_steps_leave_kerastuner_unimported(monkeypatch):
    """`environment` lists the optional packages a run imported: the step
    check imported `kerastrain.tuning`, and with it KerasTuner, so every
    one-cycle recipe's metrics.json named a KerasTuner version."""
    import argparse
    import sys

    for name in [m for m in sys.modules
                 if m == "keras_tuner" or m.startswith((
                     "keras_tuner.", "kerastrain.tuning"))]:
        monkeypatch.delitem(sys.modules, name)
    args = argparse.Namespace(epochs=2, batch_size=4)
    assert common.one_cycle_steps(args, 10) == 6
    assert "keras_tuner" not in sys.modules


def test_one_cycle_steps_past_the_step_count_are_a_recipe_error():
    """More steps than the optimizers' int32 count: a message naming the
    flags, not OneCycle's `total_steps` error from inside the run."""
    import argparse

    args = argparse.Namespace(epochs=2**31 // 10 + 1, batch_size=1)
    with pytest.raises(common.RecipeError, match=r"--epochs 214748365 and "
                       r"--batch-size 1 on 10 training samples make "
                       r"2,147,483,650 training steps, more than"):
        common.one_cycle_steps(args, 10)
    args.epochs -= 1
    assert common.one_cycle_steps(args, 10) == 2_147_483_640
