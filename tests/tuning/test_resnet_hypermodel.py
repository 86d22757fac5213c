import os

import keras
import keras_tuner as kt
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator)

from kerastrain.callbacks import GradientAccumulation, WeightHistograms
from kerastrain.data import image_pipeline
from kerastrain.data._image_inputs import check_pixel_scales
from kerastrain.layers import ResidualBlock, stochastic_depth_rates
from kerastrain.models import resnet
from kerastrain.optimizers import SGD, AdamW
from kerastrain.schedules import OneCycle
from kerastrain.tuning import ResNetHyperModel
from tests.support import Batches, to_numpy
from tests.tuning import spies

BATCH = 16


def digits(n_train, n_val=64):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images[..., None] / 16.0).astype("float32")
    y = data.target
    return (x[:n_train], y[:n_train]), (x[n_train:n_train + n_val],
                                        y[n_train:n_train + n_val])


def hypermodel(**kwargs):
    return ResNetHyperModel((8, 8, 1), 10, **dict(
        dict(depth=8, width=8, seed=0), **kwargs))


def trials(tuner):
    return sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id))


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """Two trials, one epoch each, with every file-writing toolkit callback
    and gradient accumulation; `schedule` fixed through the tuner's
    HyperParameters, depth and width through the constructor."""
    keras.utils.set_random_seed(0)
    spies.reset()
    tmp = tmp_path_factory.mktemp("resnet_search")
    (x, y), validation = digits(128)
    hp = kt.HyperParameters()
    hp.Fixed("schedule", "one_cycle")
    checkpoint = spies.CheckpointSpy(str(tmp / "ckpt" / "best.keras"),
                                     monitor="val_accuracy")
    histograms = WeightHistograms(str(tmp / "logs"), gradients=False,
                                  plot=False)
    tuner = kt.RandomSearch(hypermodel(), objective="val_accuracy",
                            max_trials=2, hyperparameters=hp, seed=1,
                            directory=str(tmp), overwrite=True)
    tuner.search(x, y, validation_data=validation, epochs=1,
                 batch_size=BATCH, verbose=0,
                 callbacks=[checkpoint, histograms, GradientAccumulation(2),
                            spies.Recorder()])
    return dict(tuner=tuner, tmp=tmp, validation=validation,
                checkpoint=checkpoint, runs=list(spies.Recorder.runs),
                checkpoints=list(spies.CheckpointSpy.runs))


def test_search_completes_and_the_best_model_evaluates(search):
    tuner = search["tuner"]
    assert [t.status for t in trials(tuner)] == ["COMPLETED"] * 2
    best_trial = tuner.oracle.get_best_trials(1)[0]
    best = tuner.get_best_models(1)[0]
    x, y = search["validation"]
    loss, accuracy = best.evaluate(
        image_pipeline(x, y, 64, 10, training=False, normalize=False),
        verbose=0)
    predicted = np.argmax(best.predict(x, verbose=0), axis=-1)
    assert np.isfinite(loss)
    assert accuracy == pytest.approx(np.mean(predicted == y), abs=1e-6)
    # The tuner kept the weights its score was measured with.
    assert accuracy == pytest.approx(best_trial.score, abs=1e-6)


def test_fixed_knobs_are_fixed_and_the_model_compiles_to_match(search):
    classes = {"sgd": SGD, "adamw": AdamW}
    norms = {"batch": "BatchNormalization", "group": "GroupNormalization",
             "instance": "InstanceNormalization",
             "layer": "LayerNormalization"}
    for trial, run in zip(trials(search["tuner"]), search["runs"]):
        values = trial.hyperparameters.values
        assert (values["depth"], values["width"]) == (8, 8)
        assert values["schedule"] == "one_cycle"
        model, optimizer = run["model"], run["optimizer"]
        assert model.get_layer("stem_conv").filters == 8
        assert len([l for l in model.layers if "block" in l.name]) == 3
        assert type(model.get_layer("stem_norm")).__name__ == norms[
            values["norm"]]
        assert type(optimizer) is classes[values["optimizer"]]
        assert isinstance(run["learning_rate"], OneCycle)
        assert run["learning_rate"].max_lr == pytest.approx(values["max_lr"])
        assert optimizer.weight_decay == pytest.approx(
            values["weight_decay"])
        # Soft labels whether mixed or not: the categorical loss.
        assert isinstance(run["loss"], keras.losses.CategoricalCrossentropy)
        assert run["loss"].label_smoothing == pytest.approx(
            values["label_smoothing"])
        blocks = [l for l in model.layers if isinstance(l, ResidualBlock)]
        np.testing.assert_allclose(
            [b.drop_path_rate for b in blocks],
            stochastic_depth_rates(3, values["drop_path_rate"]))
    sampled = [t.hyperparameters.values for t in trials(search["tuner"])]
    assert len({v["max_lr"] for v in sampled}) == 2  # the rest varies
    assert all(v["mixup_alpha"] > 0 for v in sampled)


@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_the_sampled_mixup_alpha_reaches_the_training_batches(alpha):
    (x, y), _ = digits(64)
    fit_kwargs, _ = hypermodel().training_data(
        {"mixup_alpha": alpha}, x, y, BATCH, None, {})
    labels = np.concatenate([np.asarray(b[1]) for b in fit_kwargs["x"]])
    assert labels.shape == (64, 10)
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
    one_hot = np.isin(labels, [0.0, 1.0]).all(axis=1)
    if alpha == 0:  # the labels as they are, shuffled
        assert one_hot.all()
        np.testing.assert_array_equal(
            np.bincount(labels.argmax(axis=1), minlength=10),
            np.bincount(y, minlength=10))
    else:  # a pair of one class stays one-hot: 1 in 10 here
        assert one_hot.mean() < 0.5
        # The value itself: a row's larger weight, max(lam, 1 - lam), for
        # lam ~ Beta(alpha, alpha), has the CDF F(t) - F(1 - t) (see
        # tests/data/test_image_pipeline.py); Beta(2, 2)'s is refused.
        from scipy import stats

        larger = labels.max(axis=1)[~one_hot].astype("float64")

        def folded_cdf(a):
            return lambda t: stats.beta(a, a).cdf(t) - stats.beta(
                a, a).cdf(1 - t)

        assert stats.kstest(larger, folded_cdf(alpha)).pvalue > 0.01
        assert stats.kstest(larger, folded_cdf(2.0)).pvalue < 1e-3


