import json
import os
import stat
import subprocess
import sys

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


def test_keys_that_json_writes_alike_are_refused(tmp_path):
    """JSON's keys are strings: 1 and "1" became one, and a value was
    lost without a word."""
    path = tmp_path / "metrics.json"
    io.write_json({"kept": True}, path)
    with pytest.raises(ValueError, match=r"keys \[1, '1'\] would be one"):
        io.write_json({1: "int", "1": "str"}, path)
    assert json.loads(path.read_text()) == {"kept": True}
    # Keys of other types that JSON writes apart stay apart.
    io.write_json({1: "int", "2": "str", None: 0}, path)
    assert json.loads(path.read_text()) == {"1": "int", "2": "str",
                                            "null": 0}


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


def test_a_weights_file_keeps_its_double_extension(tmp_path):
    # Keras' save_weights insists on `.weights.h5`.
    with io.atomic_path(tmp_path / "latest.weights.h5") as tmp:
        assert tmp.endswith(".weights.h5")
        dense_model().save_weights(tmp)
    assert os.listdir(tmp_path) == ["latest.weights.h5"]


@pytest.mark.parametrize("name", ["m" * 249 + ".keras",
                                  "é" * 122 + ".weights.h5"])
def test_a_name_keras_saves_under_saves_atomically(tmp_path, name):
    """The temporary name is `.<name>.<8 hex>.tmp<ext>`: for a name of 255
    bytes, which Keras saves under, it was 20 bytes too long ("File name
    too long"). It keeps the extension and whole characters."""
    path = tmp_path / name
    assert len(os.fsencode(name)) >= 254
    model = dense_model()
    if name.endswith(".keras"):
        io.save_model(model, path)
        reloaded = keras.saving.load_model(path)
        np.testing.assert_array_equal(to_numpy(reloaded.layers[0].kernel),
                                      to_numpy(model.layers[0].kernel))
    else:
        with io.atomic_path(path) as tmp:
            assert tmp.endswith(".tmp.weights.h5")
            assert len(os.fsencode(os.path.basename(tmp))) <= 255
            tmp.encode("utf-8")  # whole characters
            model.save_weights(tmp)
    assert os.listdir(tmp_path) == [name]


@pytest.mark.parametrize("name", ["best.keras", "latest.weights.h5",
                                  "x" * 250 + ".json"])
def test_remove_temporaries_removes_a_killed_writes_file_only(tmp_path,
                                                              name):
    """A write killed mid-way (SIGKILL: no `finally` runs) leaves its
    temporary file; `remove_temporaries` removes exactly such files of
    that destination, not another's, nor look-alikes."""
    path = tmp_path / name
    writes = io.atomic_path(path)
    left = writes.__enter__()  # never exited: the process was killed
    assert os.path.basename(left).startswith(".")
    base = os.path.basename(left)
    suffix = base[base.rindex(".tmp"):]
    prefix = base[:-len(suffix) - 8]
    others = [prefix + "0123abcZ" + suffix,
              prefix + "0123abcd" + suffix.upper(),
              prefix + "0123abcd" + suffix[:-1] + "~",
              prefix + "123" + suffix, ".other.0123abcd" + suffix,
              name[:-1] + "~"]
    for other in others:
        (tmp_path / other).write_text("not a temporary of this path")
    assert io.remove_temporaries(path) == [left]
    assert sorted(os.listdir(tmp_path)) == sorted(others)
    assert io.remove_temporaries(tmp_path / "missing" / name) == []


def test_the_content_is_on_the_disk_before_the_rename(tmp_path, monkeypatch):
    # Without fsync, a machine crash after the rename can leave an empty
    # file where the old good one was. Each event names the inode it
    # concerns: the file synced must be the one renamed (a sync of the
    # folder alone passed before), and the folder is synced after.
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (
        events.append(("fsync", os.fstat(fd).st_ino)), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (
        events.append(("replace", os.stat(a).st_ino)), real_replace(a, b))[1])
    io.write_text("x", tmp_path / "notes.txt")
    written = os.stat(tmp_path / "notes.txt").st_ino
    folder = [] if os.name == "nt" else [("fsync", os.stat(tmp_path).st_ino)]
    assert events == [("fsync", written), ("replace", written), *folder]


def test_the_umask_is_never_changed(tmp_path, monkeypatch):
    # Reading it by setting it to 0 made the files another thread created
    # meanwhile world-writable.
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: (
        calls.append(mask), real_umask(mask))[1])
    io.write_text("x", tmp_path / "notes.txt")
    assert calls == []


