"""Every private TensorFlow and Keras internal keras-sisa relies on, in one place.

Each is looked up where it was on the versions in `WRITTEN_FOR`; when one has moved,
the helper falls back to public behaviour where that gives the same weights (only
slower), and otherwise stops with one line naming the versions, never a wrong result.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras
import tensorflow as tf
from tensorflow.python.eager import context as eager_context

from keras_sisa.errors import UnsupportedVersion

WRITTEN_FOR = "TensorFlow 2.21 and Keras 3.15"
# The variable in which a Keras SeedGenerator (dropout, noise layers) keeps its state.
SEED_STATE = "seed_generator_state"


def _moved(what: str) -> UnsupportedVersion:
    return UnsupportedVersion(
        f"{what} has moved in TensorFlow {tf.__version__} / Keras {keras.__version__}; keras-sisa "
        f"was written for {WRITTEN_FOR}. Install those versions, or upgrade keras-sisa.")


@contextlib.contextmanager
def kernel_cache_kept() -> Iterator[None]:
    """Keeps TensorFlow's kernel cache through `tf.random.set_seed` inside the block.

    `set_seed` clears the cache through the eager context's private handle; hiding the
    handle skips only that clearing. Without the handle the cache is cleared as usual:
    the same weights, a slower first step."""
    eager = eager_context.context()
    if not hasattr(eager, "_context_handle"):
        yield
        return
    handle = eager._context_handle
    eager._context_handle = None
    try:
        yield
    finally:
        eager._context_handle = handle


def seed_state_variables(model: keras.Model) -> list:
    """The state variables of the model's SeedGenerators (dropout and noise layers), in order."""
    found = [v for v in model.variables if v.path.endswith(SEED_STATE)]
    seeded = [layer for layer in _all_layers(model) if getattr(layer, "seed_generator", None) is not None]
    if len(found) < len(seeded):
        raise _moved(f"The SeedGenerator state variable ({SEED_STATE!r})")
    return found


def inbound_nodes(layer: keras.layers.Layer) -> list:
    """The nodes through which `layer` is called in its functional model."""
    try:
        return layer._inbound_nodes
    except AttributeError:
        raise _moved("`Layer._inbound_nodes`") from None


def _all_layers(model: keras.Model) -> list:
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found += _all_layers(layer)
    return found
