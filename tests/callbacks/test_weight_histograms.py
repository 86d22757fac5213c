import copy
import os

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator)

from kerastrain.callbacks import WeightHistograms
from kerastrain.callbacks.weight_histograms import PERCENTILES
from kerastrain.callbacks._gradients import GradientFunction
from tests.support import CrashAt, to_numpy, two_output_model


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype("float32")
    y = (x @ rng.standard_normal((4, 2))).astype("float32")
    return x, y


def make_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, name="hidden"),
                              keras.layers.Dense(2, name="out")], name="net")
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def read(log_dir):
    """Histograms as (step, (bucket right edges, counts, count, min, max))
    and scalars as (step, value), by TensorBoard's own reader."""
    events = EventAccumulator(str(log_dir), size_guidance={
        "histograms": 0, "scalars": 0})
    events.Reload()
    logged = {tag: [(e.step, e.histogram_value)
                    for e in events.Histograms(tag)]
              for tag in events.Tags()["histograms"]}
    logged.update({tag: [(e.step, e.value) for e in events.Scalars(tag)]
                   for tag in events.Tags()["scalars"]})
    return logged


def numpy_gradients(weights, x, y):
    """Mean squared error of two stacked linear layers, by hand."""
    k1, b1, k2, b2 = (w.astype("float64") for w in weights)
    h = x @ k1 + b1
    residual = h @ k2 + b2 - y
    d_out = 2 * residual / residual.size
    d_h = d_out @ k2.T
    return [x.T @ d_h, d_h.sum(0), h.T @ d_out, d_out.sum(0)]


