"""Histograms of weights and gradients, for TensorBoard and as pictures."""

import collections
import copy
import hashlib
import json
import os
import re
import time
import warnings

import keras
import numpy as np
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary

from kerastrain._validation import check_bool, check_int, check_path
from kerastrain.callbacks._event_file import EventFile
from kerastrain.callbacks._gradients import GradientFunction, unique_paths
from kerastrain.io import new_figure, save_figure

PERCENTILES = (0, 5, 25, 50, 75, 95, 100)
BINS = 30
# In `log_dir`, beside the event files: the pictures' rows, one JSON line
# per logged step, and a line where each `fit` starts.
ROWS_FILE = "weight_percentiles.jsonl"
# Attributes that live for one `fit` and are not copied.
_PER_FIT = ("_writer", "_gradient_fn", "_initial")


def histogram(tag, values):
    """A TensorBoard histogram summary of `values`, binned by NumPy.

    Args:
        tag: The summary's name, e.g. `"weights/dense/kernel"`.
        values: An array of finite numbers, at least one.

    Returns:
        A `Summary.Value` holding a `HistogramProto`.
    """
    values = np.asarray(values, dtype="float64").ravel()
    counts, edges = np.histogram(values, bins=BINS)
    proto = HistogramProto(
        min=float(values.min()), max=float(values.max()),
        num=float(values.size), sum=float(values.sum()),
        sum_squares=float(np.dot(values, values)),
        bucket_limit=edges[1:].tolist(), bucket=counts.tolist())
    return Summary.Value(tag=tag, histo=proto)


def scalar(tag, value):
    """A TensorBoard scalar summary: `Summary.Value(tag, simple_value)`."""
    return Summary.Value(tag=tag, simple_value=float(value))


