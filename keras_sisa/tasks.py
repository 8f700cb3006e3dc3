"""The unit of work of every fit, forget and repair: bring one component of a run up to date.

A task reads everything it needs from the store (manifest, plan, the shards' data and
the component's last checkpoint) and writes only that component's checkpoints. Tasks
for different components therefore run in any order, in this process, in worker
processes or on any machine that sees the store, and an interrupted task is simply
run again: it continues from the component's first slice without a checkpoint.
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from keras_sisa.checkpoints import remove_partial, resume_point
from keras_sisa.models import ModelFn
from keras_sisa.plan import Plan
from keras_sisa.progress import SliceProgress
from keras_sisa.run import named_builder
from keras_sisa.store import PLAN, Store, data_path, timing_path
from keras_sisa.training import CompiledModels, Samples, train_component


def load_samples(store: Store, plan: Plan) -> Samples:
    """The training images the run still holds, from its per-shard data files."""
    return Samples(*_shard_arrays(store, plan, ("x", "y", "ids")))


def load_labels(store: Store, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """The labels and sample ids of the training images the run still holds, without the images."""
    return _shard_arrays(store, plan, ("y", "ids"))


def load_owners(store: Store, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """The owner hashes and sample ids of the training images the run still holds."""
    return _shard_arrays(store, plan, ("owners", "ids"))


def _shard_arrays(store: Store, plan: Plan, keys: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    parts = [store.read_arrays(data_path(e.name), keys) for e in plan.experts]
    return tuple(np.concatenate([p[key] for p in parts]) for key in keys)


def train_in_run(directory: str, name: str, builder: ModelFn | None = None,
                 samples: Samples | None = None, verbose: int = 0,
                 compiled: CompiledModels | None = None, callbacks: tuple = (),
                 progress: SliceProgress | None = None) -> float:
    """Trains component `name` of the run at `directory` from its resume point; returns seconds.

    `builder` and `samples` default to the manifest's builder and the stored data; a
    caller that trains several components in one process passes them, and one
    `compiled`, to save reloading and recompiling. `callbacks` go to every slice's fit.
    """
    store = Store(directory)
    manifest = store.read_manifest()
    plan = Plan.from_json(store.read_json(PLAN))
    component = plan.component(name)
    remove_partial(store, name)  # left by an attempt at this task that was killed mid-write
    start = resume_point(store, component)
    if start == len(component.slices):
        return 0.0
    earlier = _recorded_seconds(store, name)  # an interrupted attempt's time counts too
    began = time.perf_counter()

    def record() -> float:
        # Before each checkpoint commits, so that a kill after the last one leaves the time spent.
        spent = earlier + time.perf_counter() - began
        store.write_json(timing_path(name), {name: spent})  # outlives a kill before the run commits
        return spent

    train_component(store, plan, name, builder or named_builder(manifest, component.is_gate),
                    manifest.input_shape, samples if samples is not None else load_samples(store, plan),
                    manifest.config, start=start, verbose=verbose, compiled=compiled,
                    callbacks=callbacks, progress=progress, before_commit=record)
    return record()


def _recorded_seconds(store: Store, name: str) -> float:
    path = timing_path(name)
    return store.read_json(path)[name] if store.exists(path) else 0.0


def collect_seconds(store: Store, trained: dict[str, float]) -> dict[str, float]:
    """Training seconds per component: this attempt's, or for a component that an earlier,
    interrupted attempt (or a `fit --only` job) finished, the time it recorded. Clears the
    records, which the run does not keep once committed."""
    seconds = dict(trained)
    if store.exists("timings"):
        for file in tf.io.gfile.listdir(store.path("timings")):
            recorded = store.read_json(f"timings/{file}")
            for name, spent in recorded.items():
                seconds[name] = seconds.get(name) or spent
        tf.io.gfile.rmtree(store.path("timings"))
    return seconds
