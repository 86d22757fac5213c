"""The set-up promises of the README: two commands, the second one exactly
what CI runs."""

import os
import re
import tomllib

from tests.support import ROOT


def _read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def readme_commands():
    """The shell commands of the README's first code block."""
    block = re.search(r"```(?:bash|sh)\n(.*?)```", _read("README.md"),
                      re.DOTALL).group(1)
    return [line for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_readme_opens_with_two_commands_and_ci_runs_the_second():
    commands = readme_commands()
    assert len(commands) == 2
    assert "recipes.digits_resnet" in commands[0]
    assert "tests/run_backends.py" in commands[1]
    ci_lines = [line for line in _read(".ci", "run").splitlines()
                if line and not line.startswith("#")]
    assert commands[1] in ci_lines


def test_test_extra_pins_the_local_torch_build():
    project = tomllib.loads(_read("pyproject.toml"))["project"]
    assert "torch==2.13.0" in project["optional-dependencies"]["test"]
    for needed in ("keras>=3.10", "tensorflow", "tensorboard",
                   "tensorflow-datasets", "keras-tuner"):
        assert needed in project["dependencies"]
