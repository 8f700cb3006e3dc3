"""Model builders and the growing output head of a component.

A model builder is any function `(input_shape, num_outputs) -> keras.Model` whose
last layer is a `Dense(num_outputs)` (linear logits or softmax) and whose first
layers do their own preprocessing of raw 0..255 pixels. The head grows as a
component meets new classes: each output's weights are a column keyed by its class
(or, in the gate, its shard), created from a seed derived from that key, so a
checkpoint taken before class c arrived is exactly what a fit without c reaches.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Callable

import keras
import numpy as np

from keras_sisa.errors import InputError
from keras_sisa.seeds import seed_for

ModelFn = Callable[[tuple, int], keras.Model]

# The logit bias of a padding output (a head column beyond a state's outputs): its
# softmax probability is exactly 0, so it gets no gradient and never changes.
PADDING_BIAS = -1e9


def default_cnn(input_shape: tuple, num_outputs: int) -> keras.Model:
    """A 32-64-128 convolutional classifier for small images (28x28x1, 32x32x3, ...)."""
    return _cnn(input_shape, num_outputs, widths=(32, 64, 128), dense=128, name="cnn")


def small_gate(input_shape: tuple, num_outputs: int) -> keras.Model:
    """A 16-32-64 router with pooling."""
    return _cnn(input_shape, num_outputs, widths=(16, 32, 64), dense=64, name="gate")


def strided_gate(input_shape: tuple, num_outputs: int) -> keras.Model:
    """A cheap router: stride-2 16-32-64 convolutions, then a 64-wide one on the small map.

    A class forget redoes most of the gate, so its step time is the forget's cost. Over
    shards of two classes this gate routes Fashion-MNIST as well as `small_gate` (92.4%,
    mean of two seeds) in 60% of its step time (measured): a stride-2 convolution does a
    quarter of the work of a full-resolution one followed by pooling.
    """
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for width in (16, 32, 64):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    return _classifier(inputs, x, num_outputs, dense=64, name="gate")


def _cnn(input_shape, num_outputs, widths, dense, name) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for width in widths:
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    return _classifier(inputs, x, num_outputs, dense, name)


def _classifier(inputs, features, num_outputs, dense, name) -> keras.Model:
    """The dense top every built-in model shares, ending in the growing `head`."""
    x = keras.layers.Flatten()(features)
    x = keras.layers.Dense(dense, activation="relu")(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(num_outputs, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def resolve(spec: str | ModelFn) -> ModelFn:
    """A builder from a function or a `module:function` string (the CLI's --model)."""
    if callable(spec):
        return spec
    module_name, _, attribute = str(spec).partition(":")
    try:
        builder = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError):
        raise InputError(f"Cannot import model builder {spec!r}; expected 'module:function' "
                         "importable from the current directory or PYTHONPATH.") from None
    if not callable(builder):
        raise InputError(f"Model builder {spec!r} is not a function.")
    return builder


def spec_of(builder: ModelFn) -> str | None:
    """The `module:function` that names a builder, or None for a lambda or local function."""
    name = getattr(builder, "__qualname__", "")
    if "<" in name or "." in name:
        return None
    return f"{builder.__module__}:{name}"


def check_builder(builder: ModelFn, input_shape: tuple) -> None:
    """Builds `builder`'s model for two and three outputs and refuses, with one line, any
    model the ensemble cannot grow: so a bad builder fails before a run is written."""
    name = spec_of(builder) or getattr(builder, "__name__", repr(builder))
    for num_outputs in (2, 3):
        try:
            model = builder(tuple(input_shape), num_outputs)
        except Exception as error:
            raise InputError(f"Model builder {name} failed for input shape {tuple(input_shape)}: "
                             f"{type(error).__name__}: {error}") from None
        problem = _model_problem(model, tuple(input_shape), num_outputs)
        if problem:
            raise InputError(f"Model builder {name}: {problem}. A builder takes (input_shape, "
                             "num_outputs) and returns a keras.Model on that input ending in "
                             "Dense(num_outputs).")
        head_of(model)


def _model_problem(model, input_shape: tuple, num_outputs: int) -> str | None:
    if not isinstance(model, keras.Model):
        return f"returned {type(model).__name__}, not a keras.Model"
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        return "returned a model that is not built; start it with keras.Input(shape=input_shape)"
    if len(inputs) != 1 or len(outputs) != 1:
        return f"returned a model with {len(inputs)} inputs and {len(outputs)} outputs; expected one of each"
    if tuple(inputs[0].shape[1:]) != input_shape:
        return f"returned a model for input shape {tuple(inputs[0].shape[1:])}, not the data's {input_shape}"
    if outputs[0].shape[-1] != num_outputs:
        return f"returned {outputs[0].shape[-1]} outputs when asked for {num_outputs}"
    return None


def head_of(model: keras.Model) -> keras.layers.Dense:
    """The output layer that grows; builders must end in a Dense layer."""
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        raise InputError(f"Model {model.name!r} must end in a Dense output layer, got "
                         f"{type(head).__name__}.")
    if head.activation not in (keras.activations.linear, keras.activations.softmax):
        raise InputError(f"The output layer of {model.name!r} must be linear or softmax.")
    return head


