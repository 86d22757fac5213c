"""The flags and exits every recipe shares (recipes/common.py)."""

import csv
import json
import os
import time

import keras
import pytest

from recipes import common


def run_with(argv, run, **flags):
    return common.run_main("demo", "Demo recipe.", run, argv, epochs=3,
                           batch_size=4, **flags)


def test_mixed_precision_sets_keras_policy_for_the_run_only(tmp_path):
    seen = []

    def run(args):
        seen.append((args.mixed_precision,
                     keras.mixed_precision.global_policy().name))

    assert run_with(["--mixed-precision", "--out", str(tmp_path)], run) == 0
    assert keras.mixed_precision.global_policy().name == "float32"
    assert run_with(["--out", str(tmp_path)], run) == 0
    assert seen == [(True, "mixed_float16"), (False, "float32")]


def test_data_dir_only_where_a_data_set_is_read(tmp_path, capsys):
    seen = []
    assert run_with(["--data-dir", "/data", "--out", str(tmp_path)],
                    lambda args: seen.append(args.data_dir),
                    data_dir=True) == 0
    assert seen == ["/data"]
    with pytest.raises(SystemExit):
        run_with(["--data-dir", "/data", "--out", str(tmp_path)],
                 lambda args: None)
    assert "--data-dir" in capsys.readouterr().err


def test_quick_caps_the_epochs(tmp_path):
    # At most 2: fewer stay as asked.
    seen = []
    for epochs in ("50", "1"):
        run_with(["--quick", "--epochs", epochs, "--out", str(tmp_path)],
                 lambda args: seen.append(args.epochs))
    assert seen == [2, 1]


def test_recipe_error_exits_1_and_keeps_an_existing_folder(tmp_path, capsys):
    def run(args):
        raise common.RecipeError("no data here")

    existing = tmp_path / "kept"
    existing.mkdir()
    assert run_with(["--out", str(existing)], run) == 1
    assert existing.is_dir()
    assert run_with(["--out", str(tmp_path / "new")], run) == 1
    assert not (tmp_path / "new").exists()
    assert "demo: error: no data here" in capsys.readouterr().err


def _draw_grid(tmp_path, wrong, limit=40, channels=1):
    """Draws `plot_misclassified` for 50 labels of which the positions
    `wrong` are mispredicted; returns (positions drawn, image height)."""
    import numpy as np
    from matplotlib.image import imread

    y_true = np.arange(50) % 10
    y_pred = y_true.copy()
    y_pred[wrong] = (y_true[wrong] + 1) % 10
    images = np.random.default_rng(0).random((50, 8, 8, channels))
    path = tmp_path / f"grid_{len(wrong)}_{limit}_{channels}.png"
    shown = common.plot_misclassified(images, y_true, y_pred, str(path),
                                      limit=limit)
    return shown, imread(path).shape[0]


def test_misclassified_grid_draws_the_first_errors_eight_per_row(
        tmp_path, monkeypatch):
    import kerastrain.io

    figures = []
    real_save = kerastrain.io.save_figure
    monkeypatch.setattr(kerastrain.io, "save_figure", lambda figure, path: (
        figures.append(figure), real_save(figure, path))[1])
    wrong = [3, 7, 11, 12, 20, 31, 32, 40, 49]
    shown, one_row = _draw_grid(tmp_path, wrong[:8])
    assert shown == wrong[:8]
    shown, two_rows = _draw_grid(tmp_path, wrong)
    assert shown == wrong and two_rows > one_row
    # Read from the figure: the images' places, row by row, in the order
    # of the errors, eight to the first row and the ninth below.
    drawn = [ax for ax in figures[-1].axes if ax.images]
    places = sorted((-ax.get_position().y0, ax.get_position().x0, ax)
                    for ax in drawn)
    assert [ax.get_title().split(":")[0] for *_, ax in places] == [
        f"#{i}" for i in wrong]
    assert len({round(y, 6) for y, _, _ in places[:8]}) == 1
    assert len({round(x, 6) for _, x, _ in places[:8]}) == 8
    assert places[8][0] != places[0][0]
    assert _draw_grid(tmp_path, wrong, limit=4)[0] == wrong[:4]
    assert _draw_grid(tmp_path, wrong, channels=3)[0] == wrong
    assert _draw_grid(tmp_path, [])[0] == []  # still written, empty


