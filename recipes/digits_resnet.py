"""Digits ResNet, the default recipe: a small ResNet on scikit-learn's 8x8
handwritten digits, offline, in about a minute on two CPU cores.

Load the 1,797 digits that ship with scikit-learn, hold out a stratified
15% test split (exactly `train_test_split(x, y, test_size=0.15,
stratify=y, random_state=seed)`, so any peer can be compared on it) and a
15% validation split, train a ResNet-8 with kerastrain's residual blocks
and stochastic depth behind small random shifts and rotations, with AdamW
and a warmup-cosine schedule, keep the best epoch on validation, evaluate
on the test split beside an RBF SVC (the strongest scikit-learn peer), and
write the model, metrics and plots to `saved_models/digits_resnet/`.

Run: python -m recipes.digits_resnet [--epochs 40] [--seed 0] [--backend jax]
"""

import sys

from recipes import common

NAME = "digits_resnet"
QUICK_SAMPLES = 300
DEPTH, WIDTH = 8, 32


def load_split(seed):
    """Stratified 70/15/15 split of the digits, pixels scaled to [0, 1]."""
    from kerastrain.data import load, split

    return split(*load("digits"), val_size=0.15, test_size=0.15, seed=seed)


def svc_accuracy(train, val, test):
    """The scikit-learn peer: an RBF SVC (C=10, gamma=0.001) on raw 0-16
    pixels, trained on everything but the test split."""
    import numpy as np
    from sklearn.svm import SVC

    x = np.concatenate([train[0], val[0]]).reshape(-1, 64) * 16
    y = np.concatenate([train[1], val[1]])
    svc = SVC(C=10, gamma=0.001).fit(x, y)
    return float(svc.score(test[0].reshape(-1, 64) * 16, test[1]))


def train_dataset(x, y, batch_size, seed):
    """Shuffled batches with random shifts (up to one pixel) and small
    rotations. Augmentation runs in tf.data, per batch, on the CPU beside
    the model: Keras' image layers inside a compiled JAX step are several
    times slower on CPUs than here, and tf.data feeds every backend."""
    import keras
    import tensorflow as tf

    # Keras' preprocessing layers switch to TensorFlow ops inside tf.data
    # one by one (a keras.Sequential of them does not).
    shift = keras.layers.RandomTranslation(0.125, 0.125,
                                           fill_mode="constant", seed=seed)
    rotate = keras.layers.RandomRotation(0.03, fill_mode="constant",
                                         seed=seed)

    def augment(images, labels):
        return rotate(shift(images, training=True), training=True), labels

    return (tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
            .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def build_model(seed, total_steps):
    import keras

    from kerastrain.models import resnet

    model = resnet((8, 8, 1), num_classes=10, depth=DEPTH, width=WIDTH,
                   drop_path_rate=0.1, seed=seed, name=NAME)
    warmup = max(1, total_steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total_steps - warmup, warmup_target=3e-3,
        warmup_steps=warmup)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    return model


def run(args):
    import os

    import keras
    import numpy as np

    import kerastrain.io

    timer = common.Timer()
    keras.utils.set_random_seed(args.seed)
    train, val, test = load_split(args.seed)
    if args.quick:
        train = (train[0][:QUICK_SAMPLES], train[1][:QUICK_SAMPLES])
    steps_per_epoch = -(-len(train[0]) // args.batch_size)
    model = build_model(args.seed, args.epochs * steps_per_epoch)
    print(f"{NAME}: {len(train[0])} train / {len(val[0])} validation / "
          f"{len(test[0])} test digits, {model.count_params():,} "
          f"parameters, backend {keras.backend.backend()}")
    history = model.fit(
        train_dataset(*train, args.batch_size, args.seed),
        validation_data=val, epochs=args.epochs, verbose=2,
        shuffle=False,  # the dataset reshuffles itself every epoch
        callbacks=[keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=15, restore_best_weights=True)])

    test_loss, test_accuracy = model.evaluate(*test, verbose=0)
    predictions = np.argmax(model.predict(test[0], verbose=0), axis=-1)
    svc = svc_accuracy(train, val, test)
    out = args.out
    kerastrain.io.save_model(model, os.path.join(out, "model.keras"))
    common.write_history(history, os.path.join(out, "history.csv"))
    common.plot_history(history, os.path.join(out, "learning_curves.png"))
    common.plot_confusion_matrix(
        test[1], predictions, os.path.join(out, "confusion_matrix.png"),
        f"{NAME}: test accuracy {test_accuracy:.2%}")
    return common.finish(NAME, args, {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "baselines": {"svc_rbf_c10_gamma0.001_accuracy": svc},
        "epochs_run": len(history.epoch),
    }, [("test accuracy", test_accuracy), ("SVC peer, same split", svc),
        ("epochs", len(history.epoch))], timer)


def main(argv=None):
    return common.run_main(NAME, __doc__, run, argv, epochs=40,
                           batch_size=64)


if __name__ == "__main__":
    sys.exit(main())
