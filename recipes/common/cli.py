"""The flags every recipe takes, the backend it runs on and `run_main`,
which runs a recipe into a staging folder and turns a `RecipeError` into
exit status 1.

Nothing here imports Keras at module level: `--backend` must set
`KERAS_BACKEND` before the first `import keras`.
"""

import argparse
import contextlib
import gc
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
import time

from recipes.common.outputs import (RUN_RECORD, STAGING, remove_path,
                                    run_metrics)

BACKENDS = ("tensorflow", "jax", "torch")
# The recipes' folder: its `__main__.py` is `python -m recipes`.
RECIPES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The largest --seed. numpy (keras.utils.set_random_seed) takes up to
# 2**32 - 1, but on torch a Keras layer's seed is an int32, and the recipes
# seed their layers with `seed + i` (i up to a ResNet's block count):
# 2**30 - 1 leaves them room on every backend. It is
# `kerastrain._seeds.MODEL_SEED_LIMIT - 1`, written out: importing
# kerastrain imports Keras, which must wait for --backend.
MAX_SEED = 2**30 - 1


# The largest count a flag takes (--epochs, --batch-size, --members...):
# the optimizers count steps in an int32, and a larger count failed deep
# in the run (OneCycle's total_steps, NumPy's largest array for --members).
# It is `kerastrain._validation.MAX_STEPS`, written out as `MAX_SEED` is.
MAX_COUNT = 2**31 - 1


def positive_int(text, high=MAX_COUNT):
    """A count flag: an integer from 1 to `high`."""
    value = int(text)
    if not 1 <= value <= high:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 1 to {high}, got {value}")
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
    if launcher == os.path.join(RECIPES, "__main__.py"):
        return f"python -m recipes {name}"
    return f"python -m recipes.{name}"


