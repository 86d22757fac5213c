"""Cost of `CheckpointEarlyStopping(backup_dir=...)`'s backup per epoch,
as ratios taken in one run on the current backend, for the model of the
default recipe (`digits_resnet`: a ResNet-8 of width 32 with DropPath,
kerastrain's SGD on `OneCycle`, 1,257 training digits in batches of 64):

- a backup as the callback writes it at each epoch's end (the weights
  file with the model's and the optimizer's variables packed, the epoch,
  the random states, and the early-stopping state) / a training epoch;
- a backup whose variables Keras' `save_weights` writes instead, as
  kerastrain's did until 2026-12-07 / a training epoch;
- the packed backup / the `save_weights` one.

Each backup time is the mean of `--backups` backups, best of 3
interleaved runs; the epoch the best of 3 epochs of `fit_passes`.

Run: KERAS_BACKEND=jax python -m bench.backup [--backups 30]
"""

import argparse
import json
import os
import shutil
import tempfile
import time

import h5py
import keras

from bench.timing import interleaved_best
from kerastrain.callbacks import CheckpointEarlyStopping
from kerastrain.callbacks import checkpoint_early_stopping as module
from kerastrain.data import fit_passes, image_pipeline, load, split
from kerastrain.io import atomic_path, cache_keras_saving_skipsets, write_text
from kerastrain.models import resnet
from kerastrain.optimizers import SGD
from kerastrain.schedules import OneCycle


def save_weights_backup(backup):
    """`_Backup._save_model` until 2026-12-07, for the `_Backup` `backup`:
    the variables by Keras' `save_weights`, the epoch and the random
    states added to its file, and Keras' `training_metadata.json`, each
    file's previous version copied aside first."""
    os.makedirs(backup.backup_dir, exist_ok=True)
    for source, copy in (
            (backup._weights_path, backup._prev_weights_path),
            (backup._training_metadata_path,
             backup._prev_training_metadata_path)):
        if os.path.exists(source):
            with atomic_path(copy) as tmp:
                shutil.copyfile(source, tmp)
    cache_keras_saving_skipsets()
    with atomic_path(backup._weights_path) as tmp:
        backup.model.save_weights(tmp, overwrite=True)
        with h5py.File(tmp, "a") as f:
            f.attrs[module.EPOCH_ATTRIBUTE] = backup._current_epoch
            module._write_random_states(f, backup.model)
    write_text(json.dumps({"epoch": backup._current_epoch,
                           "batch": backup._last_batch_seen}),
               backup._training_metadata_path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backups", type=int, default=30)
    args = parser.parse_args()
    # The checkpoint's files go where they are removed at the end (a
    # temporary folder used to stay behind).
    with tempfile.TemporaryDirectory() as folder:
        measure(args, folder)


def measure(args, folder):
    """Times the backups in `folder`, against an epoch, and prints the
    ratios."""
    keras.utils.set_random_seed(0)
    train, val, _ = split(*load("digits"), val_size=0.15, test_size=0.15,
                          seed=0)
    model = resnet((8, 8, 1), 10, depth=8, width=32, drop_path_rate=0.1,
                   seed=0)
    one_cycle = OneCycle(0.1, 1000)
    model.compile(SGD(one_cycle, momentum=one_cycle.momentum_schedule,
                      nesterov=True),
                  keras.losses.CategoricalCrossentropy(from_logits=True))
    options = dict(batch_size=64, num_classes=10, normalize=False)
    training = image_pipeline(*train, seed=0, drop_remainder=True,
                              **options)
    validation = image_pipeline(*val, training=False,
                                **{**options, "batch_size": len(val[0])})
    checkpoint = CheckpointEarlyStopping(
        os.path.join(folder, "best.keras"), patience=99,
        backup_dir=os.path.join(folder, "backup"))
    # A fit with the checkpoint builds everything a backup holds, and
    # leaves its epoch logs for the state file.
    fit_passes(model, training, validation, epochs=2, verbose=0,
               callbacks=[checkpoint])
    checkpoint.set_model(model)

    def epoch():
        start = time.perf_counter()
        fit_passes(model, training, validation, epochs=1, verbose=0)
        return time.perf_counter() - start

    def backups(write):
        def measure():
            start = time.perf_counter()
            for i in range(args.backups):
                checkpoint._backup._current_epoch = i
                checkpoint._write_state(i + 1)
                write(checkpoint._backup)
            return (time.perf_counter() - start) / args.backups
        return measure

    epoch_s, packed, keras_s = interleaved_best(
        [epoch, backups(module._Backup._save_model),
         backups(save_weights_backup)])
    print(f"{keras.backend.backend()}: epoch {epoch_s:.2f} s; backup, "
          f"packed {packed * 1e3:.1f} ms, by save_weights "
          f"{keras_s * 1e3:.1f} ms")
    print(f"packed backup / epoch: {packed / epoch_s:.3f}")
    print(f"save_weights backup / epoch: {keras_s / epoch_s:.3f}")
    print(f"packed / save_weights: {packed / keras_s:.2f}")


if __name__ == "__main__":
    main()