def test_one_cycle_spans_the_accumulated_updates_of_the_epoch(search):
    for run in search["runs"]:
        schedule = run["learning_rate"]
        # 128 images in batches of 16, two batches per update.
        assert run["steps"] == 8
        assert schedule.total_steps == run["updates"] == 4
        final = schedule.max_lr / schedule.div_factor / (
            schedule.final_div_factor)
        assert float(schedule(schedule.total_steps - 1)) == pytest.approx(
            final, rel=1e-4)


def test_callbacks_write_their_own_files_per_trial(search):
    tmp, tuner = search["tmp"], search["tuner"]
    ids = [t.trial_id for t in trials(tuner)]
    # Each trial's checkpoint copy in its own folder, judged on its own
    # epochs: its best is its own score.
    assert [r["filepath"] for r in search["checkpoints"]] == [
        str(tmp / "ckpt" / i / "best.keras") for i in ids]
    for trial, run in zip(trials(tuner), search["checkpoints"]):
        assert run["best"] == pytest.approx(trial.score)
        assert (run["best_epoch"], run["wait"]) == (0, 0)
    for run, checkpoint in zip(search["runs"], search["checkpoints"]):
        saved = keras.saving.load_model(checkpoint["filepath"])
        assert saved.count_params() == run["model"].count_params()
        assert [type(l) for l in saved.layers] == [
            type(l) for l in run["model"].layers]
    # The callback given to search was copied, never used.
    assert search["checkpoint"].filepath == str(tmp / "ckpt" / "best.keras")
    assert len({id(r["callback"]) for r in search["checkpoints"]}) == 2
    # One TensorBoard run per trial, holding only that trial's steps.
    for trial_id in ids:
        folder = tmp / "logs" / trial_id
        assert len(os.listdir(folder)) == 1
        events = EventAccumulator(str(folder), size_guidance={
            "histograms": 0})
        events.Reload()
        tag = events.Tags()["histograms"][0]
        assert [e.step for e in events.Histograms(tag)] == [0, 1]
    assert sorted(os.listdir(tmp / "logs")) == ids


def test_hyperband_lays_one_cycle_over_each_rounds_epochs(tmp_path):
    import tensorflow as tf

    spies.reset()
    (x, y), _ = digits(64)  # 4 batches per epoch
    # Knobs that only cost tracing time are fixed (Keras evaluates the
    # rate once per variable for weight decay).
    fixed = dict(norm="batch", optimizer="sgd", schedule="one_cycle",
                 weight_decay=0.0, drop_path_rate=0.0, mixup_alpha=0.0,
                 label_smoothing=0.0)
    tuner = kt.Hyperband(hypermodel(**fixed), objective="loss", max_epochs=2,
                         factor=2, seed=0, directory=str(tmp_path),
                         overwrite=True)
    # Stop after the first bracket: two 1-epoch trials, then the best one
    # continued from epoch 1 to 2.
    tuner.oracle.max_trials = 3
    tuner.search(tf.data.Dataset.from_tensor_slices((x, y)),
                 batch_size=BATCH, verbose=0, callbacks=[spies.Recorder()])
    rounds = [(t.hyperparameters.values["tuner/initial_epoch"],
               t.hyperparameters.values["tuner/epochs"])
              for t in trials(tuner)]
    assert rounds == [(0, 1), (0, 1), (1, 2)]
    assert [t.status for t in trials(tuner)] == ["COMPLETED"] * 3
    for (initial_epoch, epochs), run in zip(rounds, spies.Recorder.runs):
        schedule = run["learning_rate"]
        assert run["first_epoch"] == initial_epoch
        assert schedule.total_steps == (epochs - initial_epoch) * 4
        assert run["updates"] == schedule.total_steps
        final = schedule.max_lr / schedule.div_factor / (
            schedule.final_div_factor)
        assert float(schedule(run["updates"] - 1)) == pytest.approx(
            final, rel=1e-4)


# Knobs that only cost tracing time, fixed, for fits outside a search.
CHEAP = dict(norm="batch", optimizer="sgd", schedule="one_cycle",
             weight_decay=0.0, drop_path_rate=0.0, mixup_alpha=0.0,
             label_smoothing=0.0)


def test_steps_per_epoch_runs_and_the_schedule_ends_with_it():
    """64 images in batches of 16 are 4 batches; 6 steps per epoch need
    the pipeline repeated, and the one-cycle spans the 6 updates run."""
    spies.reset()
    (x, y), _ = digits(64)
    model_maker = hypermodel(**CHEAP)
    hp = kt.HyperParameters()
    model = model_maker.build(hp)
    model_maker.fit(hp, model, x, y, batch_size=BATCH, epochs=1,
                    steps_per_epoch=6, verbose=0,
                    callbacks=[spies.Recorder()])
    (run,) = spies.Recorder.runs
    schedule = run["learning_rate"]
    assert run["updates"] == schedule.total_steps == 6
    final = schedule.max_lr / schedule.div_factor / schedule.final_div_factor
    assert float(schedule(run["updates"] - 1)) == pytest.approx(final,
                                                                 rel=1e-4)


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_whole_batches_and_the_validation_batch_size_shape_the_steps(
        drop_remainder):
    """72 training digits in batches of 16: 4 whole ones a pass with
    `drop_remainder` (and a one-cycle over them), 5 without; the 24
    validation digits in one batch of `validation_batch_size`."""
    spies.reset()
    (x, y), validation = digits(72, n_val=24)
    model_maker = hypermodel(drop_remainder=drop_remainder, **CHEAP)
    hp = kt.HyperParameters()
    model = model_maker.build(hp)
    batches = Batches()
    model_maker.fit(hp, model, x, y, batch_size=BATCH, epochs=2, verbose=0,
                    validation_data=validation, validation_batch_size=24,
                    callbacks=[spies.Recorder(), batches])
    (run,) = spies.Recorder.runs
    per_pass = 4 if drop_remainder else 5
    assert run["updates"] == run["learning_rate"].total_steps == 2 * per_pass
    assert batches.epochs == [dict(train=per_pass, test=1)] * 2


