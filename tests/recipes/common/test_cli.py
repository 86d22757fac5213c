"""The flags, backend choice and exits every recipe shares
(recipes/common/cli.py)."""

import gc
import json
import os
import signal
import sys
import time

import keras
import pytest

from recipes import common
from recipes.common import cli
from tests.recipes.common.runs import publishing, run_with, write


def test_mixed_precision_sets_keras_policy_for_the_run_only(tmp_path):
    seen = []

    def run(args):
        seen.append((args.mixed_precision,
                     keras.mixed_precision.global_policy().name))

    assert run_with(["--mixed-precision", "--out", str(tmp_path)], run) == 0
    assert keras.mixed_precision.global_policy().name == "float32"
    assert run_with(["--out", str(tmp_path)], run) == 0
    assert seen == [(True, "mixed_float16"), (False, "float32")]


@pytest.fixture
def two_torch_threads():
    """torch on two CPU threads for the test (one fewer is then one), and
    on as many as before it afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_leave_a_core_gives_torch_a_thread_fewer_for_the_run_only(
        tmp_path, two_torch_threads):
    """With `leave_a_core`, torch computes on one thread fewer during the
    run (its spinning threads took the cores tf.data's threads needed);
    other backends, and recipes without it, keep every thread. After the
    run, and after a run that failed, torch has its threads back.
    `tf_data` alone changes no thread, and the environment in metrics.json
    names TensorFlow where it is set."""
    import torch

    seen = []

    def run(args):
        seen.append(torch.get_num_threads())
        common.finish("demo", args, {}, [])

    for tf_data, leave_a_core in ((True, True), (True, False),
                                  (False, False)):
        out = tmp_path / f"{tf_data}-{leave_a_core}"
        assert run_with(["--out", str(out)], run, tf_data=tf_data,
                        leave_a_core=leave_a_core) == 0
        assert torch.get_num_threads() == 2
        with open(out / "metrics.json") as f:
            ran = set(json.load(f)) & {"tensorflow"}
        assert ran == ({"tensorflow"} if tf_data or
                       keras.backend.backend() == "tensorflow" else set())
    fewer = 1 if keras.backend.backend() == "torch" else 2
    assert seen == [fewer, 2, 2]

    def failing(args):
        seen.append(torch.get_num_threads())
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        run_with(["--out", str(tmp_path / "failed")], failing,
                 leave_a_core=True)
    assert seen[-1] == fewer and torch.get_num_threads() == 2


def test_data_dir_only_where_a_data_set_is_read(tmp_path, capsys):
    seen = []
    assert run_with(["--data-dir", "/data", "--out", str(tmp_path)],
                    lambda args: seen.append(args.data_dir),
                    data_dir=True) == 0
    assert seen == ["/data"]
    with pytest.raises(SystemExit):
        run_with(["--data-dir", "/data", "--out", str(tmp_path)],
                 lambda args: None)
    assert "--data-dir" in capsys.readouterr().err


def test_quick_caps_the_epochs(tmp_path):
    # At most 2: fewer stay as asked.
    seen = []
    for epochs in ("50", "1"):
        run_with(["--quick", "--epochs", epochs, "--out", str(tmp_path)],
                 lambda args: seen.append(args.epochs))
    assert seen == [2, 1]


def test_recipe_error_exits_1_and_keeps_an_existing_folder(tmp_path, capsys):
    def run(args):
        raise common.RecipeError("no data here")

    existing = tmp_path / "kept"
    existing.mkdir()
    assert run_with(["--out", str(existing)], run) == 1
    assert existing.is_dir()
    assert run_with(["--out", str(tmp_path / "new")], run) == 1
    assert not (tmp_path / "new").exists()
    assert "demo: error: no data here" in capsys.readouterr().err


def test_jax_cache_settings_default_to_the_user_cache_and_yield_to_own(
        tmp_path):
    settings = common.jax_cache_settings({"XDG_CACHE_HOME": str(tmp_path)})
    assert settings["JAX_COMPILATION_CACHE_DIR"] == str(
        tmp_path / "kerastrain" / "jax")
    assert float(settings["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]) == 0
    own = {"JAX_COMPILATION_CACHE_DIR": "/mine",
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "1"}
    assert common.jax_cache_settings(own) == {}


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="starts its own jax processes; once is enough")
def test_jax_recipe_fills_the_cache_and_a_cached_rerun_is_identical(
        tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JAX_")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"),
               TF_CPP_MIN_LOG_LEVEL="3")
    metrics = []
    for run in ("cold", "warm"):
        out = tmp_path / run
        subprocess.run(
            # The cheapest recipe (an MLP; digits_resnet took twice as
            # long), one epoch per fit: the range test, the one-cycle fit
            # and the constant-rate fit, each compiled or read from the
            # cache.
            [sys.executable, "-m", "recipes.lr_range_then_one_cycle",
             "--quick", "--epochs", "1", "--backend", "jax", "--out",
             str(out)],
            check=True, env=env, stdout=subprocess.DEVNULL)
        metrics.append(json.loads((out / "metrics.json").read_text()))
        if run == "cold":
            cached = os.listdir(tmp_path / "cache" / "kerastrain" / "jax")
            assert len(cached) > 5  # steps and initializers
    # ROC AUCs: any changed prediction would move them.
    for key in ("max_lr", "test", "baselines"):
        assert metrics[0][key] == metrics[1][key]


@pytest.mark.parametrize("seed", ["-1", str(common.MAX_SEED + 1),
                                  str(2**32), "1.5", "one"])
def test_a_seed_out_of_range_is_an_argparse_error(tmp_path, capsys, seed):
    ran = []
    out = tmp_path / "new"
    with pytest.raises(SystemExit) as exit_info:
        run_with(["--seed", seed, "--out", str(out)], ran.append)
    assert exit_info.value.code == 2
    assert "--seed" in capsys.readouterr().err
    assert not ran and not out.exists()


@pytest.mark.parametrize("flag, value", [
    ("--epochs", "0"), ("--epochs", str(2**31)), ("--batch-size", "-3"),
    ("--batch-size", "99999999999999999999")])
def test_a_count_out_of_range_is_an_argparse_error(tmp_path, capsys, flag,
                                                   value):
    # 3e9 epochs failed in OneCycle, deep in the run: past the optimizers'
    # int32 step count.
    ran = []
    with pytest.raises(SystemExit) as exit_info:
        run_with([flag, value, "--out", str(tmp_path)], ran.append)
    assert exit_info.value.code == 2
    assert (f"{flag}: must be an integer from 1 to 2147483647, got "
            f"{value}") in capsys.readouterr().err
    assert not ran
    assert common.positive_int(str(2**31 - 1)) == 2**31 - 1


def test_the_largest_seed_seeds_keras_and_layers_seeded_from_it(tmp_path):
    import numpy as np

    def run(args):
        keras.utils.set_random_seed(args.seed)
        # The recipes' layers get `seed + i`; a ResNet-110 has 54 blocks.
        # (On torch a layer's seed is an int32: 2**32 - 1 fails here.)
        seed = args.seed + 100
        kept = keras.layers.Dropout(0.5, seed=seed)(
            np.ones((4, 8), "float32"), training=True)
        keras.initializers.GlorotUniform(seed=seed)((8, 8))
        seen.append(float(keras.ops.max(kept)))

    seen = []
    assert run_with(["--seed", str(common.MAX_SEED), "--out",
                     str(tmp_path)], run) == 0
    assert seen == [2.0]


def test_the_largest_seed_is_the_models_limit():
    """`MAX_SEED` is written out (the module must not import kerastrain
    before --backend is set); it must stay kerastrain's model seed limit."""
    from kerastrain._seeds import MODEL_SEED_LIMIT

    assert common.MAX_SEED == MODEL_SEED_LIMIT - 1


def test_the_largest_count_is_the_optimizers_step_count():
    """`MAX_COUNT` is written out for the same reason as `MAX_SEED`; it
    must stay the step count kerastrain's checks allow."""
    from kerastrain._validation import MAX_STEPS

    assert cli.MAX_COUNT == MAX_STEPS


def test_any_failure_removes_the_folders_the_run_created_and_reraises(
        tmp_path):
    def broken(args):
        raise ZeroDivisionError("a bug")

    out = tmp_path / "nest" / "a" / "b"
    with pytest.raises(ZeroDivisionError, match="a bug"):
        run_with(["--out", str(out)], broken)
    # Every folder os.makedirs made for --out, not only the last one.
    assert os.listdir(tmp_path) == []


def test_a_ctrl_c_while_keras_is_imported_removes_the_new_folders(
        tmp_path, monkeypatch):
    """The run's record imports Keras (seconds, in a new process), before
    the run's own failure handling: the folders made for --out stayed."""
    def interrupted(name, args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_record", interrupted)
    out = tmp_path / "nest" / "a" / "b"
    with pytest.raises(KeyboardInterrupt):
        run_with(["--out", str(out)], backing_up(), resumable=True)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("out", [common.STAGING,
                                 os.path.join("run", common.STAGING, "x")])
def test_an_out_inside_a_staging_folder_is_an_argparse_error(
        tmp_path, capsys, out):
    """The next run into the folder above empties it: a finished run
    published there was lost without a word."""
    with pytest.raises(SystemExit) as exit_info:
        run_with(["--out", str(tmp_path / out)], publishing(["a"], "x"))
    assert exit_info.value.code == 2
    assert (f"--out {tmp_path / out}: a {common.STAGING} folder is where a "
            "run stages") in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_recipe_error_removes_new_parents_up_to_the_first_that_existed(
        tmp_path, capsys):
    def run(args):
        raise common.RecipeError("no data here")

    (tmp_path / "nest").mkdir()
    assert run_with(["--out", str(tmp_path / "nest" / "a" / "b")], run) == 1
    assert os.listdir(tmp_path) == ["nest"]
    assert os.listdir(tmp_path / "nest") == []
    assert "demo: error: no data here" in capsys.readouterr().err


def test_the_write_probe_leaves_a_file_of_the_same_name_alone(tmp_path):
    (tmp_path / ".write-test").write_text("mine")
    assert common.ensure_writable(str(tmp_path)) == []
    assert os.listdir(tmp_path) == [".write-test"]
    assert (tmp_path / ".write-test").read_text() == "mine"


def test_the_wall_time_counts_the_import_of_keras(tmp_path, monkeypatch):
    # Keras and its backend are imported where the run's policy is set,
    # after the flags: 5-15 s of a run a user waits for.
    def slow_import(run, args):
        time.sleep(0.3)
        run(args)

    monkeypatch.setattr(cli, "_run_with_policy", slow_import)
    start = time.perf_counter()
    assert run_with(["--out", str(tmp_path)],
                    publishing(["model.keras"], "run")) == 0
    elapsed = time.perf_counter() - start
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.3 <= metrics["wall_time_s"] <= round(elapsed, 1) + 0.05


def backing_up(crash_at=None, fail=None):
    """A resumable run that "trains" `args.epochs` epochs, backing each
    up in its staging folder, and goes on from the backup it finds there:
    interrupted at epoch `crash_at`, or raising `fail` before training."""
    def run(args):
        if fail is not None:
            raise fail
        backup = os.path.join(args.out, "backup.txt")
        start = 0
        args.resumed["resumed_from_epoch"] = None
        if os.path.exists(backup):
            with open(backup) as f:
                start = args.resumed["resumed_from_epoch"] = int(f.read())
        for epoch in range(start, args.epochs):
            if epoch == crash_at:
                raise KeyboardInterrupt("simulated crash")
            with open(backup, "w") as f:
                f.write(str(epoch + 1))
        os.remove(backup)
        common.finish("demo", args, {"epochs": args.epochs}, [])
    return run


def resumable(argv, run):
    return run_with(argv, run, resumable=True)


def test_resume_goes_on_with_the_interrupted_run_of_the_same_flags(
        tmp_path, capsys):
    out, staging = tmp_path / "run", tmp_path / "run" / common.STAGING
    with pytest.raises(KeyboardInterrupt):
        resumable(["--out", str(out), "--seed", "3"], backing_up(crash_at=2))
    assert "same flags and --resume" in capsys.readouterr().err
    assert sorted(os.listdir(staging)) == ["backup.txt", "run.json"]
    record = json.loads((staging / "run.json").read_text())
    assert record["backend"] == keras.backend.backend()
    assert record["flags"]["seed"] == 3 and "out" not in record["flags"]
    assert resumable(["--out", str(out), "--seed", "3", "--resume"],
                     backing_up()) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 2
    # The record is no output; the staging folder is gone.
    assert sorted(os.listdir(out)) == ["metrics.json"]
    assert metrics["outputs"] == []


def test_without_resume_a_run_starts_afresh(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        resumable(["--out", str(out)], backing_up(crash_at=2))
    assert resumable(["--out", str(out)], backing_up()) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] is None


def test_flags_that_change_no_training_leave_the_record_alone():
    """A run started with `--download` (cifar10_resnet), its data there
    now, was refused a resume without it: "started otherwise: --download
    True (this run: False)"; so was one of `diabetes_risk` started with a
    `--tuner` but no `--tune`."""
    import argparse

    def record(**flags):
        return cli.run_record("demo", argparse.Namespace(
            seed=0, epochs=3, out="a", created_folders=[], **flags))

    assert record(download=True) == record(download=False)
    assert record(download=True, data_dir="x") != record(
        download=True, data_dir="y")
    # Nor do the search's flags where the optional search is off
    # (`diabetes_risk` without `--tune`); they do where it runs.
    search = dict(tuner="random", max_trials=10)
    assert record(tune=False, **search) == record(
        tune=False, tuner="bayesian", max_trials=3)
    assert record(tune=True, **search) != record(
        tune=True, tuner="bayesian", max_trials=10)
    assert record(**search) != record(tuner="bayesian", max_trials=10)


def test_resume_refuses_a_run_started_otherwise_and_keeps_it(
        tmp_path, capsys):
    out, staging = tmp_path / "run", tmp_path / "run" / common.STAGING
    with pytest.raises(KeyboardInterrupt):
        resumable(["--out", str(out)], backing_up(crash_at=2))
    capsys.readouterr()
    assert resumable(["--out", str(out), "--epochs", "4", "--seed", "1",
                      "--resume"], backing_up()) == 1
    err = capsys.readouterr().err
    assert ("was started otherwise: --epochs 3 (this run: 4), --seed 0 "
            "(this run: 1)") in err
    assert "without --resume to start afresh" in err
    assert sorted(os.listdir(staging)) == ["backup.txt", "run.json"]
    # Another backend, or another recipe, differs too.
    record = json.loads((staging / "run.json").read_text())
    (staging / "run.json").write_text(json.dumps(
        {**record, "backend": "other", "recipe": "another"}))
    assert resumable(["--out", str(out), "--resume"], backing_up()) == 1
    assert ("otherwise: recipe another (this run: demo), backend other "
            f"(this run: {keras.backend.backend()})"
            ) in capsys.readouterr().err
    # A recipe error of a run that resumes keeps what it resumes.
    (staging / "run.json").write_text(json.dumps(record))
    assert resumable(["--out", str(out), "--resume"], backing_up(
        fail=common.RecipeError("no data"))) == 1
    assert sorted(os.listdir(staging)) == ["backup.txt", "run.json"]
    assert resumable(["--out", str(out), "--resume"], backing_up()) == 0
    assert json.loads((out / "metrics.json").read_text())[
        "resumed_from_epoch"] == 2


def test_resume_with_nothing_to_resume_starts_afresh(tmp_path, capsys):
    out = tmp_path / "run"
    assert resumable(["--out", str(out), "--resume"], backing_up()) == 0
    assert "no interrupted run in" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())[
        "resumed_from_epoch"] is None
    # A failure before anything is backed up leaves nothing to resume:
    # the record goes with the folders the run made.
    with pytest.raises(ZeroDivisionError):
        resumable(["--out", str(tmp_path / "new")],
                  backing_up(fail=ZeroDivisionError("a bug")))
    assert not (tmp_path / "new").exists()


def test_only_a_resumable_recipe_takes_resume(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_with(["--out", str(tmp_path), "--resume"], backing_up())
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --resume" in capsys.readouterr().err
    # Nor does it write a record, or a resumed_from_epoch.
    with pytest.raises(KeyboardInterrupt):
        run_with(["--out", str(tmp_path)], backing_up(crash_at=1))
    assert os.listdir(tmp_path / common.STAGING) == ["backup.txt"]
    assert run_with(["--out", str(tmp_path)], backing_up()) == 0
    assert "resumed_from_epoch" not in json.loads(
        (tmp_path / "metrics.json").read_text())


class CtrlCOnFloat:
    """A log value whose conversion to float is interrupted by a Ctrl-C,
    as a jax `fit` is while `pythonify_logs` waits for a batch's logs."""

    def __float__(self):
        signal.raise_signal(signal.SIGINT)
        return 1.0


def pythonify_logs():
    """Keras' own, run on a log value that a Ctrl-C interrupts."""
    from keras.src.utils.python_utils import pythonify_logs

    return pythonify_logs({"loss": CtrlCOnFloat()})


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler for the test, as in a terminal: a
    process started in the background by a shell without job control (a
    CI script's `&`) ignores SIGINT, and the handler is left alone then."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def wait_for_a_resent_interrupt():
    for _ in range(500):  # 5 s: a KeyboardInterrupt ends it
        time.sleep(0.01)


def test_a_ctrl_c_keras_drops_still_stops_the_run(tmp_path, capsys,
                                                  monkeypatch, ctrl_c_raises):
    # The premise: under Python's own handler, Keras' bare `except: pass`
    # drops it, and leaves the value as it was.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert isinstance(pythonify_logs()["loss"], CtrlCOnFloat)
    # Only the Ctrl-C sent again soon can stop the run.
    monkeypatch.setattr(cli, "INTERRUPT_RETRY_S", 60.0)
    converted = []

    def run(args):
        write(os.path.join(args.out, "partial.txt"), "")
        converted.append(pythonify_logs()["loss"])
        wait_for_a_resent_interrupt()
        raise AssertionError("the Ctrl-C was dropped")

    with pytest.raises(KeyboardInterrupt):
        run_with(["--out", str(tmp_path / "run")], run)
    assert converted == [1.0]  # raised after Keras' function, not in it
    assert "stopped" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_dropped_as_the_block_ends_is_raised_at_its_end(
        ctrl_c_raises):
    with pytest.raises(KeyboardInterrupt):
        with cli.interrupts_delivered():
            pythonify_logs()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_dropped_elsewhere_is_raised_again(monkeypatch,
                                                    ctrl_c_raises):
    """Code that drops a KeyboardInterrupt where it is not known to."""
    monkeypatch.setattr(cli, "INTERRUPT_RETRY_S", 0.05)
    dropped = []
    with pytest.raises(KeyboardInterrupt):
        with cli.interrupts_delivered():
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                dropped.append("once")
            wait_for_a_resent_interrupt()
    assert dropped == ["once"]


def test_a_ctrl_c_in_a_gc_callback_still_stops_the_run(monkeypatch,
                                                       ctrl_c_raises):
    """JAX collects XLA's garbage in a callback of the garbage collector,
    where Python prints a KeyboardInterrupt as "Exception ignored" and
    drops it."""
    def interrupting(phase, info):
        if phase == "start" and not sent:
            sent.append(phase)
            signal.raise_signal(signal.SIGINT)

    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)
    gc.callbacks.append(interrupting)
    try:
        sent = []
        gc.collect()  # the premise: Python drops it
        assert sent and [type(d.exc_value) for d in dropped] == [
            KeyboardInterrupt]
        sent, dropped[:] = [], []
        with pytest.raises(KeyboardInterrupt):
            with cli.interrupts_delivered():
                gc.collect()
                wait_for_a_resent_interrupt()
    finally:
        gc.callbacks.remove(interrupting)
    assert sent and not dropped  # raised once, where the run was


def test_a_ctrl_c_leaves_the_block_at_once_and_once(monkeypatch,
                                                    ctrl_c_raises):
    """Raised where it arrives, it is not raised again after the block;
    nor is a Ctrl-C that a shell has the process ignore raised at all."""
    monkeypatch.setattr(cli, "INTERRUPT_RETRY_S", 0.05)
    with pytest.raises(KeyboardInterrupt):
        with cli.interrupts_delivered():
            signal.raise_signal(signal.SIGINT)
    time.sleep(5 * cli.INTERRUPT_RETRY_S)  # nothing is sent again
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with cli.interrupts_delivered():
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
