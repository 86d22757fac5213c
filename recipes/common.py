"""Plumbing every recipe shares: flags, backend choice, output folder,
reports (metrics.json, history.csv, plots) and the closing summary.

Nothing here imports Keras at module level: `--backend` must set
`KERAS_BACKEND` before the first `import keras`.
"""

import argparse
import csv
import importlib
import io
import os
import platform
import shutil
import sys
import tempfile
import time

BACKENDS = ("tensorflow", "jax", "torch")
# The largest --seed. numpy (keras.utils.set_random_seed) takes up to
# 2**32 - 1, but on torch a Keras layer's seed is an int32, and the recipes
# seed their layers with `seed + i` (i up to a ResNet's block count):
# 2**30 - 1 leaves them room on every backend. It is
# `kerastrain._seeds.MODEL_SEED_LIMIT - 1`, written out: importing
# kerastrain imports Keras, which must wait for --backend.
MAX_SEED = 2**30 - 1
# The first stage's width of a --quick run's ResNets: a check of the
# recipe's code, not of its accuracy. With it, and with whole batches in
# the digits recipes' quick runs, the quick tests of digits_resnet,
# snapshot_ensemble and cifar10_resnet took 54 s on jax instead of 95 s
# (alone, at the test runner's XLA level), 53 s instead of 60 s on
# tensorflow and 27 s instead of 32 s on torch.
QUICK_WIDTH = 8
# Packages some recipes use, by import name: recorded in metrics.json when
# the run imported them (imbalanced-learn for SMOTE, KerasTuner for a
# search, TFDS for CIFAR-10).
OPTIONAL_PACKAGES = {"imblearn": "imbalanced-learn",
                     "keras_tuner": "keras-tuner",
                     "tensorflow_datasets": "tensorflow-datasets"}


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def seed_int(text):
    """`--seed`: an integer from 0 to `MAX_SEED`."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to {MAX_SEED}, got {text!r}")
    return value


class RecipeError(Exception):
    """A problem the user can fix (a missing data set, say): `run_main`
    prints it without a traceback and exits with status 1."""


def program_name(name):
    """How the recipe `name` was started, for its usage line: the
    `kerastrain` command, `python -m recipes` (both name the recipe as
    their first argument), or the recipe's own module."""
    launcher = os.path.abspath(sys.argv[0]) if sys.argv else ""
    if os.path.splitext(os.path.basename(launcher))[0] == "kerastrain":
        return f"kerastrain {name}"
    if launcher == os.path.join(os.path.dirname(__file__), "__main__.py"):
        return f"python -m recipes {name}"
    return f"python -m recipes.{name}"


