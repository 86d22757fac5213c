import keras
import numpy as np
import pytest

from kerastrain.optimizers import LARS
from kerastrain.schedules import OneCycle, schedule_values
from tests.optimizers import linear, tokens

STEPS = 20


def paper_lars_in_numpy(lrs, momenta, decay, eta, adapted):
    """Algorithm 1 of You et al. (2017), per weight tensor; `adapted[i]`
    says whether tensor i gets the trust ratio and weight decay."""
    def update(t, weights, grads, velocities):
        velocities = velocities or [np.zeros_like(w) for w in weights]
        for w, g, v, adapt in zip(weights, grads, velocities, adapted):
            local_lr, step = 1.0, g
            if adapt:
                w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
                local_lr = eta * w_norm / (g_norm + decay * w_norm)
                step = g + decay * w
            v[...] = momenta[t] * v + lrs[t] * local_lr * step
            w -= v
        return velocities
    return update


@pytest.mark.parametrize("decay, excluded, adapted", [
    (0.0, None, [True, False]),     # default: the bias is excluded
    (5e-3, None, [True, False]),
    (5e-3, (), [True, True]),
])
def test_matches_the_papers_update(decay, excluded, adapted):
    rate = OneCycle(2.0, STEPS)
    optimizer = LARS(rate, momentum=0.9, weight_decay=decay,
                     trust_coefficient=0.02,
                     exclude_from_layer_adaptation=excluded)
    ours = linear.fit(optimizer, STEPS)
    expected = linear.numpy_fit(paper_lars_in_numpy(
        schedule_values(rate, STEPS), [0.9] * STEPS, decay, 0.02, adapted),
        STEPS)
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_an_embeddings_trust_ratio_takes_its_whole_gradient():
    """TensorFlow gives an Embedding's gradient as a row per occurrence of
    each token (IndexedSlices): where tokens repeat in a batch their norm
    is not the gradient's, and the step was larger than the paper's (1.34x
    on the batch the review found it with)."""
    ours = tokens.fit(LARS(0.5, momentum=0.9, weight_decay=1e-3,
                           trust_coefficient=0.1,
                           exclude_from_layer_adaptation=()), 3)
    expected = tokens.numpy_fit(paper_lars_in_numpy(
        [0.5] * 3, [0.9] * 3, 1e-3, 0.1, [True, True]), 3)
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_exclusion_matches_variable_names_on_every_backend():
    """On TensorFlow the step sees the backend's variable, named by its
    whole path ("net/bn/gamma:0"): the layer name "bn" must not exclude
    the gamma, nor "dense_bias_free" its kernel, on one backend only. A
    generator of names is kept whole, not used up by the check."""
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(3, name="dense_bias_free"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dense(1, name="out")], name="net")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 4)).astype("float32")
    y = rng.standard_normal((16, 1)).astype("float32")
    optimizer = LARS(0.1, exclude_from_layer_adaptation=(
        name for name in ["bias", "bn/"]))
    assert optimizer.exclude_from_layer_adaptation == ["bias", "bn/"]
    seen = {}
    adapts = optimizer.adapts

    def record(variable):
        seen[variable.path] = adapts(variable)
        return seen[variable.path]

    optimizer.adapts = record
    model.compile(optimizer, "mse", run_eagerly=True)
    # "bn/" matches no short name, and says so.
    with pytest.warns(UserWarning, match=r"entries \['bn/'\] match no "
                      r"variable.*\['beta', 'bias', 'gamma', 'kernel'"):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert seen == {
        "net/dense_bias_free/kernel": True, "net/dense_bias_free/bias": False,
        "net/bn/gamma": True, "net/bn/beta": True,
        "net/out/kernel": True, "net/out/bias": False}


def test_a_zero_layer_takes_the_plain_rate():
    """At a zero kernel the trust ratio would be 0/0: LARS uses 1 there, so
    the first update is plain SGD's (the paper leaves this case open)."""
    _, bias = linear.initial_weights()
    kernel = np.zeros_like(linear.initial_weights()[0])
    ours = linear.fit(LARS(0.05, momentum=0.9, weight_decay=1e-3,
                           exclude_from_layer_adaptation=[]), 1,
                      weights=[kernel, bias])
    grad_kernel, _ = linear.gradients(kernel.astype("float64"), bias)
    np.testing.assert_allclose(ours[0], -0.05 * grad_kernel, rtol=1e-5)


