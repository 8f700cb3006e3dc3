"""The baseline every benchmark measures against: the default CNN trained alone, as a user would.

A seeded, class-stratified 10% of the training images is carved off as a validation split
(never the test set); the model trains until the validation loss has not improved for
`PATIENCE` epochs, at most `MAX_EPOCHS`, and keeps the weights of its best epoch
(`keras.callbacks.EarlyStopping(restore_best_weights=True)`). Adam at 1e-3, batches of
128, raw uint8 pixels in (the model rescales them), batches drawn as Keras's shuffled
`fit` draws them (`shuffled_batches`), so a cost ratio compares training work.
"""

from __future__ import annotations

import time

import keras
import numpy as np

import keras_sisa
from keras_sisa.batches import shuffled_batches
from keras_sisa.training import enable_determinism

VALIDATION_SHARE = 0.1
PATIENCE = 3
MAX_EPOCHS = 100
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
# The recipe the benchmarks used before the early-stopped baseline, kept as an extra column.
FIXED_EPOCHS = 3


def validation_split(labels: np.ndarray, seed: int, share: float = VALIDATION_SHARE) -> np.ndarray:
    """A boolean mask of the validation images: a seeded `share` of each class, at least one."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        held[rng.choice(members, max(1, int(round(share * len(members)))), replace=False)] = True
    return held


def train(x: np.ndarray, labels: np.ndarray, num_classes: int, seed: int,
          fixed_epochs: int | None = None) -> tuple[keras.Model, dict]:
    """The trained model and its fit figures (seconds, epochs, best epoch); `labels` run
    from 0 to num_classes - 1. With `fixed_epochs`, trains that many epochs on all of `x`."""
    enable_determinism(seed)
    model = keras_sisa.default_cnn(x.shape[1:], num_classes)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if fixed_epochs is not None:
        started = time.perf_counter()
        model.fit(shuffled_batches(x, labels, batch_size=BATCH_SIZE), shuffle=False, epochs=fixed_epochs,
                  verbose=0)
        return model, {"seconds": time.perf_counter() - started, "epochs": fixed_epochs}
    held = validation_split(labels, seed)
    stopping = keras.callbacks.EarlyStopping(patience=PATIENCE, restore_best_weights=True)
    started = time.perf_counter()
    history = model.fit(shuffled_batches(x[~held], labels[~held], batch_size=BATCH_SIZE), shuffle=False,
                        epochs=MAX_EPOCHS, validation_data=(x[held], labels[held]), callbacks=[stopping],
                        verbose=0)
    return model, {"seconds": time.perf_counter() - started, "epochs": len(history.history["loss"]),
                   "best_epoch": stopping.best_epoch + 1}


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The predicted label index of each image."""
    return np.argmax(model.predict(x, batch_size=512, verbose=0), axis=1)
