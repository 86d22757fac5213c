import math
import os

import keras
import keras_tuner as kt
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator)

from kerastrain.callbacks import (GradientAccumulation, LRFinder,
                                  WeightHistograms)
from kerastrain.data import class_counts, load
from kerastrain.tuning import MLPHyperModel
from tests.support import to_numpy
from tests.tuning import spies

N_TRAIN, BATCH = 300, 32


def diabetes_risk():
    """10 features, a binary label with 15% positives."""
    x, y = load("diabetes_risk")
    x = (x - x.mean(0)) / x.std(0)
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def trials(tuner):
    return sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id))


def values(**overrides):
    """The trial values `training_data` reads, with defaults."""
    return dict(dict(num_layers=1, units=8, dropout=0.0, l2=0.0,
                     batch_norm=False, learning_rate=1e-3,
                     balancing="none"), **overrides)


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """Two trials of a binary, imbalanced problem, one epoch each, with the
    toolkit's callbacks; `num_layers` and `batch_norm` fixed."""
    keras.utils.set_random_seed(0)
    spies.reset()
    tmp = tmp_path_factory.mktemp("mlp_search")
    (x, y), validation = diabetes_risk()
    hypermodel = MLPHyperModel(10, 2, num_layers=1, units=(8, 32),
                               batch_norm=True,
                               balancing=["smote", "class_weight"], seed=0)
    # One-hot probe labels: the hypermodel turns them into its own.
    probe = (x[:32], np.eye(2, dtype="float32")[y[:32]])
    tuner = kt.RandomSearch(hypermodel, objective=kt.Objective("val_auc",
                                                               "max"),
                            max_trials=2, seed=3, directory=str(tmp),
                            overwrite=True)
    tuner.search(x, y, validation_data=validation, epochs=1,
                 batch_size=BATCH, verbose=0, callbacks=[
                     spies.CheckpointSpy(str(tmp / "ckpt" / "best.keras"),
                                         monitor="val_auc", mode="max"),
                     WeightHistograms(str(tmp / "logs"), probe=probe,
                                      plot=False),
                     GradientAccumulation(2), spies.Recorder()])
    return dict(tuner=tuner, tmp=tmp, train=(x, y), validation=validation,
                runs=list(spies.Recorder.runs),
                checkpoints=list(spies.CheckpointSpy.runs))


def test_search_completes_and_the_best_model_evaluates(search):
    tuner = search["tuner"]
    assert [t.status for t in trials(tuner)] == ["COMPLETED"] * 2
    best = tuner.get_best_models(1)[0]
    x, y = search["validation"]
    results = best.evaluate(x, y, verbose=0, return_dict=True)
    logits = best.predict(x, verbose=0)
    assert logits.shape == (len(x), 1)  # binary: one logit
    assert results["accuracy"] == pytest.approx(
        np.mean((logits[:, 0] > 0) == y), abs=1e-6)
    assert np.isfinite(results["loss"])
    assert results["auc"] == pytest.approx(
        tuner.oracle.get_best_trials(1)[0].score, abs=1e-6)


def test_fixed_knobs_are_fixed_and_balancing_resamples_training_only(
        search):
    (_, y), majority = search["train"], max(class_counts(
        search["train"][1]).values())
    for trial, run in zip(trials(search["tuner"]), search["runs"]):
        values = trial.hyperparameters.values
        assert (values["num_layers"], values["batch_norm"]) == (1, True)
        assert values["units"] in (8, 16, 32)
        model = run["model"]
        assert model.get_layer("dense1").units == values["units"]
        assert "BatchNormalization" in run["layers"]
        assert [l.name for l in model.layers if "dense" in l.name] == [
            "dense1"]
        assert float(run["optimizer"].learning_rate) == pytest.approx(
            values["learning_rate"])
        # SMOTE grows the training split to two majorities; class weights
        # leave it as it is.
        samples = 2 * majority if values["balancing"] == "smote" else len(y)
        assert run["steps"] == math.ceil(samples / BATCH)
        # GradientAccumulation(2): one update per two batches.
        assert run["updates"] == run["steps"] // 2