def test_gradients_on_the_probe_equal_the_closed_form():
    x, y = data()
    model = make_model()
    gradient_fn = GradientFunction(model)
    gradient_fn.start(x[:16], y[:16])  # on JAX: compiles for that shape
    # Then batches of that shape and of others.
    for batch in (slice(16), slice(16, 32), slice(5)):
        expected = numpy_gradients(model.get_weights(), x[batch], y[batch])
        for got, want in zip(gradient_fn(x[batch], y[batch]), expected):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def make_probe_model():
    """Dense, BatchNormalization, Dropout(0.5), Dense: in training mode the
    batch statistics and the dropout mask would change the gradient, and
    the moving statistics would move. The normalization's weights and
    statistics are set away from their defaults."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, name="hidden"),
                              keras.layers.BatchNormalization(name="bn"),
                              keras.layers.Dropout(0.5, name="drop"),
                              keras.layers.Dense(2, name="out")], name="net")
    model.compile(keras.optimizers.SGD(0.05), "mse")
    bn = model.get_layer("bn")
    rng = np.random.default_rng(5)
    for variable, value in ((bn.gamma, rng.uniform(0.5, 1.5, 3)),
                            (bn.beta, rng.standard_normal(3) * 0.3),
                            (bn.moving_mean, rng.standard_normal(3) * 0.5),
                            (bn.moving_variance, rng.uniform(0.5, 2.0, 3))):
        variable.assign(value.astype("float32"))
    return model


def numpy_inference_gradients(model, x, y):
    """Mean squared error of the probe model at inference, by hand: the
    normalization uses its moving statistics, the dropout is the
    identity. Returns the gradients in `trainable_variables` order."""
    layer = model.get_layer
    k1, b1 = (to_numpy(w).astype("float64")
              for w in layer("hidden").weights)
    bn = layer("bn")
    gamma, beta, mean, var = (to_numpy(w).astype("float64") for w in (
        bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
    k2, b2 = (to_numpy(w).astype("float64") for w in layer("out").weights)
    h = x @ k1 + b1
    scale = 1 / np.sqrt(var + bn.epsilon)
    z = (h - mean) * scale
    a = gamma * z + beta
    residual = a @ k2 + b2 - y
    d_out = 2 * residual / residual.size
    d_a = d_out @ k2.T
    d_h = d_a * gamma * scale
    return [x.T @ d_h, d_h.sum(0), (d_a * z).sum(0), d_a.sum(0),
            a.T @ d_out, d_out.sum(0)]


def test_gradients_are_taken_at_inference(tmp_path):
    """With dropout and batch normalization: the gradients are the
    inference-mode closed form (no dropout mask, moving statistics, not
    the batch's) and the moving statistics do not move, both from
    `GradientFunction` and from the callback's logging."""
    x, y = data()
    probe = (x[:16], y[:16])
    model = make_probe_model()
    paths = [v.path for v in model.trainable_variables]
    assert paths == ["net/hidden/kernel", "net/hidden/bias", "net/bn/gamma",
                     "net/bn/beta", "net/out/kernel", "net/out/bias"]
    bn = model.get_layer("bn")
    statistics = [to_numpy(bn.moving_mean).copy(),
                  to_numpy(bn.moving_variance).copy()]
    expected = numpy_inference_gradients(model, *probe)
    gradient_fn = GradientFunction(model)
    for _ in range(2):  # twice: the second call reuses the compiled one
        for got, want in zip(gradient_fn(*probe), expected):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    callback = WeightHistograms(tmp_path, plot=False, probe=probe)
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_begin(0)  # the model is built: logs step 0
    callback.on_train_end()
    for before, variable in zip(statistics, (bn.moving_mean,
                                             bn.moving_variance)):
        np.testing.assert_array_equal(to_numpy(variable), before)
    logged = read(tmp_path)
    for path, grad in zip(paths, expected):
        (step, histogram), = logged[f"gradients/{path}"]
        assert step == 0
        assert_histogram_of(histogram, grad, rtol=1e-5)


def assert_histogram_of(histogram, value, rtol=0.0):
    """The buckets are NumPy's 30 equal-width bins of the values (right
    edges as the limits, counts in order); the summary is the values'.

    `rtol` (relative to the values' range) is how far `value`, a
    reference, may be from what was binned: a value that close to an edge
    may sit in either neighbouring bucket."""
    value = np.asarray(value, dtype="float64").ravel()
    assert sum(histogram.bucket) == histogram.num == value.size
    assert histogram.min == pytest.approx(value.min(), rel=1e-4, abs=1e-7)
    assert histogram.max == pytest.approx(value.max(), rel=1e-4, abs=1e-7)
    assert histogram.sum == pytest.approx(value.sum(), rel=1e-4, abs=1e-6)
    assert histogram.sum_squares == pytest.approx(np.sum(value * value),
                                                  rel=1e-4, abs=1e-9)
    # The bins written out: 30 of width (max - min) / 30 from the minimum,
    # the last one closed at the maximum.
    low, high = value.min(), value.max()
    edges = low + (high - low) * np.arange(31) / 30
    edges[-1] = high
    counts = np.histogram(value, edges)[0]
    assert len(histogram.bucket_limit) == len(histogram.bucket) == 30
    np.testing.assert_allclose(histogram.bucket_limit, edges[1:],
                               rtol=1e-5, atol=1e-7 + rtol * (high - low))
    near_an_edge = np.sum(np.abs(value[:, None] - edges[None, 1:-1])
                          <= 1e-7 + rtol * (high - low))
    moved = np.abs(np.array(histogram.bucket) - counts).sum()
    assert moved <= 2 * near_an_edge, (list(histogram.bucket),
                                       counts.tolist())


def test_histogram_buckets_are_the_equal_width_bins_of_the_values():
    """Counts in bin order, right edges as limits, on values whose bins are
    known by hand: the range [0, 30] gives the bins [k, k + 1]; k + 0.5
    puts one value in each, and 0, 0.25 and 30 two more in the first and
    one more in the last."""
    from kerastrain.callbacks.weight_histograms import histogram

    value = np.concatenate([np.arange(30.0) + 0.5, [0.0, 0.25, 30.0]])
    proto = histogram("t", value).histo
    assert list(proto.bucket) == [3] + [1] * 28 + [2]
    np.testing.assert_allclose(proto.bucket_limit, np.arange(1.0, 31.0))
    assert_histogram_of(proto, value)


def test_writes_histograms_and_norms_tensorboard_can_read(tmp_path):
    x, y = data()
    model = make_model()
    probe = (x[:16], y[:16])
    initial = model.get_weights()
    callback = copy.deepcopy(WeightHistograms(tmp_path, freq=2,
                                              probe=probe))
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[callback])
    logged = read(tmp_path)
    paths = [v.path for v in model.trainable_variables]
    for path, value in zip(paths, model.get_weights()):
        steps = logged[f"weights/{path}"]
        assert [s for s, _ in steps] == [0, 2, 4]
        assert_histogram_of(steps[-1][1], value)
    # Gradients before training and after it are the closed-form gradients
    # on the probe at the weights of that moment, and so are the norms.
    for step, weights in ((0, initial), (4, model.get_weights())):
        grads = numpy_gradients(weights, *probe)
        for path, grad in zip(paths, grads):
            steps = dict(logged[f"gradients/{path}"])
            assert sorted(steps) == [0, 2, 4]
            # float32 autodiff against the float64 closed form.
            assert_histogram_of(steps[step], grad, rtol=1e-5)
        for layer, layer_grads in (("net/hidden", grads[:2]),
                                   ("net/out", grads[2:])):
            norm = dict(logged[f"gradient_norm/{layer}"])[step]
            np.testing.assert_allclose(
                norm, np.sqrt(sum(np.sum(g * g) for g in layer_grads)),
                rtol=1e-4)


