"""Atomic file writes: a crash never leaves a half-written file behind.

Everything kerastrain saves (models, metrics, histories, plots) goes
through `atomic_path`: the content is written to a temporary file in the
destination folder and then renamed over the destination, which is atomic
on POSIX and Windows file systems, so readers see the old file or the new
one, never a truncated mix.
"""

import collections
import contextlib
import json
import math
import numbers
import os
import secrets
import stat

import numpy as np


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

    A symbolic link is followed: its target gets the new content, as
    `open(path, "w")` would write it, and an existing file keeps its
    permissions.

    Args:
        path: The destination (str or path-like) of a file. Its folder is
            created where it does not exist yet.

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
    path = os.fsdecode(os.fspath(path))
    if not os.path.basename(path) or os.path.isdir(path):
        raise ValueError(
            "Argument `path` must name a file, not a folder. Received: "
            f"path={path!r}")
    path = os.path.realpath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = _create_beside(folder, *_temporary_name_parts(path))
    try:
        yield tmp
        _fsync(tmp)
        if os.path.exists(path):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
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


# The longest file name most file systems take, in bytes.
NAME_MAX = 255


def _temporary_name_parts(path):
    """`(prefix, suffix)` of the temporary names `atomic_path` gives a
    write to `path`: `prefix`, 8 hex digits, `suffix`. The prefix holds
    as much of the file's name as keeps the whole within `NAME_MAX` bytes
    (a name Keras could save under failed, 20 bytes too long); the suffix
    keeps its extension."""
    base = os.path.basename(path)
    extension = WEIGHTS_EXTENSION if base.endswith(WEIGHTS_EXTENSION) else (
        os.path.splitext(base)[1])
    suffix = f".tmp{extension}"
    room = NAME_MAX - len(os.fsencode(suffix)) - len(".") - 8 - len(".")
    prefix = os.fsencode(base)[:max(room, 0)].decode(errors="ignore")
    return f".{prefix}.", suffix


def remove_temporaries(path):
    """Removes the temporary files that writes to `path` by `atomic_path`
    left beside it: a process killed mid-write (SIGKILL, a machine taken
    back) leaves one as large as the file, which nothing else removes.
    Only names of exactly that pattern go; a write to `path` running in
    another process at the same time would lose its file.

    Returns the paths removed."""
    path = os.path.realpath(os.fsdecode(os.fspath(path)))
    folder = os.path.dirname(path)
    prefix, suffix = _temporary_name_parts(path)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:  # no folder yet
        return removed
    for name in names:
        middle = name[len(prefix):-len(suffix)]
        if (name.startswith(prefix) and name.endswith(suffix)
                and len(name) == len(prefix) + 8 + len(suffix)
                and all(c in "0123456789abcdef" for c in middle)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
    return removed


def _create_beside(folder, prefix, suffix):
    """Creates an empty file of a new name in `folder`, `prefix`, 8 random
    hex digits and `suffix`, and returns its path.

    Created as `open()` creates files (mode 0666 less the umask), unlike
    `tempfile.mkstemp` (0600), whose result would need a `chmod` to the
    umask: reading the umask means setting it, for a moment, for every
    thread of the process."""
    for _ in range(100):
        tmp = os.path.join(
            folder, f"{prefix}{secrets.token_hex(4)}{suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"No free temporary name {prefix}*{suffix} in "
                          f"{folder}")


def save_model(model, path):
    """Saves a Keras model to `path` (`.keras`) atomically, with the compile
    config of `portable_compile_config`, so that the file trains at full
    speed on whichever backend loads it.

    Args:
        model: A Keras model, compiled or not.
        path: The destination, ending in `.keras` (Keras writes `.h5`
            and `.weights.h5` in its legacy formats, which keep no compile
            config of this kind: refused).

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
    if not os.fsdecode(os.fspath(path)).endswith(".keras"):
        raise ValueError(
            "Argument `path` must end in `.keras`, the format that keeps "
            f"the portable compile config. Received: path={path!r}")
    config = portable_compile_config(model)
    cache_keras_saving_skipsets()
    with atomic_path(path) as tmp:
        # Keras' saving asks the model itself for its compile config.
        object.__setattr__(model, "get_compile_config", lambda: config)
        try:
            model.save(tmp)
        finally:
            object.__delattr__(model, "get_compile_config")


# The kinds of objects whose attributes Keras' saving walk skips.
_SKIPSET_KINDS = ("Operation", "Layer", "Functional", "Sequential", "Metric",
                  "Optimizer", "Loss")


def cache_keras_saving_skipsets():
    """Makes Keras' cache of the attributes its saving walk skips work.

    Keras 3 (up to 3.15 at least) stores that cache under the key
    `saving_attr_skipset_<kind>` and reads it under
    `saving_attr_skiplist_<kind>`, so it never hits: every layer, the
    optimizer and each metric of every save (`.keras` and
    `save_weights`, hence every checkpoint and backup) builds a reference
    `Layer()` (or `Optimizer`, `Metric`, ...) again to list its
    attributes. This stores the same sets under the key Keras reads, once
    per thread and session (Keras keeps them in its global state, which
    `clear_session` empties). A ResNet-8's `.keras` save took 60 ms
    instead of 118 ms on TensorFlow and 40 ms instead of 73 ms on torch
    (jax, whose layers are cheaper to build, about the same). The files
    are the same. With a Keras whose names differ it does nothing.

    Returns:
        None.
    """
    try:
        from keras.src.backend.common import global_state
        from keras.src.saving.saving_lib import get_attr_skipset
    except ImportError:
        return
    for kind in _SKIPSET_KINDS:
        key = f"saving_attr_skiplist_{kind}"
        if global_state.get_global_attribute(key) is None:
            global_state.set_global_attribute(key, get_attr_skipset(kind))


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
    - The loss scaling: under `mixed_float16`, `compile` wraps the
      optimizer in a `LossScaleOptimizer`, but Keras saves the optimizer
      it was given. A loaded functional model has a float32 policy and
      compiles it unwrapped, and Keras then skips loading the optimizer's
      variables, iteration count included (schedules start over). The
      wrapper is written instead.

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
    import keras

    optimizer = getattr(model, "optimizer", None)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        config["optimizer"] = keras.saving.serialize_keras_object(optimizer)
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

    Keys are sorted; NumPy scalars, arrays and any backend's tensors are
    written as numbers and lists; NaN and infinities, which JSON has no
    words for, as `null` (Python's own `NaN` would make the file unreadable
    to strict parsers: jq, JavaScript). The text is UTF-8. Anything else
    JSON does not know is a `TypeError`, and `path` is left as it was.

    Args:
        data: A JSON-serializable value (dicts, lists, numbers, strings).
        path: The destination.

    Returns:
        None.

    Example:

    >>> import json, os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "metrics.json")
    >>> write_json({"accuracy": np.float32(0.5), "loss": np.nan}, path)
    >>> json.load(open(path))
    {'accuracy': 0.5, 'loss': None}
    """
    data = _plain(data)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True, allow_nan=False)
            f.write("\n")


