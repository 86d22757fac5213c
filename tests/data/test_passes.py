import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastrain.data import fit_passes, image_pipeline
from kerastrain.models import resnet
from tests.support import ActivityLoss, Batches, Reconstructs


def digits_pipeline(seed, **options):
    rng = np.random.default_rng(0)
    images, labels = rng.random((40, 8, 8, 1), "float32"), np.arange(40) % 4
    return image_pipeline(images, labels, batch_size=16, num_classes=4,
                          augment=("shift", ("rotate", {"factor": 0.02})),
                          normalize=False, seed=seed, **options)


def compiled_model(**compile_options):
    model = resnet((8, 8, 1), 4, depth=8, width=4)
    model.compile("sgd", "categorical_crossentropy", **compile_options)
    return model


def test_fit_passes_reads_the_passes_a_fit_would_start_anew(monkeypatch):
    """What `fit_passes` gives `fit`: the repeated pipelines, whose
    batches are those of passes started anew, a pass per epoch, and a
    model whose compiled loss and metrics are built, so that `fit` starts
    no iterator of its own to build them (a dropped iterator of a
    repeated pipeline reads ahead, drawing beside the one that trains)."""
    given = {}

    def fit(self, x, **kwargs):
        given.update(kwargs, x=x, built=(self._compile_loss.built,
                                         self._compile_metrics.built))

    monkeypatch.setattr(keras.Model, "fit", fit)
    fit_passes(compiled_model(metrics=["accuracy"]),
               digits_pipeline(3, mixup_alpha=0.2),
               digits_pipeline(3, training=False))
    assert given["built"] == (True, True)
    # 40 images in batches of 16: two full batches and one of 8.
    assert given["steps_per_epoch"] == 3
    assert given["validation_steps"] == 3
    anew = digits_pipeline(3, mixup_alpha=0.2)
    passes = [batch for _ in range(3) for batch in anew]
    repeated = list(given["x"].take(len(passes)))
    assert [len(images) for images, _ in repeated] == [16, 16, 8] * 3
    for (images, labels), (again, labels_again) in zip(passes, repeated):
        np.testing.assert_array_equal(np.asarray(images), np.asarray(again))
        np.testing.assert_array_equal(np.asarray(labels),
                                      np.asarray(labels_again))
    # Each pass reshuffles: repetition does not replay the first.
    assert not np.array_equal(np.asarray(passes[0][0]),
                              np.asarray(passes[3][0]))
    validation = [np.asarray(images) for images, _ in
                  given["validation_data"].take(6)]
    for first, second in zip(validation[:3], validation[3:]):
        np.testing.assert_array_equal(first, second)


def test_fit_passes_goes_through_a_pass_per_epoch():
    batches = Batches()
    history = fit_passes(compiled_model(), digits_pipeline(0),
                         digits_pipeline(0, training=False), epochs=2,
                         shuffle=False, verbose=0, callbacks=[batches])
    assert batches.epochs == [dict(train=3, test=3)] * 2
    assert history.epoch == [0, 1]
    assert len(history.history["val_loss"]) == 2


def test_fit_passes_refuses_data_it_cannot_count_in_passes():
    model = compiled_model()
    train, validation = digits_pipeline(0), digits_pipeline(
        0, training=False)
    x = np.zeros((8, 8, 8, 1), "float32")
    with pytest.raises(TypeError, match=r"`x` must be a finite "
                       r"tf.data.Dataset.*Received: x of type ndarray"):
        fit_passes(model, x, validation)
    with pytest.raises(ValueError, match=r"`validation_data` .* infinite "
                       r"\(cardinality -1\)"):
        fit_passes(model, train, validation.repeat())
    unknown = train.filter(lambda images, labels: True)
    with pytest.raises(ValueError, match=r"`x` .* of unknown length"):
        fit_passes(model, unknown, validation)
    with pytest.raises(ValueError, match=r"`x` .* empty"):
        fit_passes(model, train.take(0), validation)
    with pytest.raises(ValueError, match=r"sets `steps_per_epoch`.* "
                       r"Received: steps_per_epoch=5"):
        fit_passes(model, train, validation, steps_per_epoch=5)
    with pytest.raises(ValueError, match=r"`steps_per_epoch` and "
                       r"`validation_steps`.*them"):
        fit_passes(model, train, validation, steps_per_epoch=5,
                   validation_steps=2)