def test_callbacks_write_their_own_files_per_trial(search):
    tmp = search["tmp"]
    ids = [t.trial_id for t in trials(search["tuner"])]
    assert [r["filepath"] for r in search["checkpoints"]] == [
        str(tmp / "ckpt" / i / "best.keras") for i in ids]
    assert all(os.path.exists(r["filepath"]) for r in search["checkpoints"])
    assert sorted(os.listdir(tmp / "logs")) == ids
    for trial_id in ids:
        events = EventAccumulator(str(tmp / "logs" / trial_id),
                                  size_guidance={"histograms": 0})
        events.Reload()
        tags = events.Tags()["histograms"]
        gradient = [t for t in tags if t.startswith("gradients/")][0]
        assert [e.step for e in events.Histograms(gradient)] == [0, 1]


def test_bayesian_optimization_with_an_lr_finder_per_trial(tmp_path):
    """A multiclass problem; each trial runs its own LR range test, which
    ends the trial's fit after 5 batches and puts its model back."""
    spies.reset()
    x, y = load("wine")
    x = (x - x.mean(0)) / x.std(0)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    hypermodel = MLPHyperModel(13, 3, balancing=["none", "oversample"],
                               seed=0)
    tuner = kt.BayesianOptimization(
        hypermodel, objective="val_accuracy", max_trials=2,
        num_initial_points=1, seed=0, directory=str(tmp_path),
        overwrite=True)
    tuner.search(x[:120], y[:120], validation_split=0.25, epochs=1,
                 batch_size=16, verbose=0,
                 callbacks=[spies.LRFinderSpy(1e-4, 1.0, num_steps=5)])
    # The second trial is the Gaussian process's proposal.
    assert [t.status for t in trials(tuner)] == ["COMPLETED"] * 2
    runs = spies.LRFinderSpy.runs
    assert len({id(r["callback"]) for r in runs}) == 2
    for trial, run in zip(trials(tuner), runs):
        assert run["restored"]
        assert len(run["result"].lrs) == 5  # its own test, not both
        # One execution: a list of one result.
        results = hypermodel.lr_finder_results[trial.trial_id]
        assert len(results) == 1 and results[0] is run["result"]
    best = tuner.get_best_models(1)[0]
    assert best.output.shape[-1] == 3
    # validation_split=0.25 held out the last 30 of the 120.
    _, accuracy = best.evaluate(x[90:120], y[90:120], verbose=0)
    assert accuracy == pytest.approx(
        tuner.oracle.get_best_trials(1)[0].score, abs=1e-6)


def test_every_execution_of_a_trial_keeps_its_files_and_lr_finder_result(
        tmp_path):
    spies.reset()
    (x, y), _ = diabetes_risk()

    def search(max_trials, overwrite):
        """A new hypermodel and tuner on the same folder, as a new process
        would make them."""
        hypermodel = MLPHyperModel(10, 2, num_layers=1, units=[8, 16],
                                   balancing="none", seed=0)
        return hypermodel, kt.RandomSearch(
            hypermodel, objective="loss", max_trials=max_trials,
            executions_per_trial=2, seed=0,
            directory=str(tmp_path / "tuner"), overwrite=overwrite)

    hypermodel, tuner = search(max_trials=1, overwrite=True)
    tuner.search(x[:64], y[:64], epochs=1, batch_size=16, verbose=0,
                 callbacks=[spies.LRFinderSpy(1e-4, 1.0, num_steps=3),
                            spies.CheckpointSpy(
                                str(tmp_path / "ckpt" / "best.keras"),
                                monitor="loss")])
    (trial_id,) = tuner.oracle.trials
    finders = spies.LRFinderSpy.runs
    assert len({id(r["callback"]) for r in finders}) == 2
    results = hypermodel.lr_finder_results[trial_id]
    assert len(results) == 2
    assert all(a is b["result"] for a, b in zip(results, finders))
    assert [r["filepath"] for r in spies.CheckpointSpy.runs] == [
        str(tmp_path / "ckpt" / trial_id / f"execution{n}" / "best.keras")
        for n in (0, 1)]

    # The search resumed reads back the finished trial's results beside
    # its new trial's.
    again, resumed = search(max_trials=2, overwrite=False)
    resumed.search(x[:64], y[:64], epochs=1, batch_size=16, verbose=0,
                   callbacks=[LRFinder(1e-4, 1.0, num_steps=3)])
    assert sorted(again.lr_finder_results) == sorted(resumed.oracle.trials)
    assert len(again.lr_finder_results) == 2
    for before, after in zip(results, again.lr_finder_results[trial_id]):
        for name in ("lrs", "losses", "smoothed_losses"):
            np.testing.assert_array_equal(getattr(after, name),
                                          getattr(before, name))
        assert after.num_steps == before.num_steps == 3
    # A tuner reloaded without searching reads them all.
    reloaded, tuner = search(max_trials=2, overwrite=False)
    assert reloaded.load_lr_finder_results(tuner) is (
        reloaded.lr_finder_results)
    assert {k: len(v) for k, v in reloaded.lr_finder_results.items()} == {
        k: 2 for k in resumed.oracle.trials}
    with pytest.raises(TypeError, match="tuner"):
        reloaded.load_lr_finder_results(str(tmp_path / "tuner"))


