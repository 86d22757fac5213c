"""Runs the test suite once per Keras backend; fails if any backend fails.

Keras fixes its backend at import, so each backend gets its own pytest
process with `KERAS_BACKEND` set. Arguments are passed on to pytest, e.g.
`python tests/run_backends.py -k instance` or `--backends jax,torch -x`.
The last line sums up all backends as "total: N passed, N failed".
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


def run_backend(backend, pytest_args, report):
    env = dict(os.environ, KERAS_BACKEND=backend,
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL",
                                                   "2"))
    command = [sys.executable, "-m", "pytest", f"--junitxml={report}",
               *pytest_args]
    print(f"\n===== KERAS_BACKEND={backend}: {' '.join(command[1:])}",
          flush=True)
    start = time.perf_counter()
    code = subprocess.call(command, cwd=ROOT, env=env)
    print(f"===== {backend}: exit code {code} in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return code


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated subset of " + ", ".join(
                            BACKENDS))
    args, pytest_args = parser.parse_known_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {BACKENDS}")

    totals = [0, 0, 0]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            report = os.path.join(tmp, f"{backend}.xml")
            code = run_backend(backend, pytest_args, report)
            if code == PYTEST_NO_TESTS:
                failures.append(f"{backend}: no tests were collected")
            elif code != 0:
                failures.append(f"{backend}: pytest exit code {code}")
            if os.path.exists(report):
                for i, n in enumerate(count_results(report)):
                    totals[i] += n
    passed, failed, skipped = totals
    print()
    for failure in failures:
        print(f"FAILED {failure}")
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failures or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
