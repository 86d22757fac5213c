"""Plumbing every recipe shares: flags, backend choice, output folder,
reports (metrics.json, history.csv, plots), the image recipes' training,
the searches and the closing summary.

Nothing here imports Keras at module level: `--backend` must set
`KERAS_BACKEND` before the first `import keras`.
"""

from recipes.common.cli import (BACKENDS, MAX_SEED, RecipeError, Timer,
                                ensure_writable, interrupts_delivered,
                                jax_cache_settings, missing_folders,
                                parse_args, positive_int, program_name,
                                remove_empty, run_main, seed_int,
                                select_backend)
from recipes.common.outputs import (OPTIONAL_PACKAGES, STAGING, environment,
                                    finish, publish, read_history,
                                    remove_path, write_history)
from recipes.common.reports import (plot_confusion_matrix, plot_history,
                                    plot_misclassified, print_summary)
from recipes.common.search import (TUNERS, SeededTrials,
                                   add_search_arguments, make_tuner,
                                   run_search, search_report)
from recipes.common.training import (BACKUP, QUICK_WIDTH, accuracy,
                                     backed_up_checkpoint,
                                     fit_image_classifier, member_seeds,
                                     one_cycle_steps, predicted_labels,
                                     report_classifier, steps_per_epoch,
                                     trained_together, training_steps)
