import copy
import os

import keras
import numpy as np
import pytest

from kerastrain.callbacks import SnapshotEnsemble
from tests.support import to_numpy

CYCLE = 5  # steps per cycle: one epoch of 80 samples in batches of 16


def make_model(cycle=CYCLE):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu"),
                              keras.layers.Dense(3)])
    schedule = keras.optimizers.schedules.CosineDecayRestarts(
        0.05, first_decay_steps=cycle, t_mul=1.0, m_mul=1.0)
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32") + (x[:, 1] > 1)


def test_saves_one_snapshot_per_cycle_and_keeps_the_last(tmp_path):
    model, (x, y) = make_model(), data()
    callback = SnapshotEnsemble(CYCLE, tmp_path, keep=3)
    model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0,
              callbacks=[callback])
    names = sorted(os.listdir(tmp_path))
    assert names == ["snapshot_0002.keras", "snapshot_0003.keras",
                     "snapshot_0004.keras"]  # and no temporary file left
    assert callback.snapshots == [str(tmp_path / n) for n in names]
    last = keras.saving.load_model(callback.snapshots[-1])
    for saved, current in zip(last.weights, model.weights):
        np.testing.assert_array_equal(to_numpy(saved), to_numpy(current))
    before_last = keras.saving.load_model(callback.snapshots[-2])
    assert not np.array_equal(to_numpy(before_last.weights[0]),
                              to_numpy(last.weights[0]))

    # A second fit continues the numbering from the optimizer's count.
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
              callbacks=[callback])
    assert [os.path.basename(p) for p in callback.snapshots] == [
        "snapshot_0004.keras", "snapshot_0005.keras", "snapshot_0006.keras"]


def test_snapshots_fall_mid_epoch_and_survive_deepcopy(tmp_path):
    model, (x, y) = make_model(cycle=3), data()
    callback = copy.deepcopy(SnapshotEnsemble(3, tmp_path))
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])
    # 10 steps: cycles end at steps 3, 6 and 9.
    assert len(callback.snapshots) == 3


def test_warns_when_the_schedule_restarts_elsewhere(tmp_path):
    model, (x, y) = make_model(cycle=7), data()
    with pytest.warns(UserWarning, match="restarts after 7 steps"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0,
                  callbacks=[SnapshotEnsemble(CYCLE, tmp_path)])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"cycle_steps": 0}, ValueError, "cycle_steps"),
    ({"cycle_steps": 2.5}, TypeError, "cycle_steps"),
    ({"keep": 0}, ValueError, "keep"),
    ({"directory": None}, TypeError, "directory"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SnapshotEnsemble(**{"cycle_steps": 5, **kwargs})
