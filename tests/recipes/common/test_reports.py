"""The recipes' plots (recipes/common/reports.py)."""

from recipes import common


def _draw_grid(tmp_path, wrong, limit=40, channels=1):
    """Draws `plot_misclassified` for 50 labels of which the positions
    `wrong` are mispredicted; returns (positions drawn, image height)."""
    import numpy as np
    from matplotlib.image import imread

    y_true = np.arange(50) % 10
    y_pred = y_true.copy()
    y_pred[wrong] = (y_true[wrong] + 1) % 10
    images = np.random.default_rng(0).random((50, 8, 8, channels))
    path = tmp_path / f"grid_{len(wrong)}_{limit}_{channels}.png"
    shown = common.plot_misclassified(images, y_true, y_pred, str(path),
                                      limit=limit)
    return shown, imread(path).shape[0]


def test_misclassified_grid_draws_the_first_errors_eight_per_row(
        tmp_path, monkeypatch):
    import kerastrain.io

    figures = []
    real_save = kerastrain.io.save_figure
    monkeypatch.setattr(kerastrain.io, "save_figure", lambda figure, path: (
        figures.append(figure), real_save(figure, path))[1])
    wrong = [3, 7, 11, 12, 20, 31, 32, 40, 49]
    shown, one_row = _draw_grid(tmp_path, wrong[:8])
    assert shown == wrong[:8]
    shown, two_rows = _draw_grid(tmp_path, wrong)
    assert shown == wrong and two_rows > one_row
    # Read from the figure: the images' places, row by row, in the order
    # of the errors, eight to the first row and the ninth below.
    drawn = [ax for ax in figures[-1].axes if ax.images]
    places = sorted((-ax.get_position().y0, ax.get_position().x0, ax)
                    for ax in drawn)
    assert [ax.get_title().split(":")[0] for *_, ax in places] == [
        f"#{i}" for i in wrong]
    assert len({round(y, 6) for y, _, _ in places[:8]}) == 1
    assert len({round(x, 6) for _, x, _ in places[:8]}) == 8
    assert places[8][0] != places[0][0]
    assert _draw_grid(tmp_path, wrong, limit=4)[0] == wrong[:4]
    assert _draw_grid(tmp_path, wrong, channels=3)[0] == wrong
    assert _draw_grid(tmp_path, [])[0] == []  # still written, empty