class WeightHistograms(keras.callbacks.Callback):
    """Writes histograms of every trainable weight, and of its gradient, to
    TensorBoard, on any backend.

    Every `freq` epochs (and once before training, at the step of the
    first epoch, if the model is built), each trainable variable
    becomes a TensorBoard histogram `weights/<path>`; with `gradients=True`
    the gradient of the compiled loss on a fixed probe batch becomes
    `gradients/<path>`, and the gradient norm of each layer a scalar
    `gradient_norm/<layer path>`: the place to see vanishing or exploding
    gradients. Keras' own `TensorBoard(histogram_freq=...)` writes weight
    histograms only on the TensorFlow backend and no gradients. Once
    weights or gradients hold NaN or infinity, the histograms count only
    their finite values (a warning says how many were not; the norms show
    NaN), so the run that diverges is still logged up to its end.

    With `plot=True`, at the end of training a PNG per weight matrix (or
    tensor: kernels, embeddings; not biases or norm scales) shows
    how its weight distribution moved across epochs (median, 25-75% and
    5-95% bands, extremes): the "weights during learning" picture. A
    `fit` that continues an earlier one with the same callback
    (`initial_epoch`, or a resume from `BackupAndRestore`) extends the
    picture; one that starts again at epoch 0 draws it anew. A new
    callback (a resume in a new process) draws from the epoch it starts
    at, and with the rows that the runs before it logged in `log_dir`
    before that epoch (`weight_percentiles.jsonl`: a line per logged
    step, appended as it is logged, and a line where each `fit` starts),
    so a resumed run's picture covers the whole run (the rows, as the
    TensorBoard tags, are keyed by the weights' paths, which begin with
    the model's name: name the model, since Keras numbers unnamed ones
    per process). In TensorBoard, and
    in that file, each `fit` marks where it starts, so the epochs an
    interrupted run logged past its last backup, or a run started over,
    give way to the new ones instead of showing twice.

    The event files hold TensorBoard's protocol buffers, written by
    TensorFlow's record writer (TensorBoard's own writer checksums them in
    pure Python, about 4 ms per epoch here), histograms binned by NumPy
    (no TensorFlow op runs);
    the gradient is computed outside the train step with the backend's
    autodiff, compiled once per `fit` on JAX and TensorFlow.

    Cost (`bench/callbacks.py`, a small ResNet on two CPU cores): about
    1.2-1.7 s per `fit` (the PNGs, 0.06-0.13 s each, and tracing the probe
    gradient: 0.3 s on TensorFlow; on JAX 0.2 s, and XLA's compilation, a
    further 1.2 s, runs on a worker thread beside the first epoch, whose
    end logs the initial weights) plus 30-40 ms per logged epoch, most of
    it the probe's forward and backward pass and the histograms. On
    sub-second epochs, raise `freq` or pass `plot=False`.

    Args:
        log_dir: Folder for the event files (one per run: give each
            KerasTuner trial its own) and the `plots/` subfolder.
        freq: Every how many epochs, >= 1.
        gradients: Whether to write gradient histograms and norms.
        plot: Whether to draw the PNGs at the end of training.
        probe: A fixed batch `(x, y)` on which the gradients are computed;
            required with `gradients=True`.

    Example:

    >>> import numpy as np
    >>> x, y = np.zeros((8, 4), "float32"), np.zeros((8,), "int32")
    >>> callback = WeightHistograms("logs/run1", probe=(x, y))
    """

    def __init__(self, log_dir, freq=1, gradients=True, plot=True,
                 probe=None):
        super().__init__()
        self.log_dir = check_path("log_dir", log_dir)
        self.freq = check_int("freq", freq, min_value=1)
        self.gradients = check_bool("gradients", gradients)
        self.plot = check_bool("plot", plot)
        if self.gradients and (not isinstance(probe, (tuple, list))
                               or len(probe) != 2 or probe[0] is None
                               or probe[1] is None):
            raise ValueError(
                "Argument `probe` must be a fixed batch `(x, y)` when "
                "gradients=True (the gradient histograms are computed on "
                "it); pass one, or gradients=False. Received: "
                f"probe={type(probe).__name__}")
        # As NumPy: a TensorFlow tensor is no input to JAX's step, and a
        # backend's tensor could pin its device memory. Keras' conversion
        # detaches a torch tensor that requires gradients (a teacher's
        # output), which NumPy's refuses.
        self.probe = None if probe is None else tuple(
            keras.tree.map_structure(keras.ops.convert_to_numpy, part)
            for part in probe)
        self._writer = self._initial = None
        self.percentiles = {}  # weight path: percentile rows, one per step
        self._steps = {}  # weight path: the steps of those rows

    def __deepcopy__(self, memo):
        # KerasTuner copies callbacks for each trial. The event file and
        # the compiled probe gradient belong to one `fit` (and neither
        # copies); the copy makes its own in its `fit`.
        duplicate = self.__class__.__new__(self.__class__)
        memo[id(self)] = duplicate
        for key, value in vars(self).items():
            setattr(duplicate, key, None if key in _PER_FIT
                    else copy.deepcopy(value, memo))
        return duplicate

    def on_train_begin(self, logs=None):
        if self._writer is not None:  # a `fit` that was interrupted
            self._write_initial()  # in its first epoch: into its file
            self._writer.close()
        self._initial = None  # (step, GradientState) not logged yet
        self._writer = EventFile(self.log_dir)
        self._gradient_fn = (GradientFunction(self.model) if self.gradients
                             else None)
        self._warned = False
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        # The weights before training, logged at the first epoch's start:
        # after a backup's restore, and at the step a resumed or continued
        # `fit` (`initial_epoch`) starts from. On TensorFlow, `fit` builds
        # a model without an `Input` only in its first step: its first
        # histograms then come after the first epoch.
        if not self._started:
            self._started = True
            if self.plot and not self._steps:
                self._read_rows()  # a new callback: a resume, maybe
            self._forget_from(epoch)
            self._append_rows({"start": epoch})
            self._writer.start_session(epoch)
            if not self.model.built:
                return
            if self.gradients and self._probe_gradient(
                    self._gradient_fn.start):
                # Compiling beside the first epoch (JAX): the gradients
                # of these weights are logged at its end.
                self._initial = (epoch, self._gradient_fn.state())
            else:
                self._write(step=epoch)

    def _probe_gradient(self, function, **kwargs):
        """`function(*probe, **kwargs)`, a failure named as the probe's:
        a batch that does not fit the model fails deep in the backend."""
        try:
            return function(*self.probe, **kwargs)
        except Exception as error:  # noqa: BLE001 - re-raised, named
            shapes = keras.tree.map_structure(np.shape, self.probe)
            said = " ".join(str(error).split())  # its end says the most
            said = said if len(said) <= 600 else f"...{said[-600:]}"
            raise ValueError(
                f"Argument `probe` does not fit the model: the gradient of "
                f"the compiled loss on it failed ({type(error).__name__}: "
                f"{said}). Received: probe of shapes {shapes} (x, y)"
            ) from error

    def _forget_from(self, step):
        """Drops the plot's rows from `step` on: a `fit` continuing an
        earlier one (`initial_epoch`) or resumed from a backup extends its
        picture, one starting over at epoch 0 replaces it."""
        for path in list(self._steps):
            keep = sum(s < step for s in self._steps[path])
            del self._steps[path][keep:], self.percentiles[path][keep:]
            if not keep:
                del self._steps[path], self.percentiles[path]

    def _rows_path(self):
        return os.path.join(self.log_dir, ROWS_FILE)

    def _append_rows(self, record):
        """Appends `record` as a line of the rows file. A crash mid-line
        leaves a last line that `_read_rows` skips; the next record starts
        a line of its own after it, not the rest of it."""
        if not self.plot:
            return
        os.makedirs(self.log_dir, exist_ok=True)
        with open(self._rows_path(), "a+b") as f:
            line = json.dumps(record).encode() + b"\n"
            if f.tell():
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = b"\n" + line
            f.write(line)

    def _read_rows(self):
        """Replays the rows file, as the callbacks that wrote it kept
        their rows: each `fit`'s start drops the rows from its epoch on."""
        try:
            with open(self._rows_path()) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # cut short by a crash
            if "start" in record:
                self._forget_from(record["start"])
                continue
            for path, row in record["rows"].items():
                self._add_row(path, record["step"], np.array(row))

    def _add_row(self, path, step, row):
        """Adds the percentiles `row` of weight `path` at `step` to the
        pictures' rows."""
        self.percentiles.setdefault(path, []).append(row)
        self._steps.setdefault(path, []).append(step)

    def on_epoch_end(self, epoch, logs=None):
        self._write_initial()
        if (epoch + 1) % self.freq == 0:
            self._write(step=epoch + 1)

    def on_train_end(self, logs=None):
        self._write_initial()  # unless the first epoch's end did
        self._writer.close()
        self._writer = self._gradient_fn = None
        if self.plot:
            self._plot()

    def _write_initial(self):
        if self._initial is not None:
            step, state = self._initial
            self._initial = None
            self._write(step, state)

    def _write(self, step, state=None):
        """Logs the weights (or those `state` holds, a `GradientState`)
        and their gradients at `step`."""
        if state:
            paths, values = state.paths, state.trainable
        else:
            variables = self.model.trainable_variables
            paths = unique_paths(variables)
            values = [np.asarray(keras.ops.convert_to_numpy(v))
                      for v in variables]
        grads = (self._probe_gradient(self._gradient_fn, state=state)
                 if self.gradients else [])
        summaries, rows = [], {}
        for path, value in zip(paths, values):
            finite = self._finite(f"weights/{path}", value, step)
            if finite.size:
                summaries.append(histogram(f"weights/{path}", finite))
            if value.ndim >= 2:  # kernels, embeddings
                rows[path] = (np.percentile(finite, PERCENTILES)
                              if finite.size
                              else np.full(len(PERCENTILES), np.nan))
                self._add_row(path, step, rows[path])
        self._append_rows({"step": step, "rows": {
            path: row.tolist() for path, row in rows.items()}})
        norms = {}
        for path, grad in zip(paths, grads):
            finite = self._finite(f"gradients/{path}", grad, step)
            if finite.size:
                summaries.append(histogram(f"gradients/{path}", finite))
            layer = path.rsplit("/", 1)[0]
            norms[layer] = norms.get(layer, 0.0) + float(np.sum(
                np.square(grad, dtype="float64")))
        summaries += [scalar(f"gradient_norm/{layer}", np.sqrt(square))
                      for layer, square in norms.items()]
        self._writer.add_event(Event(wall_time=time.time(), step=step,
                                     summary=Summary(value=summaries)))
        self._writer.flush()

    def _finite(self, tag, values, step):
        """The finite entries of `values`, warning once per `fit` when
        some are not."""
        values = np.asarray(values).ravel()
        finite = values[np.isfinite(values)]
        if finite.size < values.size and not self._warned:
            self._warned = True
            warnings.warn(
                f"WeightHistograms: {values.size - finite.size} of "
                f"{values.size} values of {tag} are NaN or infinite at step "
                f"{step}; the histograms count only finite values from now "
                "on (keras.callbacks.TerminateOnNaN stops such a run).",
                stacklevel=2)
        return finite

    def _plot(self):
        folder = os.path.join(self.log_dir, "plots")
        os.makedirs(folder, exist_ok=True)
        names = _file_names(self.percentiles)
        # One figure for every layer, its data replaced: a new figure's
        # axes build their ticks anew, and the title's automatic place
        # searched the axes' extent, together a third of each picture.
        figure, ax = new_figure(figsize=(6, 3.6))
        ax.set_xlabel("epoch")
        ax.set_ylabel("weight")
        ax.grid(alpha=0.3)
        # Laid out by hand: matplotlib's tight bounding box took a third
        # of the time.
        figure.subplots_adjust(left=0.16, right=0.97, bottom=0.14,
                               top=0.9)
        for path, rows in self.percentiles.items():
            rows, epochs = np.array(rows), self._steps[path]
            # The limits come from this layer's data alone.
            ax.ignore_existing_data_limits = True
            drawn = [ax.fill_between(epochs, rows[:, low], rows[:, high],
                                     alpha=alpha, color="tab:blue",
                                     label=label)
                     for low, high, alpha, label in (
                         (0, 6, 0.12, "min-max"), (1, 5, 0.25, "5-95%"),
                         (2, 4, 0.45, "25-75%"))]
            drawn += ax.plot(epochs, rows[:, 3], color="tab:blue",
                             label="median")
            ax.set_title(path, y=1.0)  # a fixed place: no search
            # A fixed corner: the "best" place searched the data.
            legend = ax.legend(fontsize="small", loc="upper left")
            save_figure(figure, os.path.join(folder, f"{names[path]}.png"),
                        bbox_inches=None)
            for artist in (*drawn, legend):
                artist.remove()


def _file_names(paths):
    """A file name for each weight path: the path with `/` (and any
    character unsafe in a file name) as `_`, and where two paths give the
    same name (`blk/fc/kernel`, `blk_fc/kernel`), a short hash of the path
    after it, so that no picture overwrites another."""
    names = {path: re.sub(r"[^A-Za-z0-9_.-]+", "_", path) for path in paths}
    taken = collections.Counter(names.values())
    return {path: name if taken[name] == 1 else
            f"{name}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"
            for path, name in names.items()}