def test_plots_one_png_per_kernel_with_every_epoch(tmp_path):
    x, y = data()
    model = make_model()
    callback = WeightHistograms(tmp_path, gradients=False)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[callback])
    assert sorted(os.listdir(tmp_path / "plots")) == [
        "net_hidden_kernel.png", "net_out_kernel.png"]
    rows = callback.percentiles["net/hidden/kernel"]
    assert len(rows) == 4  # before training, then 3 epochs
    kernel = to_numpy(model.trainable_variables[0])
    np.testing.assert_allclose(rows[-1], np.percentile(
        kernel, [0, 5, 25, 50, 75, 95, 100]), rtol=1e-6)
    assert not any(k.startswith("gradients/") for k in read(tmp_path))
    # A second fit with the same callback works (the writer is reopened):
    # its steps follow the first fit's in a new event file.
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    events = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0},
                              purge_orphaned_data=False)
    events.Reload()
    logged = events.Histograms("weights/net/hidden/kernel")
    assert [e.step for e in logged] == [0, 1, 2, 3, 0, 1]
    kernel = to_numpy(model.trainable_variables[0])
    assert logged[-1].histogram_value.sum == pytest.approx(kernel.sum(),
                                                           abs=1e-5)
    rows = callback.percentiles["net/hidden/kernel"]
    assert len(rows) == 2
    np.testing.assert_allclose(rows[-1], np.percentile(
        kernel, [0, 5, 25, 50, 75, 95, 100]), rtol=1e-6)


