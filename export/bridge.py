"""Keras 3 <-> tf_keras bridge, because tfmot only works on tf_keras (Keras 2) models.

A component model (a chain of standard layers) is rebuilt layer by layer in tf_keras
with the same weights; after a tfmot fine-tune, the weights are copied back into the
Keras 3 model. A layer the bridge does not know gets a clear error naming it.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np

from keras_sisa.errors import InputError
from keras_sisa.internals import inbound_nodes
from keras_sisa.optional import require

SUPPORTED = ("Rescaling", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D",
             "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Dense",
             "Dropout", "Activation", "ReLU", "Softmax", "BatchNormalization", "ZeroPadding2D")
# Config keys that only describe initial values or Keras 3 internals: the weights are copied.
DROPPED = ("dtype", "seed")
DROPPED_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


def chain_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers after its input, checking that each feeds only the next."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    for layer in layers:
        nodes = inbound_nodes(layer)
        if len(nodes) != 1 or len(keras.tree.flatten(nodes[0].input_tensors)) != 1:
            raise InputError(f"Layer {layer.name!r} of model {model.name!r} has several inputs or uses; "
                             "the tfmot bridge supports chains of layers only.")
    return layers


def to_tf_keras(model: keras.Model):
    """The same model in tf_keras, with the same weights."""
    tf_keras = require("tf_keras")

    layers = chain_layers(model)
    inputs = tf_keras.Input(shape=model.input_shape[1:])
    x = inputs
    for layer in layers:
        kind = type(layer).__name__
        if kind not in SUPPORTED:
            raise InputError(f"Layer {layer.name!r} of type {kind} cannot be bridged to tf_keras for "
                             f"tfmot; supported: {', '.join(SUPPORTED)}.")
        twin = getattr(tf_keras.layers, kind).from_config(_config(layer, getattr(tf_keras.layers, kind)))
        x = twin(x)
        twin.set_weights(layer.get_weights())
    return tf_keras.Model(inputs, x, name=model.name)


def _config(layer: keras.layers.Layer, twin_class) -> dict:
    """The layer's config as the tf_keras class accepts it; a Keras 3-only option that is set is an error."""
    accepted = set(inspect.signature(twin_class.__init__).parameters) | {"name", "trainable"}
    config = {}
    for key, value in layer.get_config().items():
        if key in DROPPED or key.endswith(DROPPED_SUFFIXES):
            continue
        if key in accepted:
            config[key] = value
        elif value not in (None, False, 0, {}, []):
            raise InputError(f"Layer {layer.name!r} sets {key}={value!r}, which tf_keras cannot express; "
                             "the tfmot bridge needs it unset.")
    return config


def copy_back(source, model: keras.Model) -> None:
    """Copies the weights of a tf_keras twin (after `strip_pruning`, or from QAT wrappers) into `model`."""
    twins = [layer for layer in source.layers if type(layer).__name__ != "InputLayer"]
    for layer, twin in zip(chain_layers(model), twins):
        # A tfmot wrapper lists the wrapped layer's weights among its own, beside its quantizer
        # variables; they are told apart by name.
        weights = {w.name.split("/")[-1].split(":")[0]: np.asarray(w) for w in twin.weights}
        layer.set_weights([weights[v.path.split("/")[-1]] for v in layer.weights])