def test_tunable_false_searches_only_what_was_declared(tmp_path):
    """KerasTuner's `tunable=False`: the hypermodel's knobs stay out of
    the search space; only `units`, declared beforehand, is searched."""
    (x, y), _ = diabetes_risk()
    hp = kt.HyperParameters()
    hp.Choice("units", [8, 16])
    hypermodel = MLPHyperModel(10, 2, balancing="none", seed=0,
                               tunable=False)
    tuner = kt.RandomSearch(hypermodel, objective="loss", max_trials=1,
                            hyperparameters=hp, seed=0,
                            directory=str(tmp_path), overwrite=True)
    tuner.search(x[:64], y[:64], epochs=1, batch_size=32, verbose=0,
                 callbacks=[spies.Recorder()])
    assert [p.name for p in tuner.oracle.get_space().space] == ["units"]
    (trial,) = tuner.oracle.trials.values()
    assert sorted(trial.hyperparameters.values) == ["units"]
    model = spies.Recorder.runs[-1]["model"]
    assert model.get_layer("dense1").units == trial.hyperparameters.get(
        "units")


@pytest.mark.parametrize("name, choices", [
    ("batch_norm", [True, False]), ("batch_norm", [False, True]),
    ("balancing", ["smote", "none"])])
def test_choices_left_out_of_the_search_take_their_first(name, choices):
    # A yes/no knob took KerasTuner's `Boolean` default, False, whatever
    # the order.
    hypermodel = MLPHyperModel(4, 2, tunable=False, **{name: choices})
    assert hypermodel.trial_values(kt.HyperParameters())[name] == choices[0]


@pytest.mark.parametrize("split, error", [
    (1.5, ValueError), (-0.2, ValueError), (1.0, ValueError),
    ("0.2", TypeError), (0.99, ValueError)])
def test_validation_split_is_checked(split, error):
    x, y = np.zeros((10, 4), "float32"), np.arange(10) % 2
    hypermodel = MLPHyperModel(4, 2, num_layers=1, units=8,
                               balancing="none")
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    # 0.99 of ten samples leaves none for training (Keras refuses too).
    with pytest.raises(error, match="validation_split"):
        hypermodel.fit(hp, model, x, y, validation_split=split, epochs=1,
                       verbose=0)


def test_each_dropout_layer_draws_its_own_mask():
    model = MLPHyperModel(4, 2, seed=0).build_model(
        values(num_layers=3, units=64, dropout=0.5))
    ones = np.ones((8, 64), "float32")
    masks = [np.asarray(model.get_layer(f"dropout{i}")(ones, training=True))
             > 0 for i in (1, 2, 3)]
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        # Independent masks at rate 0.5 agree on about half the units
        # (standard error 0.02); masks seeded alike agree on all.
        assert abs(np.mean(masks[a] == masks[b]) - 0.5) < 0.15


@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_the_l2_knob_is_the_penalty_on_every_kernel(l2):
    model = MLPHyperModel(4, 3, seed=0).build_model(
        values(num_layers=2, l2=l2))
    model(np.zeros((1, 4), "float32"))
    kernels = [to_numpy(model.get_layer(f"dense{i}").kernel) for i in (1, 2)]
    # Keras' L2(l2) is l2 * sum(w ** 2) per kernel; the logits are free.
    expected = [l2 * np.sum(k.astype("float64") ** 2) for k in kernels]
    np.testing.assert_allclose([float(to_numpy(v)) for v in model.losses]
                               or [0.0, 0.0], expected, rtol=1e-5)


def small_trial(balancing):
    """A one-layer MLPHyperModel for the diabetes data, its (empty)
    HyperParameters and the model it builds from them."""
    hypermodel = MLPHyperModel(10, 2, num_layers=1, units=8,
                               balancing=balancing, seed=0)
    hp = kt.HyperParameters()
    return hypermodel, hp, hypermodel.build(hp)