@pytest.mark.parametrize("with_validation", [True, False])
def test_a_trial_reads_its_pipelines_from_one_iterator_per_fit(
        monkeypatch, with_validation):
    """With validation data, a trial's `fit` goes through `fit_passes`:
    Keras gets both pipelines repeated, with a pass of each per epoch as
    `steps_per_epoch` and `validation_steps`, and a model whose compiled
    loss is built; the one-cycle spans the passes. Without, Keras gets the
    finite pipeline and starts it anew every epoch."""
    spies.reset()
    (x, y), validation = digits(64, n_val=32)  # 4 and 2 batches
    given = []
    keras_fit = keras.Model.fit

    def fit(self, x=None, **kwargs):
        given.append(dict(kwargs, batches=int(x.cardinality()),
                          built=self._compile_loss.built))
        return keras_fit(self, x, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    model_maker = hypermodel(**CHEAP)
    hp = kt.HyperParameters()
    model = model_maker.build(hp)
    batches = Batches()
    model_maker.fit(hp, model, x, y, batch_size=BATCH, epochs=2, verbose=0,
                    validation_data=validation if with_validation else None,
                    callbacks=[spies.Recorder(), batches])
    (kwargs,) = given
    (run,) = spies.Recorder.runs
    assert run["updates"] == run["learning_rate"].total_steps == 8
    if with_validation:
        assert kwargs["batches"] == -1  # infinite: repeated
        assert kwargs["steps_per_epoch"] == 4
        assert kwargs["validation_steps"] == 2
        assert kwargs["built"]
        assert batches.epochs == [dict(train=4, test=2)] * 2
    else:
        assert kwargs["batches"] == 4
        assert kwargs["steps_per_epoch"] is None
        assert batches.epochs == [dict(train=4, test=0)] * 2


def test_weight_histograms_probe_is_scaled_like_the_training_images(
        tmp_path):
    (x, y), _ = digits(64)
    pixels = np.round(x * 255).astype("uint8")  # 8-bit images
    model_maker = hypermodel(**CHEAP)
    hp = kt.HyperParameters()
    model = model_maker.build(hp)
    histograms = WeightHistograms(str(tmp_path), probe=(pixels[:8], y[:8]),
                                  plot=False)
    model_maker.fit(hp, model, pixels, y, batch_size=BATCH, epochs=1,
                    verbose=0, callbacks=[histograms])
    probe_x, probe_y = histograms.probe
    # The pipeline scales 8-bit pixels to [0, 1] and does not standardize.
    np.testing.assert_allclose(probe_x, pixels[:8] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(probe_y, np.eye(10)[y[:8]])


def test_tiny_images_leave_out_norms_that_would_see_one_position():
    # The premise, from the model itself: at 4x4 the last stage is 1x1,
    # where instance norm made the logits ignore the image (the block
    # now refuses such a map when it is called); at 5x5 (2x2) they read
    # it.
    # (Built for any size: the builder refuses (4, 4, 1) with it. A new
    # model each: on jax a model whose `predict` raised predicts no more.)
    images = np.random.default_rng(0).random((2, 5, 5, 1), "float32")

    def model():
        return resnet((None, None, 1), 10, depth=8, width=8,
                      norm="instance", seed=0)

    logits = model().predict(images, verbose=0)
    assert not np.allclose(logits[0], logits[1], atol=1e-5)
    with pytest.raises(ValueError, match="`norm`='instance' does not suit "
                       ".* where a norm sees a 1x1 feature map"):
        model().predict(images[:, :4, :4], verbose=0)
    with pytest.raises(ValueError, match="`norm`='instance' does not suit"):
        resnet((4, 4, 1), 10, depth=8, norm="instance")
    hp = kt.HyperParameters()
    ResNetHyperModel((4, 4, 1), 10).trial_values(hp)
    assert hp.get("norm") in ("batch", "layer")
    assert {p.name: p for p in hp.space}["norm"].values == ["batch",
                                                           "layer"]
    hp = kt.HyperParameters()
    ResNetHyperModel((5, 5, 1), 10).trial_values(hp)
    assert {p.name: p for p in hp.space}["norm"].values == [
        "batch", "instance", "group", "layer"]
    for norm in ("instance", ["batch", "group"]):
        with pytest.raises(ValueError, match=r"`norm` cannot be .* widths "
                           r"this search may draw, \[8, 16, 32\]\. .*"
                           r"width=8.*input_shape=\(4, 4, 1\)"):
            ResNetHyperModel((4, 4, 1), 10, norm=norm)
    fixed = kt.HyperParameters()
    fixed.Fixed("norm", "group")
    with pytest.raises(ValueError, match="`norm` cannot be 'group'"):
        ResNetHyperModel((4, 4, 1), 10, depth=8, width=8).build(fixed)


@pytest.mark.parametrize("width", [16, (16, 64)])
def test_group_norm_on_tiny_images_is_kept_where_every_width_reads_them(
        width):
    """From width 16 the last stage's 64 channels make 2 a group of 32:
    the model reads the image, so group norm stays among the choices (it
    was left out whatever the width), and a trial builds with it."""
    hp = kt.HyperParameters()
    model_maker = ResNetHyperModel((4, 4, 1), 10, depth=8, width=width)
    model_maker.trial_values(hp)
    assert {p.name: p for p in hp.space}["norm"].values == [
        "batch", "group", "layer"]
    fixed = kt.HyperParameters()
    fixed.Fixed("norm", "group")
    model = model_maker.build(fixed)
    images = np.random.default_rng(0).random((2, 4, 4, 1), "float32")
    logits = to_numpy(model(images))
    assert np.abs(logits[0] - logits[1]).max() > 1e-3


def test_the_largest_seed_allowed_builds():
    # ResNet-8 has 3 blocks: seeds seed, seed + 1, seed + 2.
    model = hypermodel(seed=2**30 - 1).build(kt.HyperParameters())
    assert model.get_layer("stage3_block1").seed == 2**30 + 1


def test_a_depth_range_keeps_the_valid_depths_inside_it():
    for bounds, depths in (((8, 21), [8, 14, 20]), ((9, 26), [14, 20, 26])):
        hp = kt.HyperParameters()
        ResNetHyperModel((8, 8, 1), 10, depth=bounds).trial_values(hp)
        assert {p.name: p for p in hp.space}["depth"].values == depths
    hp = kt.HyperParameters()
    ResNetHyperModel((8, 8, 1), 10, depth=(10, 19)).trial_values(hp)
    depth = {p.name: p for p in hp.space}["depth"]
    assert isinstance(depth, kt.engine.hyperparameters.Fixed)
    assert depth.value == 14
    with pytest.raises(ValueError, match=r"6n\+2.*Received: "
                       r"depth=\(9, 13\)"):
        ResNetHyperModel((8, 8, 1), 10, depth=(9, 13))


def test_search_space_from_constructor_arguments():
    hp = kt.HyperParameters()
    values = ResNetHyperModel((8, 8, 1), 10, depth=(8, 20), width=(8, 32),
                              norm=("group", "layer"), max_lr=0.05,
                              weight_decay=0.0).trial_values(hp)
    space = {p.name: p for p in hp.space}
    assert space["depth"].values == [8, 14, 20]
    width = space["width"]
    assert (width.min_value, width.max_value, width.step,
            width.sampling) == (8, 32, 2, "log")
    assert space["norm"].values == ["group", "layer"]
    assert space["max_lr"].value == 0.05  # hp.Fixed
    assert space["drop_path_rate"].sampling == "linear"
    assert values["weight_decay"] == 0.0
    assert sorted(space) == sorted([
        "depth", "width", "norm", "drop_path_rate", "optimizer",
        "schedule", "max_lr", "weight_decay", "mixup_alpha",
        "label_smoothing"])


RATES = {"sgd": (0.05, 0.5), "adamw": (1e-4, 1e-3)}


def test_a_peak_rate_range_per_optimizer():
    hp = kt.HyperParameters()
    hypermodel(max_lr=RATES).trial_values(hp)
    space = {p.name: p for p in hp.space}
    assert "max_lr" not in space
    for name, (low, high) in RATES.items():
        knob = space[f"max_lr_{name}"]
        assert (knob.min_value, knob.max_value, knob.sampling) == (
            low, high, "log")
    # KerasTuner's oracle draws each optimizer's rate from its own range,
    # and only that one.
    oracle = kt.oracles.RandomSearchOracle(objective="val_loss",
                                           max_trials=40, seed=0)
    oracle.update_space(hp)
    drawn = {"sgd": [], "adamw": []}
    for trial in range(40):
        values = oracle.populate_space(str(trial))["values"]
        other = "adamw" if values["optimizer"] == "sgd" else "sgd"
        assert f"max_lr_{other}" not in values
        drawn[values["optimizer"]].append(
            values[f"max_lr_{values['optimizer']}"])
    for name, (low, high) in RATES.items():
        assert len(drawn[name]) >= 5
        assert all(low <= rate <= high for rate in drawn[name])


@pytest.mark.parametrize("optimizer, cls", [("sgd", SGD), ("adamw", AdamW)])
def test_each_optimizer_is_compiled_with_its_own_peak_rate(optimizer, cls):
    hp = kt.HyperParameters()
    hp.Fixed("optimizer", optimizer)
    hp.Fixed("schedule", "one_cycle")
    model = hypermodel(max_lr=RATES).build(hp)
    assert type(model.optimizer) is cls
    rate = model.optimizer._learning_rate
    assert isinstance(rate, OneCycle)
    assert rate.max_lr == pytest.approx(RATES[optimizer][0])  # the minimum
    assert hp.values[f"max_lr_{optimizer}"] == rate.max_lr


@pytest.mark.parametrize("max_lr, optimizer", [
    ({"sgd": 0.1}, ("sgd", "adamw")),  # no rate for adamw
    ({"sgd": 0.1, "adam": 1e-3}, "sgd"),  # no such optimizer
])
def test_a_peak_rate_dict_must_cover_the_optimizers(max_lr, optimizer):
    with pytest.raises(ValueError, match=r"`max_lr` as a dict.*Received: "
                       r"max_lr=\{"):
        hypermodel(max_lr=max_lr, optimizer=optimizer)


def test_an_optimizer_set_beforehand_takes_its_rate_from_the_dict():
    """The constructor searches SGD alone; the tuner's HyperParameters
    set AdamW, which the dict also gives a rate: it had no knob, and the
    build failed on a rate of None."""
    hp = kt.HyperParameters()
    hp.Fixed("optimizer", "adamw")
    hp.Fixed("schedule", "one_cycle")
    model = hypermodel(max_lr=RATES, optimizer="sgd").build(hp)
    assert type(model.optimizer) is AdamW
    assert model.optimizer._learning_rate.max_lr == pytest.approx(
        RATES["adamw"][0])  # the range's minimum, KerasTuner's default
    hp = kt.HyperParameters()
    hp.Fixed("optimizer", "adamw")
    with pytest.raises(ValueError, match=r"`optimizer` to 'adamw', for "
                       r"which the `max_lr` dict gives no peak rate \(knob "
                       r"`max_lr_adamw`\)"):
        hypermodel(max_lr={"sgd": 0.1}, optimizer="sgd").build(hp)


def test_hyperparameters_set_beforehand_win_and_are_checked():
    hp = kt.HyperParameters()
    hp.Choice("norm", ["instance"])
    hp.Fixed("max_lr", 0.02)
    model = hypermodel().build(hp)
    assert type(model.get_layer("stem_norm")).__name__ == (
        "InstanceNormalization")
    assert hp.values["max_lr"] == 0.02
    bad = kt.HyperParameters()
    bad.Fixed("norm", "batchy")
    with pytest.raises(ValueError, match="`norm` must be one of"):
        hypermodel().build(bad)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"depth": (20, 8)}, ValueError,
     r"`depth` must be a range \(min, max\) with min <= max. "
     r"Received: depth=\(20, 8\)"),
    ({"max_lr": (0.1, 0.001)}, ValueError, r"max_lr=\(0.1, 0.001\)"),
    ({"norm": "batchy"}, ValueError,
     "`norm` must be one of 'batch', 'instance', 'group', 'layer'"),
    ({"schedule": ["one_cycle", "foo"]}, ValueError,
     "`schedule` must be one of 'one_cycle', 'cosine_warmup', 'cyclic', "
     "'constant'. Received: schedule='foo'"),
    ({"optimizer": "adam"}, ValueError, "'sgd', 'adamw'"),
    ({"depth": 9}, ValueError, "6n\\+2"),
    ({"weight_decay": (0.0, 1e-3)}, ValueError, "log scale.*min > 0"),
    ({"max_lr": (0.1, 0.2, 0.3)}, ValueError, r"range \(min, max\)"),
    ({"drop_path_rate": 1.0}, ValueError, "drop_path_rate"),
    ({"norm": []}, ValueError, "at least one choice"),
    ({"norm": 3}, TypeError, "`norm` must be a str"),
    ({"width": "8"}, TypeError, "`width` must be an integer"),
    ({"max_lr": {0.1}}, TypeError, "`max_lr` must be a value, a list"),
    ({"augment": ("blur",)}, ValueError, "Unknown augmentation 'blur'"),
    ({"augment": (("rotate", {"seed": 1}),)}, ValueError, "seed"),
    # Options the layer refuses: refused at the first trial's pipeline.
    ({"augment": (("rotate", {"factr": 0.1}),)}, ValueError,
     r"'rotate' \(RandomRotation\) rejected the options \{'factr'"),
    ({"augment": (("rotate", {"factor": "x"}),)}, ValueError,
     r"'rotate' \(RandomRotation\) rejected the options"),
    ({"augment": (("flip", {"mode": "diagonal"}),)}, ValueError,
     "'flip' in `augment` takes a `mode` among"),
    ({"num_classes": 1}, ValueError, "num_classes"),
    ({"input_shape": (8, 8)}, ValueError, "input_shape"),
    ({"input_shape": 5}, TypeError, "`input_shape` must be"),
    ({"input_shape": (8, 0, 1)}, ValueError, "input_shape=\\(8, 0, 1\\)"),
    ({"augment": 5}, TypeError, "`augment` must be.*Received: augment=5"),
    ({"tunable": "no"}, TypeError, "`tunable` must be True or False"),
    ({"name": 5}, TypeError, "`name` must be None or a string"),
    ({"seed": -1}, ValueError, r"`seed` must be None or an integer >= 0"),
    ({"seed": 2**30}, ValueError, "seed=1073741824"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"drop_remainder": "yes"}, TypeError,
     r"`drop_remainder` must be True or False"),
    # A size, as a range's bounds are: 2**63 was taken, and built for ever.
    ({"depth": 2**63}, ValueError, r"`depth` must be at most 2\*\*31 - 1"),
    # The range's depths are counted before they are listed: (8, 10**6)
    # ran for minutes (a quadratic de-duplication of 166,666 choices).
    ({"depth": (8, 10**6)}, ValueError,
     r"`depth` as a range \(min, max\) holds 166,666 ResNet depths 6n\+2, "
     r"more than the 1,000"),
    # The pipeline's bound: 1e38 passed here and stopped the search in fit.
    ({"mixup_alpha": 1e38}, ValueError,
     r"`mixup_alpha` must be in \[0, 8.50706e\+37\]"),
    # Below float32's smallest normal number the rate was 0, or a denormal
    # XLA flushes to 0: the weights never moved.
    ({"max_lr": 1e-45}, ValueError, r"`max_lr` must be in \[1.17549e-38, "),
    ({"max_lr": {"sgd": 5e-324, "adamw": 1e-3}}, ValueError,
     r"`max_lr_sgd` must be in \[1.17549e-38, "),
    # Keras' layer compares its factor with its bounds, which NaN passes:
    # the trial trained to NaN.
    ({"augment": (("rotate", {"factor": float("nan")}),)}, ValueError,
     r"'rotate' in `augment` got option factor=nan: its numbers must be "
     r"finite"),
    ({"augment": (("shift", {"height_factor": (-0.1, float("inf"))}),)},
     ValueError, r"'shift' in `augment` got option height_factor=\(-0.1, "
     r"inf\)"),
])
def test_bad_search_space_arguments(kwargs, error, match):
    arguments = dict(input_shape=(8, 8, 1), num_classes=10)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        ResNetHyperModel(**arguments)