def test_plots_every_weight_matrix_not_only_kernels(tmp_path):
    """An Embedding's table gets its picture; a bias or a BatchNorm scale
    (vectors) does not."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, (64, 5))
    labels = rng.standard_normal((64, 2)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((5,), dtype="int32"),
        keras.layers.Embedding(20, 4, name="embed"),
        keras.layers.Flatten(), keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dense(2, name="out")], name="net")
    model.compile(keras.optimizers.SGD(0.05), "mse")
    callback = WeightHistograms(tmp_path, gradients=False)
    model.fit(tokens, labels, epochs=2, verbose=0, callbacks=[callback])
    assert sorted(os.listdir(tmp_path / "plots")) == [
        "net_embed_embeddings.png", "net_out_kernel.png"]
    table = to_numpy(model.get_layer("embed").embeddings)
    np.testing.assert_allclose(
        callback.percentiles["net/embed/embeddings"][-1],
        np.percentile(table, [0, 5, 25, 50, 75, 95, 100]), rtol=1e-6)


def test_a_fit_from_initial_epoch_logs_its_start_at_that_step(tmp_path):
    """A resumed or continued `fit` (a Hyperband round, a restored
    backup) starts from trained weights: they are logged at the step it
    starts from, not as step 0."""
    x, y = data()
    model = make_model()
    model.fit(x, y, epochs=2, verbose=0)
    start = to_numpy(model.trainable_variables[0])
    model.fit(x, y, initial_epoch=2, epochs=3, verbose=0, callbacks=[
        WeightHistograms(tmp_path, gradients=False, plot=False)])
    logged = read(tmp_path)["weights/net/hidden/kernel"]
    assert [step for step, _ in logged] == [2, 3]
    assert logged[0][1].sum == pytest.approx(start.sum(), abs=1e-5)


def test_a_diverging_run_is_logged_to_its_end(tmp_path):
    """NaN weights would stop NumPy's binning (and `fit`): the histograms
    count the finite values, with a warning; the plot gets NaN rows."""
    x, y = data()
    model = make_model()
    model.compile(keras.optimizers.SGD(10.0), "mse")
    callback = WeightHistograms(tmp_path, probe=(x[:8], y[:8]))
    with pytest.warns(UserWarning, match="NaN or infinite"):
        history = model.fit(x * 100, y, epochs=3, verbose=0,
                            callbacks=[callback])
    assert not np.isfinite(history.history["loss"][-1])
    logged = read(tmp_path)
    assert [step for step, _ in logged["weights/net/hidden/kernel"]] == [
        0, 1]  # nothing finite left after that
    assert [step for step, _ in logged["gradient_norm/net/out"]] == [
        0, 1, 2, 3]
    rows = np.array(callback.percentiles["net/hidden/kernel"])
    assert np.isfinite(rows[:2]).all() and np.isnan(rows[2:]).all()
    assert (tmp_path / "plots" / "net_hidden_kernel.png").exists()


def test_a_model_fit_builds_late_is_logged_from_its_first_epoch(tmp_path):
    """On TensorFlow, `fit` builds a model without an `Input` after
    `on_train_begin`: no histograms before training then, and the plot
    still pairs each percentile row with its epoch."""
    x, y = data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(3, name="hidden"),
                              keras.layers.Dense(2, name="out")], name="net")
    model.compile(keras.optimizers.SGD(0.05), "mse")
    callback = WeightHistograms(tmp_path, probe=(x[:8], y[:8]))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    first = 1 if keras.backend.backend() == "tensorflow" else 0
    steps = [step for step, _ in read(tmp_path)["weights/net/hidden/kernel"]]
    assert steps == list(range(first, 3))
    assert len(callback.percentiles["net/hidden/kernel"]) == len(steps)
    assert (tmp_path / "plots" / "net_hidden_kernel.png").exists()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"log_dir": None}, TypeError, "log_dir"),
    ({"log_dir": ""}, TypeError, "log_dir"),
    ({"gradients": "no"}, TypeError, "gradients"),
    ({"plot": None}, TypeError, "plot"),
    ({"freq": 0}, ValueError, "freq"),
    ({"freq": "epoch"}, TypeError, "freq"),
    ({"probe": None}, ValueError, "probe"),
    ({"probe": np.zeros((4, 2))}, ValueError, "probe"),
    ({"probe": (None, None)}, ValueError, "probe"),
])
def test_bad_arguments(kwargs, error, match):
    arguments = {"log_dir": "logs", "probe": (np.zeros((2, 4)),
                                              np.zeros((2, 2))), **kwargs}
    with pytest.raises(error, match=match):
        WeightHistograms(**arguments)


def test_a_continued_fit_extends_the_picture_and_a_new_one_replaces_it(
        tmp_path):
    x, y = data()
    model = make_model()
    callback = WeightHistograms(tmp_path, gradients=False)
    kernels = []

    class Kernel(keras.callbacks.Callback):  # the reference: read directly
        def on_epoch_end(self, epoch, logs=None):
            kernels.append((epoch + 1, keras.ops.convert_to_numpy(
                self.model.get_layer("hidden").kernel).copy()))

    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback, Kernel()])
    model.fit(x, y, initial_epoch=2, epochs=4, verbose=0,
              callbacks=[callback, Kernel()])
    assert callback._steps["net/hidden/kernel"] == [0, 1, 2, 3, 4]
    rows = callback.percentiles["net/hidden/kernel"]
    for step, kernel in kernels:
        np.testing.assert_allclose(rows[step], np.percentile(
            kernel, PERCENTILES), rtol=1e-6)
    # Starting again at epoch 0 (a new training) draws a new picture.
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert callback._steps["net/hidden/kernel"] == [0, 1]
    assert len(callback.percentiles["net/hidden/kernel"]) == 2


def test_the_probe_does_not_count_in_the_logged_losses(tmp_path):
    """A two-output model logs a loss per output, from metrics that the
    compiled loss updates; the probe (here with a loss 10,000 times the
    training one) must not add to them."""
    x, y = data()

    def fit(callbacks):
        keras.utils.set_random_seed(0)
        model = two_output_model(4)
        return model.fit(x, {"a": y[:, :1], "b": y[:, 1:]}, batch_size=16,
                         epochs=2, shuffle=False, verbose=0,
                         callbacks=callbacks).history

    probe = (x[:8] * 100, {"a": y[:8, :1] * 100, "b": y[:8, 1:] * 100})
    plain = fit([])
    probed = fit([WeightHistograms(tmp_path, probe=probe, plot=False)])
    assert {"a_loss", "b_loss", "loss"} <= set(plain)
    for key, values in plain.items():
        np.testing.assert_allclose(probed[key], values, rtol=1e-5)


@pytest.mark.parametrize("change", [None, "metrics", "freeze"])
def test_a_fit_interrupted_in_its_first_epoch_keeps_its_start(tmp_path,
                                                               change):
    """On JAX the initial weights' gradients wait for the probe's
    compilation, beside the first epoch; a crash inside that epoch must
    not lose them: the callback's next `fit` writes them to the
    interrupted run's file (on TensorFlow and torch they are already
    there), at the initial weights, also when the model was recompiled
    in between with other metrics (other variables) or a layer frozen
    (fewer trainable ones)."""
    x, y = data()
    probe = (x[:16], y[:16])
    callback = WeightHistograms(tmp_path / "first", probe=probe, plot=False)
    model = make_model()
    initial = model.get_weights()
    paths = [v.path for v in model.trainable_variables]
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=2, batch_size=16, verbose=0,
                  callbacks=[callback, CrashAt(0, batch=1)])
    if change == "freeze":
        model.get_layer("hidden").trainable = False
    if change:
        model.compile(keras.optimizers.SGD(0.05), "mse",
                      metrics=["mae"] if change == "metrics" else None)
    callback.log_dir = str(tmp_path / "second")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0,
              callbacks=[callback])
    logged = read(tmp_path / "first")
    assert {tag.split("/", 1)[1] for tag in logged
            if tag.startswith("gradients/")} == set(paths)
    for path, grad, weight in zip(paths, numpy_gradients(initial, *probe),
                                  initial):
        assert [s for s, _ in logged[f"gradients/{path}"]] == [0]
        assert_histogram_of(logged[f"gradients/{path}"][0][1], grad,
                            rtol=1e-5)
        if weight.ndim == 2:  # the biases start at zero: one value
            assert_histogram_of(logged[f"weights/{path}"][0][1], weight)


@pytest.mark.parametrize("crash", [CrashAt(2, batch=1), CrashAt(1)])
def test_a_resumed_fit_logs_each_step_once_as_the_uninterrupted_one(
        tmp_path, crash):
    """A crash mid-epoch 2 resumes at epoch 2, having logged step 2; one at
    epoch 1's end, after this callback and before the backup, resumes at
    epoch 1, having logged steps 1 and 2. TensorBoard must read each step
    once, with the resumed run's histograms. The resumed run's pictures,
    drawn by a new callback (a new process), show every epoch, as the
    uninterrupted run's: they showed only those after the resume."""
    x, y = data()

    def run(log_dir, callbacks=(), backup=None):
        keras.utils.set_random_seed(0)
        model = make_model()
        extra = [keras.callbacks.BackupAndRestore(backup)] if backup else []
        histograms = WeightHistograms(log_dir, gradients=False)
        model.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0,
                  callbacks=[histograms, *callbacks, *extra])
        return histograms

    uninterrupted = run(tmp_path / "whole")
    backup = str(tmp_path / "backup")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed", [crash], backup)
    rows_file = tmp_path / "resumed" / "weight_percentiles.jsonl"
    with open(rows_file, "a") as f:
        f.write('{"step": 3, "rows": {"net/hid')  # a crash mid-line
    resumed = run(tmp_path / "resumed", backup=backup)
    for path in ("net/hidden/kernel", "net/out/kernel"):
        assert resumed._steps[path] == [0, 1, 2, 3, 4]
        np.testing.assert_array_equal(resumed.percentiles[path],
                                      uninterrupted.percentiles[path])
    whole, logged = read(tmp_path / "whole"), read(tmp_path / "resumed")
    assert set(logged) == set(whole)
    for tag, steps in logged.items():
        assert [step for step, _ in steps] == [0, 1, 2, 3, 4], tag
        for (_, got), (_, want) in zip(steps, whole[tag]):
            assert list(got.bucket) == list(want.bucket), tag
    # The file replays to the same rows: the resumed run's start marker
    # was not lost on the line the crash cut short.
    replayed = WeightHistograms(tmp_path / "resumed", gradients=False)
    replayed._read_rows()
    for path in ("net/hidden/kernel", "net/out/kernel"):
        assert replayed._steps[path] == [0, 1, 2, 3, 4]
        np.testing.assert_array_equal(replayed.percentiles[path],
                                      uninterrupted.percentiles[path])
    # A new callback that starts over at epoch 0 draws a picture anew.
    model = make_model()
    again = WeightHistograms(tmp_path / "resumed", gradients=False)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[again])
    assert again._steps["net/hidden/kernel"] == [0, 1]


