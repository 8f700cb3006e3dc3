"""The batches a slice trains on are Keras's own shuffled batches: same weights, bit for bit."""

import keras
import numpy as np
import pytest

from keras_sisa.batches import shuffled_batches
from keras_sisa.models import ComponentState
from keras_sisa.training import enable_determinism, reseed_slice
from tiny_models import tiny_cnn


def trained_digest(small, weighted: bool, ours: bool, seed: int) -> str:
    """The digest of a tiny CNN's weights after two shuffled epochs of batches of 32 (the last one partial)."""
    enable_determinism(0)
    model = tiny_cnn(small.input_shape, 4)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    weights = np.linspace(0.5, 1.5, len(small.y_train), dtype=np.float32) if weighted else None
    reseed_slice(seed)
    if ours:
        model.fit(shuffled_batches(small.x_train, small.y_train, weights, batch_size=32), shuffle=False,
                  epochs=2, verbose=0)
    else:
        model.fit(small.x_train, small.y_train, sample_weight=weights, batch_size=32, shuffle=True, epochs=2,
                  verbose=0)
    return ComponentState.from_model(model, [0, 1, 2, 3], []).digest()


@pytest.mark.parametrize("weighted", [True, False])
def test_shuffled_batches_train_the_bits_of_a_shuffled_keras_fit(small, weighted):
    assert len(small.y_train) % 32
    ours = trained_digest(small, weighted, ours=True, seed=3)
    assert ours == trained_digest(small, weighted, ours=False, seed=3)
    assert ours != trained_digest(small, weighted, ours=True, seed=4)


def test_shuffled_batches_hold_every_sample_once_per_epoch(small):
    reseed_slice(3)
    batches = list(shuffled_batches(small.x_train, small.y_train, batch_size=32))
    assert [len(y) for _, y in batches] == [32] * 7 + [16]
    images = np.concatenate([x for x, _ in batches])
    assert sorted(map(bytes, images)) == sorted(map(bytes, small.x_train))
    assert not np.array_equal(images, small.x_train)
