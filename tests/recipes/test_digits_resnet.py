import contextlib
import csv
import io
import json
import os

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

from recipes import common, digits_resnet
from tests.recipes.common.runs import (assert_resumed_as_uninterrupted,
                                       crashed)
from tests.support import shift_views, softmax, to_numpy

EXPECTED_FILES = {"model.keras", "model_tta.keras", "metrics.json",
                  "history.csv", "learning_curves.png",
                  "confusion_matrix.png", "misclassified.png",
                  "schedule.png"}


# Two members: the one-member default is the same code, with one.
QUICK_FLAGS = ["--quick", "--seed", "1", "--members", "2"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A --quick run's output folder and what it printed."""
    out = tmp_path_factory.mktemp("digits") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert digits_resnet.main(QUICK_FLAGS + ["--out", str(out)]) == 0
    return out, printed.getvalue()


def test_quick_run_writes_reloadable_outputs(quick_run):
    out, printed = quick_run
    assert EXPECTED_FILES <= set(os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "test_errors", "baselines", "wall_time_s",
                "backend", "keras", "seed", "mixed_precision"):
        assert key in metrics
    assert metrics["backend"] == keras.backend.backend()
    assert metrics["seed"] == 1
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == metrics["epochs_run"] and "val_loss" in rows[0]

    # The saved model is the trained one: it reproduces the test accuracy.
    train, (x_val, y_val), (x_test, y_test) = digits_resnet.load_split(
        1, quick=True)
    model = keras.saving.load_model(out / "model.keras")
    predicted = np.argmax(to_numpy(model(x_test)), -1)
    assert np.mean(predicted == y_test) == pytest.approx(
        metrics["test_accuracy"], abs=1e-6)
    assert np.sum(predicted != y_test) == metrics["test_errors"]
    wrong = np.flatnonzero(predicted != y_test)
    assert metrics["misclassified"] == [
        {"index": int(i), "label": int(y_test[i]),
         "predicted": int(predicted[i])} for i in wrong]

    # model.keras averages the softmax (NumPy's, here) of its members,
    # ResNets of their own weights.
    members = [layer for layer in model.layers
               if isinstance(layer, keras.Model)]
    assert len(members) == 2
    # --quick's narrower ResNets (the recipe's own are 32 wide).
    assert [m.get_layer("stem_conv").filters for m in members] == [
        common.QUICK_WIDTH] * 2 != [digits_resnet.WIDTH] * 2
    assert not np.array_equal(to_numpy(members[0].weights[0]),
                              to_numpy(members[1].weights[0]))
    np.testing.assert_allclose(
        to_numpy(model(x_test)),
        np.mean([softmax(to_numpy(m(x_test))) for m in members], 0),
        rtol=1e-5, atol=1e-6)
    assert metrics["member_test_accuracies"] == [
        pytest.approx(np.mean(np.argmax(to_numpy(m(x_test)), -1) == y_test),
                      abs=1e-6) for m in members]

    # model_tta.keras averages those probabilities over the digit and its
    # four one-pixel shifts and reproduces the TTA metrics.
    averaged = np.mean([to_numpy(model(v)) for v in shift_views(x_test)],
                       0)
    tta_model = keras.saving.load_model(out / "model_tta.keras")
    np.testing.assert_allclose(to_numpy(tta_model(x_test)), averaged,
                               rtol=1e-5, atol=1e-6)
    predicted = np.argmax(averaged, -1)
    assert np.mean(predicted == y_test) == pytest.approx(
        metrics["test_accuracy_tta"], abs=1e-6)
    assert metrics["misclassified_tta"] == [
        {"index": int(i), "label": int(y_test[i]),
         "predicted": int(predicted[i])}
        for i in np.flatnonzero(predicted != y_test)]
    assert metrics["test_errors_tta"] == len(metrics["misclassified_tta"])

    # Its members are the best epoch on validation loss (the sum of
    # theirs) among the last 10% of the epochs (CheckpointEarlyStopping
    # with start_from_epoch).
    val_losses = [float(row["val_loss"]) for row in rows]
    val_losses = val_losses[int(0.9 * len(val_losses)):]
    loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=digits_resnet.LABEL_SMOOTHING)
    reloaded = sum(float(loss(np.eye(10)[y_val], to_numpy(m(x_val))))
                   for m in members)
    assert reloaded == pytest.approx(min(val_losses), rel=1e-4)
    assert "test accuracy" in printed

    # The SVC peer, recomputed on the rows the quick run used: its first
    # QUICK_SAMPLES training and QUICK_EVAL_SAMPLES validation digits, as
    # raw 0-16 pixels (libsvm is deterministic: the same accuracy to the
    # bit).
    x = np.concatenate([train[0], x_val]).reshape(-1, 64) * 16
    y = np.concatenate([train[1], y_val])
    svc = SVC(C=10, gamma=0.001).fit(x, y)
    peer = np.mean(svc.predict(x_test.reshape(-1, 64) * 16) == y_test)
    assert metrics["baselines"]["svc_rbf_c10_gamma0.001_accuracy"] == \
        pytest.approx(peer, abs=1e-12)


