"""Helpers that run a demo recipe through `run_main`, and a run that
stages files to publish."""

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
