import json
import os
import re

import keras
import numpy as np
import pytest

import kerastrain  # noqa: F401  (registers the layers for load_model)
from recipes import common
from recipes import snapshot_ensemble as recipe
from recipes.digits_resnet import load_split
from tests.recipes.common.runs import (assert_resumed_as_uninterrupted,
                                       crashed, finished_run)
from tests.support import to_numpy


# --quick has 320 training digits in batches of 64, 5 steps an epoch, 10
# in 2 epochs; 4 cycles, which do not divide them, of 2 steps each use 8
# of them and still give 4 snapshots.
QUICK_FLAGS = ["--quick", "--cycles", "4"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    return finished_run(tmp_path_factory, recipe.main, QUICK_FLAGS)


def test_quick_run_reports_each_snapshot_and_their_average(quick_run):
    out = quick_run
    metrics = json.loads((out / "metrics.json").read_text())
    # The folder holds the snapshots and the list of them, which a
    # resumed training reads.
    manifest = json.loads((out / "snapshots" / "snapshots.json").read_text())
    snapshots = [name for _, name in manifest["snapshots"]]
    assert snapshots == [f"snapshot_{i:04d}.keras" for i in (1, 2, 3, 4)]
    assert sorted(os.listdir(out / "snapshots")) == snapshots + [
        "snapshots.json"]
    assert metrics["cycles"] == 4
    assert len(metrics["snapshot_test_accuracies"]) == 4
    assert {"model.keras", "best_single.keras", "schedule.png",
            "history.csv", "confusion_matrix.png",
            "misclassified.png"} <= set(os.listdir(out))

    # model.keras is the average of the snapshots' softmax outputs.
    _, _, (x_test, y_test) = load_split(0, quick=True)
    members = [keras.saving.load_model(out / "snapshots" / name)
               for name in snapshots]
    # --quick's narrower ResNet (the recipe's own is 16 wide).
    assert members[0].get_layer("stem_conv").filters == (
        common.QUICK_WIDTH) != recipe.WIDTH
    expected = np.mean([keras.ops.convert_to_numpy(keras.ops.softmax(
        m(x_test))) for m in members], axis=0)
    averaged = to_numpy(keras.saving.load_model(out / "model.keras")(
        x_test))
    np.testing.assert_allclose(averaged, expected, atol=1e-6)
    assert np.mean(averaged.argmax(-1) == y_test) == pytest.approx(
        metrics["test_accuracy"], abs=1e-9)

    # Each snapshot's accuracy, and the best single epoch's, as reloaded.
    def accuracy(model):
        return np.mean(to_numpy(model(x_test)).argmax(-1) == y_test)

    np.testing.assert_allclose(metrics["snapshot_test_accuracies"],
                               [accuracy(m) for m in members], atol=1e-9)
    best_single = keras.saving.load_model(out / "best_single.keras")
    assert metrics["baselines"]["best_single_epoch_accuracy"] == (
        pytest.approx(accuracy(best_single), abs=1e-9))
    # The last snapshot is the end of training: taken after the 8th
    # update, and no update (a restart at the peak rate) followed it.
    assert int(to_numpy(members[-1].optimizer.iterations)) == 8
    assert metrics["steps_run"] == 8
    # The tf.data pipeline ran TensorFlow beside the backend, if another.
    assert {"tensorflow", "jax", "torch"} & set(metrics) == {
        keras.backend.backend(), "tensorflow"}


def test_an_interrupted_run_resumes_to_the_uninterrupted_runs_end(
        quick_run, tmp_path, monkeypatch, capsys):
    """Crashed at the 7th update, after the 3rd snapshot and past the
    backup of the first epoch, and run again with --resume: it goes on
    from that backup with the first two snapshots, saves the 3rd again,
    and ends with the uninterrupted run's snapshots, ensemble, best
    epoch, history and metrics, to the bit."""
    out = tmp_path / "run"
    flags = QUICK_FLAGS + ["--out", str(out)]
    crashed(recipe.main, flags, monkeypatch, epoch=1, batch=1)
    staged = out / common.STAGING / "snapshots"
    assert sorted(p.name for p in staged.glob("*.keras")) == [
        f"snapshot_{i:04d}.keras" for i in (1, 2, 3)]
    capsys.readouterr()
    # The 3rd snapshot of the crashed run is past the resumed step: the
    # resumed training saves its own in its place.
    with pytest.warns(UserWarning, match=r"1 snapshot file\(s\) that this "
                      r"training did not write \(snapshot_0003.keras\)"):
        assert recipe.main(flags + ["--resume"]) == 0
    assert "Resuming at epoch 2 of 2" in capsys.readouterr().out
    assert_resumed_as_uninterrupted(
        out, quick_run, {"resumed_from_epoch": 1},
        ("test_accuracy", "snapshot_test_accuracies", "baselines",
         "steps_run"),
        ["model.keras", "best_single.keras", *(
            f"snapshots/snapshot_{i:04d}.keras" for i in (1, 2, 3, 4))])


def test_more_cycles_than_steps_is_a_clear_error(tmp_path, capsys):
    code = recipe.main(["--quick", "--epochs", "1", "--cycles", "1000",
                        "--out", str(tmp_path / "run")])
    assert code == 1
    assert "--cycles 1000" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_more_steps_than_the_step_count_holds_is_a_clear_error(tmp_path,
                                                                 capsys):
    """The cycles are planned from the steps: without the check the run
    trained on for ever (epoch 101 of 2147483647 when stopped)."""
    code = recipe.main(["--epochs", str(2**31 - 1), "--out",
                        str(tmp_path / "run")])
    assert code == 1
    assert re.search(r"--epochs 2147483647 and --batch-size \d+ on \d+ "
                     r"training samples make [\d,]+ training steps, more "
                     r"than the optimizers' step count holds",
                     capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def scaled_from(monkeypatch, initial_scale):
    """Makes `initial_scale` the default of Keras' LossScaleOptimizer,
    which `compile` puts around the optimizer under --mixed-precision:
    the updates whose float16 gradients overflow are skipped, halving
    it, until it is low enough."""
    original = keras.optimizers.LossScaleOptimizer.__init__

    def init(self, inner_optimizer, initial_scale=initial_scale, **kwargs):
        original(self, inner_optimizer, initial_scale, **kwargs)

    monkeypatch.setattr(keras.optimizers.LossScaleOptimizer, "__init__",
                        init)


def test_updates_that_loss_scaling_skips_are_run_past_the_epochs(
        tmp_path, monkeypatch):
    """Loss scaling skips the first updates (their scaled float16
    gradients overflow) without counting them: 5 cycles of 2 steps take
    all 10 batches of the 2 epochs, and the training goes on into a 3rd
    until the 10th update, the 5th snapshot. (It stopped at the 2nd
    epoch's end: 8 updates, 4 snapshots, published as 5 cycles.)"""
    scaled_from(monkeypatch, 2.0**20)
    out = tmp_path / "run"
    assert recipe.main(["--quick", "--mixed-precision", "--out",
                        str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mixed_precision"] is True
    assert metrics["cycles"] == 5 and metrics["cycle_steps"] == 2
    assert metrics["steps_run"] == 10
    assert metrics["updates_skipped"] > 0
    snapshots = [f"snapshot_{i:04d}.keras" for i in (1, 2, 3, 4, 5)]
    manifest = json.loads((out / "snapshots" / "snapshots.json").read_text())
    assert [name for _, name in manifest["snapshots"]] == snapshots
    assert sorted(os.listdir(out / "snapshots")) == snapshots + [
        "snapshots.json"]
    assert len(metrics["snapshot_test_accuracies"]) == 5
    # The last snapshot is the end of training, past the 2 epochs.
    last = keras.saving.load_model(out / "snapshots" / snapshots[-1])
    assert int(to_numpy(last.optimizer.iterations)) == 10
    epochs = (out / "history.csv").read_text().splitlines()[1:]
    # 10 updates and the skipped ones, 5 batches an epoch.
    assert len(epochs) == -(-(10 + metrics["updates_skipped"]) // 5) > 2


def test_a_training_whose_updates_are_all_skipped_is_a_clear_error(
        tmp_path, monkeypatch, capsys):
    """A loss scale that every update overflows (a diverged training):
    no update, no snapshot; it crashed in `plot_schedule` on 0 steps. The
    4 epochs it may take cannot hold the 10 updates from the 3rd epoch
    on: it stops there."""
    scaled_from(monkeypatch, 1e30)
    out = tmp_path / "run"
    assert recipe.main(["--quick", "--mixed-precision", "--out",
                        str(out)]) == 1
    captured = capsys.readouterr()
    assert re.search(r"loss scaling \(--mixed-precision\) skipped 15 of "
                     r"the 15 updates run, .* too few steps for the 10 "
                     r"updates of 5 cycles of 2 steps, and 0 of the 5 "
                     r"snapshots were taken\. Nothing was published\.",
                     captured.err)
    assert "Epoch 3/4" in captured.out and "Epoch 4/4" not in captured.out
    assert not out.exists()
