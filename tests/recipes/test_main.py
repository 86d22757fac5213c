"""The `kerastrain` command (recipes/__main__.py)."""

import importlib.metadata
import tomllib

import pytest

from recipes import __main__ as cli
from tests.support import ROOT

RECIPES = ["cifar10_resnet", "diabetes_risk", "digits_resnet",
           "lr_range_then_one_cycle", "snapshot_ensemble", "tune_digits"]


def test_lists_every_recipe_with_its_description(capsys):
    assert cli.available() == RECIPES
    assert cli.main([]) == 0
    listing = capsys.readouterr().out
    for name in RECIPES:
        assert name in listing
    assert "scikit-learn's 8x8 handwritten digits" in listing


def test_unknown_recipe_exits_2_and_lists_the_known_ones(capsys):
    assert cli.main(["mnist_gan", "--quick"]) == 2
    error = capsys.readouterr().err
    assert "'mnist_gan'" in error and "digits_resnet" in error


@pytest.mark.parametrize("argv, example", [
    (["--backend", "jax", "digits_resnet"],
     "kerastrain digits_resnet --backend jax"),
    (["--seed", "1"], "kerastrain digits_resnet --seed 1")])
def test_flags_before_the_recipe_say_it_comes_first(capsys, argv, example):
    """They read as a recipe named '--backend' (exit 2, listing the
    recipes), which hid the order the command wants."""
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert "the recipe comes first, then its flags" in error
    assert error.rstrip().endswith(f"e.g. {example}")


def test_runs_the_named_recipe_with_its_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["diabetes_risk", "--help"])
    assert exit_info.value.code == 0
    assert "recipes.diabetes_risk" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["digits_resnet", "--seed", "one"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("launcher, usage", [
    ("/venv/bin/kerastrain", "usage: kerastrain diabetes_risk "),
    ("C:/venv/Scripts/kerastrain.exe", "usage: kerastrain diabetes_risk "),
    (cli.__file__, "usage: python -m recipes diabetes_risk "),
    ("/x/recipes/diabetes_risk.py", "usage: python -m recipes.diabetes_risk "),
])
def test_usage_names_the_command_that_started_the_recipe(
        launcher, usage, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", [launcher, "diabetes_risk", "--help"])
    with pytest.raises(SystemExit):
        cli.main()
    assert capsys.readouterr().out.startswith(usage)


def test_the_console_command_is_declared():
    with open(f"{ROOT}/pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts == {"kerastrain": "recipes.__main__:main"}
    installed = {e.name: e.value for e in
                 importlib.metadata.entry_points(group="console_scripts")}
    if "kerastrain" in installed:  # an install of this checkout
        assert installed["kerastrain"] == scripts["kerastrain"]
