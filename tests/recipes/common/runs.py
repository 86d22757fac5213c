"""Helpers that run a demo recipe through `run_main`, a run that stages
files to publish, and a recipe to its end, or crashed mid-`fit` and
checked after its `--resume`."""

import json
import os

from recipes import common


def run_with(argv, run, **flags):
    return common.run_main("demo", "Demo recipe.", run, argv, epochs=3,
                           batch_size=4, **flags)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def publishing(outputs, text):
    """A run that writes `outputs` (paths inside its folder), each holding
    `text`, then finishes."""
    def run(args):
        for name in outputs:
            write(os.path.join(args.out, name), text)
        common.finish("demo", args, {"run": text}, [])
    return run


def finished_run(tmp_path_factory, main, flags):
    """Runs recipe `main(flags)` into a new folder, to its end; returns
    the folder (for a module's fixture: a run costs 10-50 s)."""
    out = tmp_path_factory.mktemp("recipe") / "run"
    assert main(flags + ["--out", str(out)]) == 0
    return out


def crashed(main, flags, monkeypatch, epoch, batch, caller=None, call=1,
            method="fit_passes"):
    """Runs recipe `main(flags)` until a crash (KeyboardInterrupt, as a
    Ctrl-C) after batch `batch` of epoch `epoch` (None: before it starts)
    of the `call`-th `fit_passes` that module `caller` (default
    `kerastrain.data`'s users through it) makes: a search's trials make
    one each. `method` names another function of `caller` that takes the
    `callbacks` of a `fit` (`caller=keras.Model, method="fit"`: every
    `fit`, a range test's too)."""
    import pytest

    import kerastrain.data
    from tests.support import CrashAt

    caller = kerastrain.data if caller is None else caller
    real, calls = getattr(caller, method), []

    def crashing(*args, callbacks=None, **kwargs):
        calls.append(None)
        if len(calls) == call:
            if epoch is None:
                raise KeyboardInterrupt("simulated crash")
            callbacks = [*(callbacks or []), CrashAt(epoch, batch)]
        return real(*args, callbacks=callbacks, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(caller, method, crashing)
        with pytest.raises(KeyboardInterrupt):
            main(flags)


def assert_resumed_as_uninterrupted(out, expected_out, resumed,
                                    metrics_keys, models):
    """Checks the run published in `out`, resumed from where `resumed`
    says (`{metrics key: value}`, None in the uninterrupted run's; for a
    recipe of several fits, a dict of each fit's epoch, None for each in
    the uninterrupted run's), against
    the uninterrupted run in `expected_out`: the `metrics_keys` of their
    `metrics.json`, their `history.csv` and the weights of each of
    `models` (paths in the folders), to the bit."""
    import keras
    import numpy as np

    from tests.support import to_numpy

    metrics, expected = (json.loads((folder / "metrics.json").read_text())
                         for folder in (out, expected_out))
    for key, value in resumed.items():  # a dict by fit, or one epoch
        assert (metrics[key], expected[key]) == (value, {
            fit: None for fit in value} if isinstance(value, dict) else
            None), key
    for key in metrics_keys:
        assert metrics[key] == expected[key], key
    assert (out / "history.csv").read_text() == (
        expected_out / "history.csv").read_text()
    assert set(os.listdir(out)) == set(os.listdir(expected_out))
    for name in models:
        resumed_model, uninterrupted = (keras.saving.load_model(folder / name)
                                        for folder in (out, expected_out))
        for a, b in zip(resumed_model.weights, uninterrupted.weights):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
