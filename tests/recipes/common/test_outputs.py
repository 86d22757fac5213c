"""A run's output folder: staged, published whole, metrics.json last,
history.csv (recipes/common/outputs.py)."""

import csv
import json
import os

import keras
import pytest

from recipes import common
from tests.recipes.common.runs import publishing, run_with, write


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


def test_an_earlier_metrics_file_cannot_remove_what_is_not_in_the_folder(
        tmp_path):
    out = tmp_path / "out"
    (tmp_path / "keep.txt").write_text("outside")
    out.mkdir()
    (out / "metrics.json").write_text(
        '{"kerastrain": "0.1.0", '
        '"outputs": ["../keep.txt", "/etc", ".", ".unfinished"]}')
    assert run_with(["--out", str(out)], publishing(["a.csv"], "x")) == 0
    assert (tmp_path / "keep.txt").read_text() == "outside"
    assert sorted(os.listdir(out)) == ["a.csv", "metrics.json"]


@pytest.mark.parametrize("text", [
    '{"outputs": ["data"]}', '{"kerastrain": 1, "outputs": ["data"]}',
    '{"kerastrain": "0.1.0", "outputs": "data"}', '["data"]', "not json"])
def test_a_metrics_file_no_run_wrote_decides_nothing(tmp_path, capsys,
                                                     text):
    """Another tool's metrics.json in --out: its `outputs` named a folder
    of the user's, which the run removed whole, and the run replaced the
    file. The folder is refused, and a publish that meets such a file
    (written after the check) removes nothing it lists."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("precious")
    (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        run_with(["--out", str(tmp_path)], publishing(["a.csv"], "x"))
    assert exit_info.value.code == 2
    assert "holds a metrics.json that no kerastrain recipe wrote" in (
        capsys.readouterr().err)
    assert sorted(os.listdir(tmp_path)) == ["data", "metrics.json"]

    def written_meanwhile(args):
        (tmp_path / "metrics.json").write_text(text)
        publishing(["a.csv"], "x")(args)

    (tmp_path / "metrics.json").unlink()
    assert run_with(["--out", str(tmp_path)], written_meanwhile) == 0
    assert (tmp_path / "data" / "x.csv").read_text() == "precious"


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


def test_an_epoch_logged_again_after_a_resume_reads_once(tmp_path):
    """`run_search`'s trials log before they back up: a crash between the
    two resumes from the backup of the epoch before, runs the logged
    epoch again and logs it again, appending; it reads once, as in the
    uninterrupted `fit`'s `History`."""
    import numpy as np

    from kerastrain.callbacks import CheckpointEarlyStopping
    from tests.support import CrashAt

    def fit(crash=None):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        x = np.random.default_rng(0).normal(size=(16, 2))
        return model.fit(x, x.sum(1), epochs=3, batch_size=4, verbose=0,
                         callbacks=[
                             keras.callbacks.CSVLogger(str(logged),
                                                       append=True),
                             *([crash] if crash else []),
                             CheckpointEarlyStopping(
                                 str(tmp_path / "best.keras"),
                                 monitor="loss",
                                 backup_dir=str(tmp_path / "backup"))])

    logged = tmp_path / "uninterrupted.csv"
    expected = fit()
    logged = tmp_path / "resumed.csv"
    with pytest.raises(KeyboardInterrupt):
        fit(CrashAt(1))  # after epoch 1's row, before its backup
    fit()
    with open(logged) as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == [
            "0", "1", "1", "2"]
    history = common.read_history(str(logged))
    assert history.epoch == [0, 1, 2]
    np.testing.assert_allclose(history.history["loss"],
                               expected.history["loss"], rtol=1e-6)
    # The rows of the run again, in the place of the first.
    with open(logged) as f:
        rows = list(csv.DictReader(f))
    assert history.history["loss"][1] == float(rows[2]["loss"])
