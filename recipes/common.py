"""Plumbing every recipe shares: flags, backend choice, output folder,
reports (metrics.json, history.csv, plots) and the closing summary.

Nothing here imports Keras at module level: `--backend` must set
`KERAS_BACKEND` before the first `import keras`.
"""

import argparse
import csv
import io
import os
import platform
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(name, description, argv=None, *, epochs, batch_size):
    """Parses the flags every recipe takes and selects the backend.

    Returns the argparse namespace with `epochs`, `batch_size`, `seed`,
    `out`, `backend` and `quick`. An output folder that cannot be written
    is an argparse error (exit code 2) before any work starts.
    """
    parser = argparse.ArgumentParser(prog=f"python -m recipes.{name}",
                                     description=description)
    parser.add_argument("--epochs", type=_positive_int, default=epochs,
                        help=f"training epochs (default {epochs})")
    parser.add_argument("--batch-size", type=_positive_int,
                        default=batch_size,
                        help=f"batch size (default {batch_size})")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the split, weights and augmentation")
    parser.add_argument("--out", default=os.path.join("saved_models", name),
                        help=f"output folder (default saved_models/{name}/)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="Keras backend (default: $KERAS_BACKEND, or "
                        "tensorflow)")
    parser.add_argument("--quick", action="store_true",
                        help="a few steps on a subset, to check the recipe")
    args = parser.parse_args(argv)
    try:
        select_backend(args.backend)
        ensure_writable(args.out)
    except ValueError as error:
        parser.error(str(error))
    return args


def select_backend(backend):
    """Sets `KERAS_BACKEND`, or checks it where Keras is already imported."""
    if backend is None:
        return
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise ValueError(
                f"--backend {backend}: Keras is already running on "
                f"{current}; start a new process for another backend")
    os.environ["KERAS_BACKEND"] = backend


def ensure_writable(folder):
    """Creates `folder` and checks that a file can be written there."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        raise ValueError(
            f"--out {folder}: cannot write there ({error.strerror})"
        ) from None


def environment(args):
    """Backend, library versions and seed, for metrics.json."""
    import keras
    import numpy
    import sklearn

    info = {"backend": keras.backend.backend(), "seed": args.seed,
            "python": platform.python_version(), "keras": keras.__version__,
            "numpy": numpy.__version__, "scikit-learn": sklearn.__version__}
    for module in ("tensorflow", "jax", "torch"):
        if module in sys.modules:
            info[module] = sys.modules[module].__version__
    return info


def run_main(name, doc, run, argv=None, *, epochs, batch_size):
    """A recipe's `main`: its flags (with `--quick` capping the epochs at
    2), then `run(args)`; returns the exit code."""
    args = parse_args(name, doc.split("\n\n")[0], argv, epochs=epochs,
                      batch_size=batch_size)
    if args.quick:
        args.epochs = min(args.epochs, 2)
    run(args)
    return 0


def finish(name, args, metrics, rows, timer):
    """Completes `metrics` (wall time, `--quick`, environment), writes
    `metrics.json` atomically and prints the summary table `rows` with the
    wall time and the output folder. Returns the metrics."""
    import os

    import keras

    from kerastrain.io import write_json

    metrics.update({"wall_time_s": round(timer(), 1), "quick": args.quick,
                    **environment(args)})
    write_json(metrics, os.path.join(args.out, "metrics.json"))
    print_summary(f"{name} (seed {args.seed}, {keras.backend.backend()})",
                  rows + [("wall time (s)", f"{timer():.0f}"),
                          ("outputs", args.out)])
    return metrics


def write_history(history, path):
    """Writes a Keras `History` as CSV, one row per epoch, atomically."""
    from kerastrain.io import write_text

    keys = list(history.history)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch"] + keys)
    for epoch in range(len(history.epoch)):
        writer.writerow([epoch + 1] + [history.history[k][epoch]
                                       for k in keys])
    write_text(buffer.getvalue(), path)


def plot_history(history, path):
    """Learning curves: each metric, training and validation, per epoch."""
    from kerastrain.io import pyplot, save_figure

    plt = pyplot()

    metrics = [k for k in history.history if not k.startswith("val_")
               and k != "learning_rate"]
    figure, axes = plt.subplots(1, len(metrics),
                                figsize=(5 * len(metrics), 3.8),
                                squeeze=False)
    epochs = [e + 1 for e in history.epoch]
    for ax, metric in zip(axes[0], metrics):
        ax.plot(epochs, history.history[metric], label="training")
        if f"val_{metric}" in history.history:
            ax.plot(epochs, history.history[f"val_{metric}"],
                    label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(figure, path)


def plot_confusion_matrix(y_true, y_pred, path, title):
    from kerastrain.io import pyplot, save_figure

    plt = pyplot()
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, ax = plt.subplots(figsize=(5.5, 5))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, ax=ax,
                                            colorbar=False)
    ax.set_title(title)
    save_figure(figure, path)


def print_summary(title, rows):
    """Prints a two-column table of (name, value) rows."""
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 24))
    for name, value in rows:
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {shown}")
    print("-" * (width + 24))


class Timer:
    """Wall time since creation, in seconds."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.start