def test_a_used_callback_copies_for_the_next_trial(tmp_path):
    x, y = data()
    callback = WeightHistograms(tmp_path / "first", probe=(x[:8], y[:8]))
    make_model().fit(x, y, epochs=1, verbose=0, callbacks=[callback])

    # After a finished fit (TensorFlow keeps a compiled function) and an
    # interrupted one (its event file still open).
    interrupted = WeightHistograms(tmp_path / "second", probe=(x[:8], y[:8]))
    with pytest.raises(KeyboardInterrupt):
        make_model().fit(x, y, epochs=2, verbose=0,
                         callbacks=[interrupted, CrashAt(0)])
    for used in (callback, interrupted):
        duplicate = copy.deepcopy(used)
        duplicate.log_dir = str(tmp_path / f"copy-{id(used)}")
        model = make_model()
        model.fit(x, y, epochs=2, verbose=0, callbacks=[duplicate])
        paths = [v.path for v in model.trainable_variables]
        logged = read(duplicate.log_dir)
        assert [s for s, _ in logged[f"weights/{paths[0]}"]] == [0, 1, 2]
    # The interrupted fit's file is closed by the callback's next fit.
    interrupted.log_dir = str(tmp_path / "third")
    make_model().fit(x, y, epochs=1, verbose=0, callbacks=[interrupted])
    assert interrupted._writer is None


