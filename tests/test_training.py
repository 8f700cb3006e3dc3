"""Training one slice in a compiled model whose head is wider than the slice's outputs, and loading
states only into models they fit."""

import csv

import keras
import numpy as np
import pytest

from keras_sisa.callbacks import AnnealingEarlyStopping, CheckedAverage, MovingAverage
from keras_sisa.errors import InputError
from keras_sisa.models import PADDING_BIAS, ComponentState, strided_gate
from keras_sisa.config import TrainingConfig
from keras_sisa.training import CompiledModels, enable_determinism
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


@pytest.mark.parametrize("gate_options", [dict(gate_batch_size=16, gate_learning_rate=2e-3),
                                          dict(gate_ema=0.5)])
def test_the_gate_trains_with_its_own_recipe(small, tmp_path, gate_options):
    base = run_digests(fit_small(tmp_path / "base", small).directory)
    experts_changed = run_digests(fit_small(tmp_path / "experts", small, batch_size=16,
                                            learning_rate=5e-3).directory)
    gate_changed = run_digests(fit_small(tmp_path / "gate", small, **gate_options).directory)
    experts = [name for name in base if name != "gate"]
    assert experts_changed["gate"] == base["gate"] and gate_changed["gate"] != base["gate"]
    assert all(experts_changed[e] != base[e] and gate_changed[e] == base[e] for e in experts)


class WeightLog(keras.callbacks.Callback):
    """Records the trainable weights after every batch."""

    def on_train_begin(self, logs=None):
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([np.asarray(v) for v in self.model.trainable_variables])


@pytest.mark.parametrize("every", [1, 3])
def test_moving_average_ends_training_on_the_average_of_every_nth_batch(small, every):
    enable_determinism(0)
    model = tiny_cnn(small.input_shape, 4)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    log = WeightLog()
    model.fit(small.x_train, small.y_train, batch_size=32, epochs=2, verbose=0,
              callbacks=[log, MovingAverage(0.8, every)])
    samples = log.weights[every - 1::every]
    assert len(samples) >= 5
    expected = samples[0]
    for weights in samples[1:]:
        expected = [0.8 * a + (1 - 0.8) * w for a, w in zip(expected, weights)]
    final = [np.asarray(v) for v in model.trainable_variables]
    assert all(np.array_equal(f, e) for f, e in zip(final, expected))
    assert not all(np.allclose(f, w) for f, w in zip(final, log.weights[-1]))


class EpochLog(keras.callbacks.Callback):
    """Weights and learning rate at the end of every epoch, before later callbacks change them."""

    def __init__(self):
        super().__init__()
        self.weights, self.rates = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())
        self.rates.append(float(self.model.optimizer.learning_rate))


