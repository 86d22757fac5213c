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
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; on success, renames it to
    `path`. On an exception the temporary file is removed and `path` is left
    as it was.

    The temporary name keeps the extension of `path` (Keras insists on
    `.keras` for models, matplotlib picks the format from it).

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
    extension = os.path.splitext(base)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{extension}",
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes private (0600) files; give the result the
        # permissions an ordinary open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_model(model, path):
    """Saves a Keras model to `path` (`.keras`) atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def write_json(data, path):
    """Writes `data` as indented JSON to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=_plain)
            f.write("\n")


def write_text(text, path):
    """Writes a string to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path):
    """Saves a matplotlib figure to `path` atomically and closes it."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight")
    pyplot().close(figure)


def _plain(value):
    """JSON fallback for NumPy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON "
                    "serializable")
