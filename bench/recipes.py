"""The default recipe at full budget: `digits_resnet` on seeds 0, 1, 2,
each in its own process, per backend.

Prints per run the test accuracy (and errors of the 270 test digits) of
the saved checkpoint and with test-time shifts (`model_tta.keras`), the
RBF SVC peer on the same split, the recipe's own wall time (from its
start, Keras' import included) and the whole process time (Python's start
too); then per backend the
mean accuracy of both against the issue's target of 99.7% and the slowest run
against its budget of 60 s (ratios below 1 meet them). On jax each
backend's runs share a fresh persistent compilation cache (the recipes turn
one on): the first seed compiles into it (cold), the later ones reuse it
(warm), as a user's second run would.

Run: python -m bench.recipes [--backends tensorflow,jax,torch] [--seeds 0,1,2]
     [--members 1]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

BACKENDS = ("tensorflow", "jax", "torch")
TARGET_ACCURACY, BUDGET_S = 0.997, 60.0


def run_recipe(backend, seed, out, cache, members=1):
    """Runs the recipe (with `--members members`) in a fresh process with
    JAX's compilation cache in folder `cache`; returns (metrics,
    seconds)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "recipes.digits_resnet",
                    "--backend", backend, "--seed", str(seed), "--out", out,
                    "--members", str(members)],
                   check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                            JAX_COMPILATION_CACHE_DIR=cache))
    seconds = time.perf_counter() - start
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f), seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--members", type=int, default=1,
                        help="the recipe's --members (default 1)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{'backend':<11} {'seed':>4} {'test acc':>9} {'errors':>6} "
          f"{'with TTA':>9} {'errors':>6} {'SVC peer':>9} {'recipe s':>9} "
          f"{'process s':>9} {'jax cache':>9}", flush=True)
    for backend in args.backends.split(","):
        accuracies, tta_accuracies, times = [], [], []
        with tempfile.TemporaryDirectory(prefix="jax-cache-") as cache:
            for seed in seeds:
                state = ("warm" if os.listdir(cache) else "cold") if (
                    backend == "jax") else "-"
                with tempfile.TemporaryDirectory() as out:
                    metrics, seconds = run_recipe(backend, seed, out, cache,
                                                  args.members)
                accuracies.append(metrics["test_accuracy"])
                tta_accuracies.append(metrics["test_accuracy_tta"])
                times.append(metrics["wall_time_s"])
                svc = metrics["baselines"][
                    "svc_rbf_c10_gamma0.001_accuracy"]
                print(f"{backend:<11} {seed:>4} {accuracies[-1]:>9.2%} "
                      f"{metrics['test_errors']:>6} "
                      f"{tta_accuracies[-1]:>9.2%} "
                      f"{metrics['test_errors_tta']:>6} {svc:>9.2%} "
                      f"{times[-1]:>9.1f} {seconds:>9.1f} {state:>9}",
                      flush=True)
        mean, tta_mean = (sum(a) / len(a) for a in (accuracies,
                                                    tta_accuracies))
        print(f"{backend}: mean test accuracy {mean:.2%}, with TTA "
              f"{tta_mean:.2%} (target {TARGET_ACCURACY:.1%}: error ratios "
              f"{(1 - mean) / (1 - TARGET_ACCURACY):.2f} and "
              f"{(1 - tta_mean) / (1 - TARGET_ACCURACY):.2f}), slowest "
              f"recipe run / {BUDGET_S:.0f} s = "
              f"{max(times) / BUDGET_S:.2f}", flush=True)


if __name__ == "__main__":
    main()
