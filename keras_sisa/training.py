"""Sliced training with replay: one component, slice by slice, from any checkpoint on.

Fitting a component is training it from its initial state; a rewind after a
deletion is training it from the checkpoint before the first touched slice. Both
are this one loop, which is what makes a forget equal to a fresh fit.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_sisa import holdout, internals, replay
from keras_sisa.batches import ordered_batches, shuffled_batches
from keras_sisa.callbacks import AnnealingEarlyStopping, CheckedAverage, MovingAverage, for_slice
from keras_sisa.checkpoints import INITIAL, SliceCheckpoint, read_state
from keras_sisa.config import TrainingConfig
from keras_sisa.models import ComponentState, ModelFn, outputs_probabilities
from keras_sisa.progress import SliceProgress
from keras_sisa.plan import Component, Plan
from keras_sisa.seeds import seed_for
from keras_sisa.store import Store

# Held-out samples are only predicted, so they go in larger batches than training's.
VALIDATION_BATCH = 512


class Samples:
    """Training images looked up by sample id."""

    def __init__(self, x: np.ndarray, y: np.ndarray, ids: np.ndarray):
        order = np.argsort(ids, kind="stable")
        self.x, self.y, self.ids = x[order], y[order], np.asarray(ids)[order]

    def rows(self, ids) -> np.ndarray:
        return np.searchsorted(self.ids, np.asarray(ids, np.int64))

    def __len__(self) -> int:
        return len(self.ids)


def machine_threads() -> int:
    """The cores this process may run on: TensorFlow's default thread-pool size."""
    return len(os.sched_getaffinity(0))


def process_threads() -> int:
    """The size of this process's TensorFlow thread pool, set in code or by the environment."""
    return (tf.config.threading.get_intra_op_parallelism_threads()
            or int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or machine_threads())


def enable_determinism(seed: int) -> None:
    """Seeds every generator and makes TensorFlow's ops deterministic (docs/design.md, invariant 8)."""
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)


def reseed_slice(seed: int) -> None:
    """`enable_determinism` between slices, keeping TensorFlow's kernel cache.

    Clearing the cache would only slow each slice's first step: it holds no random state
    a slice draws on (Keras's random ops are stateless, and the batches' order is drawn
    in a fresh tf.data function from the global seed, which is set all the same).
    """
    with internals.kernel_cache_kept():
        enable_determinism(seed)


def initialise(store: Store, component: Component, builder: ModelFn, input_shape: tuple,
               seed: int) -> None:
    """Writes the component's state before its first slice: a seeded, untrained body."""
    enable_determinism(seed_for(seed, component.name, INITIAL))
    SliceCheckpoint(store, component.name, INITIAL, [], []).write(ComponentState.initial(builder, input_shape))


class CompiledModels:
    """Compiled Keras models, one per builder, input shape, learning rate and head width,
    reused from slice to slice and from component to component of one process.

    Compiling and tracing a model costs a large share of a short slice, so heads are
    built `head_width` outputs wide, padding included, and a growing gate traces once.
    `prepared` resets a reused model to exactly where a new one starts (the state's
    weights, the optimizer's initial variables, dropout seeded by the slice), so reuse
    never changes a weight. Models track only the loss: a metric would cost tracing
    time on every forget and is measured once, on the test set, at the end.
    """

    def __init__(self):
        self._compiled: dict[tuple, tuple[keras.Model, list[np.ndarray]]] = {}

    def prepared(self, builder: ModelFn, input_shape: tuple, learning_rate: float, head_width: int,
                 state: ComponentState, seed: int) -> keras.Model:
        """A compiled model of `builder` holding `state`, ready to train a slice seeded by `seed`."""
        width = -(-len(state.outputs) // head_width) * head_width
        key = builder, tuple(input_shape), learning_rate, width
        if key not in self._compiled:
            model = builder(input_shape, width)
            model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                          loss=keras.losses.SparseCategoricalCrossentropy(
                              from_logits=not outputs_probabilities(model)))
            model.optimizer.build(model.trainable_variables)
            self._compiled[key] = model, [np.array(v) for v in model.optimizer.variables]
        model, optimizer_start = self._compiled[key]
        state.load_into(model)
        for variable, value in zip(model.optimizer.variables, optimizer_start):
            variable.assign(value)
        for k, variable in enumerate(internals.seed_state_variables(model)):
            variable.assign(np.asarray([seed_for(seed, "dropout", k), 0], variable.dtype))
        return model


