"""The recipes that search with KerasTuner: `--tuner` and `--max-trials`,
the tuner (each trial seeded, a search reloaded with `--resume`), a search
with a checkpoint (and a backup) and a CSV log per trial, and its report
(`trials.csv`, `trials.png`, the best trial's knobs and curves).

Nothing here imports Keras at module level: `--backend` must set
`KERAS_BACKEND` before the first `import keras`.
"""

import csv
import io
import os

from recipes.common.cli import positive_int
from recipes.common.outputs import read_history, remove_path, write_history
from recipes.common.reports import plot_history
from recipes.common.training import BACKUP


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
    """The KerasTuner tuner `args.tuner` names, seeded (each trial by
    `SeededTrials`), searching in `out/search`: a new search (a recipe
    run is one search), or, with `--resume` (`args.resume`), the
    interrupted one staged there, which KerasTuner reloads: its ended
    trials stay, and its interrupted trial runs again, from its backup
    (`run_search(backup=True)`). A resumable recipe's
    `args.resumed["resumed_after_trials"]` gets how many trials had ended
    (None for a new search). `--quick` runs 2 trials. `epochs`, the most a
    trial trains, is Hyperband's `max_epochs`."""
    import keras_tuner

    common = dict(objective=keras_tuner.Objective(*objective),
                  directory=os.path.join(out, "search"),
                  project_name="search",
                  overwrite=not getattr(args, "resume", False),
                  seed=args.seed)
    if args.tuner == "hyperband":
        tuner_class, common["max_epochs"], common["factor"] = (
            keras_tuner.Hyperband, epochs, 3)
    else:
        tuner_class = (keras_tuner.RandomSearch if args.tuner == "random"
                       else keras_tuner.BayesianOptimization)
        common["max_trials"] = min(args.max_trials, 2) if (
            args.quick) else args.max_trials
    tuner = type(tuner_class.__name__, (SeededTrials, tuner_class), {})(
        hypermodel, **common)
    if getattr(args, "resumable", False):
        args.resumed["resumed_after_trials"] = _resumed_after(
            tuner, os.path.join(out, "search", BACKUP))
    return tuner


class SeededTrials:
    """Mixed into a KerasTuner tuner (before its class): each trial begins
    with `keras.utils.set_random_seed` of a seed drawn from the tuner's
    `seed` and the trial's id, so that what a trial draws (its initial
    weights, its data order) does not hang on the trials before it. A
    trial that `--resume` runs again from its start (interrupted before
    its first backup) draws what it drew in the uninterrupted search,
    where a new process had drawn otherwise. The tuner is saved as each
    trial begins, so that a search interrupted in its first trial
    reloads too."""

    def __init__(self, *args, seed, **kwargs):
        super().__init__(*args, seed=seed, **kwargs)
        self.trials_seed = seed

    def on_trial_begin(self, trial):
        import keras
        import numpy as np

        from kerastrain._seeds import LAYER_SEED_LIMIT

        keras.utils.set_random_seed(int(np.random.SeedSequence(
            [self.trials_seed, int(trial.trial_id)]).generate_state(1)[0])
            % LAYER_SEED_LIMIT)
        super().on_trial_begin(trial)
        # KerasTuner writes its own state at a trial's end only: a search
        # interrupted in its first trial did not reload (nor say so).
        self.save()


def _resumed_after(tuner, backup_dir):
    """How many trials of a reloaded search had ended, said with where
    the interrupted one goes on (its backup in `backup_dir/<trial>`);
    None, and nothing said, where no trial had begun."""
    from kerastrain.callbacks import CheckpointEarlyStopping

    trials = tuner.oracle.trials.values()
    if not trials:
        return None
    ended = sum(t.status != "RUNNING" for t in trials)
    said = [f"Resuming the search in {tuner.project_dir}: {ended} "
            "trial(s) ended"]
    for trial in trials:
        if trial.status == "RUNNING":
            epoch = CheckpointEarlyStopping(backup_dir=os.path.join(
                backup_dir, trial.trial_id)).resume_epoch()
            said.append(f"trial {trial.trial_id} runs again from its start"
                        if epoch is None else f"trial {trial.trial_id} "
                        f"resumes at epoch {epoch + 1}")
    print("; ".join(said))
    return ended


def run_search(tuner, out, train, val, *, epochs, batch_size, patience,
               validation_batch_size=None, backup=False):
    """Runs a `make_tuner` search with a CheckpointEarlyStopping on the
    objective and a CSVLogger in every trial (validation in batches of
    `validation_batch_size`, default `batch_size`), writes
    `search_report`, and publishes the best trial's checkpoint (its best
    epoch) as `out/model.keras`, atomically. With `backup`, the checkpoint
    backs each trial up at every epoch (`out/search/backup/<trial>`), and
    a trial that `--resume` runs again goes on from its backup, its
    CSVLogger's rows from before the interruption kept.

    Returns `(best_model, best_hyperparameters, rows)`.
    """
    import shutil

    import keras

    from kerastrain.callbacks import CheckpointEarlyStopping
    from kerastrain.io import atomic_path

    search_dir = os.path.join(out, "search")
    histories = os.path.join(search_dir, "histories")
    # The logger first: an interruption between the two writes a row
    # again (read_history keeps the last), where the other order would
    # lose the row of an epoch backed up.
    tuner.search(*train, validation_data=val, epochs=epochs,
                 batch_size=batch_size, verbose=2,
                 validation_batch_size=validation_batch_size,
                 callbacks=[keras.callbacks.CSVLogger(
                     os.path.join(histories, "history.csv"), append=backup),
                     CheckpointEarlyStopping(
                     os.path.join(search_dir, "checkpoints", "best.keras"),
                     monitor=tuner.oracle.objective.name,
                     patience=patience, backup_dir=os.path.join(
                         search_dir, BACKUP) if backup else None)])
    # Every trial has ended: a failed one's backup goes too.
    remove_path(os.path.join(search_dir, BACKUP))
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
