"""A `.keras` file saved on one backend loads and predicts the same on the
others, and trains there (each backend's run saves, and one subprocess per
other backend loads everything). Saved as kerastrain's callbacks and
recipes save, with `io.save_model` (whose portable compile config
`tests/test_io.py` checks)."""

import json

import keras
import numpy as np

import kerastrain
from kerastrain import io
from kerastrain.layers import DropPath, InstanceNormalization, ResidualBlock
from kerastrain.models import ensemble, resnet
from kerastrain.optimizers import LARS, SGD, AdamW
from kerastrain.schedules import CyclicLR, OneCycle, Warmup
from tests.support import other_backends, run_python, to_numpy

HEADER = "import json, numpy as np, keras, kerastrain\n"
LOAD_AND_PREDICT = """
model = keras.saving.load_model({path!r})
x = np.load({x_path!r})
np.save({out_path!r}, keras.ops.convert_to_numpy(model.predict(x, verbose=0)))
print(json.dumps([[type(l).__name__ for l in model.layers],
                  model.optimizer.get_config(),
                  int(keras.ops.convert_to_numpy(model.optimizer.iterations))],
                 default=str))
"""
# Compiled with Keras' own Adam and the default jit_compile: saved on
# torch, Keras' file names a torch-only class; saved on jax, it turns on
# torch.compile where it loads on torch. Loaded, it must train as a model
# compiled on the loading backend would.
TRAIN_LIKE_A_FRESH_MODEL = """
fresh = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
fresh.compile(optimizer="adam", loss="mse")
before = keras.ops.convert_to_numpy(model.layers[0].kernel).copy()
model.fit(np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"), verbose=0)
after = keras.ops.convert_to_numpy(model.layers[0].kernel)
print(json.dumps([model.jit_compile, fresh.jit_compile,
                  type(model.optimizer).__module__,
                  type(fresh.optimizer).__module__,
                  bool(np.any(before != after))]))
"""


def model_with_every_layer():
    """Every kerastrain layer, each norm, a bottleneck, DropPath and a
    regularizer, with non-default weights and batch-norm statistics."""
    inputs = keras.Input((8, 8, 3))
    x = InstanceNormalization()(inputs)
    x = ResidualBlock(4, norm="batch", drop_path_rate=0.2, seed=1)(x)
    x = ResidualBlock(2, strides=2, bottleneck=True, norm="group",
                      activation="gelu")(x)
    x = ResidualBlock(8, norm="layer", kernel_regularizer="l2")(x)
    x = ResidualBlock(8, norm=None, shortcut=False)(x)
    x = DropPath(0.3)(x)
    outputs = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for weight in model.weights:
        shape = tuple(weight.shape)
        low = 0.5 if "variance" in weight.path else -0.5
        weight.assign(rng.uniform(low, low + 1.0, shape).astype("float32"))
    return model