def test_weight_paths_that_flatten_alike_get_pictures_of_their_own(
        tmp_path):
    inner = keras.Sequential([keras.layers.Dense(2, name="fc")], name="blk")
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="blk_fc")(inner(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.05), "mse")
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[WeightHistograms(
        tmp_path, gradients=False)])
    kernels = [v.path for v in model.trainable_variables
               if len(v.shape) == 2]
    assert sorted(kernels) == ["blk/fc/kernel", "blk_fc/kernel"]
    pictures = os.listdir(tmp_path / "plots")
    assert len(pictures) == 2 and len(set(pictures)) == 2


def test_layers_of_one_name_in_two_sub_models_are_logged_apart(tmp_path):
    """Keras gives both kernels the path `d/kernel`: their histograms
    went to one tag twice a step, their percentiles into one picture, and
    their gradients into one norm."""
    def sub_model(units, name):
        inputs = keras.Input((4 if name == "a" else 3,))
        return keras.Model(inputs, keras.layers.Dense(units, name="d")(
            inputs), name=name)

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, sub_model(2, "b")(sub_model(3, "a")(
        inputs)))
    model.compile(keras.optimizers.SGD(0.05), "mse")
    assert [v.path for v in model.trainable_variables] == [
        "d/kernel", "d/bias"] * 2  # the premise
    x, y = data()
    probe = (x[:16], y[:16])
    callback = WeightHistograms(tmp_path, probe=probe)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0,
              callbacks=[callback])
    logged = read(tmp_path)
    weights = model.get_weights()
    grads = numpy_gradients(weights, *probe)
    for layer, index in (("d", 0), ("d#2", 2)):
        steps = logged[f"weights/{layer}/kernel"]
        assert [s for s, _ in steps] == [0, 1, 2]
        assert_histogram_of(steps[-1][1], weights[index])
        np.testing.assert_allclose(
            callback.percentiles[f"{layer}/kernel"][-1],
            np.percentile(weights[index], PERCENTILES), rtol=1e-6)
        norm = dict(logged[f"gradient_norm/{layer}"])[2]
        np.testing.assert_allclose(norm, np.sqrt(sum(
            np.sum(g * g) for g in grads[index:index + 2])), rtol=1e-4)
    assert len(os.listdir(tmp_path / "plots")) == 2


