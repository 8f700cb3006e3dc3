"""The batches a slice trains on: those of Keras's `fit(shuffle=True)`, from a leaner pipeline.

`model.fit(x, y, shuffle=True)` on arrays builds a tf.data pipeline with autotuning,
and tearing down its iterator at the end of an epoch often stalled for about 0.45 s
(measured on the gate: 12 fits of 2 epochs took 21 to 26 s, with 1 to 6 such stalls
at their ends; 19 to 21 s, with none, on these batches). A forget retrains many short
slices, so it paid that stall most. These are the same batches in the same order, so
the weights keep their bits; only the autotuning is gone.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def shuffled_batches(x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None,
                     batch_size: int = 32) -> tf.data.Dataset:
    """The batches `fit(x, y, sample_weight=..., batch_size=..., shuffle=True)` trains on in
    every epoch, under the global seed set now; pass them to `fit` with `shuffle=False`."""
    order = _keras_order(len(x))
    return ordered_batches(x[order], y[order], None if sample_weight is None else sample_weight[order],
                           batch_size)


def ordered_batches(x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None,
                    batch_size: int = 32) -> tf.data.Dataset:
    """The arrays in batches, in the order given (the last batch may be partial), without autotuning."""
    arrays = tuple(a for a in (x, y, sample_weight) if a is not None)
    full = len(x) - len(x) % batch_size
    dataset = tf.data.Dataset.from_tensor_slices(
        tuple(a[:full].reshape(-1, batch_size, *a.shape[1:]) for a in arrays))
    if full < len(x):
        dataset = dataset.concatenate(tf.data.Dataset.from_tensors(tuple(a[full:] for a in arrays)))
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def _keras_order(n: int) -> np.ndarray:
    """The order in which Keras's shuffled `fit` visits `n` samples under the global seed.

    Its pipeline draws one `tf.random.shuffle` of the indices inside a tf.data function,
    where the op seed is fixed by the global seed, so each epoch's fresh iterator draws
    the same order; drawing it the same way reproduces it (the tests compare the bits).
    """
    draw = tf.data.Dataset.range(1).map(lambda _: tf.random.shuffle(tf.range(n, dtype=tf.int64)))
    return next(iter(draw)).numpy()