def mixed_precision_model():
    """A mixed_float16 model (float32 logits), made under that policy."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        return keras.Sequential([
            keras.Input((3,)), keras.layers.Dense(4),
            keras.layers.Dense(2, dtype="float32")])
    finally:
        keras.config.set_dtype_policy(previous)


def test_saved_models_load_predict_the_same_and_train_on_other_backends(
        tmp_path):
    one_cycle = OneCycle(0.1, 100, three_phase=True)
    members = [keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
        InstanceNormalization(), keras.layers.Flatten(),
        keras.layers.Dense(3)]) for _ in range(2)]
    models = {
        "every_layer": (model_with_every_layer(), AdamW(
            Warmup(CyclicLR(0.01, 0.1, 10), 5),
            beta_1=one_cycle.momentum_schedule)),
        "resnet": (resnet((8, 8, 1), 4, depth=11, bottleneck=True, width=4,
                          norm="instance", drop_path_rate=0.1, seed=0),
                   SGD(one_cycle, one_cycle.momentum_schedule,
                       nesterov=True)),
        "ensemble": (ensemble(members), LARS(0.1, weight_decay=1e-4)),
        # Wrapped in a LossScaleOptimizer by compile: trained, its state
        # (the schedules' step) must load with it.
        "mixed_precision": (mixed_precision_model(), SGD(
            one_cycle, one_cycle.momentum_schedule)),
        # Last: the script trains the model it loaded last.
        "keras_adam": (keras.Sequential([keras.Input((3,)),
                                         keras.layers.Dense(2)]), "adam"),
    }
    script, expected, configs = HEADER, {}, {}
    for key, (model, optimizer) in models.items():
        model.compile(optimizer=optimizer, loss="mse")
        if key in ("keras_adam", "mixed_precision"):  # optimizer state
            model.fit(np.ones((4, 3), "float32"),
                      np.zeros((4, 2), "float32"), batch_size=2, verbose=0)
            assert "get_compile_config" not in vars(model)
            assert model.get_compile_config()["jit_compile"] == (
                model.jit_compile)
        optimizer = model.optimizer
        configs[key] = json.loads(json.dumps(optimizer.get_config(),
                                             default=str))
        x = np.random.default_rng(1).standard_normal(
            (4,) + tuple(model.input_shape[1:])).astype("float32")
        expected[key] = to_numpy(model.predict(x, verbose=0))
        path = str(tmp_path / f"{key}.keras")
        x_path = str(tmp_path / f"{key}_x.npy")
        io.save_model(model, path)
        np.save(x_path, x)
        # Same backend first: an in-process round trip.
        reloaded = keras.saving.load_model(path)
        np.testing.assert_allclose(to_numpy(reloaded.predict(x, verbose=0)),
                                   expected[key], atol=1e-6)
        assert reloaded.optimizer.get_config() == optimizer.get_config()
        script += LOAD_AND_PREDICT.format(
            path=path, x_path=x_path,
            out_path=str(tmp_path / f"{key}_{{backend}}.npy"))
    script += TRAIN_LIKE_A_FRESH_MODEL

    # One subprocess per other backend loads every model.
    for backend in other_backends():
        lines = run_python(backend, script.replace("{backend}", backend))
        lines = lines.strip().splitlines()
        assert len(lines) == len(models) + 1, lines
        for (key, (model, _)), line in zip(models.items(), lines):
            names, optimizer_config, iterations = json.loads(line)
            assert names == [type(l).__name__ for l in model.layers]
            assert optimizer_config == configs[key], (key, backend)
            assert iterations == int(to_numpy(model.optimizer.iterations))
            # float16 layers round on each backend its own way: a float16
            # step (1e-3 near 1) of a hidden unit is no error (jax's and
            # TensorFlow's came 1.7e-4 apart on a CPU with AVX512-FP16).
            atol = 2e-3 if key == "mixed_precision" else 1e-5
            np.testing.assert_allclose(
                np.load(tmp_path / f"{key}_{backend}.npy"), expected[key],
                atol=atol, err_msg=f"{key} loaded on {backend}")
        jit, fresh_jit, module, fresh_module, trained = json.loads(lines[-1])
        assert (jit, module) == (fresh_jit, fresh_module), backend
        assert trained, backend


def test_layers_are_registered_under_the_kerastrain_package():
    for cls in (InstanceNormalization, DropPath, ResidualBlock, OneCycle,
                CyclicLR, Warmup, SGD, AdamW, LARS):
        name = keras.saving.get_registered_name(cls)
        assert name == f"kerastrain>{cls.__name__}"
        assert keras.saving.get_registered_object(name) is cls
    assert kerastrain.__version__


def numpy_typed():
    """kerastrain's serializable pieces built from NumPy scalars, as a
    config read from an array or a search hands them over."""
    from kerastrain.schedules import (LinearDecay, MultiStepDecay,
                                      PhaseSchedule, StepDecay)

    f32, i64 = np.float32, np.int64
    return [
        OneCycle(f32(0.1), i64(100), pct_start=f32(0.25)),
        CyclicLR(f32(0.01), f32(0.1), i64(7), gamma=f32(0.99)),
        Warmup(StepDecay(f32(0.1), i64(7), gamma=f32(0.5)), i64(5)),
        MultiStepDecay(f32(0.1), [i64(7), i64(21)], gamma=f32(0.5)),
        LinearDecay(f32(0.1), i64(21), end_factor=f32(0.0)),
        PhaseSchedule([i64(0), i64(10)], [f32(0.1), f32(0.0)]),
        SGD(f32(0.1), momentum=f32(0.9), weight_decay=f32(1e-4)),
        AdamW(f32(0.1), weight_decay=f32(1e-4), beta_1=f32(0.9)),
        LARS(f32(0.1), momentum=f32(0.9), trust_coefficient=f32(1e-3)),
        DropPath(f32(0.1), seed=i64(1)),
        InstanceNormalization(axis=i64(-1), epsilon=f32(1e-5)),
        ResidualBlock(i64(4), strides=i64(2), drop_path_rate=f32(0.1),
                      seed=i64(3)),
    ]


def test_numpy_arguments_give_plain_configs():
    """A NumPy seed reached Keras' seed generator, which refused it
    (DropPath, ResidualBlock, resnet), and NumPy integers reached
    configs, which JSON cannot write."""
    for piece in numpy_typed():
        config = piece.get_config()
        again = type(piece).from_config(json.loads(json.dumps(config)))
        assert again.get_config() == config, type(piece).__name__
    model = resnet((8, 8, 3), 4, depth=8, width=4,
                   drop_path_rate=np.float32(0.1), seed=np.int64(5))
    assert json.dumps(model.get_config())
    # The callback's numbers become the optimizer's, saved with the model.
    from kerastrain.callbacks import GradientAccumulation

    steps = GradientAccumulation({np.int64(0): np.int64(2)}).steps
    assert [type(n) for n in (*steps, *steps.values())] == [int, int]