def fit_to_a_plateau(small, *callbacks):
    enable_determinism(0)
    model = tiny_cnn(small.input_shape, 4)
    model.compile(optimizer=keras.optimizers.Adam(3e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(small.x_train, small.y_train, batch_size=32, epochs=40, verbose=0, shuffle=False,
                        validation_data=(small.x_test, small.y_test), callbacks=list(callbacks))
    return model, history.history["val_loss"]


def test_annealing_early_stopping_lowers_the_rate_once_and_ends_on_the_best_weights(small):
    log = EpochLog()
    model, losses = fit_to_a_plateau(small, log, AnnealingEarlyStopping(patience=2, anneals=1, factor=0.1))
    assert len(losses) < 40
    assert sorted(set(log.rates), reverse=True) == pytest.approx([3e-2, 3e-3])
    lowered = log.rates.index(min(log.rates))
    best_before = int(np.argmin(losses[:lowered]))
    # The lower rate starts from the best weights so far, and training ends on the best of all.
    assert lowered == best_before + 3
    best = int(np.argmin(losses))
    assert all(np.array_equal(w, b) for w, b in zip(model.get_weights(), log.weights[best]))


def test_annealing_early_stopping_without_anneals_is_keras_early_stopping(small):
    ours, our_losses = fit_to_a_plateau(small, AnnealingEarlyStopping(patience=2, anneals=0))
    theirs, their_losses = fit_to_a_plateau(small, keras.callbacks.EarlyStopping(patience=2,
                                                                                  restore_best_weights=True))
    assert our_losses == their_losses
    assert all(np.array_equal(a, b) for a, b in zip(ours.get_weights(), theirs.get_weights()))


def test_checked_average_is_what_early_stopping_scores_and_keeps(small):
    raw = WeightLog()
    model, losses = fit_to_a_plateau(small, raw, CheckedAverage(0.8, every=1),
                                     keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True))
    steps = -(-len(small.y_train) // 32)
    averages, average = [], None
    for k, weights in enumerate(raw.weights, 1):  # training goes on from the raw weights
        average = weights if average is None else [0.8 * a + 0.2 * w for a, w in zip(average, weights)]
        if k % steps == 0:
            averages.append(average)
    best = int(np.argmin(losses))
    final = [np.asarray(v) for v in model.trainable_variables]
    assert len(averages) == len(losses) < 40
    assert all(np.allclose(f, a) for f, a in zip(final, averages[best]))
    assert model.evaluate(small.x_test, small.y_test, verbose=0) == pytest.approx(losses[best], rel=1e-5)


def test_users_callbacks_see_every_slice_of_fit_and_forget(small, tmp_path):
    import keras
    from keras_sisa import SISAClassifier
    from tiny_models import tiny_cnn

    class Slices(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.fits, self.batches = 0, 0

        def on_train_begin(self, logs=None):
            self.fits += 1

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

    seen, log = Slices(), tmp_path / "log.csv"
    sisa = SISAClassifier(str(tmp_path / "run"), tiny_cnn, tiny_cnn, shards=2, epochs=2, gate_epochs=2,
                          batch_size=32, gate_batch_size=32)
    sisa.fit(small.x_train, small.y_train, small.class_names, sample_ids=small.ids, verbose=0,
             callbacks=[seen, keras.callbacks.CSVLogger(str(log), append=True)])
    trained = {(name, s["slice"]) for name, slices in sisa.recipe()["slices"].items() for s in slices
               if s["rounds"]}
    rows = list(csv.DictReader(log.open()))
    assert seen.fits == len(trained) and seen.batches > 0 and len(rows) > len(trained)
    assert {(row["component"], row["slice"]) for row in rows} == trained
    again = Slices()
    sisa.forget(classes=[small.class_names[-1]], verbose=0, callbacks=[again])
    assert again.fits >= 1 and all(row["identical"] for row in sisa.verify())


def test_callbacks_with_workers_are_refused():
    import keras
    from keras_sisa import Execution, InputError

    with pytest.raises(InputError, match="callbacks run in this process"):
        Execution(workers=2, callbacks=[keras.callbacks.History()])



def test_fit_and_forget_show_one_progress_bar_over_the_slices_they_train(small, tmp_path, capsys):
    from keras_sisa import SISAClassifier
    from tiny_models import tiny_cnn

    sisa = SISAClassifier(str(tmp_path / "run"), tiny_cnn, tiny_cnn, shards=2, epochs=1, gate_epochs=1,
                          batch_size=32, gate_batch_size=32)
    sisa.fit(small.x_train, small.y_train, small.class_names, sample_ids=small.ids, verbose=1)
    slices = sum(len(c.slices) for c in sisa.plan.components)
    fitted = capsys.readouterr().out
    assert f"{slices}/{slices}" in fitted and "/slice" in fitted and "Epoch" not in fitted, fitted
    sisa.forget(classes=[small.class_names[-1]], verbose=1)
    retrained = capsys.readouterr().out
    assert "/slice" in retrained and f"{slices}/{slices}" not in retrained, retrained