def test_a_tensorflow_probe_works_on_every_backend(tmp_path):
    """A probe of TensorFlow tensors (from a tf.data pipeline) is no input
    to JAX's step; it is kept as NumPy."""
    import tensorflow as tf

    x, y = data()
    model = make_model()
    callback = WeightHistograms(tmp_path, plot=False,
                                probe=(tf.constant(x[:8]), tf.constant(y[:8])))
    assert all(isinstance(part, np.ndarray) for part in callback.probe)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
    paths = [v.path for v in model.trainable_variables]
    logged = read(tmp_path)
    assert sorted(logged) == sorted(
        [f"weights/{p}" for p in paths] + [f"gradients/{p}" for p in paths]
        + ["gradient_norm/net/hidden", "gradient_norm/net/out"])
    assert_gradients_logged(logged, paths, model.get_weights(), x[:8], y[:8])


def assert_gradients_logged(logged, paths, weights, x, y, step=1):
    """The gradients logged at `step` are the closed-form gradients on the
    probe `(x, y)` at `weights`."""
    for path, grad in zip(paths, numpy_gradients(weights, x, y)):
        # float32 autodiff against the float64 closed form.
        assert_histogram_of(dict(logged[f"gradients/{path}"])[step], grad,
                            rtol=1e-5)


def test_a_probe_of_the_backends_own_tensors_works(tmp_path):
    """Targets a teacher model gives: on torch they require gradients,
    which NumPy refused to read."""
    x, y = data()
    teacher = make_model()
    probe = (keras.ops.convert_to_tensor(x[:8]), teacher(x[:8]))
    callback = WeightHistograms(tmp_path, plot=False, probe=probe)
    np.testing.assert_allclose(
        callback.probe[1], keras.ops.convert_to_numpy(teacher(x[:8])))
    model = make_model()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
    assert_gradients_logged(read(tmp_path),
                            [v.path for v in model.trainable_variables],
                            model.get_weights(), x[:8], callback.probe[1])


def test_a_probe_that_does_not_fit_the_model_is_named(tmp_path):
    # Three features for a model of four: the backend's shape error, deep
    # in a trace, named neither the probe nor its shapes.
    x, y = data()
    callback = WeightHistograms(tmp_path, plot=False,
                                probe=(x[:8, :3], y[:8]))
    with pytest.raises(ValueError, match=r"`probe` does not fit the model.*"
                       r"\(8, 3\)"):
        make_model().fit(x, y, epochs=1, batch_size=16, verbose=0,
                         callbacks=[callback])


def test_a_model_without_trainable_weights_logs_nothing(tmp_path):
    # Torch's autograd refused a gradient with respect to no variable.
    x, y = data()
    model = make_model()
    for layer in model.layers:
        layer.trainable = False
    model.compile(keras.optimizers.SGD(0.05), "mse")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[
        WeightHistograms(tmp_path, plot=False, probe=(x[:8], y[:8]))])
    assert read(tmp_path) == {}


def test_each_picture_is_drawn_as_if_it_were_alone(tmp_path):
    """The layers' pictures share one figure, their data replaced: a
    layer's picture is, pixel for pixel, the one drawn with no layer
    before it (limits, ticks and legend from its own data only)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = {"net/small/kernel": [np.sort(rng.normal(size=7)) * 1e-3
                                 for _ in range(9)],
            "net/large/kernel": [np.sort(rng.normal(size=7)) * 50 + 7
                                 for _ in range(4)]}
    pictures = {}
    for name, paths in (("together", list(rows)),
                        ("alone", ["net/large/kernel"])):
        callback = WeightHistograms(tmp_path / name, gradients=False)
        for path in paths:
            callback.percentiles[path] = rows[path]
            callback._steps[path] = list(range(len(rows[path])))
        callback._plot()
        pictures[name] = np.asarray(Image.open(
            tmp_path / name / "plots" / "net_large_kernel.png"))
    np.testing.assert_array_equal(pictures["together"], pictures["alone"])