def dense_model():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


def test_save_model_writes_a_loadable_keras_file(tmp_path):
    model = dense_model()
    path = tmp_path / "nested" / "model.keras"
    io.save_model(model, path)
    x = np.ones((1, 3), dtype="float32")
    np.testing.assert_allclose(
        to_numpy(keras.saving.load_model(path)(x)), to_numpy(model(x)))
    assert os.listdir(path.parent) == ["model.keras"]


def test_the_compile_config_leaves_jit_compile_to_the_loading_backend():
    # Keras' own resolution of "auto" on this backend is the reference.
    model = dense_model()
    model.compile(optimizer="adam", loss="mse")
    assert model.get_compile_config()["jit_compile"] == model.jit_compile
    assert io.portable_compile_config(model)["jit_compile"] == "auto"
    # A choice against this backend's default is the user's: kept.
    chosen = dense_model()
    chosen.compile(optimizer="adam", loss="mse",
                   jit_compile=not model.jit_compile)
    assert io.portable_compile_config(chosen)["jit_compile"] == (
        not model.jit_compile)
    assert io.portable_compile_config(dense_model()) == {}


def test_torch_only_optimizer_classes_are_saved_as_public_ones():
    config = {"optimizer": {
        "module": "keras.src.backend.torch.optimizers.torch_sgd",
        "class_name": "SGD", "registered_name": "SGD", "config": {}},
        "loss": "mse"}
    wrapped = {"optimizer": {
        "module": "keras.optimizers", "class_name": "LossScaleOptimizer",
        "registered_name": None,
        "config": {"inner_optimizer": config["optimizer"]}}}
    public = {"module": "keras.optimizers", "class_name": "SGD",
              "registered_name": None, "config": {}}
    assert io._public_optimizers(config) == {"optimizer": public,
                                             "loss": "mse"}
    assert io._public_optimizers(wrapped)["optimizer"]["config"] == {
        "inner_optimizer": public}
    # A kerastrain optimizer (registered) is left alone.
    own = {"module": "kerastrain.optimizers.sgd", "class_name": "SGD",
           "registered_name": "kerastrain>SGD", "config": {}}
    assert io._public_optimizers(own) == own



def test_plots_leave_the_users_pyplot_alone(tmp_path):
    # Choosing Agg for pyplot switched a user's backend (a notebook's, a
    # desktop's) and so closed every figure the user had open.
    import matplotlib
    import matplotlib.pyplot as plt

    from kerastrain.schedules import OneCycle, plot_schedule

    before = matplotlib.get_backend()
    plt.switch_backend("pdf")  # any backend but Agg, display-free
    try:
        users = plt.figure()
        figure, axes = io.new_figure(1, 2, figsize=(4, 2))
        assert axes.shape == (2,) and figure.axes == list(axes)
        io.save_figure(figure, tmp_path / "two")
        plot_schedule(OneCycle(0.1, 10), 10, tmp_path / "schedule.png")
        assert matplotlib.get_backend() == "pdf"
        assert plt.get_fignums() == [users.number]
        assert sorted(os.listdir(tmp_path)) == ["schedule.png", "two.png"]
    finally:
        plt.close("all")
        plt.switch_backend(before)


def test_figures_keep_their_pixels_and_other_formats_work(tmp_path):
    """PNGs are compressed at zlib's fastest level: the same pixels as
    matplotlib's default; formats that are not PIL's get no PIL options."""
    import matplotlib.image

    figure, ax = io.new_figure(figsize=(3, 2))
    ax.plot([0, 1, 2], [2, 0, 1])
    written = io.save_figure(figure, tmp_path / "fast.png")
    figure.savefig(tmp_path / "default.png", dpi=120, bbox_inches="tight")
    np.testing.assert_array_equal(matplotlib.image.imread(written),
                                  matplotlib.image.imread(
                                      tmp_path / "default.png"))
    with open(io.save_figure(figure, tmp_path / "vector.pdf"), "rb") as f:
        assert f.read(5) == b"%PDF-"
    assert io.save_figure(figure, tmp_path / "PHOTO.PNG").endswith(".PNG")


