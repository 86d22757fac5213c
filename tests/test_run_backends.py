"""The test runner's plan: every backend's tests run, once each."""

import os

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
