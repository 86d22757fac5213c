import keras
import numpy as np
import pytest

from kerastrain.models import ensemble, resnet
from tests.support import (confident_half_precision_model,
                           models_without_inputs, softmax, to_numpy)


def members(n=3, seed=0):
    keras.utils.set_random_seed(seed)
    return [resnet((8, 8, 1), 10, depth=8, width=4) for _ in range(n)]


def test_averages_the_members_softmax(tmp_path):
    models = members()
    x = np.random.default_rng(0).standard_normal((5, 8, 8, 1)).astype(
        "float32")
    expected = np.mean([softmax(to_numpy(m.predict(x, verbose=0)))
                        for m in models], axis=0)
    combined = ensemble(models)
    got = to_numpy(combined.predict(x, verbose=0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)

    path = str(tmp_path / "ensemble.keras")
    combined.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(reloaded.predict(x, verbose=0)), got,
                               atol=1e-6)


def test_probability_members_and_colliding_names(tmp_path):
    # Snapshots loaded from disk all have the same name.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.Softmax()], name="snap")
    paths = []
    for i in range(2):
        model.layers[0].kernel.assign(np.full((4, 3), i, "float32")
                                      * np.arange(3))
        paths.append(str(tmp_path / f"{i}.keras"))
        model.save(paths[-1])
    loaded = [keras.saving.load_model(p) for p in paths]
    x = np.ones((2, 4), "float32")
    combined = ensemble(loaded, from_logits=False)
    expected = np.mean([to_numpy(m.predict(x, verbose=0)) for m in loaded],
                       axis=0)
    np.testing.assert_allclose(to_numpy(combined.predict(x, verbose=0)),
                               expected, rtol=1e-6)


@pytest.mark.parametrize("names, renamed", [
    (["snap"] * 3, ["snap", "snap_1", "snap_2"]),
    # The name a clash would take is another member's: Keras refused the
    # ensemble, after renaming the third member `net_2`.
    (["net_2", "net", "net"], ["net_2", "net", "net_3"]),
    (["net", "net", "net_1"], ["net", "net_2", "net_1"]),
])
def test_clashing_names_become_names_no_member_holds(names, renamed):
    keras.utils.set_random_seed(0)
    models = [keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)],
                               name=name) for name in names]
    x = np.random.default_rng(0).standard_normal((2, 4)).astype("float32")
    expected = np.mean([softmax(to_numpy(m.predict(x, verbose=0)))
                        for m in models], axis=0)
    combined = ensemble(models)
    assert [m.name for m in models] == renamed
    np.testing.assert_allclose(to_numpy(combined.predict(x, verbose=0)),
                               expected, rtol=1e-5, atol=1e-7)


def test_the_same_member_twice_keeps_its_name():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)],
                             name="net")
    x = np.ones((2, 4), "float32")
    combined = ensemble([model, model])
    assert model.name == "net"
    np.testing.assert_allclose(to_numpy(combined.predict(x, verbose=0)),
                               softmax(to_numpy(model.predict(x, verbose=0))),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("models, received", [
    ([], r"\[\]"),
    (["model"], r"\['model'\]"),
    (None, "None"),
    (3, "3"),
])
def test_bad_models(models, received):
    with pytest.raises(TypeError, match=r"Argument `models` must be a "
                       rf"non-empty list.*Received: models={received}$"):
        ensemble(models)


def test_models_without_defined_inputs_are_refused():
    # Keras' `inputs` raised a bare AttributeError.
    for model in models_without_inputs((4,)):
        with pytest.raises(TypeError, match=r"Argument `models` takes "
                           r"functional or Sequential Keras models.*"
                           r"Received: models=<"):
            ensemble([model, model])


def test_from_logits_must_be_a_bool():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(TypeError, match="from_logits"):
        ensemble([model], from_logits="no")  # would apply the softmax


def test_mismatched_shapes():
    a = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    b = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="same input shape and dtype"):
        ensemble([a, b])


def test_a_member_with_two_outputs_is_refused():
    one = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    inputs = keras.Input((4,))
    two = keras.Model(inputs, [keras.layers.Dense(3)(inputs),
                               keras.layers.Dense(3)(inputs)])
    with pytest.raises(ValueError, match="single-output"):
        ensemble([one, two])


def token_model(dtype="int32"):
    return keras.Sequential([keras.Input((5,), dtype=dtype),
                             keras.layers.Embedding(20, 4),
                             keras.layers.Flatten(), keras.layers.Dense(3)])


def test_integer_inputs_stay_integers(tmp_path):
    keras.utils.set_random_seed(0)
    models = [token_model(), token_model()]
    combined = ensemble(models)
    assert combined.inputs[0].dtype == "int32"  # was float32
    tokens = np.random.default_rng(0).integers(0, 20, (6, 5)).astype("int32")
    expected = np.mean([softmax(to_numpy(m.predict(tokens, verbose=0)))
                        for m in models], axis=0)
    np.testing.assert_allclose(to_numpy(combined.predict(tokens, verbose=0)),
                               expected, rtol=1e-5, atol=1e-6)
    path = str(tmp_path / "tokens.keras")
    combined.save(path)
    assert keras.saving.load_model(path).inputs[0].dtype == "int32"


def test_members_of_different_input_dtypes_are_refused():
    with pytest.raises(ValueError, match=r"dtype.*int32.*float32"):
        ensemble([token_model("int32"), token_model("float32")])


def test_probabilities_stay_float32_under_mixed_precision():
    # Keras' Average follows the global policy: it rounded the float32
    # softmax to float16, 1e-17 to 0.
    try:
        models = [confident_half_precision_model(seed) for seed in (0, 1)]
        combined = ensemble(models)
    finally:
        keras.config.set_dtype_policy("float32")
    x = np.random.default_rng(2).uniform(size=(4, 8, 8, 1)).astype(
        "float32")
    expected = np.mean([softmax(to_numpy(m.predict(x, verbose=0)).astype(
        "float64")) for m in models], axis=0)
    got = to_numpy(combined.predict(x, verbose=0))
    assert got.dtype == np.float32 and expected.min() < 1e-8
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("from_logits", [True, False])
def test_one_member_gives_float32_under_mixed_precision(from_logits):
    """A single member skips the average; its float16 probabilities
    (`from_logits=False`) were returned as they were."""
    try:
        member = confident_half_precision_model(0)
        if not from_logits:
            member = keras.Sequential([member, keras.layers.Softmax()])
        combined = ensemble([member], from_logits=from_logits)
    finally:
        keras.config.set_dtype_policy("float32")
    x = np.random.default_rng(2).uniform(size=(4, 8, 8, 1)).astype(
        "float32")
    scores = to_numpy(member.predict(x, verbose=0)).astype("float64")
    expected = softmax(scores) if from_logits else scores
    got = to_numpy(combined.predict(x, verbose=0))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("vector", [False, True])
def test_single_logit_members_get_a_sigmoid(vector):
    # A softmax over one logit is 1 whatever the input; one over a vector
    # of logits, one a sample (Keras' binary losses take that shape),
    # mixed the batch's samples.
    keras.utils.set_random_seed(0)
    members = [keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(1),
        *([keras.layers.Reshape(())] if vector else [])]) for _ in range(2)]
    x = np.random.default_rng(0).standard_normal((6, 4)).astype("float32")
    logits = [to_numpy(m(x)).astype("float64") for m in members]
    expected = np.mean([1 / (1 + np.exp(-z)) for z in logits], axis=0)
    got = to_numpy(ensemble(members).predict(x, verbose=0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
