"""The `kerastrain` command (also `python -m recipes`): lists the recipes,
or runs one with its flags.

    kerastrain                       # the list, one line each
    kerastrain digits_resnet --seed 1 --backend jax
    kerastrain cifar10_resnet --help
"""

import importlib
import pkgutil
import sys
import textwrap

import recipes

# Modules of the package that are not recipes.
_PLUMBING = {"common"}


def available():
    """Names of the recipes, sorted."""
    return sorted(module.name for module in pkgutil.iter_modules(
        recipes.__path__) if not module.name.startswith("_")
        and module.name not in _PLUMBING)


def describe(name):
    """The first paragraph of a recipe's docstring, on one line."""
    module = importlib.import_module(f"recipes.{name}")
    return " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    names = available()
    if not argv or argv[0] in ("list", "-h", "--help"):
        print("usage: kerastrain RECIPE [flags]   (kerastrain RECIPE --help "
              "lists its flags)\n\nrecipes:")
        width = max(map(len, names))
        for name in names:
            print(textwrap.fill(describe(name), 79, initial_indent=(
                f"  {name:<{width}}  "), subsequent_indent=" " * (width + 4)))
        return 0
    name, flags = argv[0], argv[1:]
    if name.startswith("-"):
        # Flags before the recipe (`kerastrain --backend jax
        # digits_resnet`) read as a recipe named '--backend'.
        given = [arg for arg in argv if arg in names]
        example = " ".join([given[0], *[a for a in argv if a != given[0]]]
                           ) if given else "digits_resnet " + " ".join(argv)
        print(f"kerastrain: error: the recipe comes first, then its flags: "
              f"kerastrain RECIPE [flags], e.g. kerastrain {example}",
              file=sys.stderr)
        return 2
    if name not in names:
        print(f"kerastrain: error: unknown recipe {name!r}; available: "
              f"{', '.join(names)}", file=sys.stderr)
        return 2
    return importlib.import_module(f"recipes.{name}").main(flags)


if __name__ == "__main__":
    sys.exit(main())
