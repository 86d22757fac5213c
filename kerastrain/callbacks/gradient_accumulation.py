"""Gradient accumulation whose number of micro-batches may change by epoch."""

import types
import warnings

import keras

from kerastrain._validation import check_int
from kerastrain.callbacks._training_state import (ACCUMULATION_MARK,
                                                  base_optimizer,
                                                  iterations, retrace,
                                                  set_accumulation)
from kerastrain.optimizers.scheduled import (has_schedules,
                                             schedules_count_updates)


def _check_steps(steps):
    """`{epoch: steps}` from an int or a dict, with every key and value
    checked (PyTorch Lightning's GradientAccumulationScheduler does the
    same up front)."""
    if not isinstance(steps, dict):
        steps = {0: _check_integer("steps", steps, 1)}
    if not steps:
        raise ValueError(
            "Argument `steps` must be an integer >= 1 or a non-empty dict "
            f"{{epoch: steps}}. Received: steps={steps!r}")
    # As Python ints: NumPy's would reach the optimizer's config.
    return dict(sorted(
        (_check_integer(f"steps (key {epoch!r})", epoch, 0),
         _check_integer(f"steps[{epoch!r}]", value, 1))
        for epoch, value in steps.items()))


def _check_integer(name, value, min_value):
    # The contract: a non-integer is a ValueError here, like a
    # value out of range (check_int says TypeError).
    try:
        return check_int(name, value, min_value=min_value)
    except TypeError as error:
        raise ValueError(str(error)) from None


