"""Training one slice in a compiled model whose head is wider than the slice's outputs, and loading
states only into models they fit."""

import numpy as np
import pytest

from keras_sisa.errors import InputError
from keras_sisa.models import PADDING_BIAS, ComponentState, strided_gate
from keras_sisa.training import CompiledModels, TrainingConfig, enable_determinism
from conftest import fit_small, run_digests
from tiny_models import softmax_mlp, tiny_cnn


@pytest.mark.parametrize("builder", [tiny_cnn, softmax_mlp, strided_gate])
def test_padding_outputs_never_change_and_never_win(builder, small):
    enable_determinism(0)
    state = ComponentState.initial(builder, small.input_shape).grow([0, 1, 2], seed=0)
    config = TrainingConfig(learning_rate=1e-2)
    model = CompiledModels().prepared(builder, small.input_shape, config.learning_rate, config.head_width,
                                      state, seed=0)
    assert model.layers[-1].units == config.head_width == 8
    kept = small.y_train < 3
    model.fit(small.x_train[kept], small.y_train[kept], batch_size=32, epochs=2, verbose=0)
    kernel, bias = model.layers[-1].get_weights()
    assert np.all(kernel[:, 3:] == 0) and np.all(bias[3:] == PADDING_BIAS)
    assert not np.array_equal(kernel[:, :3], state.kernel)
    assert np.all(np.argmax(model.predict(small.x_test, verbose=0), axis=1) < 3)
    trained = ComponentState.from_model(model, [0, 1, 2], [])
    assert trained.kernel.shape == state.kernel.shape and trained.bias.shape == state.bias.shape


@pytest.mark.parametrize("other, width", [(softmax_mlp, 3), (tiny_cnn, 2)])
def test_a_state_refuses_a_model_it_does_not_fit(other, width, small):
    state = ComponentState.initial(tiny_cnn, small.input_shape).grow([0, 1, 2], seed=0)
    with pytest.raises(InputError, match="does not fit the checkpoint.*use the builder the run was fitted with"):
        state.load_into(other(small.input_shape, width))


def test_the_gate_trains_with_its_own_batch_size_and_learning_rate(small, tmp_path):
    base = run_digests(fit_small(tmp_path / "base", small).directory)
    experts_changed = run_digests(fit_small(tmp_path / "experts", small, batch_size=16,
                                            learning_rate=5e-3).directory)
    gate_changed = run_digests(fit_small(tmp_path / "gate", small, gate_batch_size=16,
                                         gate_learning_rate=2e-3).directory)
    experts = [name for name in base if name != "gate"]
    assert experts_changed["gate"] == base["gate"] and gate_changed["gate"] != base["gate"]
    assert all(experts_changed[e] != base[e] and gate_changed[e] == base[e] for e in experts)