def write_text(text, path):
    """Writes a string to `path` atomically.

    Args:
        text: The string, written as UTF-8.
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
    if not isinstance(text, str):
        raise TypeError(
            f"Argument `text` must be a string. Received: text={text!r}")
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
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
    path = os.fsdecode(os.fspath(path))
    # A folder ("plots/") is left for `atomic_path` to refuse.
    if os.path.basename(path) and not os.path.splitext(path)[1]:
        import matplotlib

        path = f"{path}.{matplotlib.rcParams['savefig.format']}"
    if not hasattr(figure, "savefig"):
        raise TypeError(
            "Argument `figure` must be a matplotlib Figure. Received: "
            f"figure={figure!r}")
    options = ({"pil_kwargs": {"compress_level": 1}}
               if path.lower().endswith(".png") else {})
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches=bbox_inches, **options)
    return path


def _plain(value):
    """`value` with what JSON cannot write made plain: NumPy values and
    tensors (anything with `__array__`) as numbers and lists, NaN and
    infinities as None; other types are left for `json` to refuse."""
    if isinstance(value, dict):
        plain = {_plain_key(k): _plain(v) for k, v in value.items()}
        if len(plain) < len(value):
            # JSON's keys are strings: 1 and "1" would be one, and the
            # first one's value lost.
            keys = collections.defaultdict(list)
            for key in value:
                keys[_plain_key(key)].append(key)
            clashes = [names for names in keys.values() if len(names) > 1]
            raise ValueError(
                "JSON writes every key as a string, so keys "
                f"{clashes[0]!r} would be one and lose a value. Received a "
                f"dict with keys {list(value)!r}")
        return plain
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "detach") and hasattr(value, "is_floating_point"):
        # A torch tensor: NumPy refuses one that requires grad (a loss)
        # and bfloat16.
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
    if hasattr(value, "__array__") and not isinstance(value, str):
        return _plain(np.asarray(value).tolist())
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and (
            not math.isfinite(value)):
        return None
    return value


def _plain_key(key):
    """A dict key as the string JSON writes for it, so that keys of mixed
    types sort (NumPy scalars as Python ones: `np.int64(3)` as "3")."""
    key = key.item() if isinstance(key, np.generic) else key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    return key
