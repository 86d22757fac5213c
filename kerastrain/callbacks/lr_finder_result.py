"""The curve of an LR range test and the rates it suggests."""

import numpy as np

from kerastrain._validation import check_choice, check_int
from kerastrain.io import new_figure, save_figure


def _valley(lrs, losses):
    """fastai's default: the middle of the longest stretch where the loss
    keeps going down (longest decreasing subsequence), a bit past halfway."""
    n = len(losses)
    lengths = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lengths[i] < lengths[j] + 1:
                lengths[i] = lengths[j] + 1
            if lengths[end] < lengths[i]:
                end = i
                start = end - lengths[end]
    section = (end - start) / 3
    # `start` is the step before the stretch: -1 where it starts at the
    # first step, and fastai's index is then -1 for a stretch of two,
    # which Python reads as the last, highest rate.
    return lrs[max(0, start + int(section) + int(section / 2))]


def _steep(lrs, losses):
    """Where the loss falls fastest per unit of log learning rate."""
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    return lrs[int(np.argmin(slopes))]


def _minimum(lrs, losses):
    """A tenth of the rate at the lowest loss (the loss is still falling
    there, an order of magnitude before it blows up)."""
    return lrs[int(np.argmin(losses))] / 10


SUGGESTIONS = {"valley": _valley, "steep": _steep, "minimum": _minimum}


