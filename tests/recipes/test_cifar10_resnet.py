import argparse
import json
import os

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kerastrain.models import valid_depths
from recipes import cifar10_resnet as recipe
from recipes import common
from tests.support import to_numpy


def test_quick_run_on_tfds_mock_data_writes_reloadable_outputs(tmp_path):
    out = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=400):
        # In float32: --mixed-precision (for GPUs) made this run 4x
        # slower on CPUs (float16 convolutions); the recipes' flag runs
        # whole in lr_range_then_one_cycle's quick test, and the model
        # under it is checked below.
        code = recipe.main(["--quick", "--out", str(out), "--depth", "8",
                            "--data-dir", str(tmp_path / "tfds")])
        (train_images, train_labels), _, (test_images, test_labels) = (
            recipe.load_data(argparse.Namespace(
                data_dir=str(tmp_path / "tfds"), download=False, quick=True,
                seed=0)))
    assert code == 0
    assert {"model.keras", "metrics.json", "history.csv", "schedule.png",
            "learning_curves.png", "confusion_matrix.png",
            "misclassified.png"} <= set(
                os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["depth"] == 8 and metrics["mixed_precision"] is False
    # Backed up as digits_resnet is (its test resumes one); this run ran
    # from the start, and left no backup behind.
    assert metrics["resumed_from_epoch"] is None
    assert "backup" not in os.listdir(out)
    assert metrics["backend"] == keras.backend.backend()
    # The peer, recomputed: logistic regression on the standardized pixels
    # of the quick run's training images (deterministic lbfgs).
    peer = make_pipeline(StandardScaler(), LogisticRegression(
        max_iter=200, random_state=0)).fit(
            train_images.reshape(len(train_images), -1) / 255.0,
            train_labels)
    expected = np.mean(peer.predict(
        test_images.reshape(len(test_images), -1) / 255.0) == test_labels)
    assert metrics["baselines"]["logistic_regression_pixels_accuracy"] == \
        pytest.approx(expected, abs=1e-12)

    # model.keras takes [0, 1] images (standardization inside) and is the
    # evaluated model.
    model = keras.saving.load_model(out / "model.keras")
    predicted = np.argmax(to_numpy(model(test_images / 255.0)), -1)
    assert np.mean(predicted == test_labels) == pytest.approx(
        metrics["test_accuracy"], abs=1e-9)
    # --quick's narrower ResNet (the recipe's own is 16 wide).
    assert model.get_layer("resnet8").get_layer(
        "stem_conv").filters == common.QUICK_WIDTH != 16


def test_under_mixed_precision_the_model_computes_in_float16_to_float32():
    """What `--mixed-precision` gives the recipe's model: float16 inside,
    float32 logits (a stable softmax and loss), the same predictions as
    its float32 twin within float16 rounding."""
    images = np.random.default_rng(0).integers(
        0, 256, (4, 32, 32, 3)).astype("uint8")
    x = images / 255.0
    single = recipe.build_model(8, images, seed=0)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        half = recipe.build_model(8, images, seed=0)
    finally:
        keras.config.set_dtype_policy("float32")
    half.set_weights(single.get_weights())
    convolutions = [layer for layer in half._flatten_layers()
                    if isinstance(layer, keras.layers.Conv2D)]
    assert convolutions and all(layer.compute_dtype == "float16"
                                for layer in convolutions)
    logits = half(x, training=False)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    np.testing.assert_allclose(to_numpy(logits),
                               to_numpy(single(x, training=False)),
                               atol=0.05, rtol=0.02)


def test_missing_data_set_is_a_clear_error_and_writes_nothing(tmp_path,
                                                              capsys):
    out = tmp_path / "run"
    code = recipe.main(["--quick", "--out", str(out), "--data-dir",
                        str(tmp_path / "empty")])
    assert code == 1
    error = capsys.readouterr().err
    assert "--data-dir" in error and "--download" in error
    assert not out.exists()


def test_a_failed_download_is_a_clear_error_and_writes_nothing(
        tmp_path, capsys, monkeypatch):
    """TFDS's download fails in ways of its own (no network; here a
    module its download path needs was missing): a traceback before."""
    import kerastrain.data

    def no_download(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'importlib_resources'")

    monkeypatch.setattr(kerastrain.data, "load", no_download)
    out = tmp_path / "run"
    code = recipe.main(["--quick", "--out", str(out), "--data-dir",
                        str(tmp_path / "empty"), "--download"])
    assert code == 1
    error = capsys.readouterr().err
    assert "Downloading CIFAR-10" in error and "importlib_resources" in error
    assert not out.exists()


def test_depth_choices_are_the_resnet_depths():
    """The recipe's own parser accepts exactly the basic-block ResNet
    depths 6n + 2 up to 110 (ResNet-8 to ResNet-110), as the models
    accept them."""
    with pytest.raises(SystemExit):
        recipe.main(["--depth", "21"])
    parser = argparse.ArgumentParser()
    recipe.add_arguments(parser)
    spec = [6 * n + 2 for n in range(1, 19)]
    assert spec[0] == 8 and spec[-1] == 110
    assert spec == valid_depths(up_to=110)
    depth = next(a for a in parser._actions if a.dest == "depth")
    assert list(depth.choices) == spec
    assert parser.parse_args([]).depth == 20
    for value in spec:
        assert parser.parse_args(["--depth", str(value)]).depth == value
    for value in (2, 7, 9, 21, 109, 111, 116, 1202):
        with pytest.raises(SystemExit):
            parser.parse_args(["--depth", str(value)])
