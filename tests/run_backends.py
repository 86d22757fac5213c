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
its process's share of the cores (`torch_threads`). Each process's output
is printed whole when it ends, with its ten slowest tests.
Arguments are passed on to pytest, e.g. `python tests/run_backends.py -k
instance` or `--backends jax,torch -x`. The last line sums up all backends as
"total: N passed, N failed".
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# pytest's exit codes: 0 all passed, 1 some failed, 5 no test collected.
PYTEST_NO_TESTS = 5
XLA_TEST_FLAGS = ("--xla_backend_optimization_level=0 "
                  "--xla_llvm_disable_expensive_passes=true")


def count_results(junit_xml):
    """Returns (passed, failed, skipped) from a pytest JUnit XML report."""
    root = ElementTree.parse(junit_xml).getroot()
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    tests = failed = skipped = 0
    for suite in suites:
        tests += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return tests - failed - skipped, failed, skipped


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


def start_backend(backend, pytest_args, report, log, jax_cache, threads):
    """Starts pytest on `backend`, its output going to the file `log`, with
    JAX's compilation cache in the folder `jax_cache` and torch on
    `threads` threads (`OMP_NUM_THREADS`, unless it is set: OpenMP's
    variable, which NumPy's BLAS and scikit-learn read too, in every
    backend's process)."""
    env = dict(os.environ, KERAS_BACKEND=backend,
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL",
                                                   "2"))
    env.setdefault("OMP_NUM_THREADS", str(threads))
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        # One folder per backend process: JAX writes cache entries in
        # place, so two processes must not read each other's half-written
        # entries. Every program is cached, not only those taking >= 1 s.
        env.update(JAX_COMPILATION_CACHE_DIR=jax_cache,
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
    command = [sys.executable, "-m", "pytest", f"--junitxml={report}",
               "--durations=10", *pytest_args]
    print(f"===== KERAS_BACKEND={backend}: {' '.join(command[1:])}",
          flush=True)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def run_backends(backends, pytest_args, folder, jobs):
    """Runs the backends, `jobs` at a time; returns {backend: exit code}."""
    waiting, running, codes = list(backends), {}, {}
    while waiting or running:
        while waiting and len(running) < jobs:
            backend = waiting.pop(0)
            log = open(os.path.join(folder, f"{backend}.log"), "w+")
            process = start_backend(
                backend, pytest_args, os.path.join(folder, f"{backend}.xml"),
                log, os.path.join(folder, f"{backend}-jax-cache"),
                torch_threads(jobs))
            running[backend] = (process, log, time.perf_counter())
        time.sleep(0.5)
        for backend, (process, log, start) in list(running.items()):
            if process.poll() is None:
                continue
            del running[backend]
            codes[backend] = process.returncode
            log.seek(0)
            print(f"\n===== {backend} output", flush=True)
            sys.stdout.write(log.read())
            log.close()
            print(f"===== {backend}: exit code {process.returncode} in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return codes


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

    totals = [0, 0, 0]
    failures = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # The slowest first, so that the others share its time.
        order = sorted(backends, key=lambda b: b != "jax")
        codes = run_backends(order, pytest_args, tmp, max(1, args.jobs))
        for backend in backends:
            code = codes[backend]
            if code == PYTEST_NO_TESTS:
                failures.append(f"{backend}: no tests were collected")
            elif code != 0:
                failures.append(f"{backend}: pytest exit code {code}")
            report = os.path.join(tmp, f"{backend}.xml")
            if os.path.exists(report):
                for i, n in enumerate(count_results(report)):
                    totals[i] += n
    print(f"\nall backends: {time.perf_counter() - start:.0f} s")
    passed, failed, skipped = totals
    print()
    for failure in failures:
        print(f"FAILED {failure}")
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failures or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
