"""Sliced training with replay: one component, slice by slice, from any checkpoint on.

Fitting a component is training it from its initial state; a rewind after a
deletion is training it from the checkpoint before the first touched slice. Both
are this one loop, which is what makes a forget equal to a fresh fit.
"""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context as eager_context

from keras_sisa import replay
from keras_sisa.batches import shuffled_batches
from keras_sisa.callbacks import INITIAL, MovingAverage, SliceCheckpoint, read_state, write_state
from keras_sisa.errors import InputError
from keras_sisa.models import ComponentState, ModelFn, outputs_probabilities
from keras_sisa.plan import Component, Plan
from keras_sisa.seeds import seed_for
from keras_sisa.store import Store

# The variable in which a Keras SeedGenerator (dropout, noise layers) keeps its state.
SEED_STATE = "seed_generator_state"


class Recipe(NamedTuple):
    """The settings one kind of component (the gate, or the experts) trains with."""

    epochs: int | list[int]
    replay_ratio: float
    batch_size: int
    learning_rate: float
    ema: float = 0.0

    def slice_epochs(self, position: int) -> int:
        """Epochs of the slice at `position`: the number, or the schedule's entry (the last repeats)."""
        if isinstance(self.epochs, list):
            return self.epochs[min(position, len(self.epochs) - 1)]
        return self.epochs


