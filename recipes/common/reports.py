"""What a recipe shows: learning curves, a confusion matrix, the
misclassified images, and the table it prints at the end.

Nothing here imports Keras at module level: `--backend` must set
`KERAS_BACKEND` before the first `import keras`.
"""


def plot_history(history, path):
    """Learning curves: each metric, training and validation, per epoch."""
    from kerastrain.io import new_figure, save_figure

    metrics = [k for k in history.history if not k.startswith("val_")
               and k != "learning_rate"]
    figure, axes = new_figure(1, len(metrics),
                              figsize=(5 * len(metrics), 3.8), squeeze=False)
    epochs = [e + 1 for e in history.epoch]
    for ax, metric in zip(axes[0], metrics):
        ax.plot(epochs, history.history[metric], label="training")
        if f"val_{metric}" in history.history:
            ax.plot(epochs, history.history[f"val_{metric}"],
                    label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(figure, path)


def plot_confusion_matrix(y_true, y_pred, path, title):
    from kerastrain.io import new_figure, save_figure
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, ax = new_figure(figsize=(5.5, 5))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, ax=ax,
                                            colorbar=False)
    ax.set_title(title)
    save_figure(figure, path)


def plot_misclassified(images, y_true, y_pred, path, limit=40):
    """A grid of the misclassified images (the first `limit`, in the order
    of the test split), each captioned with its position in the split, its
    label and the prediction: the errors themselves, where the confusion
    matrix only counts them (fastai's `plot_top_losses`, by position).
    One-channel images are drawn dark on light; colour images are stretched
    to their own range. Returns the positions drawn."""
    import numpy as np

    from kerastrain.io import new_figure, save_figure

    wrong = np.flatnonzero(np.asarray(y_pred) != np.asarray(y_true))
    shown = wrong[:limit]
    columns = 8
    rows = max(1, -(-len(shown) // columns))
    figure, axes = new_figure(rows, columns, squeeze=False,
                              figsize=(columns * 1.2, rows * 1.4 + 0.6))
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown):
        image = np.asarray(images[i], "float32")
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray_r")
        else:
            low, high = image.min(), image.max()
            ax.imshow((image - low) / max(high - low, 1e-7))
        ax.set_title(f"#{i}: {y_true[i]} as {y_pred[i]}", fontsize=8)
    more = f", the first {limit} shown" if len(wrong) > limit else ""
    figure.suptitle(f"{len(wrong)} of {len(y_true)} test images "
                    f"misclassified{more} (#position: label as prediction)",
                    fontsize=9)
    save_figure(figure, path)
    return shown.tolist()


def print_summary(title, rows):
    """Prints a two-column table of (name, value) rows."""
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 24))
    for name, value in rows:
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {shown}")
    print("-" * (width + 24))
