"""The private TensorFlow/Keras internals: found where they are, and one clear error where not."""

import keras
import numpy as np
import pytest
from tensorflow.python.eager import context as eager_context

from keras_sisa import UnsupportedVersion, internals, models


def test_the_seed_states_of_the_default_models_are_found():
    for builder in (models.default_cnn, models.strided_gate):
        model = builder((28, 28, 1), 3)
        dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
        assert dropouts and len(internals.seed_state_variables(model)) == len(dropouts)


class MovedSeed(keras.layers.Layer):
    """A layer with a seed generator whose state is not where Keras 3.15 keeps it."""

    def __init__(self):
        super().__init__()
        self.seed_generator = "kept elsewhere"

    def call(self, x):
        return x


def test_a_moved_seed_state_stops_with_the_versions_named():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(MovedSeed()(inputs)))
    with pytest.raises(UnsupportedVersion, match="was written for TensorFlow 2.21 and Keras 3.15"):
        internals.seed_state_variables(model)


def test_the_kernel_cache_handle_is_put_back():
    eager = eager_context.context()
    handle = eager._context_handle
    with internals.kernel_cache_kept():
        assert eager._context_handle is None
        keras.utils.set_random_seed(3)
    assert eager._context_handle is handle
    assert np.isfinite(keras.random.normal((2,), seed=1).numpy()).all()


def test_a_moved_inbound_nodes_stops_with_one_line():
    with pytest.raises(UnsupportedVersion, match="`Layer._inbound_nodes` has moved"):
        internals.inbound_nodes(object())