@dataclasses.dataclass
class TrainingConfig:
    """How each slice trains; the gate has its own epochs, replay ratio, batch size and
    learning rate, since it is the component that sees every class and dominates the cost
    of a forget. The unprefixed fields are the experts'.

    `threads` is the size of TensorFlow's thread pools while training: it changes how
    sums are split, hence the bits of the weights, so every process that trains the run
    uses the same (default: this machine's cores at fit time).

    `balance` weights every class equally within a slice: a slice holds all of its new
    class but only a replayed share of each earlier one, and unweighted training then
    favours the newest class (measured: gate routing drops for early classes).

    `replay_ratio` 1.0 lets an expert's second slice replay as many samples as it adds:
    a two-class expert then trains on both of its classes whole, and the ensemble gained
    0.8 points (88.07% to 88.86% on Fashion-MNIST; README, Benchmarks) for about a third
    more expert time at fit. A class forget leaves such an expert one class, so it costs
    nothing there.

    The gate trains 1 epoch per slice replaying 3 samples per new one: against 2 epochs
    replaying 1 it routes as well in about the same time, and as a class forget redoes
    the gate's later slices, those then see more of the earlier classes. Against replay
    2.5, the ensemble after forgetting each class came closer to the monolithic retrain
    (mean gap 0.61 to 0.39 points over three seeds) for about 0.02x of a monolithic
    retrain more per forget (README, Benchmarks).
    It trains at batch 128 and learning rate 4e-3: one epoch per slice leaves it short
    of training, and against 1e-3 the ensemble after forgetting each class came 0.40
    points closer to the monolithic retrain on average (mean gap 0.78 to 0.38 points over
    two seeds; 2e-3 and 3e-3 fell between), at the same cost. At 1e-3, averaging its
    weights (EMA 0.99) or decaying the rate within a slice did worse: the gate was short of
    training, not noisy (README, Benchmarks).

    `gate_ema` ends each gate slice on a moving average of its weights, sampled every 4
    batches with this momentum (`callbacks.MovingAverage`; 0 turns it off). At 4e-3 and
    one epoch per slice the gate's last weights are noisy: averaged, the ensemble after
    forgetting each class came closer to the monolithic retrain and varied less between
    seeds (README, Benchmarks), for at most about 13% of the gate's time.

    `epochs` and `gate_epochs` are a number, or a schedule by slice position whose last
    entry repeats. A forget of a class redoes every slice after it, so later slices are
    redone most often: a schedule that trains them less makes the average class forget
    cheaper, at some routing accuracy (README, Benchmarks).

    Experts train 4 epochs at batch 256 and learning rate 2e-3: against 3 epochs at batch
    128 and 1e-3, the two hard experts (T-shirt/Shirt, Pullover/Coat) told their classes
    apart 1.7 points better on average over two seeds, for about 15% more expert time
    (README, Benchmarks). With two classes per shard a class forget never trains an expert
    (it is left with one class, or untouched), so this costs fit time only.

    `head_width`: heads train this many outputs wide (or a multiple), the columns past
    a slice's outputs being padding that never changes (models.PADDING_BIAS), so one
    traced model serves every head size. It changes the bits, so a run keeps the width
    it was fitted with; runs fitted before it existed trained unpadded (`from_manifest`).
    """

    epochs: int | list[int] = 4
    gate_epochs: int | list[int] = 1
    replay_ratio: float = 1.0
    gate_replay_ratio: float = 3.0
    replay: str = "uniform"
    balance: bool = True
    batch_size: int = 256
    gate_batch_size: int = 128
    learning_rate: float = 2e-3
    gate_learning_rate: float = 4e-3
    gate_ema: float = 0.96
    seed: int = 0
    threads: int | None = None
    head_width: int = 8

    def __post_init__(self):
        for name in ("epochs", "gate_epochs"):
            value = getattr(self, name)
            is_schedule = isinstance(value, (list, tuple))
            entries = list(value) if is_schedule else [value]
            if not entries or not all(_positive_whole(e) for e in entries):
                raise InputError(f"Expected {name} to be a positive whole number or a list of them, "
                                 f"got {value!r}.")
            setattr(self, name, [int(e) for e in entries] if is_schedule else int(value))
        for name in ("batch_size", "gate_batch_size", "head_width"):
            if not _positive_whole(getattr(self, name)):
                raise InputError(f"Expected {name} to be a positive whole number, got {getattr(self, name)!r}.")
        for name in ("replay_ratio", "gate_replay_ratio"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise InputError(f"Expected {name} to be zero or more, got {value!r}.")
        if not 0 <= self.gate_ema < 1:
            raise InputError(f"Expected gate_ema from 0 (off) to below 1, got {self.gate_ema!r}.")
        if self.threads is not None and not _positive_whole(self.threads):
            raise InputError(f"Expected threads to be a positive whole number, got {self.threads!r}.")
        for name in ("learning_rate", "gate_learning_rate"):
            if not getattr(self, name) > 0:
                raise InputError(f"Expected {name} above zero, got {getattr(self, name)!r}.")
        if self.replay not in replay.STRATEGIES:
            raise InputError(f"Unknown replay strategy {self.replay!r}; expected one of "
                             f"{replay.STRATEGIES}.")

    @classmethod
    def from_manifest(cls, fields: dict) -> TrainingConfig:
        """The config a run was fitted with. A run from before `head_width` trained unpadded,
        one from before the gate's own batch size and learning rate trained the gate with
        the experts', and one from before `gate_ema` trained the gate without averaging."""
        older = {"head_width": 1, "gate_batch_size": fields["batch_size"],
                 "gate_learning_rate": fields["learning_rate"], "gate_ema": 0.0}
        return cls(**{**older, **fields})

    def recipe(self, is_gate: bool) -> Recipe:
        """The settings the gate, or an expert, trains with."""
        if is_gate:
            return Recipe(self.gate_epochs, self.gate_replay_ratio, self.gate_batch_size,
                          self.gate_learning_rate, self.gate_ema)
        return Recipe(self.epochs, self.replay_ratio, self.batch_size, self.learning_rate)


def _positive_whole(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


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
    """Seeds every generator and makes TensorFlow's ops deterministic (DESIGN invariant 8)."""
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)


def reseed_slice(seed: int) -> None:
    """`enable_determinism` between slices, keeping TensorFlow's kernel cache.

    `tf.random.set_seed` clears that cache, and the first training step after it then
    took 0.17 s more, once per slice (measured). The cache holds no random state a
    slice draws on: Keras's random ops are stateless, and the batches' order is drawn
    in a fresh tf.data function from the global seed, which is set all the same.
    Weights are bit-identical either way (measured on the gate and an expert; the
    exactness tests rerun it).
    """
    eager = eager_context.context()
    handle = getattr(eager, "_context_handle", None)  # a TensorFlow without it keeps the clearing
    eager._context_handle = None  # `tf.random.set_seed` clears the cache only through the handle
    try:
        enable_determinism(seed)
    finally:
        eager._context_handle = handle


def initialise(store: Store, component: Component, builder: ModelFn, input_shape: tuple,
               seed: int) -> None:
    """Writes the component's state before its first slice: a seeded, untrained body."""
    enable_determinism(seed_for(seed, component.name, INITIAL))
    write_state(store, component.name, INITIAL, ComponentState.initial(builder, input_shape))


class CompiledModels:
    """Compiled Keras models, one per builder, input shape, learning rate and head width,
    reused from slice to slice and from component to component of one process.

    Compiling and tracing a new model costs about 0.8 s for the gate and more for an
    expert, a quarter of a gate slice on Fashion-MNIST (measured). So heads are built
    `head_width` outputs wide, padding included, and a gate growing from 2 to 5 shards
    traces once instead of four times. `prepared` resets a reused model to exactly
    where a new one starts: the state's weights, the optimizer's initial variables and
    dropout seeded by the slice, so reuse never changes a weight (`verify` refits each
    component with its own models and compares the bits).

    Models track no metric but the loss: a training-accuracy metric only showed in the
    progress bar, and it cost 0.6 s of each class forget of the gate (0.3 s of it
    tracing; measured on Fashion-MNIST). The run's test accuracy is measured at the end.
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
        for k, variable in enumerate(v for v in model.variables if v.path.endswith(SEED_STATE)):
            variable.assign(np.asarray([seed_for(seed, "dropout", k), 0], variable.dtype))
        return model


def train_component(store: Store, plan: Plan, name: str, builder: ModelFn, input_shape: tuple,
                    samples: Samples, config: TrainingConfig, start: int = 0, verbose: int = 1,
                    compiled: CompiledModels | None = None) -> ComponentState:
    """Trains component `name` over its slices from index `start`, checkpointing each one.

    Slice `start` begins from the checkpoint of slice `start - 1`, so `start > 0`
    continues or rewinds a component; `start == 0` first writes its initial state.
    A caller training several components passes one `compiled` to all of them.
    """
    component = plan.component(name)
    slices = component.slices
    if start == 0:
        initialise(store, component, builder, input_shape, config.seed)
    state = read_state(store, name, slices[start - 1].id if start else INITIAL)
    shard_of = plan.shard_of() if component.is_gate else None
    recipe = config.recipe(component.is_gate)
    compiled = compiled or CompiledModels()
    for k in range(start, len(slices)):
        current = slices[k]
        seed = seed_for(config.seed, name, current.id)
        reseed_slice(seed)
        rows = samples.rows(current.sample_ids)
        keys = _keys(samples.y[rows], samples.ids[rows], shard_of)
        outputs = state.outputs + sorted(set(keys.tolist()) - set(state.outputs))
        state = state.grow(outputs, seed_for(config.seed, name))
        model = compiled.prepared(builder, input_shape, recipe.learning_rate, config.head_width, state, seed)
        pool = np.asarray([i for s in slices[:k] for i in s.sample_ids], np.int64)
        count = replay.replay_count(recipe.replay_ratio, len(rows), len(pool))
        losses = lambda ids: _losses(model, samples, ids, outputs, shard_of, recipe.batch_size)
        replay_ids = replay.select(pool, count, config.replay, seed, losses)
        if verbose:
            print(f"{name} slice {k + 1}/{len(slices)} [{current.id}]: {len(rows)} new + "
                  f"{len(replay_ids)} replayed, {len(outputs)} outputs", flush=True)
        if not trains(len(outputs)):
            state = dataclasses.replace(state, replay_ids=replay_ids.tolist())
            write_state(store, name, current.id, state)
            continue
        all_rows = np.concatenate([rows, samples.rows(replay_ids)])
        # Raw uint8 pixels go in as they are: the model casts them, and feeding a quarter of
        # the bytes made an epoch of the gate about 30% faster (measured on 12k images).
        x = samples.x[all_rows]
        targets = _targets(samples, all_rows, outputs, shard_of)
        weights = _balanced_weights(samples.y[all_rows]) if config.balance else None
        # The average goes before the checkpoint, which saves the weights training ends on.
        averaging = [MovingAverage(recipe.ema)] if recipe.ema else []
        checkpoint = SliceCheckpoint(store, name, current.id, outputs, replay_ids.tolist())
        model.fit(shuffled_batches(x, targets, weights, recipe.batch_size), shuffle=False,
                  epochs=recipe.slice_epochs(k), callbacks=[*averaging, checkpoint], verbose=verbose)
        state = ComponentState.from_model(model, outputs, replay_ids.tolist())
    return state


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