def test_validation_split_is_cut_before_resampling():
    (x, y), _ = diabetes_risk()
    hypermodel, hp, model = small_trial("oversample")
    history = hypermodel.fit(hp, model, x, y, validation_split=0.2,
                             epochs=1, batch_size=BATCH, verbose=0)
    at = int(len(x) * 0.8)
    # Validation is the last 20% of the data as given, untouched.
    val_loss = model.evaluate(x[at:], y[at:], verbose=0)[0]
    assert history.history["val_loss"][0] == pytest.approx(val_loss,
                                                           rel=1e-5)
    counts = class_counts(y[:at])
    assert history.params["steps"] == math.ceil(
        2 * max(counts.values()) / BATCH)


def test_smote_and_class_weight_touch_the_training_split_only():
    (x, y), (x_val, y_val) = diabetes_risk()
    hypermodel = MLPHyperModel(10, 2, seed=0)
    fit_kwargs, batches = hypermodel.training_data(
        values(balancing="smote"), x, y, BATCH, (x_val, y_val), {})
    counts = class_counts(fit_kwargs["y"])
    assert len(set(counts.values())) == 1
    assert batches == math.ceil(len(fit_kwargs["x"]) / BATCH)
    np.testing.assert_array_equal(fit_kwargs["validation_data"][0], x_val)
    np.testing.assert_array_equal(fit_kwargs["validation_data"][1], y_val)

    fit_kwargs, _ = hypermodel.training_data(
        values(balancing="class_weight"), x, y, BATCH, None, {})
    n, counts = len(y), class_counts(y)
    assert fit_kwargs["class_weight"] == pytest.approx(
        {c: n / (2 * count) for c, count in counts.items()})
    np.testing.assert_array_equal(fit_kwargs["x"], x)


def test_labels_and_training_data_errors():
    import tensorflow as tf

    hypermodel = MLPHyperModel(10, 3)
    np.testing.assert_array_equal(
        hypermodel.labels(np.eye(3)[[2, 0, 1]]), [2, 0, 1])
    with pytest.raises(ValueError, match=r"Labels must be in \[0, 3\)"):
        hypermodel.labels([0, 3])
    x, y = np.zeros((8, 10), "float32"), np.arange(8) % 3
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    with pytest.raises(ValueError, match="needs the training data as NumPy"):
        hypermodel.training_data(values(balancing="smote"), dataset, None,
                                 4, None, {})
    with pytest.raises(ValueError, match="sets `class_weight`"):
        hypermodel.training_data(values(balancing="class_weight"), x, y, 4,
                                 None, {"class_weight": {0: 1.0}})


def test_labels_must_be_numbers_and_rows_one_hot():
    hypermodel = MLPHyperModel(4, 3)
    np.testing.assert_array_equal(hypermodel.labels([[2], [0]]), [2, 0])
    with pytest.raises(TypeError, match=r"dtype <U1; map the classes"):
        hypermodel.labels(np.array(["a", "b"]))
    # Soft, multi-label and empty rows were argmaxed to a class.
    for rows in ([[0.6, 0.4, 0.0]], [[1, 1, 0]], [[0, 0, 0]]):
        with pytest.raises(ValueError, match="must be one-hot"):
            hypermodel.labels(rows)
    # Two columns were flattened into twice the labels.
    with pytest.raises(ValueError, match=r"y.shape=\(2, 2\)"):
        hypermodel.labels([[0, 1], [2, 0]])