def train_component(store: Store, plan: Plan, name: str, builder: ModelFn, input_shape: tuple,
                    samples: Samples, config: TrainingConfig, start: int = 0, verbose: int = 1,
                    compiled: CompiledModels | None = None, callbacks: tuple = (),
                    progress: SliceProgress | None = None,
                    before_commit: Callable[[], None] | None = None) -> ComponentState:
    """Trains component `name` over its slices from index `start`, checkpointing each one.

    Slice `start` begins from the checkpoint of slice `start - 1`, so `start > 0`
    continues or rewinds a component; `start == 0` first writes its initial state.
    A caller training several components passes one `compiled` and one `progress` to all.
    `callbacks` (the user's) see every slice's fit, after ours, told the slice as
    `callbacks.for_slice` says; they observe the training: one that changes it (the
    learning rate, the weights) breaks exactness. `before_commit` runs before each slice's
    checkpoint is written.
    """
    component = plan.component(name)
    slices = component.slices
    if start == 0:
        initialise(store, component, builder, input_shape, config.seed)
    state = read_state(store, name, slices[start - 1].id if start else INITIAL)
    shard_of = plan.shard_of() if component.is_gate else None
    recipe = config.recipe(component.is_gate)
    compiled = compiled or CompiledModels()
    parts = [_split(samples, s.sample_ids, config.validation_share if recipe.adapts(s.is_tier) else 0.0,
                    config.validation_cap, config.seed) for s in slices]
    for k in range(start, len(slices)):
        current = slices[k]
        seed = seed_for(config.seed, name, current.id)
        reseed_slice(seed)
        rows = parts[k][0]
        keys = _keys(samples.y[rows], samples.ids[rows], shard_of)
        outputs = state.outputs + sorted(set(keys.tolist()) - set(state.outputs))
        state = state.grow(outputs, seed_for(config.seed, name))
        model = compiled.prepared(builder, input_shape, recipe.learning_rate, config.head_width, state, seed)
        pool = samples.ids[np.concatenate([r for r, _ in parts[:k]])] if k else np.zeros(0, np.int64)
        count = replay.replay_count(recipe.slice_replay_ratio(current.is_tier), len(rows), len(pool))
        losses = lambda ids: _losses(model, samples, ids, outputs, shard_of, recipe.batch_size)
        replay_ids = replay.select(pool, count, config.replay, seed, losses)
        if verbose:
            print(f"{name} slice {k + 1}/{len(slices)} [{current.id}]: {len(rows)} new + "
                  f"{len(replay_ids)} replayed, {len(outputs)} outputs", flush=True)
        if not trains(len(outputs)):
            state = dataclasses.replace(state, replay_ids=replay_ids.tolist(), history={"epochs": 0})
            if before_commit:
                before_commit()
            SliceCheckpoint(store, name, current.id, outputs, state.replay_ids).write(state)
            if progress:
                progress.advance()
            continue
        all_rows = np.concatenate([rows, samples.rows(replay_ids)])
        # Raw uint8 pixels go in as they are: the model casts them, and feeding a quarter of
        # the bytes made an epoch of the gate about 30% faster (measured on 12k images).
        x = samples.x[all_rows]
        targets = _targets(samples, all_rows, outputs, shard_of)
        weights = _balanced_weights(samples.y[all_rows]) if config.balance else None
        adapts, ema = recipe.adapts(current.is_tier), recipe.slice_ema(current.is_tier)
        validation = np.concatenate([h for _, h in parts[:k + 1]]) if adapts else np.zeros(0, np.int64)
        batches = shuffled_batches(x, targets, weights, recipe.batch_size)
        steps = -(-len(all_rows) // recipe.batch_size)
        fit_options = dict(epochs=recipe.slice_epochs(k, current.is_tier), callbacks=[])
        if adapts and len(validation):
            # Long epochs are checked in rounds, so that patience costs rounds, not epochs.
            round_steps = min(steps, recipe.check_steps)
            if round_steps < steps:
                batches = batches.repeat()  # every epoch in the same order, as Keras's shuffled fit
            fit_options.update(
                epochs=-(-recipe.max_epochs * steps // round_steps), steps_per_epoch=round_steps,
                validation_data=ordered_batches(
                    samples.x[validation], _targets(samples, validation, outputs, shard_of),
                    _balanced_weights(samples.y[validation]) if config.balance else None, VALIDATION_BATCH))
            if recipe.check_ema:
                fit_options["callbacks"].append(CheckedAverage(recipe.check_ema))
            fit_options["callbacks"].append(AnnealingEarlyStopping(
                recipe.patience, recipe.anneals, recipe.anneal_factor))
        elif ema:
            # The average goes before the checkpoint, which saves the weights training ends on.
            fit_options["callbacks"].append(MovingAverage(ema))
        if before_commit:
            fit_options["callbacks"].append(keras.callbacks.LambdaCallback(on_train_end=lambda logs: before_commit()))
        checkpoint = SliceCheckpoint(store, name, current.id, outputs, replay_ids.tolist(), {
            "samples": len(all_rows), "validation_samples": len(validation), "steps_per_epoch": steps,
            "steps_per_round": fit_options.get("steps_per_epoch", steps)})
        fit_options["callbacks"].append(checkpoint)
        fit_options["callbacks"].extend(for_slice(callbacks, name, current.id))
        model.fit(batches, shuffle=False, verbose=verbose, **fit_options)
        state = checkpoint.state
        if progress:
            progress.advance()
    return state


def _split(samples: Samples, ids: list[int], share: float, cap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a slice's samples it trains on, and those it holds out (`holdout`)."""
    rows = samples.rows(ids)
    held = holdout.held_out(samples.ids[rows], samples.y[rows], share, cap, seed)
    return rows[~held], rows[held]


def trains(num_outputs: int) -> bool:
    """Whether a slice whose head has `num_outputs` outputs trains at all: a one-output
    softmax has zero loss and zero gradient, so its training would be a no-op."""
    return num_outputs > 1


def _keys(labels: np.ndarray, ids: np.ndarray, shard_of: dict[int, int] | None) -> np.ndarray:
    """What the component predicts for each sample: its class, or for the gate its shard."""
    if shard_of is None:
        return labels
    return np.asarray([shard_of[int(i)] for i in ids], np.int64)


def _balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weights giving every class the same total weight; they average to 1."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return (len(labels) / (len(classes) * counts))[inverse].astype(np.float32)


def _targets(samples: Samples, rows: np.ndarray, outputs: list[int],
                shard_of: dict[int, int] | None) -> np.ndarray:
    """The head index each sample should be predicted as (class, or shard for the gate)."""
    index = {key: k for k, key in enumerate(outputs)}
    keys = _keys(samples.y[rows], samples.ids[rows], shard_of)
    return np.asarray([index[int(key)] for key in keys], np.int64)


def _losses(model, samples: Samples, ids, outputs, shard_of, batch_size) -> np.ndarray:
    """Per-sample cross-entropy of the current model, for loss-prioritised replay."""
    rows = samples.rows(ids)
    predictions = model.predict(samples.x[rows].astype(np.float32), batch_size=batch_size, verbose=0)
    if not outputs_probabilities(model):
        predictions = keras.ops.convert_to_numpy(keras.ops.softmax(predictions))
    targets = _targets(samples, rows, outputs, shard_of)
    return -np.log(np.clip(predictions[np.arange(len(rows)), targets], 1e-12, 1.0))
