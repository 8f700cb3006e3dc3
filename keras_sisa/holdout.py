"""Which samples of a slice are held out to tell its training when to stop.

A slice that trains "until it stops improving" sets aside a seeded share of each of
its classes and never trains on them. The choice depends only on the slice's own
sample ids, their labels and the seed, so it is data like any other: deleting a
held-out image rewinds its slice, and a refit without it holds out the same others.
"""

from __future__ import annotations

import numpy as np

from keras_sisa.seeds import seed_for


def held_out(ids: np.ndarray, labels: np.ndarray, share: float, cap: int, seed: int) -> np.ndarray:
    """A boolean mask over `ids`: the `share` of each class (rounded, at most `cap`) that
    ranks first by a seeded hash of the sample id."""
    held = np.zeros(len(ids), bool)
    if share <= 0:
        return held
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        count = min(cap, int(round(share * len(members))))
        if count:
            rank = np.argsort([seed_for(seed, "held-out", int(i)) for i in ids[members]], kind="stable")
            held[members[rank[:count]]] = True
    return held
