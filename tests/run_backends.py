"""Runs the test suite once per Keras backend; fails if any backend fails.

Keras fixes its backend at import, so each backend gets its own pytest
process with `KERAS_BACKEND` set. Two of them run at a time (`--jobs`):
much of a backend's time is single-threaded compilation (XLA, tf.function),
so on two cores the processes overlap well (three at a time took 13-27%
longer, measured back to back). Each process, and the subprocesses its
cross-backend tests start, gets a fresh JAX persistent compilation cache in
a temporary folder (unless `JAX_COMPILATION_CACHE_DIR` is set already):
the tests build the same small models again and again, and a program
compiled before loads instead. XLA compiles at its lowest optimization
level (`XLA_TEST_FLAGS`, unless `XLA_FLAGS` is set). torch computes on
its process's share of the cores (`torch_threads`). The last backend's
tests run as two processes (`TAIL`), so that the two cores share its
time instead of one process ending it alone. Each process's output is
printed whole when it ends, with its ten slowest tests.
Arguments are passed on to pytest, e.g. `python tests/run_backends.py -k
instance` or `--backends jax,torch -x`, but not `--junitxml`: the runner
reads each process's own report. The last line sums up all backends as
"total: N passed, N failed", counting each test once. SIGINT or SIGTERM
stops the pytest processes too (and the processes they started) before the
temporary folder goes.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree

BACKENDS = ("tensorflow", "jax", "torch")
# Run as a process of its own, after the rest of its backend's tests: the
# tests of the last backend to start that end the suite. The jax and then
# the torch process took as long as the tensorflow one, 641 s against
# 529 + 234 s on 2026-12-07, and the torch process then ran 122 s alone
# (on one thread: `torch_threads`). Its data tests, 55 s of those 234,
# now take a core that the tensorflow process frees (README, Tests).
TAIL = "tests/data"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# pytest's exit codes: 0 all passed, 1 some failed, 5 no test collected.
PYTEST_NO_TESTS = 5
XLA_TEST_FLAGS = ("--xla_backend_optimization_level=0 "
                  "--xla_llvm_disable_expensive_passes=true")


def count_results(junit_xml):
    """Returns (passed, failed, skipped) from a pytest JUnit XML report,
    each test counted once: failed if it failed or errored at any stage
    (collection, setup, call, teardown), else skipped if it was skipped
    (xfail too), else passed.

    Not from the suite's `tests`, `failures` and `errors`: a test that
    fails and then errors in teardown is one in `tests` but one in each of
    the others, and pytest writes it as two `<testcase>` elements of the
    same name (one `failure`, one `error`), so neither the counts nor the
    elements are tests. pytest's own summary says "1 failed, 1 error" for
    it, and "1 passed, 1 error" for a test that only errs in teardown;
    here each is one failed test.
    """
    outcomes = {}
    for case in ElementTree.parse(junit_xml).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            outcome = 1
        else:
            outcome = 2 if "skipped" in tags else 0
        key = (case.get("classname"), case.get("name"))
        if key not in outcomes or outcome == 1:  # a failure outweighs
            outcomes[key] = outcome
    counts = [0, 0, 0]  # passed, failed, skipped
    for outcome in outcomes.values():
        counts[outcome] += 1
    return tuple(counts)


def torch_threads(jobs):
    """The threads torch computes on in each of `jobs` processes: their
    share of the cores this process may run on, at least one.

    By default torch takes every core, and its threads wait for work by
    spinning: beside another process on two cores, they took that
    process's core. On 2026-12-07 the torch process alone on the whole
    suite took 188 s with two threads and 184 s with one, but 213 s and
    168 s of CPU: 45 s that the other process gets back. Beside the
    others, torch's tuning tests took 59 s with its default threads and
    42 s with one. TensorFlow and XLA keep theirs: one thread each was
    slower in an earlier A/B, and within the noise in a later one
    (README, Tests).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // jobs)


