"""Atomic file writes: a crash never leaves a half-written file behind.

Everything kerastrain saves (models, metrics, histories, plots) goes
through `atomic_path`: the content is written to a temporary file in the
destination folder and then renamed over the destination, which is atomic
on POSIX and Windows file systems, so readers see the old file or the new
one, never a truncated mix.
"""

import contextlib
import json
import os
import secrets


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; on success, renames it to
    `path`. On an exception the temporary file is removed and `path` is left
    as it was.

    The temporary name keeps the extension of `path` (Keras insists on
    `.keras` for models and `.weights.h5` for weights, matplotlib picks the
    format from it). The content is flushed to the disk (`fsync`) before
    the rename, and the rename after it, so that a crash of the machine
    too leaves the old file or the new one, not an empty one.

    Args:
        path: The destination (str or path-like). Its folder is created
            where it does not exist yet.

    Yields:
        The temporary path (str) to write to, in the destination's folder.

    Example:

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> with atomic_path(target) as tmp:
    ...     with open(tmp, "w") as f:
    ...         _ = f.write("done")
    >>> open(target).read()
    'done'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    extension = WEIGHTS_EXTENSION if base.endswith(WEIGHTS_EXTENSION) else (
        os.path.splitext(base)[1])
    tmp = _create_beside(folder, base, extension)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_folder(folder)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


WEIGHTS_EXTENSION = ".weights.h5"