def test_sample_weights_reach_validation_and_conflicts_are_named():
    """Keras' (x, y, weights) validation tuple: the weights were dropped,
    so the tuner scored an unweighted val_loss."""
    (x, y), (x_val, y_val) = diabetes_risk()
    weights = (np.arange(len(y_val)) % 2).astype("float32")
    hypermodel, hp, model = small_trial("none")
    history = hypermodel.fit(hp, model, x, y, epochs=1, batch_size=BATCH,
                             validation_data=(x_val, y_val, weights),
                             verbose=0)
    weighted = model.evaluate(x_val, y_val, sample_weight=weights,
                              verbose=0, return_dict=True)["loss"]
    assert history.history["val_loss"][0] == pytest.approx(weighted,
                                                           rel=1e-5)
    # Keras' (x, y, None) is unweighted (None read as an array was NaN).
    history = hypermodel.fit(hp, model, x, y, epochs=1, batch_size=BATCH,
                             validation_data=(x_val, y_val, None),
                             verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(
        x_val, y_val, verbose=0, return_dict=True)["loss"], rel=1e-5)
    # With validation_split the weights are cut with x and y (Keras'
    # cardinality error before).
    train_weights = np.ones(len(y), "float32")
    hypermodel.fit(hp, model, x, y, sample_weight=train_weights,
                   validation_split=0.25, epochs=1, verbose=0)
    resampling = MLPHyperModel(10, 2, balancing="oversample")
    hp = kt.HyperParameters()
    with pytest.raises(ValueError, match=r"`sample_weight` cannot be "
                       r"combined with the trial's balancing='oversample'"):
        resampling.fit(hp, resampling.build(hp), x, y,
                       sample_weight=train_weights, epochs=1, verbose=0)


def balancing_grid(directory, hyperparameters=None,
                   tune_new_entries=True, **options):
    """A grid search of at most two trials over what `balancing` (in
    `options` or `hyperparameters`) leaves open, every other knob fixed
    (the default ranges would make a grid of hundreds)."""
    hypermodel = MLPHyperModel(10, 2, num_layers=1, units=8, dropout=0.0,
                               l2=0.0, batch_norm=False, learning_rate=1e-3,
                               seed=0, **options)
    return kt.GridSearch(hypermodel, objective="val_loss", max_trials=2,
                         hyperparameters=hyperparameters, overwrite=True,
                         directory=str(directory),
                         tune_new_entries=tune_new_entries)


@pytest.mark.parametrize("balancing, kwargs", [
    # One positive sample: too few for SMOTE, none for the other trials.
    (["none", "smote"], {}),
    (["class_weight", "none"], {"class_weight": {0: 1.0, 1: 2.0}}),
    (["none", "oversample"], {"sample_weight": "ones"}),
])
def test_a_balancing_error_fails_its_trials_alone(tmp_path, balancing,
                                                  kwargs):
    """Such errors come from the trial's balancing: made fatal, the first
    of them stopped the search the other methods would have run."""
    (x, y), validation = diabetes_risk()
    if "class_weight" not in kwargs:
        y = np.where(np.arange(len(y)) == np.argmax(y), 1, 0)
    if kwargs.get("sample_weight") == "ones":
        kwargs = dict(sample_weight=np.ones(len(y), "float32"))

    def grid(balancing):
        return balancing_grid(tmp_path / str(balancing), balancing=balancing)

    tuner = grid(balancing)
    tuner.search(x, y, validation_data=validation, epochs=1, verbose=0,
                 **kwargs)
    statuses = {trial.hyperparameters.get("balancing"): trial.status
                for trial in trials(tuner)}
    assert statuses == {"none": "COMPLETED",
                        next(b for b in balancing if b != "none"): "FAILED"}
    # Where every trial has the method, the search stops at its first.
    tuner = grid(next(b for b in balancing if b != "none"))
    with pytest.raises(kt.errors.FatalValueError):
        tuner.search(x, y, validation_data=validation, epochs=1, verbose=0,
                     **kwargs)
    assert len(tuner.oracle.trials) == 1


def test_the_search_space_not_the_constructor_says_what_is_searched(
        tmp_path):
    """A method fixed in the tuner's `HyperParameters` failed every trial
    alone (and `search` returned); one searched there, beside a
    `tunable=False` HyperModel, stopped the search."""
    (x, y), validation = diabetes_risk()
    y = np.where(np.arange(len(y)) == np.argmax(y), 1, 0)  # SMOTE fails

    hp = kt.HyperParameters()
    hp.Fixed("balancing", "smote")
    # The constructor's default: three methods.
    tuner = balancing_grid(tmp_path / "fixed", hyperparameters=hp)
    with pytest.raises(kt.errors.FatalValueError, match="SMOTE needs"):
        tuner.search(x, y, validation_data=validation, epochs=1, verbose=0)
    hp = kt.HyperParameters()
    hp.Choice("balancing", ["none", "smote"])
    tuner = balancing_grid(tmp_path / "searched", hyperparameters=hp,
                           tunable=False)
    tuner.search(x, y, validation_data=validation, epochs=1, verbose=0)
    assert {trial.hyperparameters.get("balancing"): trial.status
            for trial in trials(tuner)} == {"none": "COMPLETED",
                                            "smote": "FAILED"}
    # With `tune_new_entries=False` the oracle searches only `units`:
    # every trial takes the first method, which stops the search.
    hp = kt.HyperParameters()
    hp.Choice("units", [8, 16])
    tuner = balancing_grid(tmp_path / "untuned", hyperparameters=hp,
                           balancing=["smote", "none"],
                           tune_new_entries=False)
    with pytest.raises(kt.errors.FatalValueError, match="SMOTE needs"):
        tuner.search(x, y, validation_data=validation, epochs=1, verbose=0)
    assert len(tuner.oracle.trials) == 1
    with pytest.raises(ValueError, match=r"`name` must be one of the knobs"
                       r" \[.*'balancing'\]. Received: name='balance'"):
        with tuner.hypermodel.per_trial("balance"):
            pass


