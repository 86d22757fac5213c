"""Callbacks that report what each trial's copy of them saw.

KerasTuner deep-copies the callbacks given to `search` for every trial, so
the copies cannot be reached afterwards; these append what they saw to a
list on their class (class attributes are not copied), themselves
included: a copy kept alive keeps its own `id`, where a collected one's
could be reused by the next trial's. Clear the lists with `reset()` before
a search. Runs come in the order of the trials.
"""

import keras
import numpy as np

from kerastrain.callbacks import (CheckpointEarlyStopping, LRFinder,
                                  SnapshotEnsemble)


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


class Recorder(keras.callbacks.Callback):
    """The trial's compiled model and what `fit` ran."""

    runs = []

    def on_train_begin(self, logs=None):
        self.first_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch

    def on_train_end(self, logs=None):
        optimizer = self.model.optimizer
        Recorder.runs.append({
            "callback": self,
            "first_epoch": self.first_epoch,
            "epochs": self.params["epochs"],
            "steps": self.params["steps"],
            "optimizer": optimizer,
            # The object itself, not the value `optimizer.learning_rate`
            # evaluates to on some backends.
            "learning_rate": optimizer._learning_rate,
            "updates": int(to_numpy(optimizer.iterations)),
            "loss": self.model.loss,
            "layers": {type(layer).__name__ for layer in self.model.layers},
            "model": self.model,
        })


class CheckpointSpy(CheckpointEarlyStopping):
    runs = []

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        CheckpointSpy.runs.append({
            "callback": self, "filepath": self.filepath,
            "best": float(self.best), "best_epoch": self.best_epoch,
            "wait": self.wait})


class SnapshotSpy(SnapshotEnsemble):
    runs = []

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        SnapshotSpy.runs.append({
            "callback": self, "directory": self.directory,
            "snapshots": self.snapshots})


class LRFinderSpy(LRFinder):
    runs = []

    def on_train_begin(self, logs=None):
        self._before = [to_numpy(v).copy() for v in self.model.weights]
        super().on_train_begin(logs)

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        after = [to_numpy(v) for v in self.model.weights]
        LRFinderSpy.runs.append({
            "callback": self, "result": self.result,
            "restored": all(np.array_equal(a, b)
                            for a, b in zip(self._before, after))})


def reset():
    for spy in (Recorder, CheckpointSpy, SnapshotSpy, LRFinderSpy):
        spy.runs = []