def test_jax_cache_settings_default_to_the_user_cache_and_yield_to_own(
        tmp_path):
    settings = common.jax_cache_settings({"XDG_CACHE_HOME": str(tmp_path)})
    assert settings["JAX_COMPILATION_CACHE_DIR"] == str(
        tmp_path / "kerastrain" / "jax")
    assert float(settings["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]) == 0
    own = {"JAX_COMPILATION_CACHE_DIR": "/mine",
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "1"}
    assert common.jax_cache_settings(own) == {}


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="starts its own jax processes; once is enough")
def test_jax_recipe_fills_the_cache_and_a_cached_rerun_is_identical(
        tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JAX_")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"),
               TF_CPP_MIN_LOG_LEVEL="3")
    metrics = []
    for run in ("cold", "warm"):
        out = tmp_path / run
        subprocess.run(
            # The cheapest recipe (an MLP; digits_resnet took twice as
            # long), one epoch per fit: the range test, the one-cycle fit
            # and the constant-rate fit, each compiled or read from the
            # cache.
            [sys.executable, "-m", "recipes.lr_range_then_one_cycle",
             "--quick", "--epochs", "1", "--backend", "jax", "--out",
             str(out)],
            check=True, env=env, stdout=subprocess.DEVNULL)
        metrics.append(json.loads((out / "metrics.json").read_text()))
        if run == "cold":
            cached = os.listdir(tmp_path / "cache" / "kerastrain" / "jax")
            assert len(cached) > 5  # steps and initializers
    # ROC AUCs: any changed prediction would move them.
    for key in ("max_lr", "test", "baselines"):
        assert metrics[0][key] == metrics[1][key]


def test_no_fit_or_member_replays_the_batches_of_another(
        tmp_path, monkeypatch):
    import argparse

    import numpy as np

    import kerastrain.data
    from kerastrain.models import resnet

    real = kerastrain.data.image_pipeline
    training_calls = []

    def spy(*args, **kwargs):
        if kwargs.get("training", True):
            training_calls.append((args, kwargs))
        return real(*args, **kwargs)

    def fit_passes(model, data, validation_data, *, initial_epoch, epochs,
                   **kwargs):
        """No training: what is checked are the pipelines the fits get
        (the recipes' quick tests train through the real one)."""
        fits.append((initial_epoch, epochs, kwargs["callbacks"]))
        history = keras.callbacks.History()
        history.epoch = list(range(initial_epoch, epochs))
        return history

    fits = []
    monkeypatch.setattr(kerastrain.data, "image_pipeline", spy)
    monkeypatch.setattr(kerastrain.data, "fit_passes", fit_passes)
    rng = np.random.default_rng(0)
    train = (rng.random((32, 8, 8, 1), "float32"), np.arange(32) % 4)
    val = (rng.random((8, 8, 8, 1), "float32"), np.arange(8) % 4)
    model = resnet((8, 8, 1), 4, depth=8, width=4)
    args = argparse.Namespace(epochs=4, batch_size=16, seed=0,
                              out=str(tmp_path))
    history = common.fit_image_classifier(
        model, train, val, args, max_lr=0.1, weight_decay=0.0,
        augment=("shift",), mixup_alpha=0.2)
    assert history.epoch == [0, 1, 2, 3]
    # With mixup for 3 epochs, then without; the checkpoint watches the
    # second.
    assert [fit[:2] for fit in fits] == [(0, 3), (3, 4)]
    assert [len(fit[2]) for fit in fits] == [0, 1]
    assert len(training_calls) == 2
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