def start_job(job, pytest_args, folder, threads):
    """Starts pytest on job `(backend, paths, ignored)`, in folder
    `folder` its output (`<name>.log`), JUnit report and JAX compilation
    cache; torch computes on `threads` threads (`OMP_NUM_THREADS`, unless
    it is set: OpenMP's variable, which NumPy's BLAS and scikit-learn read
    too, in every backend's process). Returns (process, log)."""
    backend, paths, ignored = job
    name = job_name(job)
    log = open(os.path.join(folder, f"{name}.log"), "w+")
    env = dict(os.environ, KERAS_BACKEND=backend,
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL",
                                                   "2"))
    env.setdefault("OMP_NUM_THREADS", str(threads))
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        # One folder per process: JAX writes cache entries in place, so
        # two processes must not read each other's half-written entries.
        # Every program is cached, not only those taking >= 1 s.
        env.update(JAX_COMPILATION_CACHE_DIR=os.path.join(
            folder, f"{name}-jax-cache"),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    if "XLA_FLAGS" not in os.environ:
        # XLA's CPU back end at its lowest optimization level: the tests'
        # programs are small and run a few steps each, so compiling them
        # is much of the jax process's time (a tenth less with this: the
        # recipe, tuning and model tests took 479 s instead of 525 s).
        # Results agree to float32 rounding (no fast-math either way: a
        # quick digits run's losses moved in the last bit, its predictions
        # not at all). Set XLA_FLAGS, empty too, to test with your own.
        env.update(XLA_FLAGS=XLA_TEST_FLAGS)
    # The slowest tests are listed at the end: the suite has a time budget.
    command = [sys.executable, "-m", "pytest",
               f"--junitxml={os.path.join(folder, name + '.xml')}",
               "--durations=10", *pytest_args,
               *[f"--ignore={path}" for path in ignored], *paths]
    print(f"===== KERAS_BACKEND={backend}: {' '.join(command[1:])}",
          flush=True)
    # A session of its own, so that `stop_jobs` reaches the processes
    # that its tests start too (its process group).
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT,
                               start_new_session=True)
    return process, log


def job_name(job):
    backend, paths, _ = job
    return "-".join([backend, *(p.replace("/", "_") for p in paths)])


def plan(backends, pytest_args, workers):
    """The pytest processes to run, in order, as (backend, paths, ignored):
    one per backend, jax first, the slowest; with more than one worker,
    the last backend's tests in `TAIL` in a process of their own at the
    end, unless `pytest_args` names tests to run (a path)."""
    order = sorted(backends, key=lambda b: b != "jax")
    jobs = [(backend, (), ()) for backend in order]
    named = any(os.path.exists(os.path.join(ROOT, arg.split("::")[0]))
                for arg in pytest_args if not arg.startswith("-"))
    if len(order) > 1 and workers > 1 and not named:
        jobs[-1] = (order[-1], (), (TAIL,))
        jobs.append((order[-1], (TAIL,), ()))
    return jobs


def backend_code(codes):
    """One backend's exit code from its processes' pytest exit codes: a
    process that collected no tests (`-k` left it none) is fine if
    another did."""
    failed = [code for code in codes if code not in (0, PYTEST_NO_TESTS)]
    if failed:
        return failed[0]
    return 0 if 0 in codes else PYTEST_NO_TESTS


def print_job(job, log, ending):
    """Prints the output of job `job`'s process from `log`, and a last
    line saying how it ended (`ending`)."""
    name = " ".join([job[0], *job[1]])
    log.seek(0)
    print(f"\n===== {name} output", flush=True)
    sys.stdout.write(log.read())
    log.close()
    print(f"===== {name}: {ending}", flush=True)