def outputs_probabilities(model: keras.Model) -> bool:
    return head_of(model).activation is keras.activations.softmax


@dataclasses.dataclass
class ComponentState:
    """What a checkpoint holds: weights split into body and per-output head columns,
    the output keys in head order, the replay buffer the slice trained with, and how
    its training went (`history`: epochs, best epoch, samples, seconds; not part of the
    weights' digest)."""

    body: list[np.ndarray]
    kernel: np.ndarray
    bias: np.ndarray
    outputs: list[int]
    replay_ids: list[int]
    history: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def initial(cls, builder: ModelFn, input_shape: tuple) -> ComponentState:
        """The untrained body (seeded by the caller); the head starts with no outputs."""
        model = builder(input_shape, 1)
        state = cls.from_model(model, [], [])
        return dataclasses.replace(state, kernel=state.kernel[:, :0], bias=state.bias[:0])

    @classmethod
    def from_model(cls, model: keras.Model, outputs: list[int], replay_ids: list[int],
                   history: dict | None = None) -> ComponentState:
        """The state of `model`, whose first head columns are `outputs` and any more padding."""
        head = head_of(model)
        head_variables = {id(v) for v in head.weights}
        body = [np.asarray(v) for v in model.weights if id(v) not in head_variables]
        kernel, bias = (np.asarray(w) for w in head.get_weights())
        return cls(body, kernel[:, :len(outputs)], bias[:len(outputs)], list(outputs), list(replay_ids),
                   dict(history or {}))

    def grow(self, outputs: list[int], seed: int) -> ComponentState:
        """The state with a head over `outputs`; known columns are kept, new ones seeded by key."""
        features = self.kernel.shape[0]
        known = {key: k for k, key in enumerate(self.outputs)}
        columns, biases = [], []
        for key in outputs:
            if key in known:
                columns.append(self.kernel[:, known[key]])
                biases.append(self.bias[known[key]])
            else:
                rng = np.random.default_rng(seed_for(seed, "head", key))
                limit = np.sqrt(3.0 / features)
                columns.append(rng.uniform(-limit, limit, features).astype(self.kernel.dtype))
                biases.append(np.zeros((), self.bias.dtype))
        kernel = np.stack(columns, axis=1) if columns else self.kernel[:, :0]
        return dataclasses.replace(self, kernel=kernel, bias=np.asarray(biases, self.bias.dtype),
                                   outputs=list(outputs))

    def build(self, builder: ModelFn, input_shape: tuple) -> keras.Model:
        """A Keras model carrying this state's weights."""
        return self.load_into(builder(input_shape, len(self.outputs)))

    def load_into(self, model: keras.Model) -> keras.Model:
        """Sets `model`'s weights to this state's; head columns beyond its outputs become padding."""
        head = head_of(model)
        head_variables = {id(v) for v in head.weights}
        body = [v for v in model.weights if id(v) not in head_variables]
        shapes = [tuple(v.shape) for v in body] + [head.units]
        wanted = [w.shape for w in self.body] + [len(self.outputs)]
        if shapes[:-1] != wanted[:-1] or shapes[-1] < wanted[-1]:
            raise InputError(f"The model {model.name!r} does not fit the checkpoint (weight shapes, then "
                             f"head width: {shapes}; the checkpoint's: {wanted}); use the builder the run "
                             "was fitted with.")
        for variable, value in zip(body, self.body):
            variable.assign(value)
        padding = head.units - len(self.outputs)
        head.set_weights([np.pad(self.kernel, [(0, 0), (0, padding)]),
                          np.pad(self.bias, (0, padding), constant_values=PADDING_BIAS)])
        return model

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"body_{k:03d}": w for k, w in enumerate(self.body)}
        arrays.update(kernel=self.kernel, bias=self.bias, outputs=np.asarray(self.outputs, np.int64),
                      replay_ids=np.asarray(self.replay_ids, np.int64))
        if self.history:
            arrays["history"] = np.asarray(json.dumps(self.history))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ComponentState:
        body = [arrays[k] for k in sorted(k for k in arrays if k.startswith("body_"))]
        return cls(body, arrays["kernel"], arrays["bias"], arrays["outputs"].tolist(),
                   arrays["replay_ids"].tolist(), cls.history_from(arrays))

    @staticmethod
    def history_from(arrays: dict[str, np.ndarray]) -> dict:
        """The training history among a checkpoint's arrays ({} for checkpoints without one)."""
        return json.loads(str(arrays["history"])) if "history" in arrays else {}

    def digest(self) -> str:
        """SHA-256 over every weight, in order: equal digests mean bit-identical models."""
        import hashlib

        h = hashlib.sha256()
        for w in [*self.body, self.kernel, self.bias, np.asarray(self.outputs, np.int64)]:
            h.update(str(w.shape).encode())
            h.update(np.ascontiguousarray(w).tobytes())
        return h.hexdigest()