@pytest.mark.parametrize("seed", ["-1", str(common.MAX_SEED + 1),
                                  str(2**32), "1.5", "one"])
def test_a_seed_out_of_range_is_an_argparse_error(tmp_path, capsys, seed):
    ran = []
    out = tmp_path / "new"
    with pytest.raises(SystemExit) as exit_info:
        run_with(["--seed", seed, "--out", str(out)], ran.append)
    assert exit_info.value.code == 2
    assert "--seed" in capsys.readouterr().err
    assert not ran and not out.exists()


def test_the_largest_seed_seeds_keras_and_layers_seeded_from_it(tmp_path):
    import numpy as np

    def run(args):
        keras.utils.set_random_seed(args.seed)
        # The recipes' layers get `seed + i`; a ResNet-110 has 54 blocks.
        # (On torch a layer's seed is an int32: 2**32 - 1 fails here.)
        seed = args.seed + 100
        kept = keras.layers.Dropout(0.5, seed=seed)(
            np.ones((4, 8), "float32"), training=True)
        keras.initializers.GlorotUniform(seed=seed)((8, 8))
        seen.append(float(keras.ops.max(kept)))

    seen = []
    assert run_with(["--seed", str(common.MAX_SEED), "--out",
                     str(tmp_path)], run) == 0
    assert seen == [2.0]


def test_any_failure_removes_the_folders_the_run_created_and_reraises(
        tmp_path):
    def broken(args):
        raise ZeroDivisionError("a bug")

    out = tmp_path / "nest" / "a" / "b"
    with pytest.raises(ZeroDivisionError, match="a bug"):
        run_with(["--out", str(out)], broken)
    # Every folder os.makedirs made for --out, not only the last one.
    assert os.listdir(tmp_path) == []


def test_recipe_error_removes_new_parents_up_to_the_first_that_existed(
        tmp_path, capsys):
    def run(args):
        raise common.RecipeError("no data here")

    (tmp_path / "nest").mkdir()
    assert run_with(["--out", str(tmp_path / "nest" / "a" / "b")], run) == 1
    assert os.listdir(tmp_path) == ["nest"]
    assert os.listdir(tmp_path / "nest") == []
    assert "demo: error: no data here" in capsys.readouterr().err


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def publishing(outputs, text):
    """A run that writes `outputs` (paths inside its folder), each holding
    `text`, then finishes."""
    def run(args):
        for name in outputs:
            write(os.path.join(args.out, name), text)
        common.finish("demo", args, {"run": text}, [])
    return run


def test_a_failure_publishes_nothing_and_keeps_what_it_wrote_aside(
        tmp_path, capsys):
    def half_done(args):
        write(os.path.join(args.out, "partial.png"), "")
        raise ZeroDivisionError("a bug")

    out = tmp_path / "a" / "b"
    with pytest.raises(ZeroDivisionError):
        run_with(["--out", str(out)], half_done)
    assert os.listdir(out) == [common.STAGING]
    assert os.listdir(out / common.STAGING) == ["partial.png"]
    assert "nothing was published" in capsys.readouterr().err


def test_an_interrupted_rerun_leaves_the_earlier_run_whole(tmp_path):
    out = str(tmp_path)
    assert run_with(["--out", out], publishing(
        ["model.keras", "history.csv", "snapshots/s1.keras"], "first")) == 0
    before = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}

    def interrupted(args):
        write(os.path.join(args.out, "history.csv"), "second")
        write(os.path.join(args.out, "model.keras"), "second")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_with(["--out", out], interrupted)
    published = {p: p.read_text() for p in tmp_path.rglob("*")
                 if p.is_file() and common.STAGING not in p.parts}
    assert published == before
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["run"] == "first"
    assert metrics["outputs"] == ["history.csv", "model.keras", "snapshots"]


