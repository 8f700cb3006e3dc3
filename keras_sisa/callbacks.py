"""Callbacks of slice training besides the checkpoint (checkpoints.py): early stopping that
anneals first, a moving average of the weights, TensorBoard logs per slice, and users'
callbacks told which slice they see."""

from __future__ import annotations

import os

import keras
import numpy as np

from keras_sisa.optional import require


class AnnealingEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping that lowers the learning rate before it stops.

    When the monitored loss has not improved for `patience` epochs, the model goes back
    to its best weights and trains on at `factor` times the learning rate, `anneals`
    times; the next plateau stops training on the best weights. A short phase at a low
    rate settles the noise of the last steps at a high one, so the stopping point (and
    the accuracy) depends less on where the plateau happened to be detected.

    Example:

        model.fit(x, y, validation_data=(x_val, y_val), epochs=100,
                  callbacks=[AnnealingEarlyStopping(patience=3, anneals=1, factor=0.1)])

    Args:
        patience: epochs without improvement that make a plateau.
        anneals: plateaus that lower the learning rate instead of stopping; 0 is
            `keras.callbacks.EarlyStopping(restore_best_weights=True)`.
        factor: what each anneal multiplies the learning rate by.
    """

    def __init__(self, patience: int, anneals: int = 1, factor: float = 0.1):
        super().__init__(patience=patience, restore_best_weights=True)
        self.anneals = anneals
        self.factor = factor
        self.annealed = 0

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.annealed = 0

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.model.stop_training and self.annealed < self.anneals:
            self.model.stop_training = False
            self.annealed += 1
            self.wait, self.stopped_epoch = 0, 0
            self.model.set_weights(self.best_weights)
            optimizer = self.model.optimizer
            optimizer.learning_rate = optimizer.learning_rate * self.factor


class MovingAverage(keras.callbacks.Callback):
    """Ends training on an exponential moving average of the model's trainable weights.

    For short fixed-epoch recipes at a high learning rate, whose last weights carry the
    noise of the last batches (`gate_ema`, `tier_ema`); cheaper than the optimizer's `use_ema`,
    which averages inside every step.

    Example:

        model.fit(x, y, callbacks=[MovingAverage(momentum=0.96, every=4)])

    Args:
        momentum: weight of the average against the newest sample of the weights (0.96
            every 4 batches is about Keras's `ema_momentum=0.99` every batch).
        every: batches between samples; the first sample starts the average.
    """

    def __init__(self, momentum: float, every: int = 4):
        super().__init__()
        self.momentum = momentum
        self.every = every
        self.average: list[np.ndarray] | None = None
        self.batches = 0

    def on_train_begin(self, logs=None):
        self.average, self.batches = None, 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.batches % self.every:
            return
        weights = [np.asarray(v) for v in self.model.trainable_variables]
        if self.average is None:
            self.average = weights
        else:
            self.average = [self.momentum * a + (1 - self.momentum) * w
                            for a, w in zip(self.average, weights)]

    def on_train_end(self, logs=None):
        if self.average is not None:
            self._assign(self.average)

    def _assign(self, weights: list[np.ndarray]) -> None:
        for variable, value in zip(self.model.trainable_variables, weights):
            variable.assign(value)


class CheckedAverage(MovingAverage):
    """A moving average of the weights that the held-out check scores and early stopping
    keeps, while training goes on from the raw weights (Polyak averaging).

    Put it before `EarlyStopping(restore_best_weights=True)` (or `AnnealingEarlyStopping`):
    at the end of each epoch the average is in the model, so the best epoch's weights are an
    average, less noisy than the raw weights of a high learning rate; the next epoch trains
    on from the raw ones, unless an anneal has put the best weights back.
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.raw: list[np.ndarray] | None = None

    def _swap_in(self) -> None:
        if self.average is not None and self.raw is None:
            self.raw = [np.asarray(v) for v in self.model.trainable_variables]
            self._assign(self.average)

    def on_test_begin(self, logs=None):
        self._swap_in()  # the check scores the average; it stays in for early stopping, next

    def on_epoch_end(self, epoch, logs=None):
        self._swap_in()

    def on_epoch_begin(self, epoch, logs=None):
        if self.raw is None:
            return
        current = [np.asarray(v) for v in self.model.trainable_variables]
        if all(np.array_equal(c, a) for c, a in zip(current, self.average)):
            self._assign(self.raw)  # train on from the raw weights
        else:  # an anneal restarted from the best weights: go on from them
            self.average = current
        self.raw = None

    def on_train_end(self, logs=None):
        self.raw = None  # early stopping, after this callback, restores the best average


class SliceTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback that logs each slice to LOG_DIR/<component>/<slice>,
    so that the curves of successive slices do not overwrite one another.

    The training loop calls `begin_slice(component, slice_id)` on every callback that
    has it before each slice's fit; a callback of your own can use the same hook.
    `keras-sisa fit --tensorboard DIR` passes one.

    Args:
        log_dir: the root folder of the logs.
        **kwargs: the options of `keras.callbacks.TensorBoard`.
    """

    def __init__(self, log_dir: str = "logs", **kwargs):
        require("tensorboard")
        super().__init__(log_dir, **kwargs)
        self.root = str(log_dir)

    def begin_slice(self, component: str, slice_id: str) -> None:
        self.log_dir = os.path.join(self.root, component, slice_id)


class SliceLogs(keras.callbacks.Callback):
    """Hands one user callback a slice's fit, with `component` and `slice` added to its epoch
    and end-of-training logs, so that a CSVLogger row or a ModelCheckpoint path such as
    `"{component}-{slice}-{epoch}.keras"` says which slice it comes from.

    Args:
        callback: the user's callback.
        component: the component the slice belongs to (`gate`, `expert-0`, ...).
        slice_id: the slice.
    """

    def __init__(self, callback: keras.callbacks.Callback, component: str, slice_id: str):
        super().__init__()
        self.callback = callback
        self.tags = {"component": component, "slice": slice_id}

    def set_model(self, model):
        self.callback.set_model(model)

    def set_params(self, params):
        self.callback.set_params(params)

    def on_epoch_end(self, epoch, logs=None):
        self.callback.on_epoch_end(epoch, {**(logs or {}), **self.tags})

    def on_train_end(self, logs=None):
        self.callback.on_train_end({**(logs or {}), **self.tags})


def _forward(hook: str):
    return lambda self, *args, **kwargs: getattr(self.callback, hook)(*args, **kwargs)


for _hook in ("on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end",
              "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end"):
    setattr(SliceLogs, _hook, _forward(_hook))


def for_slice(callbacks: list, component: str, slice_id: str) -> list:
    """The user's callbacks as the fit of one slice takes them: those with a
    `begin_slice(component, slice_id)` method are told the slice, TensorBoard (which writes
    every log as a scalar) goes as it is, and the others get the slice in their logs."""
    ready = []
    for callback in callbacks:
        if hasattr(callback, "begin_slice"):
            callback.begin_slice(component, slice_id)
            ready.append(callback)
        elif isinstance(callback, keras.callbacks.TensorBoard):
            ready.append(callback)
        else:
            ready.append(SliceLogs(callback, component, slice_id))
    return ready
