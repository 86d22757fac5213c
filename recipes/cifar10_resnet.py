"""CIFAR-10 ResNet: ResNet-20 or -56 on CIFAR-10 from TensorFlow Datasets,
one-cycle with cycling momentum, pad-crop and flip, mixup and stochastic
depth.

The classic setup of Smith & Topin's super-convergence paper (ResNet-56
reaches 92.4% with one-cycle in about 10k iterations, against 91.2% in 80k
with a step schedule): CIFAR-10's 50,000 training images (5,000 of them
held out for validation, stratified) and 10,000 test images, per-channel
standardization inside the model (so `model.keras` takes images in
[0, 1]), shifts of up to 4 pixels with zero fill (pad-and-crop) and
horizontal flips and mixup in the tf.data pipeline, kerastrain's SGD with
Nesterov momentum on `OneCycle`, DropPath, CheckpointEarlyStopping. The
peer is a logistic regression on raw pixels (a subset of 10,000 training
images), measured on the same test split.

The data set is read from `--data-dir` (TFDS's folder layout; default
~/tensorflow_datasets) and never downloaded unless `--download` is given.
Use `--mixed-precision` on a GPU. The training is backed up at every
epoch: an interrupted run, started again with the same flags and
`--resume`, goes on from its last epoch backed up.

Run: python -m recipes.cifar10_resnet [--depth 20] [--epochs 30] [--download]
     [--resume]
"""

import sys

from recipes import common

NAME = "cifar10_resnet"
VALIDATION = 5000
QUICK_SAMPLES = 256
PEER_SAMPLES = 10000
# Keras' weight decay is decoupled (w -= lr * wd * w each step); PyTorch's
# SGD weight_decay=5e-4 enters the momentum buffer and so shrinks by about
# lr * 5e-4 / (1 - 0.9) per step: 5e-3 here is that.
MAX_LR, WEIGHT_DECAY, MIXUP_ALPHA, DROP_PATH = 0.2, 5e-3, 0.2, 0.1


def add_arguments(parser):
    # kerastrain.models.valid_depths(up_to=110), without importing Keras
    # before --backend is read.
    depths = list(range(8, 111, 6))
    parser.add_argument("--depth", type=int, default=20, choices=depths,
                        metavar="DEPTH", help="ResNet depth, 6n+2: "
                        f"{', '.join(map(str, depths))} (default 20)")
    parser.add_argument("--download", action="store_true",
                        help="let TFDS download CIFAR-10 (about 160 MB) "
                        "into --data-dir if it is not there")


def load_data(args):
    """`(train, val, test)` pairs of uint8 images and integer labels."""
    from sklearn.model_selection import train_test_split

    from kerastrain.data import load

    try:
        x, y = load("tfds:cifar10", "train", args.data_dir, args.download)
        x_test, y_test = load("tfds:cifar10", "test", args.data_dir,
                              args.download)
    except FileNotFoundError:
        raise common.RecipeError(
            "CIFAR-10 is not in "
            f"{args.data_dir or 'the TFDS folder (~/tensorflow_datasets)'}"
            ", or not completely. Pass --data-dir pointing at a TensorFlow "
            "Datasets folder that holds cifar10, or --download to fetch it "
            "(needs internet; remove a partial copy first)."
        ) from None
    except Exception as error:  # TFDS's download fails in many ways
        if not args.download:
            raise
        # No network, a module TFDS's download needs, a server's refusal:
        # each its own exception inside TFDS.
        raise common.RecipeError(
            "Downloading CIFAR-10 into "
            f"{args.data_dir or 'the TFDS folder (~/tensorflow_datasets)'}"
            f" failed: {type(error).__name__}: {error}. Check the internet "
            "connection and TensorFlow Datasets' installation, or pass "
            "--data-dir pointing at a folder that holds cifar10."
        ) from None
    if args.quick:
        x, y = x[:QUICK_SAMPLES + 64], y[:QUICK_SAMPLES + 64]
        x_test, y_test = x_test[:64], y_test[:64]
    validation = 64 if args.quick else VALIDATION
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=validation, random_state=args.seed,
        stratify=y if not args.quick else None)
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def build_model(depth, train_images, seed, width=16):
    """ResNet of `width` channels in its first stage behind a per-channel
    standardization fitted on the training images: the saved model takes
    images in [0, 1]."""
    import keras

    from kerastrain.data import channel_stats
    from kerastrain.models import resnet

    mean, std = channel_stats(train_images)
    inputs = keras.Input((32, 32, 3), name="images")
    standardize = keras.layers.Normalization(mean=mean, variance=std ** 2,
                                             name="standardize")
    net = resnet((32, 32, 3), num_classes=10, depth=depth, width=width,
                 drop_path_rate=DROP_PATH, seed=seed,
                 name=f"resnet{depth}")
    return keras.Model(inputs, net(standardize(inputs)), name=NAME)


def logistic_peer(train, test, seed):
    """Logistic regression on standardized raw pixels, fitted on up to
    10,000 training images: the floor any network should clear."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = train[0][:PEER_SAMPLES], train[1][:PEER_SAMPLES]
    peer = make_pipeline(StandardScaler(), LogisticRegression(
        max_iter=200, random_state=seed))
    peer.fit(x.reshape(len(x), -1) / 255.0, y)
    return float(peer.score(test[0].reshape(len(test[0]), -1) / 255.0,
                            test[1]))


def run(args):
    import keras

    keras.utils.set_random_seed(args.seed)
    train, val, test = load_data(args)
    model = build_model(args.depth, train[0], args.seed,
                        width=common.QUICK_WIDTH if args.quick else 16)
    print(f"{NAME}: {len(train[0])} train / {len(val[0])} validation / "
          f"{len(test[0])} test images, ResNet-{args.depth} with "
          f"{model.count_params():,} parameters, backend "
          f"{keras.backend.backend()}, policy "
          f"{keras.mixed_precision.global_policy().name}")
    history = common.fit_image_classifier(
        model, train, val, args, max_lr=MAX_LR, weight_decay=WEIGHT_DECAY,
        augment=("flip", "shift"), mixup_alpha=MIXUP_ALPHA)
    accuracy, predictions = common.report_classifier(
        NAME, model, history, test[0].astype("float32") / 255.0, test[1],
        args)
    peer = logistic_peer(train, test, args.seed)
    return common.finish(NAME, args, {
        "test_accuracy": accuracy,
        "depth": args.depth,
        "baselines": {"logistic_regression_pixels_accuracy": peer,
                      "smith_topin_resnet56_one_cycle_accuracy": 0.924},
        "epochs_run": len(history.epoch),
        "steps": len(history.epoch) * common.steps_per_epoch(
            args, len(train[0]), whole_batches=True),
    }, [("test accuracy", accuracy), ("logistic regression peer", peer),
        ("epochs", len(history.epoch))])


def main(argv=None):
    return common.run_main(NAME, __doc__, run, argv, tf_data=True,
                           resumable=True, epochs=30, batch_size=128,
                           data_dir=True,
                           add_arguments=add_arguments)


if __name__ == "__main__":
    sys.exit(main())
