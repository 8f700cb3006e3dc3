"""Training a run's components side by side: in worker processes here, or as Ray tasks.

Components are independent once the plan exists, and each is trained by one
`tasks.train_in_run`, so the order and place they train in changes no weight. A worker
that dies takes no finished slice with it: its component is run again and continues
from its last slice checkpoint.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

import numpy as np
import tensorflow as tf

from keras_sisa import ray_backend
from keras_sisa.errors import InputError
from keras_sisa.models import ModelFn
from keras_sisa.plan import Component, Plan
from keras_sisa.store import PLAN, Store
from keras_sisa.progress import POLL_SECONDS, SliceProgress
from keras_sisa.tasks import load_samples, train_in_run
from keras_sisa.training import CompiledModels, process_threads

BACKENDS = ("local", "ray")


@dataclasses.dataclass(frozen=True)
class Execution:
    """Where components train: in `workers` local processes, or as Ray tasks.

    The weights are the same wherever they train; this decides only the wall time. Pass
    one to `SISAClassifier.resume`, or its fields to `fit` and `forget`, for example
    `sisa.forget(classes=["Bag"], backend="ray", ray_address="head:6379")`.

    Args:
        workers: local processes, each pinned to its share of this machine's cores.
        backend: "local", or "ray" for one Ray task per component.
        ray_address: the Ray cluster to join (default: start a local Ray runtime).
        retries: how often a component whose worker died is run again.
        callbacks: Keras callbacks given to every slice's `fit` (TensorBoard, CSVLogger,
            your own); they run in this process, so only with one local worker.
    """

    workers: int = 1
    backend: str = "local"
    ray_address: str | None = None
    retries: int = 2
    callbacks: tuple = ()

    def __post_init__(self):
        if not isinstance(self.workers, (int, np.integer)) or self.workers < 1:
            raise InputError(f"Expected workers (--workers) to be 1 or more, got {self.workers!r}.")
        if self.backend not in BACKENDS:
            raise InputError(f"Unknown backend {self.backend!r}; expected one of {BACKENDS}.")
        if self.backend == "ray" and importlib.util.find_spec("ray") is None:
            raise InputError("backend=\"ray\" (--backend ray) needs Ray: pip install 'keras-sisa[ray]'.")
        if self.workers > 1 and self.backend != "local":
            raise InputError("workers (--workers) applies to the local backend; Ray places its tasks itself.")
        if self.ray_address and self.backend != "ray":
            raise InputError("ray_address (--ray-address) needs backend=\"ray\" (--backend ray).")
        object.__setattr__(self, "callbacks", tuple(self.callbacks or ()))  # frozen: set once here
        if self.callbacks and (self.workers > 1 or self.backend != "local"):
            raise InputError("callbacks run in this process; train with workers=1 and the local backend "
                             "to use them.")

    def leaves_process(self, threads: int) -> bool:
        """Whether components train outside this process: in workers, on Ray, or in a child
        process because this one's TensorFlow thread pool is not the run's `threads`."""
        return self.workers > 1 or self.backend == "ray" or threads != process_threads()


def train_components(directory: str, names: list[str], execution: Execution,
                     builder_of: Callable[[Component], ModelFn], verbose: int = 1,
                     compiled: CompiledModels | None = None) -> dict[str, float]:
    """Brings the named components of a run up to date; returns each one's training seconds.

    With one local worker they train in this process with `builder_of`'s builders,
    unless its TensorFlow thread pool differs from the run's; elsewhere each process
    imports the builders the manifest names and sizes its pool as the run's, since the
    pool size changes the bits of the weights. `verbose` as Keras's: 0 silent, 1 one
    progress bar over all slices, wherever they train, 2 a line per slice and epoch
    (per component in workers). `compiled` keeps traced models between calls in this process.
    """
    store = Store(directory)
    plan = Plan.from_json(store.read_json(PLAN))
    threads = store.read_manifest().config.threads or process_threads()
    # Longest first, so that the last component to start is a short one.
    names = sorted(names, key=lambda n: -len(plan.component(n).sample_ids))
    progress = SliceProgress(store, plan, names) if verbose == 1 else None
    if execution.backend == "ray":
        return ray_backend.train_components(directory, names, execution, threads, progress)
    if not execution.leaves_process(threads):
        samples = load_samples(store, plan)
        compiled = compiled or CompiledModels()
        return {n: train_in_run(directory, n, builder_of(plan.component(n)), samples, 0 if progress else verbose,
                                compiled, execution.callbacks, progress) for n in names}
    if execution.callbacks:
        raise InputError(f"callbacks run in this process, but its TensorFlow thread pool ({process_threads()}) "
                         f"is not the run's ({threads}); set TF_NUM_INTRAOP_THREADS={threads} and "
                         f"TF_NUM_INTEROP_THREADS={threads} to use them.")
    return _in_processes(directory, names, execution, threads, verbose, progress)


def core_shares(workers: int, cores: list[int]) -> list[list[int]]:
    """Splits the cores among workers; with more workers than cores, they take turns."""
    if workers >= len(cores):
        return [[cores[k % len(cores)]] for k in range(workers)]
    return [chunk.tolist() for chunk in np.array_split(np.asarray(cores), workers)]


def _in_processes(directory: str, names: list[str], execution: Execution, threads: int,
                  verbose: int, progress: SliceProgress | None) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive a fork
    shares = core_shares(execution.workers, sorted(os.sched_getaffinity(0)))
    seconds: dict[str, float] = {}
    deaths = 0
    while True:
        slots = context.Queue()
        for share in shares:
            slots.put(share)
        try:
            with ProcessPoolExecutor(len(shares), mp_context=context, initializer=_pin,
                                     initargs=(slots, threads)) as pool:
                running = {pool.submit(train_in_run, directory, n): n for n in names if n not in seconds}
                waiting = set(running)
                while waiting:
                    finished, waiting = wait(waiting, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                    for done in finished:
                        seconds[running[done]] = done.result()
                        if verbose and not progress:
                            print(f"{running[done]}: trained in {seconds[running[done]]:.1f} s", flush=True)
                    if progress:
                        progress.poll()
            return seconds
        except BrokenProcessPool:
            deaths += 1
            left = ", ".join(n for n in names if n not in seconds)
            if deaths > execution.retries:
                raise RuntimeError(f"Worker processes died {deaths} times; {left} did not finish. "
                                   "Run the command again to continue.") from None
            print(f"A worker process died; training {left} again from their last slice "
                  "checkpoints.", flush=True)


def _pin(slots, threads: int) -> None:
    """Runs first in each worker: binds it to its share of the cores and sizes TensorFlow's
    thread pools as the run's (more threads than cores costs time, never bits)."""
    os.sched_setaffinity(0, slots.get())
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