def test_a_dataset_of_unknown_length_trains_with_steps_per_epoch():
    """An infinite (or unknown-length) dataset gives no pass to lay the
    schedule over: `steps_per_epoch` does, and without it `fit` says so.
    An empty one is refused either way."""
    import tensorflow as tf

    (x, y), _ = diabetes_risk()
    hypermodel, hp, model = small_trial("none")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    history = hypermodel.fit(hp, model, dataset.repeat(), epochs=2,
                             steps_per_epoch=3, verbose=0)
    assert history.params["steps"] == 3
    assert int(keras.ops.convert_to_numpy(
        model.optimizer.iterations)) == 6
    unknown = dataset.filter(lambda features, label: True)
    for data in (dataset.repeat(), unknown):
        with pytest.raises(ValueError, match=r"unknown or infinite.* Pass "
                           r"`steps_per_epoch`"):
            hypermodel.fit(hp, model, data, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="training dataset is empty"):
        hypermodel.fit(hp, model, dataset.take(0), epochs=1,
                       steps_per_epoch=3, verbose=0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_layers": (3, 1)}, ValueError,
     r"`num_layers` must be a range \(min, max\) with min <= max. "
     r"Received: num_layers=\(3, 1\)"),
    ({"units": (64, 16)}, ValueError, "min <= max"),
    ({"balancing": "smoteish"}, ValueError,
     "`balancing` must be one of 'none', 'class_weight', 'undersample', "
     "'oversample', 'smote'"),
    ({"balancing": ["none", "weights"]}, ValueError, "balancing='weights'"),
    ({"batch_norm": "yes"}, TypeError, "`batch_norm` must be a bool"),
    ({"l2": (0.0, 1e-3)}, ValueError, "log scale"),
    ({"dropout": 1.0}, ValueError, r"`dropout` must be in \[0, 1\)"),
    ({"learning_rate": 0.0}, ValueError, "learning_rate"),
    # inf in float32: the loss and the weights were NaN after one fit.
    ({"learning_rate": 1e40}, ValueError,
     r"`learning_rate` must be in \[1.17549e-38, 3.40282e\+38\]"),
    # Below float32's smallest normal number: 0 (or a denormal, which XLA
    # flushes to 0) where the update computes, and nothing trained.
    ({"learning_rate": 5e-324}, ValueError,
     r"`learning_rate` must be in \[1.17549e-38, "),
    ({"learning_rate": (1e-45, 1e-2)}, ValueError,
     r"`learning_rate` must be in \[1.17549e-38, "),
    ({"l2": (1e-6, 1e40)}, ValueError, r"`l2` must be in \[0, 3.40282e"),
    ({"num_layers": 0}, ValueError, "num_layers"),
    ({"units": 1.5}, TypeError, "units"),
    ({"input_dim": 0}, ValueError, "input_dim"),
    ({"num_classes": 1}, ValueError, "num_classes"),
    ({"seed": -1}, ValueError, r"`seed` must be None or an integer >= 0"),
    ({"seed": 2**30}, ValueError, "seed=1073741824"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"tunable": "no"}, TypeError, "`tunable` must be True or False"),
    ({"name": 5}, TypeError, "`name` must be None or a string"),
])
def test_bad_search_space_arguments(kwargs, error, match):
    arguments = dict(input_dim=10, num_classes=2)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        MLPHyperModel(**arguments)


