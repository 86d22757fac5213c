"""A run's output folder: what the run staged is published whole
(`finish`), `metrics.json` last, beside its `history.csv`.

Nothing here imports Keras at module level: `--backend` must set
`KERAS_BACKEND` before the first `import keras`.
"""

import csv
import importlib
import io
import os
import platform
import shutil
import sys

from recipes.common.reports import print_summary


# Packages some recipes use, by import name: recorded in metrics.json when
# the run imported them (imbalanced-learn for SMOTE, KerasTuner for a
# search, TFDS for CIFAR-10).
OPTIONAL_PACKAGES = {"imblearn": "imbalanced-learn",
                     "keras_tuner": "keras-tuner",
                     "tensorflow_datasets": "tensorflow-datasets"}


# Where a run writes its outputs while it runs (`args.out`); `finish`
# moves them into the output folder. An interrupted rerun thus leaves the
# earlier run's outputs whole.
STAGING = ".unfinished"
# The staging folder's record of the run it holds (`cli.run_record`),
# which `--resume` compares: not an output, never published.
RUN_RECORD = "run.json"


def publish(args):
    """Moves everything the run staged in `args.out` into
    `args.publish_to`, each file or folder by one rename, replacing what
    an earlier run published under the same name and removing what it
    published that this run did not (the `outputs` of its
    `metrics.json`; nothing else of the folder is touched). The earlier
    `metrics.json` goes first: until `finish` writes this run's, the
    folder does not claim to hold a finished run.

    Returns the names published, sorted."""
    remove_path(os.path.join(args.out, RUN_RECORD))
    metrics_path = os.path.join(args.publish_to, "metrics.json")
    earlier = _published_before(metrics_path)
    if os.path.exists(metrics_path):
        os.remove(metrics_path)
    names = sorted(os.listdir(args.out))
    for entry in names:
        target = os.path.join(args.publish_to, entry)
        remove_path(target)
        os.replace(os.path.join(args.out, entry), target)
    for entry in earlier - set(names):
        remove_path(os.path.join(args.publish_to, entry))
    os.rmdir(args.out)
    return names


def _published_before(metrics_path):
    """The names an earlier run's `metrics.json` lists as its outputs:
    plain names inside the folder only, none for a file that no run of a
    recipe wrote (`run_metrics`) or none at all."""
    metrics = run_metrics(metrics_path)
    outputs = [] if metrics is None else metrics["outputs"]
    return {entry for entry in outputs if isinstance(entry, str)
            and entry == os.path.basename(entry)
            and entry not in ("", os.curdir, os.pardir, STAGING)}


def run_metrics(path):
    """The `metrics.json` at `path` where a recipe's run wrote it (it
    names kerastrain's version and lists the run's `outputs`), else None:
    no file, or another tool's, whose `outputs` must not decide what a run
    removes (a list naming a folder of the user's removed it whole)."""
    import json

    try:
        with open(path) as f:
            metrics = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(metrics, dict) and isinstance(
            metrics.get("kerastrain"), str) and isinstance(
                metrics.get("outputs"), list):
        return metrics
    return None


def remove_path(path):
    """Removes a file or a folder tree, if there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def finish(name, args, metrics, rows):
    """Publishes what the run wrote (`publish`), completes `metrics` (wall
    time since the recipe started, the import of Keras and its backend
    included, `--quick`, `environment` (with TensorFlow's version where
    `args.tf_data`: `run_main(tf_data=True)`, a tf.data pipeline fed the
    model), and `outputs`, the names published), writes
    `metrics.json` atomically, last, and prints the summary table `rows`
    with the wall time and the output folder. Returns the metrics."""
    import keras

    from kerastrain.io import write_json

    seconds = args.timer()
    metrics.update({"wall_time_s": round(seconds, 1), "quick": args.quick,
                    **environment(args, args.tf_data)})
    if getattr(args, "resumable", False):
        metrics.update(args.resumed)
    metrics["outputs"] = publish(args)
    write_json(metrics, os.path.join(args.publish_to, "metrics.json"))
    print_summary(f"{name} (seed {args.seed}, {keras.backend.backend()})",
                  rows + [("wall time (s)", f"{seconds:.0f}"),
                          ("outputs", args.publish_to)])
    return metrics


def environment(args, tf_data=False):
    """Backend, seed and the versions of what ran, for metrics.json:
    kerastrain, Keras, the backend's framework, NumPy, scikit-learn,
    TensorFlow where it ran (the backend, or with `tf_data` the input
    pipeline of another backend) and the `OPTIONAL_PACKAGES` the run
    imported."""
    import keras
    import numpy
    import sklearn

    import kerastrain

    backend = keras.backend.backend()
    info = {"backend": backend, "seed": args.seed,
            "mixed_precision": args.mixed_precision,
            "python": platform.python_version(),
            "kerastrain": kerastrain.__version__, "keras": keras.__version__,
            backend: importlib.import_module(backend).__version__,
            "numpy": numpy.__version__, "scikit-learn": sklearn.__version__}
    # Not every framework that is imported ran: Keras imports jax on every
    # backend where it is installed, and keras.utils.set_random_seed
    # imports TensorFlow to seed it. Hence `tf_data`, from the recipe.
    if tf_data:
        import tensorflow

        info["tensorflow"] = tensorflow.__version__
    for module, distribution in OPTIONAL_PACKAGES.items():
        if module in sys.modules:
            info[distribution] = sys.modules[module].__version__
    return info


def write_history(history, path):
    """Writes a Keras `History` as CSV, one row per epoch, atomically."""
    from kerastrain.io import write_text

    keys = list(history.history)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch"] + keys)
    # Numbered from 1 as `plot_history` draws them: a fit that continued
    # another (`initial_epoch`, a Hyperband trial) starts past 1.
    for row, epoch in enumerate(history.epoch):
        writer.writerow([epoch + 1] + [history.history[k][row]
                                       for k in keys])
    write_text(buffer.getvalue(), path)


def read_history(path):
    """A Keras `CSVLogger` file as a `History`-like object (`.history`,
    `.epoch`) for `write_history` and `plot_history`. The logger's "NA"
    (a key an epoch did not log) reads as NaN. An epoch logged again (by
    a `fit` resumed from a backup of the epoch before it, appending) is
    read once, as logged last, in its place."""
    import types

    with open(path) as f:
        rows = {int(row["epoch"]): row for row in csv.DictReader(f)}
    rows = [rows[epoch] for epoch in sorted(rows)]
    names = [name for name in rows[0] if name != "epoch"] if rows else []
    return types.SimpleNamespace(
        history={n: [float("nan") if row[n] in ("NA", "") else float(row[n])
                     for row in rows] for n in names},
        epoch=[int(row["epoch"]) for row in rows])
