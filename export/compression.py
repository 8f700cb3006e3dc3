"""tfmot compression of the components before export: magnitude pruning or quantization-aware
fine-tuning, each a short distillation on retained data only (the store holds nothing else).

Each component is bridged to tf_keras, wrapped by tfmot, fine-tuned on its own
targets, unwrapped, and its weights copied back into a Keras 3 model; the ensemble
is then rebuilt from those weights. The run itself is not changed.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_sisa.ensemble import build_ensemble
from keras_sisa.errors import InputError
from keras_sisa.optional import require
from keras_sisa.export.bridge import copy_back, to_tf_keras
from keras_sisa.models import ComponentState, outputs_probabilities
from keras_sisa.run import Run
from keras_sisa.tasks import load_samples
from keras_sisa.training import enable_determinism

WEIGHTED = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")


@dataclasses.dataclass
class Compression:
    """What to do: `prune` is the target sparsity (0 < s < 1), `qat` a quantization-aware fine-tune."""

    prune: float | None = None
    qat: bool = False
    epochs: int = 3
    learning_rate: float | None = None
    batch_size: int = 128

    def __post_init__(self):
        if self.prune is not None and not 0 < self.prune < 1:
            raise InputError(f"Expected prune (--prune) between 0 and 1 (the share of weights set to zero), "
                             f"got {self.prune}.")
        if self.prune is not None and self.qat:
            raise InputError("Give prune or qat (--prune, --qat), not both: a QAT fine-tune would refill pruned weights.")

    @property
    def active(self) -> bool:
        return self.prune is not None or self.qat

    @property
    def step_size(self) -> float:
        """Pruning must recover from zeroed weights (measured: 1e-3 keeps 0.8 sparsity within
        0.7 points of float32); QAT only adapts to rounding, and a small step keeps agreement."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-3 if self.prune is not None else 1e-4


def compressed_ensemble(run: Run, compression: Compression, verbose: int = 0) -> tuple[keras.Model, dict]:
    """The ensemble rebuilt from fine-tuned components, and the measured weight sparsity."""
    tfmot = require("tensorflow_model_optimization")

    samples = load_samples(run.store, run.plan)
    states = {}
    for component in run.plan.components:
        state = run.component_state(component.name)
        builder = run.builder(component)
        model = state.build(builder, run.input_shape)
        if len(state.outputs) > 1:
            enable_determinism(run.config.seed)
            x = samples.x[samples.rows(component.sample_ids)].astype(np.float32)
            _fine_tune(tfmot, model, x, compression, verbose)
        states[component.name] = ComponentState.from_model(model, state.outputs, [])
    ensemble = build_ensemble(run.plan, states, run.model_fn, run.gate_fn, run.input_shape, run.classes)
    return ensemble, {"sparsity": kernel_sparsity(ensemble)}


def _fine_tune(tfmot, model: keras.Model, x: np.ndarray, compression: Compression, verbose: int) -> None:
    """Distils the component into its tfmot-wrapped twin: the targets are the component's own
    probabilities, so the compressed ensemble keeps agreeing with the one it came from."""
    tf_keras = require("tf_keras")

    logits = not outputs_probabilities(model)
    teacher = model.predict(x, batch_size=compression.batch_size, verbose=0)
    targets = keras.ops.convert_to_numpy(keras.ops.softmax(teacher)) if logits else teacher
    twin = to_tf_keras(model)
    weighted = tuple(getattr(tf_keras.layers, kind) for kind in WEIGHTED)
    callbacks = []
    if compression.prune is not None:
        steps = compression.epochs * int(np.ceil(len(x) / compression.batch_size))
        # Sparsity ramps up over the first half of the fine-tune; masks update every step so
        # that short fine-tunes still reach the target.
        schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, compression.prune, begin_step=0,
                                                        end_step=max(1, steps // 2), frequency=1)
        wrap = lambda layer: tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        callbacks.append(tfmot.sparsity.keras.UpdatePruningStep())
    else:
        wrap = tfmot.quantization.keras.quantize_annotate_layer
    # Only layers with kernels are wrapped: tfmot refuses others (e.g. Rescaling).
    twin = tf_keras.models.clone_model(
        twin, clone_function=lambda layer: wrap(layer) if isinstance(layer, weighted) else layer)
    if compression.qat:
        twin = tfmot.quantization.keras.quantize_apply(twin)
    twin.compile(optimizer=tf_keras.optimizers.Adam(compression.step_size),
                 loss=tf_keras.losses.CategoricalCrossentropy(from_logits=logits))
    twin.fit(x, targets, batch_size=compression.batch_size, epochs=compression.epochs, shuffle=True,
             callbacks=callbacks, verbose=verbose)
    if compression.prune is not None:
        twin = tfmot.sparsity.keras.strip_pruning(twin)
    copy_back(twin, model)


def kernel_sparsity(model: keras.Model) -> float:
    """Share of zeros among the kernels of convolution and dense layers (what pruning targets)."""
    kernels = [np.asarray(v) for v in model.weights if v.path.endswith("kernel")]
    return float(sum(np.sum(k == 0) for k in kernels) / sum(k.size for k in kernels))
