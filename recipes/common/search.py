"""The recipes that search with KerasTuner: `--tuner` and `--max-trials`,
the tuner, a search with a checkpoint and a CSV log per trial, and its
report (`trials.csv`, `trials.png`, the best trial's knobs and curves).

Nothing here imports Keras at module level: `--backend` must set
`KERAS_BACKEND` before the first `import keras`.
"""

import csv
import io
import os

from recipes.common.cli import positive_int
from recipes.common.outputs import read_history, write_history
from recipes.common.reports import plot_history


TUNERS = ("random", "bayesian", "hyperband")


def add_search_arguments(parser, max_trials):
    """`--tuner` and `--max-trials`, for the recipes that search."""
    parser.add_argument("--tuner", choices=TUNERS, default="random",
                        help="KerasTuner's RandomSearch, "
                        "BayesianOptimization or Hyperband (default random)")
    parser.add_argument("--max-trials", type=positive_int,
                        default=max_trials,
                        help=f"trials to run (default {max_trials}; "
                        "not used by Hyperband, whose trials and rounds "
                        "follow from --epochs, its max_epochs)")


def make_tuner(hypermodel, args, objective, out, epochs):
    """The KerasTuner tuner `args.tuner` names, seeded, searching in
    `out/search` (overwritten: a recipe run is one search); `--quick` runs
    2 trials. `epochs`, the most a trial trains, is Hyperband's
    `max_epochs`."""
    import keras_tuner

    common = dict(objective=keras_tuner.Objective(*objective),
                  directory=os.path.join(out, "search"),
                  project_name="search", overwrite=True, seed=args.seed)
    if args.tuner == "hyperband":
        return keras_tuner.Hyperband(hypermodel, max_epochs=epochs,
                                     factor=3, **common)
    tuner_class = (keras_tuner.RandomSearch if args.tuner == "random"
                   else keras_tuner.BayesianOptimization)
    return tuner_class(hypermodel, max_trials=min(args.max_trials, 2) if (
        args.quick) else args.max_trials, **common)


def run_search(tuner, out, train, val, *, epochs, batch_size, patience,
               validation_batch_size=None):
    """Runs a `make_tuner` search with a CheckpointEarlyStopping on the
    objective and a CSVLogger in every trial (validation in batches of
    `validation_batch_size`, default `batch_size`), writes
    `search_report`, and publishes the best trial's checkpoint (its best
    epoch) as `out/model.keras`, atomically.

    Returns `(best_model, best_hyperparameters, rows)`.
    """
    import shutil

    import keras

    from kerastrain.callbacks import CheckpointEarlyStopping
    from kerastrain.io import atomic_path

    search_dir = os.path.join(out, "search")
    histories = os.path.join(search_dir, "histories")
    tuner.search(*train, validation_data=val, epochs=epochs,
                 batch_size=batch_size, verbose=2,
                 validation_batch_size=validation_batch_size,
                 callbacks=[CheckpointEarlyStopping(
                     os.path.join(search_dir, "checkpoints", "best.keras"),
                     monitor=tuner.oracle.objective.name,
                     patience=patience),
                     keras.callbacks.CSVLogger(
                         os.path.join(histories, "history.csv"))])
    best, rows = search_report(tuner, out, histories)
    path = os.path.join(out, "model.keras")
    with atomic_path(path) as tmp:
        shutil.copyfile(os.path.join(search_dir, "checkpoints",
                                     rows[0]["trial"], "best.keras"), tmp)
    return keras.saving.load_model(path), best, rows


def search_report(tuner, out, histories, top=5):
    """Writes `best_hyperparameters.json`, `trials.csv` (one row per
    completed trial: id, score, hyperparameters), `trials.png` (the scores
    in the order the trials ran) and, for the best trial, `history.csv` and
    `learning_curves.png` from its file under `histories` (the folder of a
    `CSVLogger(histories/history.csv)` given to the search, which
    `kerastrain.tuning` moves into a folder per trial); prints the `top`
    trials.

    Returns `(best_hyperparameters_dict, rows)`, rows sorted best first.
    """
    from kerastrain.io import new_figure, save_figure, write_json, write_text

    trials = [t for t in tuner.oracle.trials.values() if t.score is not None]
    direction = tuner.oracle.objective.direction
    ordered = sorted(trials, key=lambda t: t.score,
                     reverse=direction == "max")
    names = sorted({name for t in trials for name in t.hyperparameters.values
                    if not name.startswith("tuner/")})
    rows = [{"trial": t.trial_id, "score": t.score,
             **{n: t.hyperparameters.values.get(n) for n in names}}
            for t in ordered]
    # Hyperband's bookkeeping (`tuner/epochs`, `tuner/round`...) is no knob.
    best = {name: value for name, value in
            ordered[0].hyperparameters.values.items()
            if not name.startswith("tuner/")}
    write_json(best, os.path.join(out, "best_hyperparameters.json"))
    history = read_history(os.path.join(histories, ordered[0].trial_id,
                                        "history.csv"))
    write_history(history, os.path.join(out, "history.csv"))
    plot_history(history, os.path.join(out, "learning_curves.png"))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["trial", "score"] + names)
    writer.writeheader()
    writer.writerows(rows)
    write_text(buffer.getvalue(), os.path.join(out, "trials.csv"))

    figure, ax = new_figure(figsize=(6, 3.5))
    # Ids are numbers as text ("3", "12" or zero-padded "03", "12").
    chronological = sorted(trials, key=lambda t: (len(t.trial_id),
                                                  t.trial_id))
    ax.plot(range(1, len(trials) + 1), [t.score for t in chronological],
            "o-")
    ax.set_xlabel("trial")
    ax.set_ylabel(tuner.oracle.objective.name)
    ax.grid(alpha=0.3)
    save_figure(figure, os.path.join(out, "trials.png"))

    shown = rows[:top]
    print(f"\nTop {len(shown)} of {len(rows)} trials "
          f"({tuner.oracle.objective.name}, {direction}):")
    header = ["trial", "score"] + names
    table = [[str(row[k]) if not isinstance(row[k], float)
              else f"{row[k]:.4g}" for k in header] for row in shown]
    widths = [max(len(h), *(len(r[i]) for r in table))
              for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for line in table:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)))
    return best, rows