def test_an_augmentation_with_options_reaches_the_trial_pipeline():
    (x, y), _ = digits(64)
    model = hypermodel(augment=(("flip", {"mode": "vertical"}),))
    fit_kwargs, _ = model.training_data({"mixup_alpha": 0.0}, x, y, 64,
                                        None, {"shuffle": False})
    images, _ = next(iter(fit_kwargs["x"]))
    images = np.asarray(images)
    flipped = [np.array_equal(a, b[::-1]) for a, b in zip(images, x)]
    kept = [np.array_equal(a, b) for a, b in zip(images, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_sample_weights_are_refused_by_name():
    """The pipeline's augmented, mixed batches cannot carry them: Keras
    failed on them with a dataset, and the validation weights were
    silently dropped."""
    (x, y), _ = digits(16)
    model = hypermodel()
    for data, kwargs in (
            (None, {"sample_weight": np.ones(16)}),
            ((x, y, np.ones(16)), {})):
        with pytest.raises(ValueError, match=r"Sample weights .*"
                           r"`sample_weight`"):
            model.training_data({"mixup_alpha": 0.0}, x, y, 8, data, kwargs)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_declared_max_lr_wins_over_the_rates_per_optimizer(tmp_path,
                                                             optimizer):
    """The README: a value set in the tuner's HyperParameters overrides
    the constructor argument. With `max_lr` a dict, the trial recorded
    max_lr 0.5 but trained at the dict's rate."""
    spies.reset()
    (x, y), validation = digits(64, 16)  # 4 batches: one-cycle needs 4
    hp = kt.HyperParameters()
    hp.Fixed("max_lr", 0.5)
    hp.Fixed("optimizer", optimizer)
    tuner = kt.RandomSearch(
        hypermodel(max_lr=RATES, **dict(CHEAP, optimizer=optimizer)),
        objective="val_accuracy", max_trials=1, hyperparameters=hp, seed=0,
        directory=str(tmp_path), overwrite=True)
    tuner.search(x, y, validation_data=validation, epochs=1,
                 batch_size=BATCH, verbose=0, callbacks=[spies.Recorder()])
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == "COMPLETED"
    (run,) = spies.Recorder.runs
    schedule = run["learning_rate"]
    assert isinstance(schedule, OneCycle)
    assert schedule.max_lr == pytest.approx(0.5)
    assert float(schedule(0)) == pytest.approx(0.5 / schedule.div_factor,
                                               rel=1e-6)
    values = trial.hyperparameters.values
    assert values["max_lr"] == 0.5
    # The rates per optimizer are out of the space: the record is whole.
    assert not [name for name in values if name.startswith("max_lr_")]
    # A constant rate reads the same (outside a search).
    hp = kt.HyperParameters()
    hp.Fixed("max_lr", 0.5)
    hp.Fixed("schedule", "constant")
    model_maker = hypermodel(max_lr=RATES, optimizer=optimizer)
    model = model_maker.build(hp)
    model_maker.fit(hp, model, x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert float(to_numpy(model.optimizer.learning_rate)) == pytest.approx(
        0.5)


@pytest.mark.parametrize("max_lr, declared, match", [
    # A declared rate per optimizer that no knob reads: ignored before.
    (0.01, {"max_lr_sgd": 0.3}, r"declare `max_lr_sgd`, which this "
     r"ResNetHyperModel does not read: its `max_lr` is one peak rate"),
    (RATES, {"max_lr": 0.5, "max_lr_sgd": 0.3},
     r"declare both `max_lr` .* and `max_lr_sgd`"),
])
def test_peak_rates_declared_that_would_be_ignored_are_named(
        max_lr, declared, match):
    hp = kt.HyperParameters()
    hp.Fixed("optimizer", "sgd")
    for name, value in declared.items():
        hp.Fixed(name, value)
    with pytest.raises(ValueError, match=match):
        hypermodel(max_lr=max_lr).build(hp)
    # A declared rate of a knob's own name is read, as before.
    hp = kt.HyperParameters()
    hp.Fixed("optimizer", "sgd")
    hp.Fixed("max_lr_sgd", 0.3)
    model = hypermodel(max_lr=RATES, schedule="one_cycle").build(hp)
    assert model.optimizer._learning_rate.max_lr == pytest.approx(0.3)


def eight_bit(images):
    return np.round(images * 255).astype("uint8")


@pytest.mark.parametrize("scales", [
    # The reviewer's search: trained on [0, 1], scored on [0, 255], and
    # completed with val_accuracy 0.14.
    ("uint8", "float_255"), ("float", "float_255"), ("float_255", "uint8"),
    ("float_255", "float"), ("uint8", "float_255_dataset")])
def test_training_and_validation_pixels_on_two_scales_are_refused(scales):
    import tensorflow as tf

    (x, y), (x_val, y_val) = digits(64, 32)
    as_scale = {"uint8": eight_bit, "float": lambda images: images,
                "float_255": lambda images: images * 255.0,
                "float_255_dataset": lambda images: images * 255.0}
    validation = (as_scale[scales[1]](x_val), y_val)
    if scales[1].endswith("dataset"):
        validation = tf.data.Dataset.from_tensor_slices(validation)
    model_maker = hypermodel(**CHEAP)
    hp = kt.HyperParameters()
    model = model_maker.build(hp)
    high = [255 if scale.startswith("float_255") else 1
            for scale in scales]
    with pytest.raises(ValueError, match=r"^Argument `validation_data` must"
                       r" hold images on the pixel scale of the training "
                       rf"images `x`: the model would train on pixels in "
                       rf"\[0, {high[0]}\] .* scored on pixels in "
                       rf"\[0, {high[1]}\] "):
        model_maker.fit(hp, model, as_scale[scales[0]](x), y,
                        validation_data=validation, batch_size=BATCH,
                        epochs=1, verbose=0)
    assert int(to_numpy(model.optimizer.iterations)) == 0  # at the start


def noisy(images):
    """[0, 1] images with noise, clipped to [-0.6, 1.6]: still [0, 1]'s
    scale, where a bound of 1.5 on the extremes saw another."""
    noise = np.random.default_rng(0).normal(0, 0.3, images.shape)
    return np.clip(images + noise, -0.6, 1.6).astype("float32")


def one_bright(images):
    images = images.copy()
    images[0, 0, 0, 0] = 1.6  # one pixel over the edge
    return images


AS_SCALE = {"uint8": eight_bit, "float": lambda images: images,
            "noisy": noisy, "one_bright": one_bright}


@pytest.mark.parametrize("scales", [
    ("uint8", "uint8"), ("float", "float"), ("uint8", "float")])
def test_pixels_on_one_scale_train_and_are_scored_as_evaluated(scales):
    """uint8 pixels are scaled to [0, 1]: floats in [0, 1] beside them are
    on their scale."""
    (x, y), (x_val, y_val) = digits(64, 32)
    x, x_val = AS_SCALE[scales[0]](x), AS_SCALE[scales[1]](x_val)
    model_maker = hypermodel(**CHEAP)
    hp = kt.HyperParameters()
    model = model_maker.build(hp)
    history = model_maker.fit(hp, model, x, y, validation_data=(x_val, y_val),
                              batch_size=BATCH, epochs=1, verbose=0)
    scored = model.evaluate(
        image_pipeline(x_val, y_val, BATCH, 10, training=False,
                       normalize=False), verbose=0, return_dict=True)
    assert history.history["val_loss"][0] == pytest.approx(scored["loss"],
                                                           rel=1e-5)


@pytest.mark.parametrize("scales", [
    ("noisy", "float"), ("uint8", "noisy"), ("float", "one_bright")])
def test_pixels_a_little_beyond_the_unit_scale_are_on_it(scales):
    """A few pixels beyond [0, 1] (noise, interpolation) are no other
    scale: the check that refuses two scales (what `fit` runs first, as
    the test above shows) lets them through. Checked without training,
    which the pairs above already do."""
    (x, _), (x_val, _) = digits(64, 32)
    check_pixel_scales(AS_SCALE[scales[0]](x), AS_SCALE[scales[1]](x_val))


@pytest.mark.parametrize("side", ["x", "validation_data"])
def test_images_of_another_shape_are_refused_naming_the_argument(side):
    """3-channel images for (8, 8, 1) failed inside the stem's
    convolution, naming neither `input_shape` nor the argument."""
    (x, y), (xv, yv) = digits(32, 16)
    if side == "x":
        x = np.repeat(x, 3, axis=-1)
    else:
        xv = np.repeat(xv, 3, axis=-1)
    model_maker = hypermodel(**CHEAP)
    hp = kt.HyperParameters()
    with pytest.raises(ValueError, match=(
            rf"`{side}` must hold images of input_shape=\(8, 8, 1\).*"
            r"Received: images of shape \(\d+, 8, 8, 3\)")):
        model_maker.fit(hp, model_maker.build(hp), x, y, epochs=1,
                        batch_size=BATCH, validation_data=(xv, yv),
                        verbose=0)


def test_the_widest_depth_range_allowed_is_listed_in_order():
    # The cap's boundary: 1,000 depths, in order and once each.
    knob = hypermodel(depth=(8, 6002)).knobs[0]
    assert knob.choices == list(range(8, 6003, 6))


@pytest.fixture(scope="module")
def cheap_model():
    """A HyperModel, its `hp` and a model it built, for `fit`s refused
    before they compile or train (one build for all of them)."""
    model_maker = hypermodel(**CHEAP)
    hp = kt.HyperParameters()
    return model_maker, hp, model_maker.build(hp)


# Stand-ins for data the test makes: a 1-tuple of validation images, and
# a dataset of (image, label) pairs with labels beside it.
SHORT, DATASET_AND_LABELS = object(), object()


@pytest.mark.parametrize("arguments, error, match", [
    # Unpacking failed: "not enough values to unpack (expected 2, got 1)".
    ({"validation_data": SHORT}, ValueError,
     r"`validation_data` must be a dataset, or a tuple \(x_val, y_val\) "
     r"or \(x_val, y_val, sample_weight\). Received: a tuple of 1 entries"),
    # The dataset was taken for one image, of shape ().
    ({"x": DATASET_AND_LABELS}, ValueError,
     r"`x` is a dataset of \(image, label\) pairs: its labels come with "
     r"it, so pass no separate labels. Received: labels of type ndarray"),
    ({"validation_data": DATASET_AND_LABELS}, ValueError,
     r"`validation_data` holds a dataset of \(image, label\) pairs"),
    # Keras' CallbackList: "'int' object has no attribute 'set_model'".
    ({"callbacks": [5]}, TypeError,
     r"`callbacks` must hold `keras.callbacks.Callback` instances. "
     r"Received: callbacks=\[5\], holding 5"),
    # A class above the greatest key failed in TensorFlow's gather; a key
    # beyond the classes was kept silently.
    ({"class_weight": {42: 2.0}}, ValueError,
     r"`class_weight` must be keyed by classes, integers from 0 to 9 .*"
     r"Received: key 42"),
    ({"class_weight": {0: -1.0}}, ValueError,
     r"`class_weight\[0\]` must be in \[0, inf\)"),
    ({"class_weight": [1.0] * 10}, TypeError, r"`class_weight` must be a "
     r"dict"),
    # OneCycle's message named `total_steps`, a plain error each trial.
    ({"epochs": 2**40}, ValueError,
     r"Arguments `epochs` and the training data's batches \(`x`, "
     r"`batch_size`\) make 2,199,023,255,552 training steps "
     r"\(1,099,511,627,776 epochs of 2 batches\), more than the "
     r"optimizers' int32 step count holds"),
    ({"epochs": 2**30, "steps_per_epoch": 4}, ValueError,
     r"Arguments `epochs` and `steps_per_epoch` make 4,294,967,296"),
    ({"validation_batch_size": 0}, ValueError,
     r"`validation_batch_size` must be an integer >= 1"),
    ({"validation_batch_size": 2.5}, TypeError,
     r"`validation_batch_size` must be an integer"),
])
def test_bad_fit_arguments_stop_the_search_naming_the_argument(
        arguments, error, match, cheap_model):
    (x, y), (xv, yv) = digits(32, 16)
    tf = pytest.importorskip("tensorflow")
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    model_maker, hp, model = cheap_model
    kwargs = dict(x=x, y=y, epochs=1, batch_size=BATCH,
                  validation_data=(xv, yv), verbose=0)
    kwargs.update(arguments)
    if kwargs["x"] is DATASET_AND_LABELS:
        kwargs["x"] = dataset
    if kwargs["validation_data"] is SHORT:
        kwargs["validation_data"] = (xv,)
    elif kwargs["validation_data"] is DATASET_AND_LABELS:
        kwargs["validation_data"] = (
            tf.data.Dataset.from_tensor_slices((xv, yv)), yv)
    fatal = (kt.errors.FatalValueError if error is ValueError
             else kt.errors.FatalTypeError)
    with pytest.raises(fatal, match=match):
        model_maker.fit(hp, model, **kwargs)
    assert int(to_numpy(model.optimizer.iterations)) == 0


def test_a_partial_class_weight_weighs_the_other_classes_one():
    """Keras' NumPy rule, on the hypermodel's tf.data pipeline: in one
    batch, the loss is the mean of each sample's loss times its class's
    weight, and a class left out weighs 1."""
    (x, y), _ = digits(200)
    keep = np.isin(y, [3, 7])
    x, y = x[keep][:16], y[keep][:16]
    for class_weight, weights in ((None, np.ones(16)),
                                  ({3: 2.0}, np.where(y == 3, 2.0, 1.0))):
        model_maker = hypermodel(**dict(CHEAP, schedule="constant"))
        hp = kt.HyperParameters()
        model = model_maker.build(hp)
        # The step's loss comes before its update, with batch statistics.
        per_sample = to_numpy(keras.losses.CategoricalCrossentropy(
            from_logits=True, reduction=None)(
                keras.utils.to_categorical(y, 10), model(x, training=True)))
        history = model_maker.fit(hp, model, x, y, epochs=1, batch_size=16,
                                  class_weight=class_weight, verbose=0,
                                  shuffle=False)
        assert history.history["loss"][0] == pytest.approx(
            (weights * per_sample).mean(), rel=1e-4)


@pytest.mark.parametrize("hp, error", [(None, TypeError),
                                       ({"depth": 8}, TypeError)])
def test_build_and_fit_name_a_bad_hp(hp, error):
    # "argument of type 'NoneType' is not iterable", "'dict' object has no
    # attribute 'Fixed'".
    model_maker = hypermodel(**CHEAP)
    with pytest.raises(error, match=r"`hp` must be a "
                       r"keras_tuner.HyperParameters"):
        model_maker.build(hp)
    (x, y), _ = digits(16)
    with pytest.raises(error, match=r"`hp` must be a "
                       r"keras_tuner.HyperParameters"):
        model_maker.fit(hp, model_maker.build(kt.HyperParameters()), x, y)


@pytest.mark.parametrize("spoil, match", [
    (lambda xv, yv: (xv[:0], yv[:0]),
     r"Argument `x` must hold at least one image"),
    (lambda xv, yv: (np.where(xv > 0.5, np.nan, xv), yv),
     r"Argument `x` must hold finite pixel values"),
    (lambda xv, yv: (xv, yv + 10), r"Argument `y`.*10"),
])
def test_bad_validation_images_and_labels_are_named_as_validation_data(
        spoil, match):
    """The validation pipeline's errors named `x` and `y`: read as the
    training data, which was fine."""
    (x, y), validation = digits(32, 16)
    model_maker = hypermodel(**CHEAP)
    hp = kt.HyperParameters()
    model = model_maker.build(hp)
    with pytest.raises(ValueError, match=r"^In `validation_data` \(its "
                       r"images are the `x`, its labels the `y` below\): "
                       + match):
        model_maker.fit(hp, model, x, y, epochs=1, batch_size=BATCH,
                        validation_data=spoil(*validation), verbose=0)
    assert int(to_numpy(model.optimizer.iterations)) == 0



class EpochLosses(keras.callbacks.Callback):
    """Each epoch's `(epoch, val_loss)`, over the copies KerasTuner makes."""

    seen = []

    def on_epoch_end(self, epoch, logs=None):
        EpochLosses.seen.append((epoch, logs["val_loss"]))


def test_a_resumed_trial_reads_the_pipeline_passes_of_an_uninterrupted_one(
        tmp_path):
    """A trial resumed from its `CheckpointEarlyStopping` backup trains
    through `fit_passes` on the passes an uninterrupted trial read at those
    epochs: its pipeline restarted at the first pass, with other shuffles,
    shifts and mixes."""
    from kerastrain.callbacks import CheckpointEarlyStopping
    from tests.support import CrashAt

    (x, y), validation = digits(96, 32)

    def run(name, crash=()):
        keras.utils.set_random_seed(0)  # a (re)started script
        tuner = kt.RandomSearch(
            hypermodel(width=4, drop_path_rate=0.2), objective="val_loss",
            max_trials=1, seed=1, directory=str(tmp_path / name))
        tuner.search(x, y, validation_data=validation, epochs=4,
                     batch_size=BATCH, verbose=0, callbacks=[
                         CheckpointEarlyStopping(
                             str(tmp_path / name / "best.keras"),
                             backup_dir=str(tmp_path / name / "backup")),
                         EpochLosses(), *crash])

    EpochLosses.seen = []
    run("uninterrupted")
    expected, EpochLosses.seen = EpochLosses.seen, []
    with pytest.raises(KeyboardInterrupt):
        run("resumed", [CrashAt(2, batch=1)])
    run("resumed")
    # The crashed run's epochs 0 and 1, then the resumed run's 2 and 3.
    assert EpochLosses.seen == expected
    assert [epoch for epoch, _ in EpochLosses.seen] == [0, 1, 2, 3]
