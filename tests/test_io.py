import json
import os
import stat

import keras
import numpy as np
import pytest

from kerastrain import io
from tests.support import to_numpy


def test_write_json_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    io.write_json({"a": np.float32(0.5), "b": np.arange(3)}, path)
    io.write_json({"a": 1}, path)
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    io.write_json({"kept": True}, path)
    with pytest.raises(RuntimeError):
        with io.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write('{"half": ')
            raise RuntimeError("crash in the middle of a save")
    assert json.loads(path.read_text()) == {"kept": True}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_files_get_ordinary_permissions(tmp_path):
    path = tmp_path / "notes.txt"
    io.write_text("x", path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_save_model_writes_a_loadable_keras_file(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "nested" / "model.keras"
    io.save_model(model, path)
    x = np.ones((1, 3), dtype="float32")
    np.testing.assert_allclose(
        to_numpy(keras.saving.load_model(path)(x)), to_numpy(model(x)))
    assert os.listdir(path.parent) == ["model.keras"]
