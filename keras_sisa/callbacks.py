"""The slice-checkpoint callback and the reads and writes of component states."""

from __future__ import annotations

import keras
import numpy as np

from keras_sisa.models import ComponentState
from keras_sisa.store import Store, checkpoint_path

INITIAL = "init"


def write_state(store: Store, component: str, slice_id: str, state: ComponentState) -> str:
    """Saves the state of `component` after `slice_id` (or INITIAL); returns its checksum."""
    return store.write_arrays(checkpoint_path(component, slice_id), state.to_arrays())


def read_state(store: Store, component: str, slice_id: str) -> ComponentState:
    return ComponentState.from_arrays(store.read_arrays(checkpoint_path(component, slice_id)))


class SliceCheckpoint(keras.callbacks.Callback):
    """Writes a component's checkpoint when the training of one slice ends.

    Pass one to the `fit` call of each slice; the checkpoint holds everything the
    next slice (or a rewind to this point) needs: weights, head outputs and the
    replay buffer that was used.

    Example:

        model.fit(x, y, callbacks=[SliceCheckpoint(store, "expert-0", "c3", [3, 5], replay_ids)])

    Args:
        store: the run's `Store`.
        component: the component's name, e.g. "expert-0" or "gate".
        slice_id: the id of the slice being trained.
        outputs: the head's output keys (classes, or shards for the gate), in order.
        replay_ids: ids of the samples replayed during this slice.
    """

    def __init__(self, store: Store, component: str, slice_id: str, outputs: list[int],
                 replay_ids: list[int]):
        super().__init__()
        self.store = store
        self.component = component
        self.slice_id = slice_id
        self.outputs = list(outputs)
        self.replay_ids = list(replay_ids)
        self.checksum: str | None = None

    def on_train_end(self, logs=None):
        state = ComponentState.from_model(self.model, self.outputs, self.replay_ids)
        self.checksum = write_state(self.store, self.component, self.slice_id, state)


class MovingAverage(keras.callbacks.Callback):
    """Ends training on an exponential moving average of the model's trainable weights.

    The gate trains one epoch per slice at a high learning rate, so its last weights
    carry the noise of its last batches; their moving average routes as well and varies
    less from seed to seed (README, Benchmarks). Keras's optimizer option `use_ema`
    averages inside every training step and made the gate's fit about 20% slower here;
    sampling the weights every 4th batch cost at most about 13% (README, Benchmarks).

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