def test_scheduled_momentum_matches_numpy():
    one_cycle = OneCycle(0.5, STEPS)
    ours = linear.fit(LARS(0.5, one_cycle.momentum_schedule), STEPS)
    expected = linear.numpy_fit(paper_lars_in_numpy(
        [0.5] * STEPS, schedule_values(one_cycle.momentum_schedule, STEPS),
        0.0, 0.001, [True, False]), STEPS)
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_config_round_trip():
    optimizer = LARS(OneCycle(1.0, 10), momentum=OneCycle(1.0, 10)
                     .momentum_schedule, weight_decay=1e-4,
                     exclude_from_layer_adaptation=["bias"])
    restored = LARS.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    assert restored.lars_weight_decay == 1e-4


@pytest.mark.parametrize("kwargs, error, match", [
    ({"weight_decay": -1.0}, ValueError, "weight_decay"),
    ({"trust_coefficient": 0.0}, ValueError, "trust_coefficient"),
    # inf in float32: the weights trained to NaN or inf.
    ({"weight_decay": 1e40}, ValueError, "`weight_decay`.*float32"),
    ({"trust_coefficient": 1e40}, ValueError,
     "`trust_coefficient`.*float32"),
    ({"momentum": 2.0}, ValueError, "momentum"),
    ({"exclude_from_layer_adaptation": "bias"}, TypeError,
     "exclude_from_layer_adaptation"),
    ({"exclude_from_layer_adaptation": 5}, TypeError,
     "exclude_from_layer_adaptation"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        LARS(0.1, **kwargs)


def test_keras_weight_decay_exclusion_is_refused_not_ignored():
    # Keras' method would be accepted and exclude nothing from LARS' decay.
    optimizer = LARS(0.1, weight_decay=0.5)
    with pytest.raises(ValueError, match=r"exclude_from_layer_adaptation"
                       r".*var_names=\['kernel'\]"):
        optimizer.exclude_from_weight_decay(var_names=["kernel"])


def test_float16_weights_whose_squares_overflow_get_a_finite_update():
    # ||w||^2 = 300 * 16^2 = 76800 > 65504, float16's largest: summed in
    # float16 the trust ratio was inf / inf, NaN weights.
    variable = keras.Variable(np.full(300, 16.0), dtype="float16")
    gradient = keras.ops.ones(300, dtype="float16")
    LARS(100.0, momentum=0.0, weight_decay=1e-4).apply([gradient],
                                                       [variable])
    w_norm, g_norm = np.sqrt(300 * 16.0 ** 2), np.sqrt(300.0)
    trust = 0.001 * w_norm / (g_norm + 1e-4 * w_norm)
    expected = 16.0 - 100.0 * trust * (1.0 + 1e-4 * 16.0)  # about 14.4
    np.testing.assert_allclose(
        np.asarray(keras.ops.convert_to_numpy(variable), "float64"),
        expected, rtol=1e-3)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_weights_whose_trust_ratio_overflows_step_finitely(
        dtype):
    """||w|| = 32 against a gradient of one entry of 2.4e-7: the trust
    ratio, 1.3e5, passes float16's 65504, and cast to float16 alone it
    made every weight inf or NaN (inf times a zero gradient), where the
    paper's step, lr * eta * ||w|| * g / ||g||, is 0.0032 at the entry
    and 0 elsewhere."""
    gradient = np.zeros((64, 64), "float32")
    gradient[0, 0] = 2.4e-7
    g = float(np.asarray(gradient[0, 0], dtype))  # as the dtype holds it
    variable = keras.Variable(np.full((64, 64), 0.5), dtype=dtype,
                              name="kernel")
    LARS(0.1, momentum=0.9).apply(
        [keras.ops.convert_to_tensor(gradient, dtype=dtype)], [variable])
    got = np.asarray(keras.ops.convert_to_numpy(
        keras.ops.cast(variable, "float32")), "float64")
    expected = np.full((64, 64), 0.5)
    expected[0, 0] -= 0.1 * 0.001 * 32.0 / g * g  # 0.4968
    # Within the dtype's rounding of 0.4968 (a step of 2**-11 or 2**-8).
    np.testing.assert_allclose(got, expected,
                               atol=2.0 ** (-10 if dtype == "float16" else
                                            -7))