def test_numpy_scalars_are_taken_as_knobs():
    """NumPy's bool, as `check_bool` takes it everywhere else."""
    hp = kt.HyperParameters()
    model = MLPHyperModel(10, 2, batch_norm=np.bool_(True),
                          learning_rate=np.float32(1e-3)).build(hp)
    assert hp.values["batch_norm"] is True
    assert any(isinstance(layer, keras.layers.BatchNormalization)
               for layer in model.layers)


def test_trials_are_built_under_the_policy_the_hypermodel_was_made_in():
    # KerasTuner clears the session before each trial, which resets the
    # global policy: `--mixed-precision` searches trained in float32.
    keras.config.set_dtype_policy("mixed_float16")
    try:
        hypermodel = MLPHyperModel(10, 2, **values())
        keras.backend.clear_session()
        assert keras.config.dtype_policy().name == "float32"
        model = hypermodel.build(kt.HyperParameters())
    finally:
        keras.config.set_dtype_policy("float32")
    dense = [layer for layer in model.layers
             if isinstance(layer, keras.layers.Dense)]
    assert dense[:-1] and all(layer.dtype_policy.name == "mixed_float16"
                              for layer in dense[:-1])
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    # float32 logits, as resnet's: float16 ones saturate at 65504.
    assert dense[-1].name == "logits"
    assert model.outputs[0].dtype == "float32"
    assert to_numpy(model.predict(np.ones((2, 10), "float32"),
                                  verbose=0)).dtype == np.float32


def test_batch_size_none_is_keras_32_and_an_empty_span_is_named():
    # `model.fit(batch_size=None)` trains in batches of 32; it failed in a
    # division here.
    (x, y), _ = diabetes_risk()
    hypermodel, hp, model = small_trial("none")
    hypermodel.fit(hp, model, x, y, epochs=1, batch_size=None, verbose=0)
    assert int(to_numpy(model.optimizer.iterations)) == math.ceil(
        len(x) / 32)
    with pytest.raises(ValueError, match=r"`batch_size`.*batch_size=0"):
        hypermodel.fit(hp, model, x, y, epochs=1, batch_size=0, verbose=0)
    # No epoch to lay the schedule over (it failed naming `total_steps`).
    with pytest.raises(ValueError, match=r"`epochs`.*epochs=0"):
        hypermodel.fit(hp, model, x, y, epochs=0, verbose=0)
    for epochs, initial_epoch in ((2, 2), (1, 3)):
        with pytest.raises(ValueError, match=r"`epochs` and `initial_epoch`"
                           rf".*epochs={epochs}, initial_epoch="):
            hypermodel.fit(hp, model, x, y, epochs=epochs,
                           initial_epoch=initial_epoch, verbose=0)