class LRFinderResult:
    """What an LR range test recorded, and the rates it suggests.

    Attributes:
        lrs: The learning rate of each step.
        losses: The training loss of each step.
        smoothed_losses: The exponential moving average of the losses,
            debiased (what the suggestions and the plot use).
        num_steps: The number of steps the test was asked for (it records
            fewer when it stops at divergence).

    Args:
        lrs, losses, smoothed_losses: Sequences of equal length, one entry
            per step.
        num_steps: The steps asked for; None: as many as recorded.

    Example:

    `find_lr` returns one; made by hand here, with a loss that is lowest
    at a rate of 0.1:

    >>> import numpy as np
    >>> lrs = np.geomspace(1e-4, 1.0, 41)
    >>> losses = (np.log10(lrs) + 1) ** 2 + 1
    >>> result = LRFinderResult(lrs, losses, losses)
    >>> float(np.round(result.suggestion("minimum"), 6))
    0.01
    """

    def __init__(self, lrs, losses, smoothed_losses, num_steps=None):
        self.lrs = _curve("lrs", lrs)
        self.losses = _curve("losses", losses)
        self.smoothed_losses = _curve("smoothed_losses", smoothed_losses)
        shapes = {name: np.shape(values) for name, values in (
            ("lrs", self.lrs), ("losses", self.losses),
            ("smoothed_losses", self.smoothed_losses))}
        if len(set(shapes.values())) > 1 or self.lrs.ndim != 1:
            raise ValueError(
                "Arguments `lrs`, `losses` and `smoothed_losses` must be "
                "flat sequences of equal length, one entry per step. "
                "Received shapes: " + ", ".join(
                    f"{name}={shape}" for name, shape in shapes.items()))
        if not (np.isfinite(self.lrs) & (self.lrs > 0)).all():
            raise ValueError(
                "Argument `lrs` must hold finite learning rates > 0 (the "
                f"curve is read on a log scale). Received: lrs={lrs!r}")
        if (np.diff(self.lrs) <= 0).any():
            # As a range test records them: the slopes divide by the
            # steps in log rate (a repeated rate was an infinite slope,
            # and points listed high to low gave a valley past the
            # minimum).
            raise ValueError(
                "Argument `lrs` must increase strictly from step to step, "
                f"as a range test records them. Received: lrs={lrs!r}")
        # Recorded steps: as many as asked for, or fewer at divergence.
        self.num_steps = len(self.lrs) if num_steps is None else check_int(
            "num_steps", num_steps, min_value=max(1, len(self.lrs)))

    def __repr__(self):
        text = f"LRFinderResult({len(self.lrs)} steps"
        if len(self.lrs):
            text += f", lr {self.lrs[0]:.2g} to {self.lrs[-1]:.2g}"
        if self._suggests():  # a repr never raises
            text += f", valley {self.suggestion():.2g}"
        return text + ")"

    def get_config(self):
        """The result as lists and numbers, ready for JSON
        (`kerastrain.io.write_json`, which writes NaN as null);
        `LRFinderResult.from_config` makes it again.

        Returns:
            A dict: `lrs`, `losses`, `smoothed_losses` (lists of floats)
            and `num_steps`.
        """
        return {"lrs": self.lrs.tolist(), "losses": self.losses.tolist(),
                "smoothed_losses": self.smoothed_losses.tolist(),
                "num_steps": self.num_steps}

    @classmethod
    def from_config(cls, config):
        """The result `get_config` describes; None in a list (a NaN loss
        read back from JSON) is NaN again.

        Args:
            config: A dict from `get_config`, or read from its JSON.

        Returns:
            An `LRFinderResult`.
        """
        def floats(values):
            return [np.nan if v is None else v for v in values]

        return cls(floats(config["lrs"]), floats(config["losses"]),
                   floats(config["smoothed_losses"]),
                   num_steps=config.get("num_steps"))

    def _suggests(self):
        """Whether enough of the curve is usable for a suggestion."""
        return len(self._curve()[0]) >= 3

    def _curve(self):
        """fastai's window: skip the first tenth of the steps asked for
        (the loss has not moved yet) and the last 5 steps recorded (where
        it blows up), and stop before any NaN. (fastai always trims; a test
        of 20 steps or fewer is used whole here.)"""
        start = self.num_steps // 10
        lrs, losses = self.lrs, self.smoothed_losses
        if self.num_steps > 20:
            lrs, losses = lrs[start:-5], losses[start:-5]
        finite = np.isfinite(losses)
        if not finite.all():
            cut = int(np.argmin(finite))
            lrs, losses = lrs[:cut], losses[:cut]
        return lrs, losses

    def suggestion(self, method="valley"):
        """A learning rate read off the curve.

        Args:
            method: `"valley"` (fastai's default, robust), `"steep"` (the
                steepest descent of the loss) or `"minimum"` (a tenth of the
                rate at the lowest loss).

        Returns:
            A float.
        """
        check_choice("method", method, tuple(SUGGESTIONS))
        lrs, losses = self._curve()
        if not self._suggests():
            raise ValueError(
                f"The range test recorded {len(self.lrs)} steps "
                f"({len(lrs)} usable): too few to suggest a rate. Run more "
                "steps, or start from a lower `start_lr` if it diverged at "
                "once.")
        return float(SUGGESTIONS[method](lrs, losses))

    def plot(self, path=None):
        """Loss against learning rate (log scale), the suggestions marked.

        Args:
            path: Where to write the image (atomically; PNG when the path
                has no extension, as matplotlib does); None to only return
                the figure.

        Returns:
            The matplotlib `Figure`.
        """
        figure, ax = new_figure(figsize=(6.5, 4))
        ax.plot(self.lrs, self.losses, color="tab:blue", alpha=0.25,
                label="loss")
        ax.plot(self.lrs, self.smoothed_losses, color="tab:blue",
                label="smoothed loss")
        lrs, losses = self._curve()
        if self._suggests():
            for (name, marker), color in zip(
                    (("valley", "o"), ("steep", "^"), ("minimum", "s")),
                    ("tab:red", "tab:green", "tab:purple")):
                lr = self.suggestion(name)
                ax.plot(lr, np.interp(np.log(lr), np.log(lrs), losses),
                        marker, color=color, label=f"{name}: {lr:.2g}")
            low, high = np.nanmin(losses), np.nanmax(losses)
            ax.set_ylim(low - 0.1 * (high - low), high + 0.3 * (high - low))
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title("LR range test")
        if path is not None:
            save_figure(figure, path)
        return figure


def _curve(name, values):
    """`values` as a float64 array, or a `TypeError` naming the argument
    (NumPy's own said "could not convert string to float" or "setting an
    array element with a sequence", naming nothing). NaN stays: a loss
    that diverged."""
    try:
        return np.asarray(values, dtype="float64")
    except (TypeError, ValueError):
        raise TypeError(
            f"Argument `{name}` must be a sequence of numbers, one per "
            f"step. Received: {name}={values!r}") from None
