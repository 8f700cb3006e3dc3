"""The baseline every benchmark measures against: the default CNN trained on all its data at once.

It trains the way SISA's gate does (raw uint8 pixels in, which the model rescales; Adam at
1e-3, batches of 128; no metric but the loss; `shuffled_batches`), for 3 epochs, so a cost
ratio compares the training work and not the input pipeline: feeding float32 copies made
the baseline 10 to 30% slower (measured). The recipe is fixed, whatever SISA's experts use.
"""

from __future__ import annotations

import time

import keras
import numpy as np

import keras_sisa
from keras_sisa.batches import shuffled_batches
from keras_sisa.training import enable_determinism


EPOCHS = 3
BATCH_SIZE = 128
LEARNING_RATE = 1e-3


def train(x: np.ndarray, labels: np.ndarray, num_classes: int, seed: int) -> tuple[keras.Model, float]:
    """The trained model and its fit wall time in seconds; `labels` run from 0 to num_classes - 1."""
    enable_determinism(seed)
    model = keras_sisa.default_cnn(x.shape[1:], num_classes)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    started = time.perf_counter()
    model.fit(shuffled_batches(x, labels, batch_size=BATCH_SIZE), shuffle=False, epochs=EPOCHS, verbose=0)
    return model, time.perf_counter() - started


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The predicted label index of each image."""
    return np.argmax(model.predict(x, batch_size=512, verbose=0), axis=1)