def parse_args(name, description, argv=None, *, epochs, batch_size,
               data_dir=False, resumable=False, add_arguments=None):
    """Parses the flags every recipe takes and selects the backend.

    Returns the argparse namespace with `epochs`, `batch_size`, `seed`,
    `out`, `backend`, `quick` and `mixed_precision` (and `data_dir` where
    the recipe reads a data set, `resume` where its training is
    `resumable`, and whatever `add_arguments(parser)` adds), and
    `created_folders`: the folders `ensure_writable` made for
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
    if resumable:
        parser.add_argument(
            "--resume", action="store_true",
            help="go on with the run that was interrupted in the output "
            "folder (started with the same flags), from the last epoch it "
            "backed up (a search: with the trials it finished); without "
            "one, start afresh")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        select_backend(args.backend)
        # select_backend has set KERAS_BACKEND if --backend was given.
        if os.environ.get("KERAS_BACKEND") == "jax" and (
                "jax" not in sys.modules):
            os.environ.update(jax_cache_settings(os.environ))
        check_out_folder(args.out)
        args.created_folders = ensure_writable(args.out)
    except ValueError as error:
        parser.error(str(error))
    return args


def check_out_folder(folder):
    """Refuses an output folder that a run would damage: one inside a
    staging folder (`.unfinished`), which the next run into its parent
    empties, or one holding a `metrics.json` that no recipe's run wrote,
    which a run replaces."""
    parts = os.path.normpath(folder).split(os.sep)
    if STAGING in parts:
        raise ValueError(
            f"--out {folder}: a {STAGING} folder is where a run stages its "
            "outputs, removed by the next run into the folder above it; "
            "choose another folder")
    metrics = os.path.join(folder, "metrics.json")
    if os.path.lexists(metrics) and run_metrics(metrics) is None:
        raise ValueError(
            f"--out {folder}: it holds a metrics.json that no kerastrain "
            "recipe wrote (it names no kerastrain version and lists no "
            "outputs), which a run would replace; choose another folder")


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


def run_main(name, doc, run, argv=None, *, epochs, batch_size,
             tf_data=False, leave_a_core=False, resumable=False, **flags):
    """A recipe's `main`: its flags (`flags` go to `parse_args`; `--quick`
    caps the epochs at 2), the precision policy and, with `leave_a_core`,
    a CPU core left to the tf.data pipeline on torch
    (`cores_for_the_pipeline`), both for the run only, then `run(args)`.
    `tf_data` says that a tf.data pipeline feeds the model
    (`args.tf_data`: `finish` records TensorFlow's version).

    The run writes into a staging folder, `args.out` (`.unfinished/`
    inside the output folder, `args.publish_to`), and `finish` publishes
    it, so the output folder only ever holds whole runs.

    With `resumable` (a recipe whose training backs itself up in the
    staging folder), the recipe takes `--resume`: a run that was
    interrupted, staged by the same recipe with the same flags on the same
    backend and kerastrain (the `run_record`), is kept and goes on from its
    backup, where otherwise every run starts with an empty staging folder.
    `args.resumed` is for the run to fill with where it went on from,
    which `metrics.json` records: `{"resumed_from_epoch": None}` for a
    `fit` from the start (`backed_up_checkpoint`).

    Returns the exit code: 0, or 1 after printing a `RecipeError`. Any
    other exception propagates, traceback and all. On any failure nothing
    is published; what the run staged stays in `.unfinished/` (a
    checkpoint of a long run may be worth keeping) until the next run into
    that folder starts, and the folders this run created are removed
    while they are empty.
    """
    timer = Timer()  # before Keras and its backend are imported
    args = parse_args(name, doc.split("\n\n")[0], argv, epochs=epochs,
                      batch_size=batch_size, resumable=resumable, **flags)
    if args.quick:
        args.epochs = min(args.epochs, 2)
    try:
        # The flags as the run uses them, before the attributes set
        # below. Keras' import takes seconds, the time to notice a wrong
        # flag and press Ctrl-C: the folders made for --out stayed.
        with interrupts_delivered():  # Keras' import, JAX's gc callback's
            record = run_record(name, args) if resumable else None
        args.timer, args.tf_data = timer, tf_data
        args.leave_a_core = leave_a_core
        args.publish_to = args.out
        args.out = os.path.join(args.publish_to, STAGING)
        args.resumable, args.resumed = resumable, {}
        kept = _prepare_staging(name, args, record)
    except BaseException as error:  # KeyboardInterrupt too
        remove_empty(args.created_folders)
        if not isinstance(error, RecipeError):
            raise
        print(f"{name}: error: {error}", file=sys.stderr)  # it stays
        return 1
    try:
        with interrupts_delivered():
            _run_with_policy(run, args)
    except BaseException as error:  # KeyboardInterrupt too
        if isinstance(error, RecipeError) and not kept:
            shutil.rmtree(args.out, ignore_errors=True)
        if os.path.isdir(args.out) and os.listdir(args.out) == [
                RUN_RECORD]:  # nothing to resume
            os.remove(os.path.join(args.out, RUN_RECORD))
        remove_empty([args.out, *args.created_folders])
        if os.path.isdir(args.out):
            print(f"{name}: stopped; nothing was published to "
                  f"{args.publish_to}. What the run wrote is in {args.out}"
                  " until the next run there starts" + (
                      ": run again with the same flags and --resume to go "
                      "on from its last epoch backed up." if resumable
                      else "."), file=sys.stderr)
        if not isinstance(error, RecipeError):
            raise
        print(f"{name}: error: {error}", file=sys.stderr)
        return 1
    remove_empty([args.out])  # a run that published nothing
    return 0


def run_record(name, args):
    """What a run into a staging folder is: the recipe `name`, its flags
    (`args` as `parse_args` returns them, less `--out`, `--backend`,
    `--resume`, `--download`, `created_folders`, and the search's flags
    where an optional search is off), the backend it runs on and
    kerastrain's version. `--resume` goes on only with a staged run
    of the same record: any of these changes what the training does.
    (`--download` only lets TFDS fetch a missing data set: a run started
    with it, whose data is there now, resumes without it.)"""
    import keras

    import kerastrain

    skip = {"out", "backend", "resume", "download", "created_folders"}
    if getattr(args, "tune", None) is False:
        # A recipe whose search is optional (`diabetes_risk --tune`) runs
        # none: its search flags change nothing (a run started with
        # `--tuner bayesian` alone was refused a resume without it).
        skip |= {"tuner", "max_trials"}
    return {"recipe": name, "backend": keras.backend.backend(),
            "kerastrain": kerastrain.__version__,
            "flags": {key: value for key, value in sorted(vars(args).items())
                      if key not in skip}}


def _prepare_staging(name, args, record):
    """Makes `args.out` the staging folder of this run, holding `record`,
    its `run_record`, where the recipe is resumable (else None). What an
    interrupted run staged was never published, and is removed
    (publishing its files with this run's would mix two runs), unless
    `--resume` finds it staged by a run of the same record: then it
    stays, for the training to go on from its backup (returns True), also
    through a `RecipeError` of this run. One of another record is a
    `RecipeError`, and stays too. (A stray file named as the staging
    folder is removed as well: rmtree would leave it.)"""
    from kerastrain.io import write_json

    path = os.path.join(args.out, RUN_RECORD)
    if getattr(args, "resume", False):
        earlier = _read_record(path)
        if earlier == record:
            return True
        if earlier is not None:
            raise RecipeError(
                f"--resume: the interrupted run in {args.out} was started "
                f"otherwise: {_differences(earlier, record)}. Run with its "
                "flags to resume it, or without --resume to start afresh "
                "(which discards it).")
        print(f"{name}: --resume: no interrupted run in {args.out}; "
              "starting afresh.")
    remove_path(args.out)
    os.makedirs(args.out)
    if record is not None:
        write_json(record, path)
    return False


def _read_record(path):
    """The `run_record` a staging folder holds (None: none, or one that
    does not read as a record)."""
    import json

    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _differences(earlier, record):
    """How the staged run's record differs from this run's, in words."""
    def flag(key):
        return "--" + key.replace("_", "-")

    said = [f"{what} {earlier.get(what)} (this run: {record[what]})"
            for what in ("recipe", "backend", "kerastrain")
            if earlier.get(what) != record[what]]
    flags, staged = record["flags"], earlier.get("flags") or {}
    said += [f"{flag(key)} {staged.get(key)} (this run: {flags.get(key)})"
             for key in sorted(set(flags) | set(staged))
             if staged.get(key) != flags.get(key)]
    return ", ".join(said)


# How long a Ctrl-C raised as a KeyboardInterrupt may take to leave the
# block of `interrupts_delivered` before it is raised again, and how soon
# one that would be dropped where it arrived is raised again.
INTERRUPT_RETRY_S = 0.5
INTERRUPT_SOON_S = 0.005
# Functions that drop a KeyboardInterrupt raised in them, as (file name,
# function name): Keras 3.15's `pythonify_logs` (a bare `except: pass`).
DROPS_INTERRUPTS = {("python_utils.py", "pythonify_logs")}


@contextlib.contextmanager
def interrupts_delivered():
    """Inside the block, a Ctrl-C (SIGINT) stops the run: it is raised as
    Python raises it, a `KeyboardInterrupt`, and again every
    `INTERRUPT_RETRY_S` until one leaves the block; where it arrives in a
    function that would drop it, it is raised `INTERRUPT_SOON_S` later
    instead, after that function has returned, or as the block ends.
    (So code in the block that catches a KeyboardInterrupt and goes on
    for longer than `INTERRUPT_RETRY_S`, to save a model say, is
    interrupted again: catch it outside.)

    On the jax backend Ctrl-Cs sent to `digits_resnet` runs were mostly
    dropped, and the runs went on to their end and published: 3 of the 5
    sent at 2-14 s (torch: 0 of 4). JAX computes asynchronously, and
    Keras' `fit` waits for each batch's logs in `pythonify_logs`, whose
    bare `except: pass` (Keras 3.15) caught the KeyboardInterrupt raised
    as the wait ended (`DROPS_INTERRUPTS`); and JAX collects XLA's garbage
    in a garbage collector's callback (`gc.callbacks`), where Python
    prints "Exception ignored" and drops it, at every collection wherever
    JAX is imported (Keras imports it on every backend where it is
    installed). A SIGINT that the process ignores (a background job of a
    shell), a handler of the program's own and a thread other than the
    main one are left as they are.
    """
    if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            ) or not hasattr(signal, "pthread_kill"):  # Windows
        yield
        return
    # The handler only writes to a pipe: no lock, no thread started in it.
    # A worker sends the signal again when the deadline it sets is due.
    woken, wake = os.pipe()  # read by the worker, written by the handler
    os.set_blocking(wake, False)
    state = {"left": False, "due": None, "pending": False}

    def send_again_in(seconds):
        state["due"] = time.monotonic() + seconds
        try:
            os.write(wake, b"d")
        except BlockingIOError:  # a full pipe wakes the worker as well
            pass

    def worker():
        while True:
            due = state["due"]
            ready = select.select([woken], [], [], None if due is None
                                  else max(0.0, due - time.monotonic()))[0]
            if ready:
                if b"q" in os.read(woken, 4096):
                    return
            elif due is not None and state["due"] == due:
                state["due"] = None
                signal.pthread_kill(threading.main_thread().ident,
                                    signal.SIGINT)

    def handler(signum, frame):
        if state["left"]:  # one sent again as the block was left
            return
        if _drops_interrupts(frame):
            state["pending"] = True
            send_again_in(INTERRUPT_SOON_S)
            return
        state["pending"] = False
        if state["due"] is None:
            send_again_in(INTERRUPT_RETRY_S)
        raise KeyboardInterrupt

    sender = threading.Thread(target=worker, daemon=True,
                              name="interrupts_delivered")
    sender.start()
    signal.signal(signal.SIGINT, handler)

    def leave():
        # To the end, whatever is raised meanwhile: a Ctrl-C here finds
        # the run leaving the block already.
        while True:
            try:
                state["left"] = True
                os.write(wake, b"q")
                sender.join()  # a signal it sent is handled here
                signal.signal(signal.SIGINT, signal.default_int_handler)
                break
            except KeyboardInterrupt:
                continue
            except BlockingIOError:  # a full pipe: the worker reads it
                time.sleep(INTERRUPT_SOON_S)
        os.close(wake)  # Python's own handler is back: nothing writes
        os.close(woken)

    try:
        yield
    finally:
        leave()
    if state["pending"]:  # dropped where it arrived, as the block ended
        raise KeyboardInterrupt


def _drops_interrupts(frame):
    """Whether a KeyboardInterrupt raised in `frame` would be dropped: it
    or a frame it was called from runs a garbage collector's callback or a
    function of `DROPS_INTERRUPTS`."""
    callbacks = {getattr(c, "__code__", None) for c in gc.callbacks}
    while frame is not None:
        code = frame.f_code
        if code in callbacks or (os.path.basename(code.co_filename),
                                 code.co_name) in DROPS_INTERRUPTS:
            return True
        frame = frame.f_back
    return False


def _run_with_policy(run, args):
    """`run(args)` under the precision policy `args` asks for, with a core
    left to the tf.data pipeline where `args.leave_a_core`."""
    import keras

    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if args.mixed_precision else "float32")
    try:
        with (cores_for_the_pipeline() if args.leave_a_core
              else contextlib.nullcontext()):
            run(args)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


@contextlib.contextmanager
def cores_for_the_pipeline():
    """On the torch backend, torch computes on one CPU thread fewer (at
    least one) inside the block, and on as many as before after it.

    A tf.data pipeline prepares the next batches on threads of its own
    while the model trains. torch's CPU threads take every core and wait
    for work by spinning, so the pipeline's threads got no core: on two
    cores, `digits_resnet` on torch took 57 s (under a profiler, half of
    its time went to waiting for the next batch), and 42 s with one torch
    thread (`snapshot_ensemble` 44 s and 35 s). TensorFlow and JAX keep
    their threads: one fewer made a tensorflow run slower (40 s against 32
    s), and warm jax runs took 41-61 s either way, as the machine's load
    moved. A recipe fed from NumPy keeps them too (`diabetes_risk` took 29
    s either way).

    It pays where the training step is light beside the pipeline, as on
    8x8 digits. Where the step is heavy, torch needs the cores more than
    the pipeline does: `bench/pipeline.py`'s small CNN on 32x32x3 images,
    batch 128, ran 12.0 steps/s on torch's two threads and 9.4 on one. So
    `cifar10_resnet` keeps every thread, and so does `tune_digits`: 95 s
    with two threads and 90 s with one (seed 0, one run each), within the
    machine's noise, where its trials' building and compiling dominate.
    """
    import keras

    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads - 1))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Timer:
    """Wall time since creation, in seconds."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.start