def count_after_change(count, old, new):
    """The optimizer's raw step count after the number of batches per
    update changes from `old` to `new` at raw count `count`.

    An unfinished accumulation is closed as one update of its own (see
    `GradientAccumulation`), so the updates so far are `ceil(count / old)`,
    and the new count makes `count // new` (`optimizer.iterations`) go on
    counting applied updates, with nothing pending.

    Args:
        count: The raw step count (`optimizer._iterations`) before.
        old: The number of batches per update before.
        new: The number after.

    Returns:
        The raw step count to continue from.

    Example:

    >>> count_after_change(11, old=4, new=2)  # 2 updates + 3 pending
    6
    """
    return -(-count // old) * new


def _counts(optimizer):
    """The optimizer's raw step count and its applied updates."""
    return (iterations(optimizer),
            int(keras.ops.convert_to_numpy(optimizer.iterations)))


# The `gradient_accumulation_steps` an optimizer was created with, kept on
# it once this callback drives the number.
_CREATED_WITH = "_kerastrain_created_accumulation_steps"


def _loadable_config(optimizer):
    """`optimizer.get_config()`, reporting the number of batches per update
    it was created with where this callback has set it to 1: Keras'
    optimizers refuse 1 in their constructor, which loading a saved model
    calls, so a file saved with it could not be loaded."""
    config = type(optimizer).get_config(optimizer)
    if config.get("gradient_accumulation_steps") == 1:
        config["gradient_accumulation_steps"] = getattr(optimizer,
                                                        _CREATED_WITH)
    return config


def _keep_loadable(optimizer):
    """Makes every later save of `optimizer` (a checkpoint during `fit`, a
    `model.save` after it) loadable, whatever number this callback sets."""
    if not hasattr(optimizer, _CREATED_WITH):
        setattr(optimizer, _CREATED_WITH,
                optimizer.gradient_accumulation_steps)
        optimizer.get_config = types.MethodType(_loadable_config, optimizer)


def _apply_pending(model, updates, pending):
    """Applies the `pending` accumulated batches as one update, their
    mean, through the optimizer's own accumulation path (so clipping,
    weight decay, the schedules and EMA act as in any update): with
    `pending` batches per update and the count one short of an update, a
    zero gradient adds nothing to the sum that is divided by `pending`."""
    optimizer = base_optimizer(model.optimizer)
    variables = model.trainable_variables
    optimizer.gradient_accumulation_steps = pending
    optimizer._iterations.assign(updates * pending + pending - 1)
    optimizer.apply([keras.ops.zeros(v.shape, v.dtype) for v in variables],
                    variables)


class GradientAccumulation(keras.callbacks.Callback):
    """Averages the gradients of several batches into one update, with a
    number of batches that may change by epoch.

    `steps=4` makes every update average 4 consecutive batches: batches of
    size b train like batches of 4b, in the memory of b. A dict like
    `{0: 1, 4: 2, 8: 4}` (PyTorch Lightning's
    `GradientAccumulationScheduler`) changes the number at the start of the
    named epochs; epochs before the first key use 1.

    It drives Keras' own `gradient_accumulation_steps`, so the optimizer
    must be created with that argument (any value >= 2; this callback sets
    the actual one per epoch), e.g.
    `keras.optimizers.SGD(0.1, gradient_accumulation_steps=2)`. A model
    saved while the number is 1 records the number the optimizer was
    created with (Keras' optimizers refuse 1 when a file is loaded); a
    `fit` that resumes with this callback from `initial_epoch` sets the
    number again. Until then the loaded `optimizer.iterations` reads the
    batches divided by that number, and a `fit` from epoch 0 takes the
    count as accumulated under it: the file cannot tell the two apart.

    Exactness: with a mean loss and no batch-dependent layers, k batches of
    b samples give the same update as one batch of k*b.
    **BatchNormalization** computes its statistics per batch of b, not k*b,
    so with it the result differs (use a group or layer norm, or larger
    batches, where that matters).

    **Learning-rate schedules advance once per applied update**, not once
    per batch (Keras' own accumulation evaluates them at the batch count),
    so a one-cycle schedule of N steps spans N updates; compute
    `total_steps` from the number of updates. For the duration of `fit` the
    optimizer evaluates its learning-rate schedule, and kerastrain's
    scheduled momentum or betas, at `optimizer.iterations`, the update
    count (`kerastrain.optimizers.scheduled.schedules_count_updates`).

    **An update never spans a change of the number.** When the number
    changes while an accumulation is unfinished (an epoch whose batch
    count is not a multiple of the old number), the p pending batches are
    applied at once, at the start of the epoch, as one update: their mean,
    like the short last batch of an epoch (one batch of p*b), and a
    warning says so. The new number then starts from an empty accumulator.
    Every update is thus the mean of the gradients of the batches it
    contains, and counts as one step of the schedules. While the number
    stays, an update may span the end of an epoch, as in Keras: the
    batches left over carry into the next epoch's first update.

    **Resuming.** At each epoch end the callback notes on the optimizer its
    step count and the number it was accumulated under (the last two
    epoch ends: a crash after this callback's hook and before the backup's
    restores the one before). A `fit` resumed
    on the same model object (by `BackupAndRestore` or
    `CheckpointEarlyStopping(backup_dir=...)` after a crash, or a second
    `fit` going on) finds the count it noted and goes on under that
    number, even though the crashed epoch had set another. In a new
    process (a fresh optimizer restored by a backup, or a reloaded model
    trained on from `initial_epoch`), the count is taken as accumulated
    under `steps_at(initial_epoch - 1)`: resume with the same `steps` as
    the interrupted run. To train on *without* the callback after a `fit`
    it was in raised, call `put_back()` first (see there).

    Args:
        steps: Integer >= 1, or a dict `{epoch: steps}`.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.1, gradient_accumulation_steps=2),
    ...               "mse")
    >>> callback = GradientAccumulation({0: 1, 2: 2, 4: 4})
    >>> [callback.steps_at(epoch) for epoch in range(6)]
    [1, 1, 2, 2, 4, 4]
    """

    def __init__(self, steps):
        super().__init__()
        self.steps = _check_steps(steps)
        self._patched = None

    def steps_at(self, epoch):
        """The number of batches per update in `epoch` (0-based).

        Args:
            epoch: The epoch, from 0.

        Returns:
            The value of the last key <= `epoch`; 1 before the first key.
        """
        epoch = check_int("epoch", epoch, min_value=0)
        current = 1
        for start, steps in self.steps.items():
            if start <= epoch:
                current = steps
        return current

    def count_updates(self, batches, epochs, initial_epoch=0):
        """How many updates a `fit` with this callback applies, from an
        optimizer with nothing accumulated.

        Replays the callback's bookkeeping (`count_after_change`) over
        epochs `initial_epoch .. epochs - 1` of `batches` batches each;
        batches still pending at the end are not counted.

        Args:
            batches: Batches per epoch.
            epochs: The `epochs` of `fit`.
            initial_epoch: The `initial_epoch` of `fit`.

        Returns:
            The number of applied updates, the steps the schedules advance.

        Example:

        >>> GradientAccumulation({0: 4, 1: 2}).count_updates(3, epochs=2)
        2
        """
        batches = check_int("batches", batches, min_value=1)
        epochs = check_int("epochs", epochs, min_value=0)
        initial_epoch = check_int("initial_epoch", initial_epoch,
                                  min_value=0)
        # With nothing accumulated, the optimizer's initial number is moot.
        count, steps = 0, self.steps_at(initial_epoch)
        for epoch in range(initial_epoch, epochs):
            new = self.steps_at(epoch)
            if new != steps:
                count, steps = count_after_change(count, steps, new), new
            count += batches
        return count // steps

    def on_train_begin(self, logs=None):
        optimizer = base_optimizer(self.model.optimizer)
        self._first_epoch = True
        if not optimizer.gradient_accumulation_steps:
            raise ValueError(
                "GradientAccumulation needs an optimizer created with "
                "`gradient_accumulation_steps` (any value >= 2; the callback "
                "sets the actual number per epoch), so that Keras creates "
                "its gradient accumulators, e.g. keras.optimizers.SGD(0.1, "
                f"gradient_accumulation_steps=2). Received: "
                f"{type(optimizer).__name__} without it.")
        _keep_loadable(optimizer)
        self._start = _counts(optimizer)
        if not has_schedules(optimizer):
            return  # no step is read: the compiled step can stay
        # Keras evaluates schedules at the batch count; evaluate them (the
        # learning rate and scheduled hyperparameters alike) at the update
        # count instead (`iterations` divides by the number).
        schedules_count_updates(optimizer)
        self._patched = optimizer
        retrace(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = base_optimizer(self.model.optimizer)
        if self._first_epoch:
            self._first_epoch = False
            set_accumulation(self.model,
                             self._counted_under(optimizer, epoch))
        new = self.steps_at(epoch)
        old = optimizer.gradient_accumulation_steps
        if new == old:
            return
        count = iterations(optimizer)
        updates, pending = divmod(count, old)
        if pending:
            warnings.warn(
                f"GradientAccumulation: epoch {epoch} changes the number of "
                f"batches per update from {old} to {new} with {pending} "
                "batches still accumulated; they are applied now as one "
                "update, their mean.", stacklevel=2)
            _apply_pending(self.model, updates, pending)
        optimizer.gradient_accumulation_steps = new
        # Keep `iterations` (= raw count // steps) the number of updates.
        optimizer._iterations.assign(count_after_change(count, old, new))
        retrace(self.model)

    def on_epoch_end(self, epoch, logs=None):
        optimizer = base_optimizer(self.model.optimizer)
        # What a backup written now holds, and how it was counted; the
        # epoch end before too: a crash between this hook and the backup
        # (in a later callback) restores that one.
        marks = getattr(optimizer, ACCUMULATION_MARK, None) or ()
        setattr(optimizer, ACCUMULATION_MARK, ((
            iterations(optimizer), optimizer.gradient_accumulation_steps),
            *marks[:1]))

    def _counted_under(self, optimizer, epoch):
        """The number of batches per update that the optimizer's step
        count was accumulated under, as a fit starts at `epoch`."""
        mark = getattr(optimizer, ACCUMULATION_MARK, None)
        if mark is None:
            # A new optimizer object (restored by a backup, or loaded): a
            # count from the end of the epoch before, under its number,
            # not the constructor's.
            return (self.steps_at(epoch - 1) if epoch > 0
                    else optimizer.gradient_accumulation_steps)
        for count, steps in mark:
            if iterations(optimizer) == count:
                # Where an epoch ended (and a backup was written), in this
                # object: a fit that went on after it, or restored to it
                # after a crash in a later epoch, which set its own number.
                return steps
        # Stopped inside an epoch, nothing restored: counted under the
        # number set last.
        return optimizer.gradient_accumulation_steps

    def on_train_end(self, logs=None):
        optimizer = base_optimizer(self.model.optimizer)
        (start_batches, start_updates), (batches, updates) = (
            self._start, _counts(optimizer))
        if batches > start_batches and updates == start_updates:
            warnings.warn(
                "GradientAccumulation: this fit applied no update: its "
                f"{batches - start_batches} batches are "
                "still accumulated, fewer than the "
                f"{optimizer.gradient_accumulation_steps} per update. Use "
                "fewer steps, or more batches.", stacklevel=2)
        self.put_back()

    def put_back(self):
        """Gives the optimizer's schedules back to Keras' batch count.

        `on_train_end` does it; a `fit` stopped by an exception (Keras then
        calls no `on_train_end`) leaves them counting applied updates,
        which this callback's next `fit` goes on doing. Before training on
        without the callback, call this. Safe to call twice.
        """
        if self._patched is not None:
            schedules_count_updates(self._patched, on=False)
            self._patched = None
            retrace(self.model)