def test_a_run_replaces_the_outputs_of_the_run_before(tmp_path):
    out = str(tmp_path)
    (tmp_path / "notes.txt").write_text("the user's")
    assert run_with(["--out", out], publishing(
        ["model.keras", "tuning/model.keras", "snapshots/s1.keras",
         "snapshots/s2.keras"], "first")) == 0
    # A stale file an interrupted run staged is discarded, not published.
    write(os.path.join(out, common.STAGING, "stale.png"), "interrupted")
    assert run_with(["--out", out], publishing(
        ["model.keras", "snapshots/s1.keras"], "second")) == 0
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                   if p.is_file())
    # The first run's tuning/ and snapshot 2 are gone; the user's file
    # stays (only what a run listed in its metrics.json is replaced).
    assert files == ["metrics.json", "model.keras", "notes.txt",
                     os.path.join("snapshots", "s1.keras")]
    assert (tmp_path / "model.keras").read_text() == "second"
    assert (tmp_path / "notes.txt").read_text() == "the user's"


def test_a_stray_file_where_the_staging_folder_goes_is_replaced(tmp_path):
    (tmp_path / common.STAGING).write_text("not a folder")
    assert run_with(["--out", str(tmp_path)],
                    publishing(["model.keras"], "run")) == 0
    assert sorted(os.listdir(tmp_path)) == ["metrics.json", "model.keras"]


def test_the_wall_time_counts_the_import_of_keras(tmp_path, monkeypatch):
    # Keras and its backend are imported where the run's policy is set,
    # after the flags: 5-15 s of a run a user waits for.
    def slow_import(run, args):
        time.sleep(0.3)
        run(args)

    monkeypatch.setattr(common, "_run_with_policy", slow_import)
    start = time.perf_counter()
    assert run_with(["--out", str(tmp_path)],
                    publishing(["model.keras"], "run")) == 0
    elapsed = time.perf_counter() - start
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.3 <= metrics["wall_time_s"] <= round(elapsed, 1) + 0.05


def test_an_earlier_metrics_file_cannot_remove_what_is_not_in_the_folder(
        tmp_path):
    out = tmp_path / "out"
    (tmp_path / "keep.txt").write_text("outside")
    out.mkdir()
    (out / "metrics.json").write_text(
        '{"outputs": ["../keep.txt", "/etc", ".", ".unfinished"]}')
    assert run_with(["--out", str(out)], publishing(["a.csv"], "x")) == 0
    assert (tmp_path / "keep.txt").read_text() == "outside"
    assert sorted(os.listdir(out)) == ["a.csv", "metrics.json"]


def test_the_write_probe_leaves_a_file_of_the_same_name_alone(tmp_path):
    (tmp_path / ".write-test").write_text("mine")
    assert common.ensure_writable(str(tmp_path)) == []
    assert os.listdir(tmp_path) == [".write-test"]
    assert (tmp_path / ".write-test").read_text() == "mine"


def test_environment_names_kerastrain_and_only_the_frameworks_used():
    import argparse
    import importlib
    import importlib.metadata
    import sys

    import kerastrain

    backend = keras.backend.backend()
    # Import every framework, as Keras does jax on any backend and
    # keras.utils.set_random_seed does tensorflow: imported is not used.
    for framework in common.BACKENDS:
        importlib.import_module(framework)
    args = argparse.Namespace(seed=7, mixed_precision=False)
    info = common.environment(args)
    assert info["backend"] == backend and info["seed"] == 7
    assert info["kerastrain"] == importlib.metadata.version("kerastrain") \
        == kerastrain.__version__
    assert info[backend] == importlib.metadata.version(backend)
    assert set(common.BACKENDS) & set(info) == {backend}
    for key in ("keras", "numpy", "scikit-learn", "python"):
        assert key in info
    # A tf.data pipeline feeding any backend runs TensorFlow too.
    assert set(common.BACKENDS) & set(common.environment(
        args, tf_data=True)) == {backend, "tensorflow"}
    assert common.environment(args, tf_data=True)["tensorflow"] == \
        importlib.metadata.version("tensorflow")
    assert all(framework in sys.modules for framework in common.BACKENDS)