def _fsync(path):
    """Flushes the content of the file `path` to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder):
    """Flushes a folder's entries (a rename in it) to the disk, where the
    system can (not on Windows, which cannot open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_beside(folder, base, extension):
    """Creates an empty file of a new name in `folder` and returns its path.

    Created as `open()` creates files (mode 0666 less the umask), unlike
    `tempfile.mkstemp` (0600), whose result would need a `chmod` to the
    umask: reading the umask means setting it, for a moment, for every
    thread of the process."""
    for _ in range(100):
        tmp = os.path.join(
            folder, f".{base}.{secrets.token_hex(4)}.tmp{extension}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"No free temporary name beside {base} in "
                          f"{folder}")


def save_model(model, path):
    """Saves a Keras model to `path` (`.keras`) atomically, with the compile
    config of `portable_compile_config`, so that the file trains at full
    speed on whichever backend loads it.

    Args:
        model: A Keras model, compiled or not.
        path: The destination, ending in `.keras` (Keras refuses others).

    Returns:
        None. The file is the one `model.save(path)` writes, but for the
        compile config.

    Example:

    >>> import os, tempfile, keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> save_model(model, path)
    >>> keras.saving.load_model(path).jit_compile == model.jit_compile
    True
    """
    config = portable_compile_config(model)
    with atomic_path(path) as tmp:
        # Keras' saving asks the model itself for its compile config.
        object.__setattr__(model, "get_compile_config", lambda: config)
        try:
            model.save(tmp)
        finally:
            object.__delattr__(model, "get_compile_config")


# Keras on torch replaces its own optimizers by fused subclasses from this
# package and saves their module: loaded on jax or tensorflow, such a file
# gets the torch class back, and its first update fails in torch.
_TORCH_OPTIMIZERS = "keras.src.backend.torch.optimizers."


def portable_compile_config(model):
    """`model.get_compile_config()` as every backend should read it.

    Keras saves the compile config as resolved on the saving backend. Two of
    its entries then mislead another backend:

    - `jit_compile`: `"auto"` resolves to True on jax (XLA) and to False on
      torch, and the resolved value is what Keras saves. A model saved on
      jax and loaded on torch then runs through `torch.compile` (on two CPU
      cores, 45 s for the first `predict` of a small ResNet instead of
      0.6 s, and a 30x slower `fit`), and one saved on torch runs un-jitted
      on jax. A value equal to the saving backend's `"auto"` is written
      back as `"auto"`, so the loading backend resolves its own; a value
      the user chose against the default is kept.
    - The optimizer: Keras' own optimizers compiled on torch (`"sgd"`,
      `Adam`, ...) are saved as their torch-only subclasses; they are
      written as the public `keras.optimizers` class, which each backend
      maps to its own implementation again.

    Args:
        model: A Keras model, compiled or not.

    Returns:
        A new dict (empty for a model that was not compiled).

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> config = portable_compile_config(model)
    >>> config["jit_compile"], config["optimizer"]["module"]
    ('auto', 'keras.optimizers')
    """
    config = model.get_compile_config()
    if not config:
        return {}
    config = _public_optimizers(config)
    resolve = getattr(model, "_resolve_auto_jit_compile", None)
    if resolve is not None and not config.get("run_eagerly") and (
            config.get("jit_compile") == resolve()):
        config["jit_compile"] = "auto"
    return config


def _public_optimizers(value):
    """A copy of the config `value` with torch-only optimizer classes
    replaced by their public `keras.optimizers` names."""
    if isinstance(value, (list, tuple)):
        return [_public_optimizers(item) for item in value]
    if not isinstance(value, dict):
        return value
    value = {key: _public_optimizers(item) for key, item in value.items()}
    if str(value.get("module", "")).startswith(_TORCH_OPTIMIZERS):
        value.update(module="keras.optimizers", registered_name=None)
    return value


def write_json(data, path):
    """Writes `data` as indented JSON to `path` atomically.

    Keys are sorted; NumPy scalars and arrays are written as numbers and
    lists. Anything else JSON does not know is a `TypeError`, and `path` is
    left as it was.

    Args:
        data: A JSON-serializable value (dicts, lists, numbers, strings).
        path: The destination.

    Returns:
        None.

    Example:

    >>> import json, os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "metrics.json")
    >>> write_json({"accuracy": np.float32(0.5), "seed": 0}, path)
    >>> json.load(open(path))
    {'accuracy': 0.5, 'seed': 0}
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=_plain)
            f.write("\n")


def write_text(text, path):
    """Writes a string to `path` atomically.

    Args:
        text: The string.
        path: The destination.

    Returns:
        None.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "summary.txt")
    >>> write_text("accuracy 0.99", path)
    >>> open(path).read()
    'accuracy 0.99'
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def new_figure(nrows=1, ncols=1, *, figsize, squeeze=True):
    """A matplotlib figure and its axes (`Figure.subplots`), made without
    pyplot: the display backend is neither chosen nor changed (a notebook's
    or a desktop's stays as the user set it, its open figures open), no
    display is needed, and nothing is left in pyplot's list of figures.
    In a notebook, a returned figure shows as the cell's value.

    Args:
        nrows, ncols: The grid of axes.
        figsize: `(width, height)` in inches.
        squeeze: As in `Figure.subplots`: a single `Axes` for a 1x1 grid.

    Returns:
        `(figure, axes)`.

    Example:

    >>> figure, ax = new_figure(figsize=(4, 3))
    >>> _ = ax.plot([0, 1], [1, 0])
    >>> figure.get_size_inches().tolist()
    [4.0, 3.0]
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    return figure, figure.subplots(nrows, ncols, squeeze=squeeze)


def save_figure(figure, path, bbox_inches="tight"):
    """Saves a matplotlib figure to `path` atomically. A path without an
    extension gets matplotlib's default format's, as `figure.savefig` does
    (`.png`). `bbox_inches="tight"` fits the picture to what is drawn, at
    the price of drawing it twice; a figure laid out by hand
    (`Figure.subplots_adjust`) passes None. PNGs are compressed at zlib's
    fastest level: 10 ms less per picture (a fifth of a simple plot's
    time) for files 8% larger.

    Args:
        figure: A matplotlib `Figure` (from `new_figure` or pyplot).
        path: The destination; its extension picks the format.
        bbox_inches: As in `Figure.savefig`.

    Returns:
        The path written (str), with the extension added where `path` had
        none.

    Example:

    >>> import os, tempfile
    >>> figure, ax = new_figure(figsize=(4, 3))
    >>> _ = ax.plot([0, 1], [1, 0])
    >>> path = save_figure(figure, os.path.join(tempfile.mkdtemp(), "line"))
    >>> os.path.basename(path), os.path.getsize(path) > 0
    ('line.png', True)
    """
    path = os.fspath(path)
    if not os.path.splitext(path)[1]:
        import matplotlib

        path = f"{path}.{matplotlib.rcParams['savefig.format']}"
    options = ({"pil_kwargs": {"compress_level": 1}}
               if path.lower().endswith(".png") else {})
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches=bbox_inches, **options)
    return path


def _plain(value):
    """JSON fallback for NumPy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON "
                    "serializable")
