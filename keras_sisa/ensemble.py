"""The aggregated model: one Keras model from raw images to probabilities over the label space."""

from __future__ import annotations

import keras
import numpy as np

from keras_sisa.models import ComponentState, ModelFn, outputs_probabilities
from keras_sisa.plan import Plan


@keras.saving.register_keras_serializable(package="keras_sisa")
class ShardMerge(keras.layers.Layer):
    """Merges expert outputs into one distribution over the label space.

    With a gate, P(class) = P_gate(shard) * P_expert(class | shard); without one
    (random shards, as in the original SISA), the experts' probabilities are averaged.

    An expert left with one class is the constant 1 and is not run at all; it is
    passed to this layer as nothing, and its class gets P(shard) directly.

    Args:
        columns: for every expert output, in order, its column in the label space.
        num_classes: size of the label space.
        expert_sizes: number of outputs of each expert (1 means constant, not an input).
        gate_columns: for every expert, the gate output that routes to it; None to average.
    """

    def __init__(self, columns: list[int], num_classes: int, expert_sizes: list[int],
                 gate_columns: list[int] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.columns = [int(c) for c in columns]
        self.num_classes = int(num_classes)
        self.expert_sizes = [int(n) for n in expert_sizes]
        self.gate_columns = None if gate_columns is None else [int(g) for g in gate_columns]
        matrix = np.zeros((len(self.columns), self.num_classes), np.float32)
        matrix[np.arange(len(self.columns)), self.columns] = 1.0
        if self.gate_columns is None:
            matrix /= np.maximum(matrix.sum(axis=0, keepdims=True), 1.0)
        self._matrix = matrix

    def call(self, inputs):
        inputs = list(inputs)
        gate = None if self.gate_columns is None else inputs.pop(0)
        ones = keras.ops.ones_like((gate if gate is not None else inputs[0])[:, :1])
        parts = []
        for k, size in enumerate(self.expert_sizes):
            p = ones if size == 1 else inputs.pop(0)
            parts.append(p if gate is None else gate[:, self.gate_columns[k]:self.gate_columns[k] + 1] * p)
        stacked = keras.ops.concatenate(parts, axis=-1)
        return keras.ops.matmul(stacked, keras.ops.convert_to_tensor(self._matrix, stacked.dtype))

    def compute_output_shape(self, input_shape):
        first = input_shape[0]
        return (first[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(columns=self.columns, num_classes=self.num_classes,
                      expert_sizes=self.expert_sizes, gate_columns=self.gate_columns)
        return config


def build_ensemble(plan: Plan, states: dict[str, ComponentState], model_fn: ModelFn,
                   gate_fn: ModelFn, input_shape: tuple, label_space: list[int]) -> keras.Model:
    """The Keras ensemble of the components' current states, outputs ordered as `label_space`."""
    inputs = keras.Input(shape=input_shape, name="images")
    expert_outputs, columns = [], []
    for expert in plan.experts:
        state = states[expert.name]
        if len(state.outputs) > 1:
            expert_outputs.append(_probabilities(state.build(model_fn, input_shape), expert.name, inputs))
        columns += [label_space.index(c) for c in state.outputs]
    sizes = [len(states[e.name].outputs) for e in plan.experts]
    gate = plan.gate
    if gate is None:
        merged = ShardMerge(columns, len(label_space), sizes, name="merge")(expert_outputs)
    else:
        gate_state = states[gate.name]
        routed = _probabilities(gate_state.build(gate_fn, input_shape), gate.name, inputs)
        gate_columns = [gate_state.outputs.index(e.shard) for e in plan.experts]
        merged = ShardMerge(columns, len(label_space), sizes, gate_columns, name="merge")(
            [routed, *expert_outputs])
    return keras.Model(inputs, merged, name="sisa_ensemble")


def _probabilities(model: keras.Model, name: str, inputs):
    """Calls a component under its own name, adding a softmax where it outputs logits."""
    named = keras.Model(model.input, model.output, name=name)
    outputs = named(inputs)
    if not outputs_probabilities(model):
        outputs = keras.layers.Softmax(name=f"{name}_softmax")(outputs)
    return outputs
