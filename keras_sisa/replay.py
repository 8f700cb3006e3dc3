"""Replay selection: which samples of earlier slices a slice trains on again.

The buffer for slice k is a function of (the samples left in slices < k, the
component's state before slice k, the slice's seed) and nothing else, so after a
deletion it is exactly the buffer a fit without that data would have drawn.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from keras_sisa.errors import InputError

STRATEGIES = ("uniform", "loss")


def replay_count(ratio: float, slice_size: int, pool_size: int) -> int:
    """`ratio` replayed samples per new sample, at most the whole pool."""
    return min(pool_size, int(round(ratio * slice_size)))


def select(pool_ids: np.ndarray, count: int, strategy: str, seed: int,
           losses: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Picks `count` ids from `pool_ids` (sorted), without replacement.

    "uniform" draws every earlier sample with equal chance. "loss" (the seed paper's
    reinforced replay) favours the samples the model now gets most wrong: the chance
    of each is proportional to its loss under the state before the slice.
    """
    if strategy not in STRATEGIES:
        raise InputError(f"Unknown replay strategy {strategy!r}; expected one of {STRATEGIES}.")
    pool_ids = np.sort(np.asarray(pool_ids, np.int64))
    if count <= 0 or len(pool_ids) == 0:
        return pool_ids[:0]
    rng = np.random.default_rng(seed)
    if strategy == "uniform":
        return np.sort(rng.choice(pool_ids, count, replace=False))
    weights = np.asarray(losses(pool_ids), np.float64) + 1e-6
    return np.sort(rng.choice(pool_ids, count, replace=False, p=weights / weights.sum()))