def parse_args(name, description, argv=None, *, epochs, batch_size,
               data_dir=False, add_arguments=None):
    """Parses the flags every recipe takes and selects the backend.

    Returns the argparse namespace with `epochs`, `batch_size`, `seed`,
    `out`, `backend`, `quick` and `mixed_precision` (and `data_dir` where
    the recipe reads a data set, and whatever `add_arguments(parser)`
    adds), and `created_folders`: the folders `ensure_writable` made for
    `out`. A seed out of range (see `MAX_SEED`) or an output folder that
    cannot be written is an argparse error (exit code 2) before any work
    starts.
    """
    parser = argparse.ArgumentParser(prog=program_name(name),
                                     description=description)
    parser.add_argument("--epochs", type=positive_int, default=epochs,
                        help=f"training epochs (default {epochs})")
    parser.add_argument("--batch-size", type=positive_int,
                        default=batch_size,
                        help=f"batch size (default {batch_size})")
    parser.add_argument("--seed", type=seed_int, default=0,
                        help="seed of the split, weights and augmentation "
                        f"(0 to {MAX_SEED}; default 0)")
    parser.add_argument("--out", default=os.path.join("saved_models", name),
                        help=f"output folder (default saved_models/{name}/)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="Keras backend (default: $KERAS_BACKEND, or "
                        "tensorflow)")
    parser.add_argument("--quick", action="store_true",
                        help="at most 2 epochs (on a subset of the images, "
                        "with narrower ResNets, for the image recipes), to "
                        "check the recipe")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="float16 compute with float32 weights "
                        "(Keras' mixed_float16 policy; for GPUs)")
    if data_dir:
        parser.add_argument("--data-dir",
                            help="TensorFlow Datasets folder (default: "
                            "TFDS's own, ~/tensorflow_datasets)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        select_backend(args.backend)
        # select_backend has set KERAS_BACKEND if --backend was given.
        if os.environ.get("KERAS_BACKEND") == "jax" and (
                "jax" not in sys.modules):
            os.environ.update(jax_cache_settings(os.environ))
        args.created_folders = ensure_writable(args.out)
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


def jax_cache_settings(environ):
    """The environment variables that turn on JAX's persistent compilation
    cache, in `$XDG_CACHE_HOME/kerastrain/jax` (by default
    `~/.cache/kerastrain/jax`), less those `environ` already sets (a
    `JAX_COMPILATION_CACHE_DIR` of your own wins;
    `JAX_ENABLE_COMPILATION_CACHE=false` turns the cache off).

    On a model this small a third of a jax run is XLA compiling the same
    programs every run (the train and test steps, each initializer per
    kernel shape); a cached program gives bit-identical results. JAX reads
    these variables when it is imported, so the recipes set them while
    choosing the backend.
    """
    home = environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    settings = {
        "JAX_COMPILATION_CACHE_DIR": os.path.join(home, "kerastrain", "jax"),
        # By default JAX caches only programs that took a second or more
        # to compile; each initializer takes about half a second.
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    return {k: v for k, v in settings.items() if k not in environ}


def ensure_writable(folder):
    """Creates `folder` and checks that a file can be written there.

    Returns the folders it created, deepest first: `folder` and the
    parents `os.makedirs` had to make, up to the first that existed (for
    `remove_empty`)."""
    created = missing_folders(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        # A name of its own: a fixed one would empty and delete a file of
        # the user's, or another run's probe.
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        remove_empty(created)
        raise ValueError(
            f"--out {folder}: cannot write there ({error.strerror})"
        ) from None
    return created


def missing_folders(folder):
    """`folder` and its parents that do not exist, deepest first: what
    `os.makedirs(folder)` would create. Walks the path as given, as
    makedirs does (`a/../b` needs `a`)."""
    missing = []
    path = folder.rstrip(os.sep) or folder
    while path and not os.path.exists(path):
        if os.path.basename(path) not in (os.curdir, os.pardir):
            missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def remove_empty(folders):
    """Removes `folders`, deepest first, while they are empty: a folder
    with anything in it, and so every parent of it, stays."""
    for path in folders:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            continue
        except OSError:  # not empty (or not ours to remove)
            return


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


def run_main(name, doc, run, argv=None, *, epochs, batch_size, **flags):
    """A recipe's `main`: its flags (`flags` go to `parse_args`; `--quick`
    caps the epochs at 2), the precision policy (for the run only), then
    `run(args)`.

    The run writes into a staging folder, `args.out` (`.unfinished/`
    inside the output folder, `args.publish_to`), and `finish` publishes
    it, so the output folder only ever holds whole runs.

    Returns the exit code: 0, or 1 after printing a `RecipeError`. Any
    other exception propagates, traceback and all. On any failure nothing
    is published; what the run staged stays in `.unfinished/` (a
    checkpoint of a long run may be worth keeping) until the next run into
    that folder starts, and the folders this run created are removed
    while they are empty.
    """
    timer = Timer()  # before Keras and its backend are imported
    args = parse_args(name, doc.split("\n\n")[0], argv, epochs=epochs,
                      batch_size=batch_size, **flags)
    args.timer = timer
    if args.quick:
        args.epochs = min(args.epochs, 2)
    args.publish_to = args.out
    args.out = os.path.join(args.publish_to, STAGING)
    # What an interrupted run staged was never published; this run stages
    # its own (publishing the old files with it would mix two runs).
    # (A stray file of that name too: rmtree would leave it.)
    _remove(args.out)
    os.makedirs(args.out)
    try:
        _run_with_policy(run, args)
    except BaseException as error:  # KeyboardInterrupt too
        if isinstance(error, RecipeError):
            shutil.rmtree(args.out, ignore_errors=True)
        remove_empty([args.out, *args.created_folders])
        if os.path.isdir(args.out):
            print(f"{name}: stopped; nothing was published to "
                  f"{args.publish_to}. What the run wrote is in {args.out}"
                  " until the next run there starts.", file=sys.stderr)
        if not isinstance(error, RecipeError):
            raise
        print(f"{name}: error: {error}", file=sys.stderr)
        return 1
    remove_empty([args.out])  # a run that published nothing
    return 0


def _run_with_policy(run, args):
    """`run(args)` under the precision policy `args` asks for."""
    import keras

    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if args.mixed_precision else "float32")
    try:
        run(args)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


# Where a run writes its outputs while it runs (`args.out`); `finish`
# moves them into the output folder. An interrupted rerun thus leaves the
# earlier run's outputs whole.
STAGING = ".unfinished"


def publish(args):
    """Moves everything the run staged in `args.out` into
    `args.publish_to`, each file or folder by one rename, replacing what
    an earlier run published under the same name and removing what it
    published that this run did not (the `outputs` of its
    `metrics.json`; nothing else of the folder is touched). The earlier
    `metrics.json` goes first: until `finish` writes this run's, the
    folder does not claim to hold a finished run.

    Returns the names published, sorted."""
    metrics_path = os.path.join(args.publish_to, "metrics.json")
    earlier = _published_before(metrics_path)
    if os.path.exists(metrics_path):
        os.remove(metrics_path)
    names = sorted(os.listdir(args.out))
    for entry in names:
        target = os.path.join(args.publish_to, entry)
        _remove(target)
        os.replace(os.path.join(args.out, entry), target)
    for entry in earlier - set(names):
        _remove(os.path.join(args.publish_to, entry))
    os.rmdir(args.out)
    return names


def _published_before(metrics_path):
    """The names an earlier run's `metrics.json` lists as its outputs:
    plain names inside the folder only, none for a file of another
    version or none at all."""
    import json

    try:
        with open(metrics_path) as f:
            outputs = json.load(f).get("outputs", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {entry for entry in outputs if isinstance(entry, str)
            and entry == os.path.basename(entry)
            and entry not in ("", os.curdir, os.pardir, STAGING)}


def _remove(path):
    """Removes a file or a folder tree, if there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def finish(name, args, metrics, rows, *, tf_data=False):
    """Publishes what the run wrote (`publish`), completes `metrics` (wall
    time since the recipe started, the import of Keras and its backend
    included, `--quick`, `environment`: pass `tf_data=True` where a tf.data
    pipeline fed the model, and `outputs`, the names published), writes
    `metrics.json` atomically, last, and prints the summary table `rows`
    with the wall time and the output folder. Returns the metrics."""
    import keras

    from kerastrain.io import write_json

    seconds = args.timer()
    metrics.update({"wall_time_s": round(seconds, 1), "quick": args.quick,
                    **environment(args, tf_data)})
    metrics["outputs"] = publish(args)
    write_json(metrics, os.path.join(args.publish_to, "metrics.json"))
    print_summary(f"{name} (seed {args.seed}, {keras.backend.backend()})",
                  rows + [("wall time (s)", f"{seconds:.0f}"),
                          ("outputs", args.publish_to)])
    return metrics


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


def plot_history(history, path):
    """Learning curves: each metric, training and validation, per epoch."""
    from kerastrain.io import new_figure, save_figure

    metrics = [k for k in history.history if not k.startswith("val_")
               and k != "learning_rate"]
    figure, axes = new_figure(1, len(metrics),
                              figsize=(5 * len(metrics), 3.8), squeeze=False)
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
    from kerastrain.io import new_figure, save_figure
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, ax = new_figure(figsize=(5.5, 5))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, ax=ax,
                                            colorbar=False)
    ax.set_title(title)
    save_figure(figure, path)


def plot_misclassified(images, y_true, y_pred, path, limit=40):
    """A grid of the misclassified images (the first `limit`, in the order
    of the test split), each captioned with its position in the split, its
    label and the prediction: the errors themselves, where the confusion
    matrix only counts them (fastai's `plot_top_losses`, by position).
    One-channel images are drawn dark on light; colour images are stretched
    to their own range. Returns the positions drawn."""
    import numpy as np

    from kerastrain.io import new_figure, save_figure

    wrong = np.flatnonzero(np.asarray(y_pred) != np.asarray(y_true))
    shown = wrong[:limit]
    columns = 8
    rows = max(1, -(-len(shown) // columns))
    figure, axes = new_figure(rows, columns, squeeze=False,
                              figsize=(columns * 1.2, rows * 1.4 + 0.6))
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown):
        image = np.asarray(images[i], "float32")
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray_r")
        else:
            low, high = image.min(), image.max()
            ax.imshow((image - low) / max(high - low, 1e-7))
        ax.set_title(f"#{i}: {y_true[i]} as {y_pred[i]}", fontsize=8)
    more = f", the first {limit} shown" if len(wrong) > limit else ""
    figure.suptitle(f"{len(wrong)} of {len(y_true)} test images "
                    f"misclassified{more} (#position: label as prediction)",
                    fontsize=9)
    save_figure(figure, path)
    return shown.tolist()


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


def one_cycle_steps(args, samples, epochs=None, what=None):
    """The training steps of `epochs` (default `args.epochs`) epochs of
    `samples` in batches of `args.batch_size`, or a `RecipeError` when
    they are too few for a one-cycle schedule whose rise holds a step (a
    large `--batch-size` on a small set; `OneCycle` itself, as PyTorch's,
    would start such a run inside its annealing), before any training.
    `what` names the epochs in the message (`--epochs N` by default)."""
    # Not from kerastrain.tuning, whose import pulls in KerasTuner, which
    # `environment` would then list among the run's packages.
    from kerastrain.schedules.one_cycle import MIN_STEPS

    epochs = args.epochs if epochs is None else epochs
    steps = epochs * -(-samples // args.batch_size)
    if steps < MIN_STEPS:
        raise RecipeError(
            f"{what or f'--epochs {epochs}'} and --batch-size "
            f"{args.batch_size} on {samples} training samples make {steps} "
            f"training steps, too few for the one-cycle schedule, whose "
            f"rise (30% of the steps) needs at least "
            f"{MIN_STEPS}. Raise --epochs or lower "
            "--batch-size.")
    return steps


def fit_image_classifier(model, train, val, args, *, max_lr, weight_decay,
                         augment, mixup_alpha, mixup_off=0.25,
                         label_smoothing=0.0):
    """The image recipes' training: compiles `model` (logits out, or the
    members of `trained_together`: their logits, each with its own loss
    and its own training pipeline) with
    kerastrain's SGD (Nesterov) on a one-cycle rate whose momentum cycles
    against it and feeds it `image_pipeline` batches (`augment`, one-hot
    labels), mixed up for all but the last `mixup_off` of the epochs (timm's
    `mixup_off_epoch`: the annealed end of the cycle fits the real images;
    on the 8x8 digits, mixup to the end cost about one test error in 270).
    `label_smoothing` goes to the loss, so it smooths the training and the
    validation loss alike.

    The best epoch on validation loss is kept by CheckpointEarlyStopping in
    `args.out/model.keras` (published by `finish`), among the last 10% of
    the epochs (where the rate is below 5% of its peak: on the digits' 270
    validation images, a lucky high-rate epoch otherwise wins and scores
    worse on the test split than the annealed ones) and with patience for
    the whole budget (one-cycle plans all its epochs). Writes
    `schedule.png`.

    Returns the Keras `History` of all epochs.
    """
    import keras

    from kerastrain.callbacks import CheckpointEarlyStopping
    from kerastrain.data import fit_passes, image_pipeline
    from kerastrain.optimizers import SGD
    from kerastrain.schedules import OneCycle, plot_schedule

    steps = one_cycle_steps(args, len(train[0]))
    one_cycle = OneCycle(max_lr, steps)
    outputs = len(model.outputs)
    model.compile(
        optimizer=SGD(one_cycle, momentum=one_cycle.momentum_schedule,
                      nesterov=True, weight_decay=weight_decay),
        # Mixup makes soft labels, hence the categorical loss; with several
        # outputs, each gets it and the loss is their sum.
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing),
        metrics=["accuracy"] * outputs)
    pipeline = dict(batch_size=args.batch_size,
                    num_classes=model.outputs[0].shape[-1], normalize=False,
                    seed=args.seed)
    validation = image_pipeline(*val, training=False, **pipeline)
    if outputs > 1:  # every member reads the same validation batches
        validation = validation.map(
            lambda x, y: ((x,) * outputs, (y,) * outputs))
    checkpoint = CheckpointEarlyStopping(
        os.path.join(args.out, "model.keras"), monitor="val_loss",
        patience=args.epochs, start_from_epoch=int(0.9 * args.epochs))
    mixed_epochs = int(round(args.epochs * (1 - mixup_off))) if (
        mixup_alpha > 0) else 0
    # Two fits, one optimizer: the schedule runs on through both; the
    # checkpoint (last 10% of the epochs) watches the second. Each fit
    # and each member of a `trained_together` model reads a pipeline of
    # its own seed (`member_seeds`).
    seeds = member_seeds(args.seed, outputs)
    history = None
    for start, stop, alpha, fit_seeds in (
            (0, mixed_epochs, mixup_alpha, seeds.first_fit),
            (mixed_epochs, args.epochs, 0.0, seeds.second_fit)):
        if stop <= start:
            continue
        part = fit_passes(
            model, _zipped([image_pipeline(*train, augment=augment,
                                           mixup_alpha=alpha,
                                           **{**pipeline, "seed": seed})
                            for seed in fit_seeds]),
            validation, initial_epoch=start, epochs=stop,
            verbose=2, shuffle=False,  # the pipeline reshuffles itself
            callbacks=[checkpoint] if stop == args.epochs else [])
        history = part if history is None else _extend(history, part)
    plot_schedule(one_cycle, steps, os.path.join(args.out, "schedule.png"))
    return history


def member_seeds(seed, count):
    """The seeds of `count` members trained together from a recipe's
    `seed` (`trained_together`; one member for a model of its own), every
    stream its own: a pipeline that shared a seed with another would
    replay its shuffles and augmentations, and members that shared one
    would read the same batches (and make the same errors).

    Member 0 gets the seeds of a run without members: `seed` for the
    pipeline of its first fit (the mixed-up epochs of
    `fit_image_classifier`) and for its model (DropPath), and the first
    seed spawned from `seed` for the pipeline of its second fit. The
    other members get the seeds spawned after that one, a model's kept
    below `MODEL_SEED_LIMIT`.

    Returns a namespace of three lists, a seed per member each:
    `first_fit`, `second_fit` and `model`.
    """
    import types

    from kerastrain._seeds import MODEL_SEED_LIMIT, spawn_seeds

    spawned = spawn_seeds(seed, 3 * count - 2)
    return types.SimpleNamespace(
        first_fit=[seed, *spawned[1:count]],
        second_fit=[spawned[0], *spawned[count:2 * count - 1]],
        model=[seed, *(s % MODEL_SEED_LIMIT
                       for s in spawned[2 * count - 1:])])


def _zipped(pipelines):
    """One pipeline, or for several (one per member of a
    `trained_together` model) their batches side by side: (the images of
    each, the labels of each)."""
    import tensorflow as tf

    if len(pipelines) == 1:
        return pipelines[0]
    return tf.data.Dataset.zip(tuple(pipelines)).map(
        lambda *batches: (tuple(b[0] for b in batches),
                          tuple(b[1] for b in batches)))


def trained_together(build, count):
    """`count` models from `build(i)` and one Keras model with an input
    and an output for each, to train them in one `fit` (one compiled
    step): each member reads its own batches (`fit_image_classifier`
    gives each its own pipeline) and has its own loss, so the members
    learn independently, as in runs of their own.

    Each member is built in a name scope of its own (`member_<i>/`):
    members built alike would otherwise have variables of the same paths,
    and Keras' torch backend keys a model's parameters by path, so `fit`
    would never clear the gradients of all but one of them.

    Returns `(members, model)`.
    """
    import keras

    members = []
    for i in range(count):
        with keras.name_scope(f"member_{i}"):
            members.append(build(i))
    inputs = [keras.Input(shape=m.inputs[0].shape[1:]) for m in members]
    return members, keras.Model(
        inputs, [m(x) for m, x in zip(members, inputs)])


def _extend(history, more):
    """Appends the epochs of History `more` to History `history`."""
    for key, values in more.history.items():
        history.history.setdefault(key, []).extend(values)
    history.epoch.extend(more.epoch)
    return history


def report_classifier(name, model, history, x_test, y_test, args):
    """Predicts the test split and writes `history.csv`,
    `learning_curves.png`, `confusion_matrix.png` and
    `misclassified.png`. Returns `(test_accuracy, predicted_labels)`."""
    import numpy as np

    predictions = np.argmax(np.asarray(model.predict(x_test, verbose=0)),
                            axis=-1)
    accuracy = float(np.mean(predictions == y_test))
    write_history(history, os.path.join(args.out, "history.csv"))
    plot_history(history, os.path.join(args.out, "learning_curves.png"))
    plot_confusion_matrix(
        y_test, predictions, os.path.join(args.out, "confusion_matrix.png"),
        f"{name}: test accuracy {accuracy:.2%}")
    plot_misclassified(x_test, y_test, predictions,
                       os.path.join(args.out, "misclassified.png"))
    return accuracy, predictions


TUNERS = ("random", "bayesian", "hyperband")


def add_search_arguments(parser, max_trials):
    """`--tuner` and `--max-trials`, for the recipes that search."""
    parser.add_argument("--tuner", choices=TUNERS, default="random",
                        help="KerasTuner's RandomSearch, "
                        "BayesianOptimization or Hyperband (default random)")
    parser.add_argument("--max-trials", type=positive_int,
                        default=max_trials,
                        help=f"trials to run (default {max_trials}; "
                        "not used by Hyperband, whose trials and rounds "
                        "follow from --epochs, its max_epochs)")


def make_tuner(hypermodel, args, objective, out, epochs):
    """The KerasTuner tuner `args.tuner` names, seeded, searching in
    `out/search` (overwritten: a recipe run is one search); `--quick` runs
    2 trials. `epochs`, the most a trial trains, is Hyperband's
    `max_epochs`."""
    import keras_tuner

    common = dict(objective=keras_tuner.Objective(*objective),
                  directory=os.path.join(out, "search"),
                  project_name="search", overwrite=True, seed=args.seed)
    if args.tuner == "hyperband":
        return keras_tuner.Hyperband(hypermodel, max_epochs=epochs,
                                     factor=3, **common)
    tuner_class = (keras_tuner.RandomSearch if args.tuner == "random"
                   else keras_tuner.BayesianOptimization)
    return tuner_class(hypermodel, max_trials=min(args.max_trials, 2) if (
        args.quick) else args.max_trials, **common)


def run_search(tuner, out, train, val, *, epochs, batch_size, patience):
    """Runs a `make_tuner` search with a CheckpointEarlyStopping on the
    objective and a CSVLogger in every trial, writes `search_report`, and
    publishes the best trial's checkpoint (its best epoch) as
    `out/model.keras`, atomically.

    Returns `(best_model, best_hyperparameters, rows)`.
    """
    import shutil

    import keras

    from kerastrain.callbacks import CheckpointEarlyStopping
    from kerastrain.io import atomic_path

    search_dir = os.path.join(out, "search")
    histories = os.path.join(search_dir, "histories")
    tuner.search(*train, validation_data=val, epochs=epochs,
                 batch_size=batch_size, verbose=2,
                 callbacks=[CheckpointEarlyStopping(
                     os.path.join(search_dir, "checkpoints", "best.keras"),
                     monitor=tuner.oracle.objective.name,
                     patience=patience),
                     keras.callbacks.CSVLogger(
                         os.path.join(histories, "history.csv"))])
    best, rows = search_report(tuner, out, histories)
    path = os.path.join(out, "model.keras")
    with atomic_path(path) as tmp:
        shutil.copyfile(os.path.join(search_dir, "checkpoints",
                                     rows[0]["trial"], "best.keras"), tmp)
    return keras.saving.load_model(path), best, rows


def read_history(path):
    """A Keras `CSVLogger` file as a `History`-like object (`.history`,
    `.epoch`) for `write_history` and `plot_history`. The logger's "NA"
    (a key an epoch did not log) reads as NaN."""
    import types

    with open(path) as f:
        rows = list(csv.DictReader(f))
    names = [name for name in rows[0] if name != "epoch"] if rows else []
    return types.SimpleNamespace(
        history={n: [float("nan") if row[n] in ("NA", "") else float(row[n])
                     for row in rows] for n in names},
        epoch=[int(row["epoch"]) for row in rows])


def search_report(tuner, out, histories, top=5):
    """Writes `best_hyperparameters.json`, `trials.csv` (one row per
    completed trial: id, score, hyperparameters), `trials.png` (the scores
    in the order the trials ran) and, for the best trial, `history.csv` and
    `learning_curves.png` from its file under `histories` (the folder of a
    `CSVLogger(histories/history.csv)` given to the search, which
    `kerastrain.tuning` moves into a folder per trial); prints the `top`
    trials.

    Returns `(best_hyperparameters_dict, rows)`, rows sorted best first.
    """
    from kerastrain.io import new_figure, save_figure, write_json, write_text

    trials = [t for t in tuner.oracle.trials.values() if t.score is not None]
    direction = tuner.oracle.objective.direction
    ordered = sorted(trials, key=lambda t: t.score,
                     reverse=direction == "max")
    names = sorted({name for t in trials for name in t.hyperparameters.values
                    if not name.startswith("tuner/")})
    rows = [{"trial": t.trial_id, "score": t.score,
             **{n: t.hyperparameters.values.get(n) for n in names}}
            for t in ordered]
    # Hyperband's bookkeeping (`tuner/epochs`, `tuner/round`...) is no knob.
    best = {name: value for name, value in
            ordered[0].hyperparameters.values.items()
            if not name.startswith("tuner/")}
    write_json(best, os.path.join(out, "best_hyperparameters.json"))
    history = read_history(os.path.join(histories, ordered[0].trial_id,
                                        "history.csv"))
    write_history(history, os.path.join(out, "history.csv"))
    plot_history(history, os.path.join(out, "learning_curves.png"))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["trial", "score"] + names)
    writer.writeheader()
    writer.writerows(rows)
    write_text(buffer.getvalue(), os.path.join(out, "trials.csv"))

    figure, ax = new_figure(figsize=(6, 3.5))
    # Ids are numbers as text ("3", "12" or zero-padded "03", "12").
    chronological = sorted(trials, key=lambda t: (len(t.trial_id),
                                                  t.trial_id))
    ax.plot(range(1, len(trials) + 1), [t.score for t in chronological],
            "o-")
    ax.set_xlabel("trial")
    ax.set_ylabel(tuner.oracle.objective.name)
    ax.grid(alpha=0.3)
    save_figure(figure, os.path.join(out, "trials.png"))

    shown = rows[:top]
    print(f"\nTop {len(shown)} of {len(rows)} trials "
          f"({tuner.oracle.objective.name}, {direction}):")
    header = ["trial", "score"] + names
    table = [[str(row[k]) if not isinstance(row[k], float)
              else f"{row[k]:.4g}" for k in header] for row in shown]
    widths = [max(len(h), *(len(r[i]) for r in table))
              for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for line in table:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)))
    return best, rows
