"""The set-up promises of the README: two commands, the second one exactly
what CI runs; and its Python examples run as written."""

import os
import re
import tomllib

import keras
import numpy as np

from tests.support import ROOT


def _read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def readme_commands():
    """The shell commands of the README's first code block."""
    block = re.search(r"```(?:bash|sh)\n(.*?)```", _read("README.md"),
                      re.DOTALL).group(1)
    return [line for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_readme_opens_with_two_commands_and_ci_runs_the_second():
    commands = readme_commands()
    assert len(commands) == 2
    assert "recipes.digits_resnet" in commands[0]
    assert "tests/run_backends.py" in commands[1]
    ci_lines = [line for line in _read(".ci", "run").splitlines()
                if line and not line.startswith("#")]
    assert commands[1] in ci_lines


def test_test_extra_pins_the_local_torch_build():
    project = tomllib.loads(_read("pyproject.toml"))["project"]
    assert "torch==2.13.0" in project["optional-dependencies"]["test"]
    for needed in ("keras>=3.10", "tensorflow", "tensorboard",
                   "tensorflow-datasets", "keras-tuner"):
        assert needed in project["dependencies"]


def readme_python_blocks():
    return re.findall(r"```python\n(.*?)```", _read("README.md"), re.DOTALL)


def _stand_in_images(n, seed=0):
    """The examples' `x_train` and `y_train`: random 32x32 RGB images and
    ten classes."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, 32, 32, 3), dtype="float32"),
            rng.integers(0, 10, n))


def test_readme_first_example_trains_and_saves(tmp_path, monkeypatch):
    """The opening example, as written, on 16 stand-in images (one batch
    per epoch): it trains, and its file loads and predicts the same."""
    monkeypatch.chdir(tmp_path)
    x_train, y_train = _stand_in_images(16)
    names = {"x_train": x_train, "y_train": y_train}
    exec(compile(readme_python_blocks()[0], "README.md", "exec"), names)
    model = names["model"]
    assert int(model.optimizer.iterations) == 30
    loaded = keras.saving.load_model(tmp_path / "resnet20.keras")
    np.testing.assert_allclose(loaded.predict(x_train, verbose=0),
                               model.predict(x_train, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_readme_tuning_example_sets_up_its_search(tmp_path, monkeypatch):
    """The Tuning example, as written, up to the search itself (a real
    Hyperband over ResNet-20s takes minutes; tests/tuning runs searches):
    the HyperModel, the tuner and the callbacks it names are built, and
    the search space is the one the README's table gives."""
    import keras_tuner as kt
    from kerastrain.callbacks import (CheckpointEarlyStopping,
                                      WeightHistograms)

    monkeypatch.chdir(tmp_path)
    searched = {}

    def search(tuner, *args, **kwargs):
        searched.update(kwargs, args=args)

    monkeypatch.setattr(kt.Tuner, "search", search)
    monkeypatch.setattr(kt.Tuner, "get_best_models",
                        lambda tuner, num_models=1: ["best"])
    x_train, y_train = _stand_in_images(4)
    names = {"x_train": x_train, "y_train": y_train,
             "x_val": x_train, "y_val": y_train}
    exec(compile(readme_python_blocks()[1], "README.md", "exec"), names)
    assert isinstance(names["tuner"], kt.Hyperband)
    assert names["best"] == "best"
    assert [type(c) for c in searched["callbacks"]] == [
        CheckpointEarlyStopping, WeightHistograms]
    space = {hp.name: hp for hp in
             names["tuner"].oracle.get_space().space}
    assert list(space["depth"].values) == [8, 14, 20]
    assert list(space["width"].values) == [8, 16, 32]
    assert list(space["schedule"].values) == ["one_cycle"]