def batches(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def test_a_dataset_with_labels_out_of_range_stops_the_search(tmp_path):
    """Digits labelled 1..10 in a dataset trained, and completed a trial,
    on jax: sparse cross-entropy reads label 10 without a word."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x[:256] / 16.0).astype("float32")
    tuner = kt.RandomSearch(
        MLPHyperModel(64, 10, num_layers=1, units=8, balancing="none",
                      seed=0),
        objective="loss", max_trials=2, seed=0, directory=str(tmp_path),
        overwrite=True)
    # The bad label is in the last batch only: every batch is checked.
    labels = np.where(np.arange(256) < 250, y[:256], 10)
    with pytest.raises(ValueError, match=r"Argument `x`, a tf.data.Dataset,"
                       r" must yield labels `y` in \[0, 10\) \(or one-hot "
                       r"rows of width 10\)\. Received: a batch of labels "
                       r"in \[\d, 10\]\.$"):
        tuner.search(batches(x, labels), epochs=1, verbose=0)
    assert all(t.status != "COMPLETED" for t in tuner.oracle.trials.values())


@pytest.mark.parametrize("labels, match", [
    # Binary labels {0, 2} trained to a negative loss on torch.
    (lambda y: 2 * y, r"labels `y` in \[0, 2\).*labels in \[0, 2\]\."),
    (lambda y: y - 1, r"labels `y` in \[0, 2\).*labels in \[-1, 0\]\."),
    (lambda y: y + 0.5, r"class indices \(whole numbers\).*in \[0.5, "),
    (lambda y: np.where(y[:, None] == 1, [1, 1], [1, 0]),
     "rows of width 2 to be one-hot"),
    (lambda y: y[:, None] + 3, r"in \[0, 2\).*labels in \[3, 4\]\."),
], ids=["0_2", "negative", "fraction", "not_one_hot", "column"])
@pytest.mark.parametrize("where", ["x", "validation_data"])
def test_dataset_labels_follow_the_rules_of_numpy_ones(labels, match,
                                                        where):
    (x, y), (x_val, y_val) = diabetes_risk()
    hypermodel, hp, model = small_trial("none")
    train, validation = batches(x, y), batches(x_val, y_val)
    if where == "x":
        train = batches(x, labels(y))
        with pytest.raises(ValueError):
            hypermodel.labels(labels(y))  # as the NumPy path refuses them
    else:
        validation = batches(x_val, labels(y_val))
    with pytest.raises(ValueError, match=rf"^Argument `{where}`, a "
                       rf"tf.data.Dataset, must yield .*{match}"):
        hypermodel.fit(hp, model, train, validation_data=validation,
                       epochs=1, verbose=0)


@pytest.mark.parametrize("form", ["int", "column", "one_hot", "float",
                                  "bool"])
def test_good_dataset_labels_train_exactly_as_numpy_ones(form):
    (x, y), (x_val, y_val) = diabetes_risk()
    x, x_val = x.astype("float32"), x_val.astype("float32")
    as_form = {"int": lambda y: y, "column": lambda y: y[:, None],
               "one_hot": lambda y: np.eye(2, dtype="int32")[y],
               "float": lambda y: y.astype("float32"),
               "bool": lambda y: y.astype(bool)}[form]
    hypermodel = MLPHyperModel(10, 2, num_layers=1, units=8,
                               learning_rate=1e-2, balancing="none", seed=0)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    initial = model.get_weights()
    reference = hypermodel.fit(hp, model, x, y, batch_size=BATCH,
                               shuffle=False, validation_data=(x_val, y_val),
                               epochs=1, verbose=0).history
    expected = model.get_weights()
    model.set_weights(initial)
    history = hypermodel.fit(
        hp, model, batches(x, as_form(y)),
        validation_data=batches(x_val, as_form(y_val)), epochs=1,
        verbose=0).history
    assert max(np.abs(a - b).max() for a, b in zip(expected, initial)) > (
        1e-2)  # it trained
    for a, b in zip(expected, model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    assert history["val_loss"] == pytest.approx(reference["val_loss"],
                                                rel=1e-5)


def test_a_dataset_whose_labels_cannot_be_classes_is_refused_up_front():
    """`element_spec` tells before any batch is read."""
    import tensorflow as tf

    (x, y), _ = diabetes_risk()
    hypermodel = MLPHyperModel(10, 2)
    cases = [
        (tf.data.Dataset.from_tensor_slices((x, y)), ValueError,
         r"labels `y` in batches.*Batch it, e.g. `x.batch\(32\)`"),
        (batches(x, np.where(y == 1, "yes", "no")), TypeError,
         r"dtype=tf.string.*map the classes to 0, 1"),
        (batches(x, np.eye(3)[y]), ValueError,
         r"shape \(batch,\), \(batch, 1\) or \(batch, 2\). Received labels:"
         r" TensorSpec\(shape=\(None, 3\)"),
        (batches(x, y[:, None, None]), ValueError, r"shape=\(None, 1, 1\)"),
        (tf.data.Dataset.from_tensor_slices(x).batch(BATCH), ValueError,
         r"batches \(features, labels\)"),
    ]
    for dataset, error, match in cases:
        with pytest.raises(error, match=r"^Argument `x`, a tf.data.Dataset"
                           rf".*{match}"):
            hypermodel.training_data(values(), dataset, None, BATCH, None,
                                     {})
        with pytest.raises(error, match=r"^Argument `validation_data`"):
            hypermodel.training_data(values(), x, y, BATCH, dataset, {})


def test_a_learning_rate_set_in_the_hyperparameters_is_the_one_trained():
    """MLPHyperModel has one `learning_rate` knob (no form per optimizer,
    unlike ResNetHyperModel's `max_lr`): a declared value wins."""
    (x, y), _ = diabetes_risk()
    hypermodel = MLPHyperModel(10, 2, num_layers=1, units=8,
                               learning_rate=1e-3, balancing="none")
    hp = kt.HyperParameters()
    hp.Fixed("learning_rate", 0.05)
    model = hypermodel.build(hp)
    hypermodel.fit(hp, model, x, y, epochs=1, verbose=0)
    assert float(to_numpy(model.optimizer.learning_rate)) == pytest.approx(
        0.05)
