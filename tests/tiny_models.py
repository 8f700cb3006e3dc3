"""Small model builders that keep the tests fast; importable as `tiny_models:tiny_cnn`."""

import keras


def tiny_cnn(input_shape, num_outputs):
    """An 8-16 convolutional classifier: real training in well under a second per slice."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(num_outputs)(x))


def softmax_mlp(input_shape, num_outputs):
    """A builder ending in softmax, as many Keras tutorials write them."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(keras.layers.Rescaling(1.0 / 255)(inputs))
    x = keras.layers.Dense(16, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(num_outputs, activation="softmax")(x))


def no_dense_head(input_shape, num_outputs):
    """A builder that breaks the contract: its last layer is not Dense."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(num_outputs)(x)
    return keras.Model(inputs, keras.layers.Activation("relu")(x))


def returns_none(input_shape, num_outputs):
    """A builder that forgot its return statement."""


def returns_text(input_shape, num_outputs):
    return "model"


def fixed_outputs(input_shape, num_outputs):
    """A builder with its class count hard-coded."""
    return tiny_cnn(input_shape, 10)


def ignores_input_shape(input_shape, num_outputs):
    return tiny_cnn((32, 32, 3), num_outputs)


def two_inputs(input_shape, num_outputs):
    first, second = keras.Input(shape=input_shape), keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(keras.layers.Add()([first, second]))
    return keras.Model([first, second], keras.layers.Dense(num_outputs)(x))


def unbuilt_sequential(input_shape, num_outputs):
    """A Sequential model without an Input: Keras has not built it yet."""
    return keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(num_outputs)])
