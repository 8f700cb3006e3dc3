"""Per-slice checkpoints of a run's components: where they live, the callback that writes
them, and reading, listing and deleting them.

`RUN/checkpoints/<component>/<slice>.npz` holds a `ComponentState` after that slice;
`init.npz` the state before the first. A component resumes at its first slice
without a checkpoint, and a forget rewinds it by deleting the later ones.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from keras_sisa.models import ComponentState
from keras_sisa.plan import Component
from keras_sisa.store import PARTIAL, Store

INITIAL = "init"


def checkpoint_path(component: str, slice_id: str) -> str:
    return f"checkpoints/{component}/{slice_id}.npz"


class SliceCheckpoint(keras.callbacks.Callback):
    """Writes a component's checkpoint when the training of one slice ends (or, through
    `write`, a state no fit produced): the one writer of checkpoints.

    Pass one to each slice's `fit` after any callback that changes the final weights, e.g.
    `model.fit(x, y, callbacks=[SliceCheckpoint(store, "expert-0", "c3", [3, 5], replay)])`;
    it saves weights, head outputs, the replay buffer used and the training history.

    Args:
        store: the run's `Store`.
        component: the component's name, e.g. "expert-0" or "gate".
        slice_id: the id of the slice being trained, or `INITIAL`.
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
        self.write(ComponentState.from_model(self.model, self.outputs, self.replay_ids, history))

    def write(self, state: ComponentState) -> str:
        """Saves `state` as this slice's checkpoint; returns its checksum."""
        self.state = state
        self.checksum = self.store.write_arrays(checkpoint_path(self.component, self.slice_id), state.to_arrays())
        return self.checksum


def read_state(store: Store, component: str, slice_id: str) -> ComponentState:
    return ComponentState.from_arrays(store.read_arrays(checkpoint_path(component, slice_id)))


def read_history(store: Store, component: str, slice_id: str) -> dict:
    """The training history of one checkpoint, without decompressing its weights."""
    return ComponentState.history_from(store.read_arrays(checkpoint_path(component, slice_id), ("history",)))


def saved_slices(store: Store, component: Component) -> list[str]:
    """The ids of the component's slices that have a checkpoint, in training order."""
    return [s.id for s in component.slices if store.exists(checkpoint_path(component.name, s.id))]


def resume_point(store: Store, component: Component) -> int:
    """Index of the component's first slice without a checkpoint (0 if it has no initial state)."""
    if not store.exists(checkpoint_path(component.name, INITIAL)):
        return 0
    for k, s in enumerate(component.slices):
        if not store.exists(checkpoint_path(component.name, s.id)):
            return k
    return len(component.slices)


def remove_partial(store: Store, component: str) -> None:
    """Deletes the component's checkpoints that a killed writer left half-written."""
    folder = store.path(f"checkpoints/{component}")
    if tf.io.gfile.exists(folder):
        for file in tf.io.gfile.listdir(folder):
            if PARTIAL in file:
                tf.io.gfile.remove(f"{folder}/{file}")


def keep_only(store: Store, component: str, kept: set[str]) -> None:
    """Deletes every checkpoint of `component` but those of the slice ids in `kept`
    (with none kept, its folder too): the rewind of a forget."""
    folder = store.path(f"checkpoints/{component}")
    if not tf.io.gfile.exists(folder):
        return
    for file in tf.io.gfile.listdir(folder):
        if file[:-len(".npz")] not in kept:
            tf.io.gfile.remove(f"{folder}/{file}")
    if not kept:
        tf.io.gfile.rmtree(folder)


def remove_from(store: Store, component: Component, slice_id: str) -> None:
    """Deletes the checkpoint of `slice_id` and of every later slice (all of them from
    `INITIAL`), so that the component retrains from there: the mend of a `repair`."""
    ids = [INITIAL] + [s.id for s in component.slices]
    for later in ids[ids.index(slice_id):]:
        if store.exists(checkpoint_path(component.name, later)):
            tf.io.gfile.remove(store.path(checkpoint_path(component.name, later)))
