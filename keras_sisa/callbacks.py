"""The callbacks of slice training (checkpoint, moving average, TensorBoard per slice) and
the reads and writes of component states."""

from __future__ import annotations

import os
import time

import keras
import numpy as np

from keras_sisa.models import ComponentState
from keras_sisa.optional import require
from keras_sisa.store import Store, checkpoint_path

INITIAL = "init"


def write_state(store: Store, component: str, slice_id: str, state: ComponentState) -> str:
    """Saves the state of `component` after `slice_id` (or INITIAL); returns its checksum."""
    return store.write_arrays(checkpoint_path(component, slice_id), state.to_arrays())


def read_state(store: Store, component: str, slice_id: str) -> ComponentState:
    return ComponentState.from_arrays(store.read_arrays(checkpoint_path(component, slice_id)))


def read_history(store: Store, component: str, slice_id: str) -> dict:
    """The training history of one checkpoint, without decompressing its weights."""
    return ComponentState.history_from(store.read_arrays(checkpoint_path(component, slice_id), ("history",)))


class SliceCheckpoint(keras.callbacks.Callback):
    """Writes a component's checkpoint when the training of one slice ends.

    Pass one to each slice's `fit`, after any callback that changes the final weights;
    the checkpoint holds what the next slice, or a rewind to this point, needs: weights,
    head outputs, the replay buffer used, and the slice's training history. For example
    `model.fit(x, y, callbacks=[SliceCheckpoint(store, "expert-0", "c3", [3, 5], replay)])`.

    Args:
        store: the run's `Store`.
        component: the component's name, e.g. "expert-0" or "gate".
        slice_id: the id of the slice being trained.
        outputs: the head's output keys (classes, or shards for the gate), in order.
        replay_ids: ids of the samples replayed during this slice.
        history: more facts to keep with the slice's training history.
    """

    def __init__(self, store: Store, component: str, slice_id: str, outputs: list[int],
                 replay_ids: list[int], history: dict | None = None):
        super().__init__()
        self.store = store
        self.component = component
        self.slice_id = slice_id
        self.outputs = list(outputs)
        self.replay_ids = list(replay_ids)
        self.history = dict(history or {})
        self.checksum: str | None = None
        self.state: ComponentState | None = None

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        self.losses: list[float] = []
        self.validation_losses: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.losses.append(float(logs.get("loss", np.nan)))
        if "val_loss" in logs:
            self.validation_losses.append(float(logs["val_loss"]))

    def on_train_end(self, logs=None):
        history = {**self.history, "epochs": len(self.losses), "loss": self.losses,
                   "seconds": time.perf_counter() - self.started}
        if self.validation_losses:
            history.update(val_loss=self.validation_losses,
                           best_epoch=int(np.argmin(self.validation_losses)) + 1)
        self.state = ComponentState.from_model(self.model, self.outputs, self.replay_ids, history)
        self.checksum = write_state(self.store, self.component, self.slice_id, self.state)


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