def signal_group(process, signum):
    """Sends `signum` to `process`'s process group (`start_job`): pytest
    and the processes its tests started, if any is left."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def stop_jobs(running, timeout=5):
    """Ends the processes in `running` ({job: (process, log, start)}),
    SIGTERM first and SIGKILL to whatever is left after `timeout` s, and
    waits for them: before the runner's temporary folder goes, or they
    would run on without it (re-creating it for their reports) and
    without anyone to read them."""
    for process, _, _ in running.values():
        signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process, _, _ in running.values():
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for job, (process, log, start) in list(running.items()):
        signal_group(process, signal.SIGKILL)
        process.wait()
        del running[job]
        print_job(job, log, f"stopped after "
                            f"{time.perf_counter() - start:.0f} s")


def run_jobs(jobs, pytest_args, folder, workers):
    """Runs `jobs` (see `plan`), `workers` at a time, each taken by the
    first worker free; returns {job: pytest exit code}. Whatever ends it
    early (SIGINT, or SIGTERM in `main`) ends the running ones too."""
    waiting, running, codes = list(jobs), {}, {}
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                job = waiting.pop(0)
                process, log = start_job(job, pytest_args, folder,
                                         torch_threads(workers))
                running[job] = (process, log, time.perf_counter())
            time.sleep(0.5)
            for job, (process, log, start) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[job]
                codes[job] = process.returncode
                print_job(job, log, f"exit code {process.returncode} in "
                                    f"{time.perf_counter() - start:.0f} s")
    finally:
        stop_jobs(running)
    return codes


def junit_option(pytest_args):
    """The first of `pytest_args` that sets pytest's JUnit report, if
    any (pytest takes no abbreviations)."""
    for arg in pytest_args:
        if arg == "--":
            break
        if arg.split("=")[0] in ("--junitxml", "--junit-xml"):
            return arg
    return None


class Stopped(BaseException):
    """A signal the runner was sent, as an exception: raised where the
    runner is, it ends the pytest processes (`run_jobs`) and the
    temporary folder as it unwinds, which SIGTERM's default, to end at
    once, would not. A BaseException, as KeyboardInterrupt is, that no
    `except Exception` takes for an error."""


def raise_stopped(signum, frame):
    """SIGTERM's handler in `main`."""
    raise Stopped(signum)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated subset of " + ", ".join(
                            BACKENDS))
    parser.add_argument("--jobs", type=int, default=2,
                        help="backends run at the same time (default 2)")
    args, pytest_args = parser.parse_known_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {BACKENDS}")
    # Twice the same backend would run its tests twice, in processes of
    # the same name, one report overwriting the other.
    repeated = sorted({b for b in backends if backends.count(b) > 1})
    if repeated:
        parser.error(f"backend(s) {repeated} named more than once")
    # pytest keeps the last --junitxml: the runner's report, which it
    # counts, would not be written.
    junit = junit_option(pytest_args)
    if junit:
        parser.error(f"{junit}: the runner writes each process's JUnit "
                     f"report itself and counts the tests from it")

    totals = [0, 0, 0]
    failures = []
    start = time.perf_counter()
    # Not where SIGTERM is ignored or handled already, nor off the main
    # thread (which alone may set handlers).
    on_sigterm = (threading.current_thread() is threading.main_thread()
                  and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    if on_sigterm:
        signal.signal(signal.SIGTERM, raise_stopped)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workers = max(1, args.jobs)
            jobs = plan(backends, pytest_args, workers)
            codes = run_jobs(jobs, pytest_args, tmp, workers)
            for backend in backends:
                code = backend_code([codes[job] for job in jobs
                                     if job[0] == backend])
                if code == PYTEST_NO_TESTS:
                    failures.append(f"{backend}: no tests were collected")
                elif code != 0:
                    failures.append(f"{backend}: pytest exit code {code}")
            for job in jobs:
                report = os.path.join(tmp, f"{job_name(job)}.xml")
                try:
                    counts = count_results(report)
                except (OSError, ElementTree.ParseError) as error:
                    # A failed process may have written none (a usage
                    # error); one that passed must have.
                    if codes[job] in (0, PYTEST_NO_TESTS):
                        failures.append(
                            f"{' '.join([job[0], *job[1]])}: pytest exit "
                            f"code {codes[job]} but no readable JUnit "
                            f"report ({error})")
                    continue
                for i, n in enumerate(counts):
                    totals[i] += n
    except (KeyboardInterrupt, Stopped) as stop:
        signum = (stop.args[0] if isinstance(stop, Stopped)
                  else signal.SIGINT)
        print(f"\nFAILED stopped by {signal.Signals(signum).name} after "
              f"{time.perf_counter() - start:.0f} s; its pytest processes "
              f"were ended", flush=True)
        return 128 + signum
    finally:
        if on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    print(f"\nall backends: {time.perf_counter() - start:.0f} s")
    passed, failed, skipped = totals
    print()
    for failure in failures:
        print(f"FAILED {failure}")
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failures or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