def test_environment_names_the_optional_packages_once_imported(
        monkeypatch):
    import argparse
    import importlib
    import importlib.metadata
    import sys

    args = argparse.Namespace(seed=0, mixed_precision=False)
    packages = {"imblearn": "imbalanced-learn",
                "keras_tuner": "keras-tuner",
                "tensorflow_datasets": "tensorflow-datasets"}
    for module in packages:
        importlib.import_module(module)
    info = common.environment(args)
    for distribution in packages.values():
        assert info[distribution] == importlib.metadata.version(
            distribution)
    for module in packages:  # put back after the test
        monkeypatch.delitem(sys.modules, module)
    assert not set(packages.values()) & set(common.environment(args))


def test_the_largest_seed_is_the_models_limit():
    """`MAX_SEED` is written out (the module must not import kerastrain
    before --backend is set); it must stay kerastrain's model seed limit."""
    from kerastrain._seeds import MODEL_SEED_LIMIT

    assert common.MAX_SEED == MODEL_SEED_LIMIT - 1


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


def test_a_csv_loggers_na_reads_as_nan(tmp_path):
    """Keras' `CSVLogger` writes "NA" for a key an epoch did not log (a
    fit stopped early, a validation metric not computed that epoch):
    `search_report` failed on it with float("NA")."""
    import math

    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss\n0,1.5,NA\n1,0.5,0.25\n")
    history = common.read_history(str(path))
    assert history.epoch == [0, 1]
    assert history.history["loss"] == [1.5, 0.5]
    assert math.isnan(history.history["val_loss"][0])
    assert history.history["val_loss"][1] == 0.25


def test_a_continued_fits_history_keeps_its_epoch_numbers(tmp_path):
    """A fit from `initial_epoch` (a Hyperband trial continuing another)
    starts past epoch 1: `history.csv` numbers its rows as Keras'
    `CSVLogger` does (from 0 there, from 1 here), not from 1."""
    import numpy as np

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    logged = tmp_path / "logged.csv"
    history = model.fit(np.ones((4, 2)), np.ones(4), epochs=3,
                        initial_epoch=1, verbose=0,
                        callbacks=[keras.callbacks.CSVLogger(str(logged))])
    for source in (history, common.read_history(str(logged))):
        path = tmp_path / "history.csv"
        common.write_history(source, str(path))
        with open(path) as f, open(logged) as g:
            assert [int(row["epoch"]) for row in csv.DictReader(f)] == [
                int(row["epoch"]) + 1 for row in csv.DictReader(g)]


def test_hyperbands_bookkeeping_is_not_reported_as_a_hyperparameter(
        tmp_path):
    """KerasTuner's Hyperband adds `tuner/epochs`, `tuner/round`... to each
    trial's values: scheduling, not knobs. `trials.csv` left them out, and
    so must the best hyperparameters."""
    import types

    import keras_tuner as kt

    oracle = kt.oracles.HyperbandOracle(
        objective=kt.Objective("val_accuracy", "max"), max_epochs=3,
        seed=0)
    oracle._set_project_dir(str(tmp_path / "search"), "p")
    space = kt.HyperParameters()
    space.Choice("units", [4, 8])
    oracle.update_space(space)
    trial = oracle.create_trial("tuner0")
    values = trial.hyperparameters.values
    assert any(name.startswith("tuner/") for name in values)  # it matters
    trial.score = 0.5
    history = tmp_path / "histories" / trial.trial_id / "history.csv"
    history.parent.mkdir(parents=True)
    history.write_text("epoch,loss,val_accuracy\n0,1.0,0.5\n")
    best, _ = common.search_report(types.SimpleNamespace(oracle=oracle),
                                   str(tmp_path),
                                   str(tmp_path / "histories"))
    assert best == {"units": values["units"]}
    assert json.loads((tmp_path / "best_hyperparameters.json").read_text()
                      ) == best
    with open(tmp_path / "trials.csv") as f:
        assert next(csv.reader(f)) == ["trial", "score", "units"]