def test_json_is_strict_and_the_same_on_every_backend(tmp_path):
    """NaN and infinities, which strict parsers refuse, are written as
    null; tensors as numbers whatever the backend (TensorFlow's were
    refused); NumPy keys as Python ones."""
    path = tmp_path / "metrics.json"
    io.write_json({"loss": np.float32("nan"), "best": float("inf"),
                   "mean": keras.ops.mean(keras.ops.ones((3,))),
                   "curve": np.array([1.0, -np.inf]),
                   # torch's NumPy refused these two.
                   "loss_with_gradient": keras.ops.square(keras.Variable(
                       1.5)),
                   "bfloat16": keras.ops.cast(keras.ops.ones((2,)) * 0.5,
                                              "bfloat16"),
                   np.int64(3): "three"}, path)

    def refuse(constant):
        raise ValueError(constant)

    with open(path) as f:
        data = json.load(f, parse_constant=refuse)
    assert data == {"loss": None, "best": None, "mean": 1.0,
                    "curve": [1.0, None], "loss_with_gradient": 2.25,
                    "bfloat16": [0.5, 0.5], "3": "three"}


def test_text_is_utf8_whatever_the_locale(tmp_path):
    """Under an ASCII locale (LC_ALL=C without Python's UTF-8 mode) the
    locale's encoding refused "±"; the module alone runs there (it needs
    only NumPy), loaded from its file."""
    code = f"""
import importlib.util, locale
spec = importlib.util.spec_from_file_location("io_", {io.__file__!r})
io_ = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io_)
assert locale.getpreferredencoding(False).lower() in ("ascii",
    "ansi_x3.4-1968"), locale.getpreferredencoding(False)
io_.write_text("acc \\u00b1 0.1 \\u2192 99%",
               {str(tmp_path / "summary.txt")!r})
io_.write_json({{"note": "\\u00b1"}}, {str(tmp_path / "notes.json")!r})
"""  # escapes: the command line itself must be ASCII there
    env = dict(os.environ, LC_ALL="C", PYTHONUTF8="0",
               PYTHONCOERCECLOCALE="0")
    subprocess.run([sys.executable, "-c", code], env=env, check=True,
                   capture_output=True)
    assert (tmp_path / "summary.txt").read_bytes().decode(
        "utf-8") == "acc ± 0.1 → 99%"
    assert json.loads((tmp_path / "notes.json").read_bytes().decode(
        "utf-8")) == {"note": "±"}


def test_a_link_is_followed_and_permissions_kept(tmp_path):
    target = tmp_path / "run3.json"
    io.write_json({"run": 3}, target)
    os.chmod(target, 0o600)
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    io.write_json({"run": 4}, link)
    assert link.is_symlink()
    assert json.loads(target.read_text()) == {"run": 4}
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


def test_bad_paths_and_contents_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match=r"`path` must name a file, not a "
                       "folder"):
        io.write_json({}, tmp_path)
    with pytest.raises(ValueError, match=r"`path` must name a file"):
        figure, _ = io.new_figure(figsize=(2, 2))
        io.save_figure(figure, f"{tmp_path}/plots/")
    with pytest.raises(TypeError, match=r"`text` must be a string.*text=5"):
        io.write_text(5, tmp_path / "five.txt")
    with pytest.raises(TypeError, match=r"`figure` must be a matplotlib"):
        io.save_figure(None, tmp_path / "none.png")
    # Keras saved these in its legacy formats, without the portable
    # compile config.
    for name in ("model.h5", "model.weights.h5", "model"):
        with pytest.raises(ValueError, match=r"`path` must end in `\.keras`"
                           rf".*{name}"):
            io.save_model(dense_model(), tmp_path / name)
    io.write_text("bytes path", os.fsencode(tmp_path / "b.txt"))
    assert os.listdir(tmp_path) == ["b.txt"]


def test_a_save_builds_no_reference_layers_once_keras_cache_is_filled(
        tmp_path, monkeypatch):
    """Keras' saving walk lists the attributes to skip from a reference
    `Layer()` (and `Optimizer`, `Metric`, ...) that it caches under one
    key and looks up under another: every save built them again, half of
    a small model's save on TensorFlow. After the first save none is
    built, and the file loads back the same."""
    from keras.src.layers.layer import Layer

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
                              keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), verbose=0)
    path = tmp_path / "model.keras"
    io.save_model(model, path)
    built = []
    original = Layer.__init__

    def counted(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Layer, "__init__", counted)
    io.save_model(model, path)
    monkeypatch.setattr(Layer, "__init__", original)
    assert built == []
    loaded = keras.saving.load_model(path)
    for got, want in zip(loaded.variables + loaded.optimizer.variables,
                         model.variables + model.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(want))
