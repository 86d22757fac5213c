"""The test runner's plan: every backend's tests run, once each."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests import run_backends
from tests.run_backends import PYTEST_NO_TESTS, backend_code, plan

ALL = ["tensorflow", "jax", "torch"]


def test_the_last_backends_tail_runs_apart_after_the_rest():
    jobs = plan(ALL, ["-q"], workers=2)
    assert jobs == [("jax", (), ()), ("tensorflow", (), ()),
                    ("torch", (), (run_backends.TAIL,)),
                    ("torch", (run_backends.TAIL,), ())]
    # The two torch processes split the suite: what one ignores, the
    # other runs, and it is there to run.
    assert os.path.isdir(os.path.join(run_backends.ROOT, run_backends.TAIL))
    # Distinct names: each process writes its own log and report.
    assert len({run_backends.job_name(job) for job in jobs}) == 4


@pytest.mark.parametrize("backends, args, workers", [
    (ALL, ["tests/layers", "-q"], 2),  # tests named: run as asked
    (ALL, ["tests/test_io.py::test_x"], 2),
    (ALL, [], 1),  # one at a time: a split only adds a start
    (["torch"], [], 2),  # nothing to share the time with
])
def test_no_split_where_it_cannot_help(backends, args, workers):
    jobs = plan(backends, args, workers)
    assert sorted(job[0] for job in jobs) == sorted(backends)
    assert all(job[1:] == ((), ()) for job in jobs)
    assert jobs[0][0] == ("jax" if "jax" in backends else backends[0])


@pytest.mark.parametrize("codes, expected", [
    ([0], 0), ([0, 0], 0), ([0, PYTEST_NO_TESTS], 0),
    ([PYTEST_NO_TESTS, PYTEST_NO_TESTS], PYTEST_NO_TESTS),
    ([0, 1], 1), ([1, PYTEST_NO_TESTS], 1), ([2, 0], 2)])
def test_a_backend_fails_if_a_process_fails_or_none_ran_a_test(codes,
                                                              expected):
    assert backend_code(codes) == expected


def run_main(capsys, folder, *args):
    """The runner on test folder `folder` (outside the project, so its
    jax process imports no Keras and takes a second); returns its exit
    code and output."""
    code = run_backends.main([str(folder), "-q", "-p", "no:cacheprovider",
                              "--backends", "jax", *args])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["--backends", "jax,jax"],  # two processes, one report, counted twice
    ["--junitxml=mine.xml"],  # pytest would write it, not the runner's
    ["--junit-xml", "mine.xml"]])
def test_arguments_that_would_break_the_count_are_refused(capsys, tmp_path,
                                                          args):
    with pytest.raises(SystemExit) as refused:
        run_main(capsys, tmp_path, *args)
    assert refused.value.code == 2
    error = capsys.readouterr().err
    assert "'jax'" in error if "jax,jax" in args else "junit" in error


def test_each_test_counts_once_however_it_failed(capsys, tmp_path):
    # pytest's JUnit report has the test that fails, then errs in
    # teardown, once in `tests` and in each of `failures` and `errors`,
    # as two <testcase> elements; pytest says "1 failed, 2 passed, 1
    # skipped, 2 errors" (the second test passed, then erred).
    (tmp_path / "test_outcomes.py").write_text(
        "import pytest\n"
        "@pytest.fixture\n"
        "def teardown_fails():\n"
        "    yield\n"
        "    raise RuntimeError('teardown')\n"
        "def test_fails_then_errs(teardown_fails): assert False\n"
        "def test_passes_then_errs(teardown_fails): pass\n"
        "def test_passes(): pass\n"
        "def test_skips(): pytest.skip('no')\n")
    code, out = run_main(capsys, tmp_path)
    assert code == 1
    assert out.splitlines()[-1] == "total: 1 passed, 2 failed, 1 skipped"


@pytest.mark.parametrize("spoil", [
    "os.remove(path)",
    "open(path, 'w').write('<testsuites')"])
def test_a_passing_process_without_a_readable_report_fails(capsys, tmp_path,
                                                           spoil):
    # As a plugin or an option that the runner does not know of might.
    (tmp_path / "conftest.py").write_text(
        "import os\n"
        "def pytest_unconfigure(config):\n"
        "    path = config.option.xmlpath\n"
        f"    {spoil}\n")
    (tmp_path / "test_passes.py").write_text("def test_passes(): pass\n")
    code, out = run_main(capsys, tmp_path)
    assert code == 1
    assert "FAILED jax: pytest exit code 0 but no readable JUnit report" \
        in out


def alive(pid):
    """Whether process `pid` runs (a zombie does not: no one may reap
    an orphan in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_runners_processes_and_folder(tmp_path, signum):
    pids = tmp_path / "pids"
    (tmp_path / "test_sleeps.py").write_text(
        "import os, subprocess, sys, time\n"
        "def test_sleeps():\n"
        "    child = subprocess.Popen([sys.executable, '-c',\n"
        "                              'import time; time.sleep(30)'])\n"
        f"    with open({str(pids)!r}, 'w') as pids:\n"
        "        print(os.getpid(), child.pid, file=pids)\n"
        "    time.sleep(30)\n")
    # SIGINT as from a terminal: Python ignores it where its parent did.
    runner = subprocess.Popen(
        [sys.executable, run_backends.__file__, str(tmp_path), "-q",
         "-p", "no:cacheprovider", "--backends", "jax"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started = []
    try:
        report = re.search(r"--junitxml=(\S+)", runner.stdout.readline())
        deadline = time.monotonic() + 30
        while not started and time.monotonic() < deadline:
            time.sleep(0.1)
            started = pids.exists() and pids.read_text().split()
        assert len(started) == 2
        runner.send_signal(signum)
        out = runner.communicate(timeout=30)[0]
        assert runner.returncode == 128 + signum
        assert f"FAILED stopped by {signal.Signals(signum).name}" in out
        # Neither pytest nor its test's process runs on, and they left
        # nothing behind: the folder was removed after they ended.
        assert not [pid for pid in started if alive(pid)]
        assert not os.path.exists(os.path.dirname(report.group(1)))
    finally:
        runner.kill()
        runner.communicate()
        for pid in started:  # only where the runner left them
            if alive(pid):
                os.kill(int(pid), signal.SIGKILL)