def test_an_interrupted_run_resumes_to_the_uninterrupted_runs_end(
        quick_run, tmp_path, monkeypatch, capsys):
    """Crashed in its second epoch, and run again with --resume: it goes
    on from the backup of the first, and ends with the uninterrupted
    run's model, history and metrics, to the bit."""
    expected_out, _ = quick_run
    out = tmp_path / "run"
    flags = QUICK_FLAGS + ["--out", str(out)]
    crashed(digits_resnet.main, flags, monkeypatch, epoch=1, batch=2)
    assert not out.joinpath("metrics.json").exists()
    capsys.readouterr()
    assert digits_resnet.main(flags + ["--resume"]) == 0
    assert "Resuming at epoch 2 of 2" in capsys.readouterr().out
    assert_resumed_as_uninterrupted(
        out, expected_out, {"resumed_from_epoch": 1},
        ("test_accuracy", "misclassified", "member_test_accuracies",
         "test_accuracy_tta", "misclassified_tta", "epochs_run"),
        ("model.keras", "model_tta.keras"))


def test_test_split_is_sklearns_stratified_split():
    digits = load_digits()
    _, x_test, _, y_test = train_test_split(
        digits.images, digits.target, test_size=0.15, stratify=digits.target,
        random_state=2)
    train, val, test = digits_resnet.load_split(2)
    np.testing.assert_array_equal(test[1], y_test)
    np.testing.assert_allclose(test[0][..., 0], x_test / 16.0)
    sizes = [len(part[0]) for part in (train, val, test)]
    assert sum(sizes) == len(digits.target)
    assert sizes[1] == pytest.approx(0.15 * len(digits.target), abs=2)
    # A --quick run's split: the first digits of each part.
    quick = digits_resnet.load_split(2, quick=True)
    rows = [digits_resnet.QUICK_SAMPLES] + 2 * [
        digits_resnet.QUICK_EVAL_SAMPLES]
    for (x, y), (x_all, y_all), n in zip(quick, (train, val, test), rows):
        assert len(y) == n
        np.testing.assert_array_equal(x, x_all[:n])
        np.testing.assert_array_equal(y, y_all[:n])


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs"),
    (["--backend", "theano"], "--backend"),
    (["--batch-size", "x"], "--batch-size"),
    (["--members", "0"], "--members"),
    # Failed inside NumPy, drawing the members' seeds.
    (["--members", "99999999999999999999"],
     "--members: must be an integer from 1 to 64"),
])
def test_bad_flags_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        digits_resnet.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unwritable_output_folder_is_an_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit):
        digits_resnet.main(["--quick", "--out", str(blocker / "run")])
    assert "cannot write" in capsys.readouterr().err


def test_too_few_steps_for_one_cycle_is_an_error_before_training(
        tmp_path, capsys):
    # 1,257 training digits in whole batches of 1,024: one step, where a
    # one-cycle schedule needs a step in its rise (from 4 steps on).
    out = tmp_path / "run"
    assert digits_resnet.main(["--epochs", "1", "--batch-size", "1024",
                               "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "make 1 training steps" in error and "--batch-size" in error
    assert not out.exists()
    # Batches of 2,048: not one whole batch.
    assert digits_resnet.main(["--epochs", "1", "--batch-size", "2048",
                               "--out", str(out)]) == 1
    assert ("--batch-size 2048 is more than the 1257 training samples"
            in capsys.readouterr().err)
    assert not out.exists()
