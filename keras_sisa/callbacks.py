"""Callbacks of slice training besides the checkpoint (checkpoints.py): a moving average of
the weights, and TensorBoard logs per slice."""

from __future__ import annotations

import os

import keras
import numpy as np

from keras_sisa.optional import require


class MovingAverage(keras.callbacks.Callback):
    """Ends training on an exponential moving average of the model's trainable weights.

    For short fixed-epoch recipes at a high learning rate, whose last weights carry the
    noise of the last batches (`gate_ema`); cheaper than the optimizer's `use_ema`,
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
            for variable, value in zip(self.model.trainable_variables, self.average):
                variable.assign(value)


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