@pytest.mark.parametrize("initial_epoch, expected", [
    (0, [("mixed", 2), ("plain", 3)]),
    # The pipeline in force at initial_epoch starts its first pass there.
    (1, [("mixed", 1), ("plain", 3)]),
    (3, [("plain", 3)]),
])
def test_pipelines_take_turns_each_from_its_first_pass(
        initial_epoch, expected, monkeypatch):
    """`{0: mixed, 2: plain}`: the batches of a fit of the mixed-up
    pipeline until epoch 2, then of one of the plain pipeline, each
    started anew (a pipeline built again from its seed gives them)."""
    given = {}

    def fit(self, x, **kwargs):
        given.update(kwargs, x=x)

    def build(name):
        return digits_pipeline(3, mixup_alpha=0.4) if name == "mixed" \
            else digits_pipeline(4)

    monkeypatch.setattr(keras.Model, "fit", fit)
    fit_passes(compiled_model(), {2: build("plain"), 0: build("mixed")},
               digits_pipeline(3, training=False),
               initial_epoch=initial_epoch, epochs=5)
    assert given["steps_per_epoch"] == 3
    want = [images for name, count in expected
            for images, _ in build(name).repeat(count)]
    got = [images for images, _ in given["x"].take(len(want))]
    assert [len(images) for images in got] == [16, 16, 8] * (len(want) // 3)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Mixed-up labels are soft; the plain ones one-hot.
    mixed = sum(count for name, count in expected if name == "mixed")
    labels = [np.asarray(y) for _, y in given["x"].take(len(want))]
    assert all(np.isin(y, (0, 1)).all() for y in labels[3 * mixed:])
    assert not any(np.isin(y, (0, 1)).all() for y in labels[:3 * mixed])


def test_pipelines_in_turn_are_checked_each(monkeypatch):
    evaluated = []
    model = compiled_model()
    monkeypatch.setattr(model, "evaluate",
                        lambda *a, **k: evaluated.append(a))
    validation = digits_pipeline(0, training=False)
    plain = digits_pipeline(0)
    for x, kwargs, error, match in [
            ({}, {}, ValueError, r"`x` must be a pipeline or a non-empty "
             r"dict \{epoch: pipeline\}"),
            ({-1: plain}, {}, ValueError,
             r"`x \(key -1\)` must be an integer >= 0"),
            ({0.5: plain}, {}, TypeError, r"`x \(key 0.5\)` must be an "
             "integer"),
            ({1: plain, 3: plain}, {"initial_epoch": 0}, ValueError,
             r"no pipeline for epoch 0, where the fit starts .* first key "
             r"is 1"),
            # Another number of batches per pass: steps_per_epoch is one.
            ({0: plain, 2: plain.take(2)}, {}, ValueError,
             r"one number of batches.*\{0: 3, 2: 2\}"),
            ({0: plain, 2: np.zeros((8, 8, 8, 1))}, {}, TypeError,
             r"`x\[2\]` must be a finite tf.data.Dataset"),
            ({0: plain, 2: plain.map(lambda x, y: x)}, {}, ValueError,
             r"`x\[2\]` must give \(inputs, targets\) batches"),
            # The stage in force at initial_epoch by its own key (the
            # message named x[3], a key x does not have).
            ({0: plain.map(lambda x, y: x), 5: plain},
             {"initial_epoch": 3, "epochs": 6}, ValueError,
             r"`x\[0\]` must give \(inputs, targets\) batches"),
            # Labels of 2 classes after 4: the fit trained on.
            ({0: plain, 2: plain.map(lambda x, y: (x, y[:, :2]))}, {},
             ValueError, r"pipelines must give batches of one kind"),
            # tf.data's TypeError named neither, after the evaluation.
            ({0: plain, 2: plain.map(lambda x, y: (
                tf.cast(x, "float64"), y))}, {}, ValueError,
             r"one kind.*x\[0\] gives .*float32.*x\[2\] gives .*float64"),
            ({0: plain, 2: plain.map(lambda x, y: ((x, x), y))}, {},
             ValueError, r"one kind \(structure")]:
        with pytest.raises(error, match=match):
            fit_passes(model, x, validation, **{"epochs": 3, "verbose": 0,
                                                **kwargs})
    assert not evaluated


def test_what_would_read_other_batches_than_a_pass_is_refused(tmp_path,
                                                              monkeypatch):
    """Keras reads whole executions from the repeated stream: at 2 steps
    per execution an epoch of 3 batches read 4, and each later epoch
    started further into its pass. Keras' own BackupAndRestore resumed the
    epoch, not the stream: the resumed epochs read the first stage."""
    evaluated = []
    train, validation = digits_pipeline(0), digits_pipeline(
        0, training=False)
    for per_execution, callbacks, match in [
            (2, [], r"steps_per_execution=2 must divide the batches of a "
             r"pass. Received: x with 3 and validation_data with 3"),
            (1, [keras.callbacks.BackupAndRestore(str(tmp_path))],
             r"cannot resume from Keras' BackupAndRestore.*"
             r"CheckpointEarlyStopping\(backup_dir=")]:
        model = keras.Sequential([keras.Input((8, 8, 1)),
                                  keras.layers.Flatten(),
                                  keras.layers.Dense(4)])
        model.compile("sgd", "categorical_crossentropy",
                      steps_per_execution=per_execution)
        monkeypatch.setattr(model, "evaluate",
                            lambda *a, **k: evaluated.append(a))
        with pytest.raises(ValueError, match=match):
            fit_passes(model, train, validation, epochs=2, verbose=0,
                       callbacks=callbacks)
    assert not evaluated


@pytest.mark.parametrize("model, kwargs, error, match", [
    # "'NoneType' object has no attribute 'evaluate'".
    (None, {}, TypeError, r"`model` must be a keras.Model. "
     r"Received: model=None"),
    # Keras' fit trained nothing, after an evaluation for nothing.
    ("model", {"epochs": 0}, ValueError, r"`epochs` must be an integer >= 1"),
    ("model", {"epochs": 2, "initial_epoch": 2}, ValueError,
     r"must leave an epoch to train \(initial_epoch < epochs\)"),
    # From inside Keras' trainer: "'float' object cannot be interpreted
    # as an integer".
    ("model", {"epochs": 1.5}, TypeError, r"`epochs` must be an integer"),
    ("model", {"epochs": True}, TypeError, r"`epochs` must be an integer"),
    ("model", {"initial_epoch": -1}, ValueError, r"`initial_epoch` must be"),
    # Keras' CallbackList: "'int' object has no attribute 'set_model'".
    ("model", {"callbacks": [5]}, TypeError,
     r"`callbacks` must hold `keras.callbacks.Callback` instances"),
    ("model", {"callbacks": Batches()}, TypeError,
     r"`callbacks` must be a list of callbacks, or None"),
])
def test_fit_passes_refuses_bad_arguments_before_it_evaluates(
        model, kwargs, error, match, monkeypatch):
    evaluated = []
    if model == "model":
        # Never trained: a small model, quick to build on every backend.
        model = keras.Sequential([keras.Input((8, 8, 1)),
                                  keras.layers.Flatten(),
                                  keras.layers.Dense(4)])
        model.compile("sgd", "categorical_crossentropy")
        monkeypatch.setattr(model, "evaluate",
                            lambda *a, **k: evaluated.append(a))
    with pytest.raises(error, match=match):
        fit_passes(model, digits_pipeline(0),
                   digits_pipeline(0, training=False), verbose=0, **kwargs)
    assert not evaluated


def test_batches_without_targets_are_refused_for_a_compiled_loss_only():
    """Keras' loss got None as its targets, deep in the first step."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((8, 4), "float32")
    labelled = tf.data.Dataset.from_tensor_slices((x, x[:, :2])).batch(4)
    bare = tf.data.Dataset.from_tensor_slices(x).batch(4)

    def model(loss):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile("sgd", loss)
        return model

    for name, train, validation in (("x", bare, labelled),
                                    ("validation_data", labelled, bare)):
        with pytest.raises(ValueError, match=(
                rf"`{name}` must give \(inputs, targets\) batches for the "
                r"model's compiled loss.*element_spec")):
            fit_passes(model("mse"), train, validation, verbose=0)

    # Without a compiled loss, batches of inputs alone train (add_loss),
    # and so do they a compiled loss whose `compute_loss` makes its targets
    # (refused before, where `model.fit` trains it on every backend).
    unsupervised = keras.Sequential([keras.Input((4,)),
                                     keras.layers.Dense(2), ActivityLoss()])
    unsupervised.compile("sgd")
    autoencoder = Reconstructs([keras.Input((4,)), keras.layers.Dense(4)])
    autoencoder.compile("sgd", "mse")
    for model in (unsupervised, autoencoder):
        history = fit_passes(model, bare, bare, epochs=2, verbose=0)
        assert np.isfinite(history.history["loss"]).all()


def test_fit_passes_takes_callbacks_as_keras_fit_documents_them():
    # A tuple, or Keras' own CallbackList (made with the History that
    # `fit` returns, for the model), as `fit` takes them.
    for wrap in (tuple, keras.callbacks.CallbackList):
        model, batches = compiled_model(), Batches()
        callbacks = (tuple([batches]) if wrap is tuple else wrap(
            [batches], add_history=True, model=model))
        fit_passes(model, digits_pipeline(0),
                   digits_pipeline(0, training=False), epochs=1, verbose=0,
                   callbacks=callbacks)
        assert batches.epochs == [dict(train=3, test=3)]


@pytest.mark.parametrize("mixup, crash", [
    (0.0, 3), (0.4, 3),
    # Mixup until epoch 2, then the plain images (`{0: mixed, 2: plain}`),
    # resumed after the turn: the passes skipped are of both.
    ("until 2", 3)])
def test_a_resumed_fit_reads_the_passes_an_uninterrupted_one_did(
        tmp_path, mixup, crash):
    """Resumed from a `CheckpointEarlyStopping` backup, a restarted
    script's `fit` started the pipeline at its first pass: the resumed
    epochs trained on other shuffles, shifts and mixes than the
    uninterrupted run's. It reads from the resumed epoch's pass."""
    from kerastrain.callbacks import CheckpointEarlyStopping
    from tests.support import CrashAt

    def run(name, crash=()):
        keras.utils.set_random_seed(0)  # a (re)started script
        model = keras.Sequential([
            keras.Input((8, 8, 1)), keras.layers.Flatten(),
            keras.layers.Dense(16, "relu"), keras.layers.Dropout(0.2, seed=1),
            keras.layers.Dense(4, "softmax")])
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                      "categorical_crossentropy")
        checkpoint = CheckpointEarlyStopping(
            str(tmp_path / f"{name}.keras"), patience=50,
            restore_best=False, backup_dir=str(tmp_path / name))
        train = digits_pipeline(3, mixup_alpha=mixup) if mixup != (
            "until 2") else {0: digits_pipeline(3, mixup_alpha=0.4),
                             2: digits_pipeline(4)}
        history = fit_passes(
            model, train, digits_pipeline(None, training=False), epochs=5,
            verbose=0, callbacks=[checkpoint, *crash])
        return model, checkpoint, history

    reference, expected, _ = run("reference")
    with pytest.raises(KeyboardInterrupt):
        run("resumed", [CrashAt(crash, batch=1)])
    model, resumed, history = run("resumed")
    assert history.epoch == list(range(crash, 5))
    assert [logs["loss"] for logs in resumed.epoch_logs] == [
        logs["loss"] for logs in expected.epoch_logs]
    for a, b in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
